//! Validation of the raw model and assembly of the [`Snapshot`].
//!
//! Every check records its problem in a [`Collector`] and carries on, so a
//! single load reports all problems at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::admin::validate_admin;
use crate::duration::parse_duration;
use crate::error::{Collector, ConfigErrors, DOCUMENT_KEY};
use crate::function::validate_connection_function;
use crate::load::{load_certificate_chain, load_private_key, load_trust_store};
use crate::logs::{validate_diagnostics, validate_logs};
use crate::machine::{allowed_cpus, cpu_list, MAX_WORKERS};
use crate::model::{RawConfig, RawLimits, RawMtls, RawServer, RawSite, RawTimeouts};
use crate::origin::load_origin;
use crate::sigalgs::validate_signature_algorithms;
use crate::snapshot::{
    ForwardHeaders, Limits, MtlsMode, MtlsSettings, ServerSettings, SiteSnapshot, Snapshot,
    Timeouts,
};
use crate::sni::{normalize_server_name, SniIndex};
use crate::sources::{validate_sources, Files, ObjectFetcher};
use crate::stores::{validate_revocation_stores, validate_site_revocation, StoreNames};

/// Default and bounds of `max_chain_depth`.
const MAX_CHAIN_DEPTH: u8 = 4;

/// Validates `raw` (read from `path`) and loads every referenced file (object URLs through
/// `fetcher`).
pub(crate) fn build_snapshot(
    raw: RawConfig,
    path: &Path,
    fetcher: &dyn ObjectFetcher,
) -> Result<Snapshot, ConfigErrors> {
    let mut c = Collector::new(path);
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let sources = validate_sources(raw.sources.as_ref(), &base_dir, &mut c);
    let files = Files::new(&base_dir, &sources, fetcher);

    let server = validate_server(&raw.server, &mut c);
    let admin = raw
        .admin
        .as_ref()
        .map(|admin| validate_admin(admin, &base_dir, &mut c));
    let (stores, store_names) = validate_revocation_stores(&raw.revocation_store, &files, &mut c);
    let logs = validate_logs(raw.logs.as_ref(), &base_dir, &mut c);
    let diagnostics = validate_diagnostics(raw.diagnostics.as_ref(), &mut c);

    if raw.site.is_empty() {
        c.config("site", "at least one [[site]] is required");
    }
    let default_site = choose_default(&raw.site, &mut c);
    check_site_names(&raw.site, &mut c);
    let sni = build_sni_index(&raw.site, default_site, &mut c);

    let sites: Vec<Option<SiteSnapshot>> = raw
        .site
        .iter()
        .enumerate()
        .map(|(index, site)| {
            let is_default = index == default_site;
            validate_site(site, index, is_default, &files, &store_names, &mut c)
        })
        .collect();

    let files = files.into_uses(&mut c, path);
    if !c.is_empty() {
        return Err(c.into_errors());
    }
    let sites = sites
        .into_iter()
        .flatten()
        .map(Arc::new)
        .collect::<Vec<_>>();
    let revocation_stores = stores
        .into_iter()
        .flatten()
        .map(Arc::new)
        .collect::<Vec<_>>();
    let admin_failed = matches!(admin, Some(None));
    if sites.len() != raw.site.len()
        || sites.is_empty()
        || revocation_stores.len() != raw.revocation_store.len()
        || admin_failed
    {
        // Unreachable: every `None` above recorded an error.
        c.config(
            DOCUMENT_KEY,
            "internal error: a setting failed to load without a reported reason",
        );
        return Err(c.into_errors());
    }
    Ok(Snapshot {
        source: path.to_path_buf(),
        server,
        sites,
        default_site,
        admin: admin.flatten(),
        revocation_stores,
        sources,
        files,
        logs,
        diagnostics,
        sni,
        warnings: c.take_warnings(),
    })
}

