//! Validation of `[[revocation_store]]` and of the revocation settings in
//! `[site.mtls]` (`revocation_store`, `crls`, `crl_expired`,
//! `revoke_open_connections`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::crl::load_crls;
use crate::error::{Collector, ConfigError};
use crate::model::{RawMtls, RawRevocationStore};
use crate::revocation::{CrlExpiredPolicy, CrlSnapshot, RevocationStoreSnapshot, StoreFormat};
use crate::snapshot::TrustAnchor;
use crate::sources::Files;

/// Store names as written, mapped to the index of their first definition.
pub(crate) type StoreNames = HashMap<String, usize>;

/// Validates and loads every revocation store. Returns one slot per store
/// (`None` when it failed, with the reason recorded) and the name index.
pub(crate) fn validate_revocation_stores(
    raw: &[RawRevocationStore],
    files: &Files<'_>,
    c: &mut Collector<'_>,
) -> (Vec<Option<RevocationStoreSnapshot>>, StoreNames) {
    let mut names = StoreNames::new();
    let stores = raw
        .iter()
        .enumerate()
        .map(|(index, store)| {
            let name_ok = check_store_name(&store.name, index, &names, c);
            names.entry(store.name.clone()).or_insert(index);
            load_store(store, index, files, c).filter(|_| name_ok)
        })
        .collect();
    (stores, names)
}

fn check_store_name(name: &str, index: usize, seen: &StoreNames, c: &mut Collector<'_>) -> bool {
    let key = format!("revocation_store[{index}].name");
    if name.is_empty() {
        c.config(key, "must not be empty");
        false
    } else if let Some(bad) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')))
    {
        c.config(
            key,
            format!(
                "invalid character {bad:?} in {name:?} (allowed: A-Z, a-z, 0-9, '_', '.', '-')"
            ),
        );
        false
    } else if let Some(first) = seen.get(name) {
        c.config(
            key,
            format!(
                "duplicate revocation store name {name:?} (also revocation_store[{first}].name)"
            ),
        );
        false
    } else {
        true
    }
}

/// Reads and parses a store file or object; every bad entry is reported.
fn load_store(
    raw: &RawRevocationStore,
    index: usize,
    files: &Files<'_>,
    c: &mut Collector<'_>,
) -> Option<RevocationStoreSnapshot> {
    let file_key = format!("revocation_store[{index}].file");
    let location = files.resolve(&raw.file, &file_key, c);
    let format = match raw.format.as_deref() {
        Some("json") => Some(StoreFormat::Json),
        Some("text") => Some(StoreFormat::Text),
        Some(other) => {
            c.config(
                format!("revocation_store[{index}].format"),
                format!("unknown format {other:?} (expected \"json\" or \"text\")"),
            );
            None
        }
        None => Some(default_format(&raw.file)),
    };
    let location = location?;
    let bytes = files
        .read(&location, &file_key)
        .map_err(|e| c.push(e))
        .ok()?;
    let format = format?;
    let path = location.to_path();
    match format.parse(&bytes) {
        Ok(entries) => Some(RevocationStoreSnapshot {
            index,
            name: raw.name.clone(),
            path,
            object_url: location.object_url().map(|url| url.as_str().to_owned()),
            format,
            entries,
        }),
        Err(reasons) => {
            for reason in reasons {
                c.push(ConfigError::new(&path, &file_key, reason));
            }
            None
        }
    }
}

/// JSON when the file name ends in `.json` (any case), else text.
fn default_format(file: &str) -> StoreFormat {
    let is_json = file.len() >= 5
        && file
            .get(file.len() - 5..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".json"));
    if is_json {
        StoreFormat::Json
    } else {
        StoreFormat::Text
    }
}

/// The defined store names, for a message about an unknown one.
pub(crate) fn known_stores(stores: &StoreNames) -> String {
    let mut known: Vec<&str> = stores.keys().map(String::as_str).collect();
    known.sort_unstable();
    if known.is_empty() {
        "no [[revocation_store]] is defined".to_owned()
    } else {
        format!("defined: {}", known.join(", "))
    }
}

/// The revocation-related part of a validated `[site.mtls]`.
pub(crate) struct SiteRevocation {
    pub(crate) revocation_store: Option<String>,
    pub(crate) crls: Vec<Arc<CrlSnapshot>>,
    pub(crate) crl_expired: CrlExpiredPolicy,
    pub(crate) revoke_open_connections: bool,
}

/// Validates the revocation settings of one site. `trust_store` is `None`
/// when the trust store failed to load (CRL issuers are then not checked,
/// to avoid follow-on errors).
pub(crate) fn validate_site_revocation(
    raw: &RawMtls,
    prefix: &str,
    files: &Files<'_>,
    trust_store: Option<&[TrustAnchor]>,
    stores: &StoreNames,
    c: &mut Collector<'_>,
) -> Option<SiteRevocation> {
    let revocation_store = match &raw.revocation_store {
        None => Some(None),
        Some(name) => match stores.get(name) {
            Some(_) => Some(Some(name.clone())),
            None => {
                c.config(
                    format!("{prefix}.mtls.revocation_store"),
                    format!(
                        "unknown revocation store {name:?} ({})",
                        known_stores(stores)
                    ),
                );
                None
            }
        },
    };

    let crl_expired = match raw.crl_expired.as_deref() {
        None | Some("deny") => Some(CrlExpiredPolicy::Deny),
        Some("allow") => Some(CrlExpiredPolicy::Allow),
        Some(other) => {
            c.config(
                format!("{prefix}.mtls.crl_expired"),
                format!("unknown value {other:?} (expected \"deny\" or \"allow\")"),
            );
            None
        }
    };

    let now = SystemTime::now();
    let mut crls = Vec::new();
    let mut crls_ok = true;
    for (j, value) in raw.crls.iter().enumerate() {
        let key = format!("{prefix}.mtls.crls[{j}]");
        let Some(location) = files.resolve(value, &key, c) else {
            crls_ok = false;
            continue;
        };
        let path = location.to_path();
        match load_crls(files, &location, &key, trust_store) {
            Ok(loaded) => {
                for entry in loaded {
                    if entry.crl.is_expired(now) {
                        let consequence = match crl_expired.unwrap_or_default() {
                            CrlExpiredPolicy::Deny => "client certificates from this issuer are rejected until it is replaced (crl_expired = \"deny\")",
                            CrlExpiredPolicy::Allow => "it is still used (crl_expired = \"allow\")",
                        };
                        c.warn(
                            &path,
                            &key,
                            format!(
                                "CRL issued by {} expired at {} (nextUpdate is in the past); {consequence}",
                                entry.crl.issuer_subject,
                                entry.next_update_text.as_deref().unwrap_or("?"),
                            ),
                        );
                    }
                    crls.push(Arc::new(entry.crl));
                }
            }
            Err(errors) => {
                crls_ok = false;
                errors.into_iter().for_each(|e| c.push(e));
            }
        }
    }

    if !crls_ok {
        return None;
    }
    Some(SiteRevocation {
        revocation_store: revocation_store?,
        crls,
        crl_expired: crl_expired?,
        revoke_open_connections: raw.revoke_open_connections.unwrap_or(true),
    })
}
