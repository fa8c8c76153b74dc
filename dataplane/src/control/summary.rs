//! What a generation holds (for reload results and the status page) and which of its settings
//! differ from what the process runs with but cannot change without a restart.

use portcullis_config::{AdminSettings, DiagnosticsSettings, LogSettings, Snapshot};
use serde_json::{json, Value};

use crate::tls::TlsSnapshot;

/// The settings a running process keeps until it restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartOnly {
    listen: Vec<std::net::SocketAddr>,
    workers: usize,
    cpu_affinity: Option<Vec<usize>>,
    admin: Option<AdminSettings>,
    logs: LogSettings,
    diagnostics: DiagnosticsSettings,
}

impl RestartOnly {
    /// What `config` (the configuration the process started with) set.
    pub(crate) fn of(config: &Snapshot) -> Self {
        Self {
            listen: config.server.listen.clone(),
            workers: config.server.workers,
            cpu_affinity: config.server.cpu_affinity.clone(),
            admin: config.admin.clone(),
            logs: config.logs.clone(),
            diagnostics: config.diagnostics,
        }
    }

    /// The keys whose value in `config` differs from the running one: they take effect only
    /// after a restart.
    pub(crate) fn differences(&self, config: &Snapshot) -> Vec<&'static str> {
        let new = Self::of(config);
        let mut keys = Vec::new();
        if new.listen != self.listen {
            keys.push("server.listen");
        }
        if new.workers != self.workers {
            keys.push("server.workers");
        }
        if new.cpu_affinity != self.cpu_affinity {
            keys.push("server.cpu_affinity");
        }
        if new.admin != self.admin {
            keys.push("admin");
        }
        if new.logs != self.logs {
            keys.push("logs");
        }
        if new.diagnostics != self.diagnostics {
            keys.push("diagnostics");
        }
        keys
    }
}

/// Sites (with CAs per trust store) and revocation stores (with entries) of a snapshot.
pub(crate) fn summary(tls: &TlsSnapshot) -> Value {
    let sites: Vec<Value> = tls
        .config
        .sites
        .iter()
        .map(|site| {
            let mtls = &site.mtls;
            json!({
                "name": site.name,
                "server_names": site.server_names,
                "mode": mtls.mode.as_str(),
                "trust_store": mtls.trust_store_path.as_ref().map(|path| json!({
                    "source": path.display().to_string(),
                    "cas": mtls.trust_store.len(),
                })),
                "revocation_store": mtls.revocation_store,
                "crls": mtls.crls.len(),
            })
        })
        .collect();
    let stores: Vec<Value> = tls
        .revocation_view()
        .store_summaries()
        .into_iter()
        .map(|store| {
            json!({
                "name": store.name,
                "source": store.source,
                "entries": store.entries,
                "writable": store.writable,
            })
        })
        .collect();
    json!({ "sites": sites, "revocation_stores": stores })
}