fn validate_server(raw: &RawServer, c: &mut Collector<'_>) -> ServerSettings {
    if raw.listen.is_empty() {
        c.config("server.listen", "at least one listen address is required");
    }
    let mut listen = Vec::with_capacity(raw.listen.len());
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, text) in raw.listen.iter().enumerate() {
        let key = format!("server.listen[{i}]");
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) => {
                if addr.port() != 0 {
                    if let Some(first) = seen.insert(addr, i) {
                        c.config(
                            key,
                            format!("duplicate listen address {addr} (also server.listen[{first}])"),
                        );
                        continue;
                    }
                }
                listen.push(addr);
            }
            Err(e) => c.config(
                key,
                format!("invalid socket address {text:?} (expected IP:port, e.g. \"127.0.0.1:8443\" or \"[::1]:8443\"): {e}"),
            ),
        }
    }

    let machine_cpus = allowed_cpus();
    let workers = match raw.workers {
        None | Some(0) => default_workers(),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= MAX_WORKERS => {
                if let Some(cpus) = machine_cpus.as_ref().filter(|cpus| n > cpus.len()) {
                    c.warn_config(
                        "server.workers",
                        format!(
                            "{n} workers on {} CPUs: workers will share cores (one per CPU is the design)",
                            cpus.len()
                        ),
                    );
                }
                n
            }
            _ => {
                c.config(
                    "server.workers",
                    format!("must be in range 0..={MAX_WORKERS} (0: one per CPU), got {n}"),
                );
                1
            }
        },
    };

    let cpu_affinity = raw.cpu_affinity.as_ref().map(|cpus| {
        if cpus.is_empty() {
            c.config(
                "server.cpu_affinity",
                "must list at least one CPU (omit the key to disable pinning)",
            );
        }
        cpus.iter()
            .enumerate()
            .filter_map(|(i, &cpu)| {
                let key = format!("server.cpu_affinity[{i}]");
                let Ok(cpu) = usize::try_from(cpu) else {
                    c.config(key, format!("CPU id must be >= 0, got {cpu}"));
                    return None;
                };
                match &machine_cpus {
                    Some(allowed) if !allowed.contains(&cpu) => {
                        c.config(
                            key,
                            format!(
                                "CPU {cpu} is not available to this process (available: {})",
                                cpu_list(allowed)
                            ),
                        );
                        None
                    }
                    _ => Some(cpu),
                }
            })
            .collect()
    });

    let limits = validate_limits(&raw.limits, c);
    ServerSettings {
        listen,
        workers,
        cpu_affinity,
        timeouts: validate_timeouts(&raw.timeouts, c),
        http2: crate::http2::validate_http2(&raw.http2, limits.max_header_bytes, c),
        limits,
    }
}

