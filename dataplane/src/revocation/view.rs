//! [`RevocationView`]: the revocation data of one configuration generation.
//!
//! A view is built from a configuration snapshot alone ([`RevocationView::stage`]): its
//! stores are new objects holding the entries that snapshot loaded, and every site's scope
//! resolves its store **by name** among them. Nothing of the running generation is read or
//! changed, so a view that cannot be resolved completely is refused before anything goes
//! live, and a view that goes live is exactly what its configuration says. The TLS snapshot
//! of the generation carries its view; [`super::RevocationState::publish`] makes it the one the
//! admin API and the open-connection re-checks use.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_config::{ConfigError, ConfigErrors, Snapshot};

use super::scope::SiteRevocation;
use super::store::Store;

/// The stores and per-site scopes of one configuration generation.
#[derive(Debug, Default)]
pub struct RevocationView {
    /// Stores by configured name.
    stores: HashMap<String, Arc<Store>>,
    /// Site scopes by site name.
    sites: HashMap<String, SiteRevocation>,
}

/// What a view says about one of its stores (for reload summaries and the status page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    /// The store's name.
    pub name: String,
    /// Revoked serials it holds.
    pub entries: usize,
    /// Where it comes from: a file path or an object URL.
    pub source: String,
    /// Whether the admin API may change it (false for stores read from an object URL).
    pub writable: bool,
}

impl RevocationView {
    /// A view with no stores and no sites (before the first configuration is staged).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the view of `config` from `config` alone: one new store per
    /// `[[revocation_store]]`, and one scope per site with its store resolved by name. A site
    /// whose store cannot be resolved refuses the whole view (fail closed), with an error in
    /// the `file: key: reason` form.
    pub fn stage(config: &Snapshot) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut stores: HashMap<String, Arc<Store>> = HashMap::new();
        for snapshot in &config.revocation_stores {
            let store = Arc::new(Store::from_snapshot(snapshot));
            if stores.insert(snapshot.name.clone(), store).is_some() {
                errors.push(ConfigError::new(
                    &config.source,
                    format!("revocation_store[{}].name", snapshot.index),
                    format!("duplicate revocation store name {:?}", snapshot.name),
                ));
            }
        }
        let mut sites = HashMap::with_capacity(config.sites.len());
        for site in &config.sites {
            let mtls = &site.mtls;
            let store = match &mtls.revocation_store {
                None => None,
                Some(name) => match stores.get(name) {
                    Some(store) => Some(Arc::clone(store)),
                    None => {
                        errors.push(ConfigError::new(
                            &config.source,
                            format!("{}.mtls.revocation_store", site.key_prefix),
                            format!(
                                "revocation store {name:?} is not defined in this configuration"
                            ),
                        ));
                        continue;
                    }
                },
            };
            let scope = SiteRevocation::new(
                store,
                &mtls.crls,
                mtls.crl_expired,
                mtls.revoke_open_connections,
            );
            sites.insert(site.name.clone(), scope);
        }
        if errors.is_empty() {
            Ok(Self { stores, sites })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The revocation scope of the site called `name`.
    pub fn site(&self, name: &str) -> Option<&SiteRevocation> {
        self.sites.get(name)
    }

    /// The store called `name`.
    pub(crate) fn store(&self, name: &str) -> Option<&Arc<Store>> {
        self.stores.get(name)
    }

    /// Names of the stores, sorted.
    pub fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.stores.keys().cloned().collect();
        names.sort();
        names
    }

    /// The local store files the admin API wrote, with the SHA-256 of what it last wrote
    /// (the file watcher ignores these contents: they are already live).
    pub fn written_files(&self) -> Vec<(std::path::PathBuf, [u8; 32])> {
        self.stores
            .values()
            .filter_map(|store| store.written_file())
            .collect()
    }

    /// Every store's name, size, source and writability, sorted by name.
    pub fn store_summaries(&self) -> Vec<StoreSummary> {
        let mut summaries: Vec<StoreSummary> = self
            .stores
            .values()
            .map(|store| StoreSummary {
                name: store.name().to_owned(),
                entries: store.len(),
                source: store.source(),
                writable: store.is_writable(),
            })
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        summaries
    }
}