/// The longest time-out accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `250ms`, `10s`, `24h` style rendering of a bound.
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn validate_timeouts(raw: &RawTimeouts, c: &mut Collector<'_>) -> Timeouts {
    let defaults = Timeouts::default();
    let mut field = |name: &str, value: &Option<String>, default: Duration, min: Duration| {
        let Some(text) = value else {
            return default;
        };
        let key = format!("server.timeouts.{name}");
        match parse_duration(text) {
            Ok(d) if d < min || d > MAX_TIMEOUT => {
                c.config(
                    key,
                    format!(
                        "must be in range {}..={}, got {text:?}",
                        humanize(min),
                        humanize(MAX_TIMEOUT)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(reason) => {
                c.config(key, reason);
                default
            }
        }
    };
    let ms = Duration::from_millis;
    Timeouts {
        handshake: field("handshake", &raw.handshake, defaults.handshake, ms(100)),
        header_read: field(
            "header_read",
            &raw.header_read,
            defaults.header_read,
            ms(100),
        ),
        idle_keepalive: field(
            "idle_keepalive",
            &raw.idle_keepalive,
            defaults.idle_keepalive,
            ms(100),
        ),
        origin_connect: field(
            "origin_connect",
            &raw.origin_connect,
            defaults.origin_connect,
            ms(10),
        ),
        origin_response: field(
            "origin_response",
            &raw.origin_response,
            defaults.origin_response,
            ms(100),
        ),
        send: field("send", &raw.send, defaults.send, ms(100)),
        request_body: field(
            "request_body",
            &raw.request_body,
            defaults.request_body,
            ms(100),
        ),
        drain: field("drain", &raw.drain, defaults.drain, Duration::ZERO),
    }
}

fn validate_limits(raw: &RawLimits, c: &mut Collector<'_>) -> Limits {
    let defaults = Limits::default();
    Limits {
        max_header_bytes: ranged(
            c,
            "server.limits.max_header_bytes",
            raw.max_header_bytes,
            1024,
            Some(1_048_576),
            defaults.max_header_bytes,
        ),
        max_header_count: ranged(
            c,
            "server.limits.max_header_count",
            raw.max_header_count,
            1,
            Some(1000),
            defaults.max_header_count,
        ),
        max_connections_per_worker: ranged(
            c,
            "server.limits.max_connections_per_worker",
            raw.max_connections_per_worker,
            1,
            Some(1_000_000),
            defaults.max_connections_per_worker,
        ),
        max_connections_per_client_ip: ranged(
            c,
            "server.limits.max_connections_per_client_ip",
            raw.max_connections_per_client_ip,
            0,
            Some(1_000_000),
            defaults.max_connections_per_client_ip,
        ),
        max_requests_in_flight_per_worker: ranged(
            c,
            "server.limits.max_requests_in_flight_per_worker",
            raw.max_requests_in_flight_per_worker,
            1,
            Some(1_000_000),
            defaults.max_requests_in_flight_per_worker,
        ),
        min_request_body_rate: ranged(
            c,
            "server.limits.min_request_body_rate",
            raw.min_request_body_rate,
            0,
            Some(1 << 30),
            defaults.min_request_body_rate as usize,
        ) as u64,
    }
}

/// Checks `min <= value <= max`; returns `default` when absent or invalid.
fn ranged(
    c: &mut Collector<'_>,
    key: &str,
    value: Option<i64>,
    min: i64,
    max: Option<i64>,
    default: usize,
) -> usize {
    let Some(value) = value else {
        return default;
    };
    let in_range = value >= min && max.is_none_or(|max| value <= max);
    match usize::try_from(value) {
        Ok(v) if in_range => v,
        _ => {
            let range = match max {
                Some(max) => format!("{min}..={max}"),
                None => format!(">= {min}"),
            };
            c.config(key, format!("must be in range {range}, got {value}"));
            default
        }
    }
}

/// The default site: the one with `default = true`, else the first.
fn choose_default(sites: &[RawSite], c: &mut Collector<'_>) -> usize {
    let mut marked = sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.default)
        .map(|(i, _)| i);
    let first = marked.next();
    if let Some(first) = first {
        for extra in marked {
            c.config(
                format!("site[{extra}].default"),
                format!("more than one site is marked default (also site[{first}])"),
            );
        }
    }
    first.unwrap_or(0)
}

fn check_site_names(sites: &[RawSite], c: &mut Collector<'_>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, site) in sites.iter().enumerate() {
        let key = format!("site[{i}].name");
        let name = site.name.trim();
        if name.is_empty() {
            c.config(key, "must not be empty");
        } else if let Some(first) = seen.insert(name, i) {
            c.config(
                key,
                format!("duplicate site name {name:?} (also site[{first}].name)"),
            );
        }
    }
}

fn build_sni_index(sites: &[RawSite], default_site: usize, c: &mut Collector<'_>) -> SniIndex {
    let mut index = SniIndex::default();
    for (i, site) in sites.iter().enumerate() {
        if site.server_names.is_empty() && i != default_site {
            c.config(
                format!("site[{i}].server_names"),
                "at least one server name is required unless the site is the default",
            );
        }
        for (j, raw) in site.server_names.iter().enumerate() {
            let key = format!("site[{i}].server_names[{j}]");
            match normalize_server_name(raw) {
                Ok(name) => {
                    if let Some(owner) = index.insert(&name, i) {
                        let other = if owner == i {
                            "listed twice in this site".to_owned()
                        } else {
                            format!("also used by site[{owner}]")
                        };
                        c.config(key, format!("duplicate server name {name:?} ({other})"));
                    }
                }
                Err(reason) => c.config(key, reason),
            }
        }
    }
    index
}

/// Resolves a configured file path relative to the config directory.
pub(crate) fn resolve_path(
    base_dir: &Path,
    value: &str,
    key: &str,
    c: &mut Collector<'_>,
) -> Option<PathBuf> {
    if value.trim().is_empty() {
        c.config(key, "path must not be empty");
        return None;
    }
    Some(base_dir.join(value))
}

fn validate_site(
    raw: &RawSite,
    index: usize,
    is_default: bool,
    files: &Files<'_>,
    stores: &StoreNames,
    c: &mut Collector<'_>,
) -> Option<SiteSnapshot> {
    let prefix = format!("site[{index}]");

    let cert_key = format!("{prefix}.certificate");
    let certificate_location = files.resolve(&raw.certificate, &cert_key, c);
    let certificate_chain = certificate_location.as_ref().and_then(|l| {
        load_certificate_chain(files, l, &cert_key)
            .map_err(|errors| errors.into_iter().for_each(|e| c.push(e)))
            .ok()
    });
    let certificate_path = certificate_location.map(|l| l.to_path());

    let key_key = format!("{prefix}.private_key");
    let private_key_location = files.resolve(&raw.private_key, &key_key, c);
    let private_key = private_key_location.as_ref().and_then(|l| {
        load_private_key(files, l, &key_key)
            .map_err(|e| c.push(e))
            .ok()
    });
    let private_key_path = private_key_location.map(|l| l.to_path());

    let origin = load_origin(raw.origin.trim())
        .map_err(|reason| c.config(format!("{prefix}.origin"), reason))
        .ok();

    let mtls = validate_mtls(&raw.mtls, &prefix, files, stores, c);
    let alpn = crate::http2::validate_alpn(raw.alpn.as_deref(), &format!("{prefix}.alpn"), c);

    let server_names = raw
        .server_names
        .iter()
        .filter_map(|n| normalize_server_name(n).ok())
        .collect();

    Some(SiteSnapshot {
        index,
        name: raw.name.trim().to_owned(),
        key_prefix: prefix,
        server_names,
        is_default,
        certificate_path: certificate_path?,
        certificate_chain: certificate_chain?,
        private_key_path: private_key_path?,
        private_key: private_key?,
        origin: origin?,
        alpn,
        mtls: mtls?,
    })
}

fn validate_mtls(
    raw: &RawMtls,
    prefix: &str,
    files: &Files<'_>,
    stores: &StoreNames,
    c: &mut Collector<'_>,
) -> Option<MtlsSettings> {
    let mode = MtlsMode::parse(raw.mode.trim());
    if mode.is_none() {
        c.config(
            format!("{prefix}.mtls.mode"),
            format!(
                "unknown mode {:?} (expected \"required\", \"optional\" or \"passthrough\")",
                raw.mode
            ),
        );
    }

    let store_key = format!("{prefix}.mtls.trust_store");
    let (trust_store_path, trust_store) = match &raw.trust_store {
        Some(value) => {
            let location = files.resolve(value, &store_key, c);
            let anchors = location.as_ref().and_then(|l| {
                load_trust_store(files, l, &store_key)
                    .map_err(|errors| errors.into_iter().for_each(|e| c.push(e)))
                    .ok()
            });
            (location.map(|l| l.to_path()), anchors)
        }
        None => {
            if let Some(mode @ (MtlsMode::Required | MtlsMode::Optional)) = mode {
                c.config(
                    store_key,
                    format!("a trust store is required when mode is \"{mode}\""),
                );
            }
            (None, Some(Vec::new()))
        }
    };

    let depth_key = format!("{prefix}.mtls.max_chain_depth");
    let max_chain_depth = match raw.max_chain_depth {
        None => Some(MAX_CHAIN_DEPTH),
        Some(d) => match u8::try_from(d) {
            Ok(d) if (1..=MAX_CHAIN_DEPTH).contains(&d) => Some(d),
            _ => {
                c.config(
                    depth_key,
                    format!("must be in range 1..={MAX_CHAIN_DEPTH}, got {d}"),
                );
                None
            }
        },
    };

    let forward = match &raw.forward_headers {
        None => ForwardHeaders::default(),
        Some(names) => {
            let mut forward = ForwardHeaders::NONE;
            for (j, name) in names.iter().enumerate() {
                if !forward.enable(name.trim()) {
                    c.config(
                        format!("{prefix}.mtls.forward_headers[{j}]"),
                        format!(
                            "unknown header {name:?} (expected one of {})",
                            ForwardHeaders::NAMES.join(", ")
                        ),
                    );
                }
            }
            forward
        }
    };

    let revocation =
        validate_site_revocation(raw, prefix, files, trust_store.as_deref(), stores, c);
    let connection_function = match &raw.connection_function {
        None => Some(None),
        Some(function) => {
            validate_connection_function(function, prefix, files, stores, c).map(Some)
        }
    };
    let revocation = revocation?;
    let signature_algorithms =
        validate_signature_algorithms(raw.signature_algorithms.as_deref(), prefix, c);

    Some(MtlsSettings {
        mode: mode?,
        trust_store_path,
        trust_store: trust_store?,
        ignore_expiration: raw.ignore_expiration,
        advertise_ca_names: raw.advertise_ca_names,
        max_chain_depth: max_chain_depth?,
        forward,
        revocation_store: revocation.revocation_store,
        crls: revocation.crls,
        crl_expired: revocation.crl_expired,
        revoke_open_connections: revocation.revoke_open_connections,
        connection_function: connection_function?,
        signature_algorithms: signature_algorithms?,
    })
}
