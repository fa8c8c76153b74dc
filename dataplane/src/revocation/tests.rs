//! Tests of the revocation runtime against real store files in temporary
//! directories and a configuration loaded from disk.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_config::revocation::{
    CrlExpiredPolicy, CrlSnapshot, RevocationStoreSnapshot, StoreFormat, MAX_VALUE_BYTES,
};
use portcullis_config::{MtlsSettings, Snapshot};
use tempfile::TempDir;

use super::{RevocationError, RevocationState, RevocationView, RevokedBy, SiteRevocation, Verdict};
use crate::pki::DemoPki;

const ISSUER_A: &[u8] = b"\x30\x0bissuer-a-dn";
const ISSUER_B: &[u8] = b"\x30\x0bissuer-b-dn";

/// A temporary directory with the demo PKI and a loaded base configuration
/// (one site, no revocation), which tests extend by hand.
struct Fixture {
    dir: TempDir,
    pki: DemoPki,
    base: Snapshot,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = DemoPki::generate(dir.path()).expect("demo pki");
        let config_path = dir.path().join("portcullis.toml");
        let unused: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
        fs::write(&config_path, crate::demo::demo_config(unused, unused, 1)).expect("write config");
        let base = portcullis_config::load(&config_path).expect("load config");
        Self { dir, pki, base }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A configuration with the given store files and the site's mTLS
    /// settings adjusted by `mtls`.
    fn config(
        &self,
        stores: &[(&str, &Path, StoreFormat)],
        mtls: impl FnOnce(&mut MtlsSettings),
    ) -> Snapshot {
        let mut config = self.base.clone();
        config.revocation_stores = stores
            .iter()
            .enumerate()
            .map(|(index, (name, path, format))| Arc::new(load_store(index, name, path, *format)))
            .collect();
        let mut site = (*config.sites[0]).clone();
        mtls(&mut site.mtls);
        config.sites[0] = Arc::new(site);
        config
    }
}

/// What the configuration loader does for a `[[revocation_store]]`.
fn load_store(
    index: usize,
    name: &str,
    path: &Path,
    format: StoreFormat,
) -> RevocationStoreSnapshot {
    let bytes = fs::read(path).expect("read store");
    RevocationStoreSnapshot {
        index,
        name: name.to_owned(),
        path: path.to_path_buf(),
        object_url: None,
        format,
        entries: format.parse(&bytes).expect("parse store"),
    }
}

fn crl(issuer: &[u8], serials: &[&str], next_update: Option<SystemTime>) -> Arc<CrlSnapshot> {
    Arc::new(CrlSnapshot {
        path: PathBuf::from(format!("/crls/{}.crl", serials.join("-"))),
        issuer_name_der: issuer.to_vec(),
        issuer_subject: "CN=test".to_owned(),
        revoked_serials: serials
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<HashSet<_>>(),
        this_update: SystemTime::now() - Duration::from_secs(3600),
        next_update,
    })
}

/// A state with one JSON store `main` (given contents) used by the site.
fn with_store(
    fixture: &Fixture,
    contents: &str,
) -> (Arc<RevocationState>, SiteRevocation, PathBuf) {
    let path = fixture.path("main.json");
    fs::write(&path, contents).expect("write store");
    let config = fixture.config(&[("main", &path, StoreFormat::Json)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&state, &config);
    (state, scope, path)
}

/// The live scope of the configuration's site.
fn scope_of(state: &RevocationState, config: &Snapshot) -> SiteRevocation {
    state
        .live_site_scope(&config.sites[0].name)
        .expect("the site has a live scope")
}

/// What a reload does to the revocation state: stage from the configuration alone, publish.
fn reload(state: &RevocationState, config: &Snapshot) {
    let _writes = state.lock_writes();
    let view = RevocationView::stage(config).expect("stage");
    state.publish(Arc::new(view));
}

/// A revocation by the store `main`, or (for a `crl ...` reason) by a CRL of the tests'
/// CRL issuer `CN=test`.
/// A revocation by the store called `store`.
fn revoked_in(reason: &str, store: &str) -> Verdict {
    Verdict::Revoked {
        reason: Arc::from(reason),
        by: RevokedBy::Store(Arc::from(store)),
    }
}

fn revoked(reason: &str) -> Verdict {
    let by = if reason.starts_with("crl ") {
        RevokedBy::Crl {
            issuer: Arc::from("CN=test"),
        }
    } else {
        RevokedBy::Store(Arc::from("main"))
    };
    Verdict::Revoked {
        reason: Arc::from(reason),
        by,
    }
}

const EMPTY_JSON: &str = r#"{"data":[]}"#;

#[test]
fn put_revokes_delete_restores_and_epoch_follows_revocations() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let now = SystemTime::now();
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x12, 0x34], now),
        Verdict::Good
    );
    let epoch = state.epoch();

    state.put("main", "1234", "stolen laptop").expect("put");
    assert_eq!(state.epoch(), epoch + 1);
    // Any issuer: the store is issuer-agnostic.
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x12, 0x34], now),
        revoked("stolen laptop")
    );
    assert_eq!(
        state.check(&scope, ISSUER_B, &[0x12, 0x34], now),
        revoked("stolen laptop")
    );
    assert_eq!(
        state.get("main", "12:34").expect("get").as_deref(),
        Some("stolen laptop")
    );

    assert!(state.delete("main", "1234").expect("delete"));
    assert_eq!(
        state.epoch(),
        epoch + 1,
        "unrevoking does not bump the epoch"
    );
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x12, 0x34], now),
        Verdict::Good
    );
    assert!(!state.delete("main", "1234").expect("second delete"));
    assert_eq!(state.get("main", "1234").expect("get"), None);
}

#[test]
fn put_replaces_a_cached_good_verdict_immediately() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let now = SystemTime::now();
    for _ in 0..3 {
        assert_eq!(state.check(&scope, ISSUER_A, &[0xab], now), Verdict::Good);
    }
    assert!(state.cached_verdicts() >= 1, "the good verdict was cached");
    state.put("main", "ab", "r").expect("put");
    assert_eq!(state.check(&scope, ISSUER_A, &[0xab], now), revoked("r"));
    // And back: the cached revoked verdict goes with the delete.
    state.delete("main", "ab").expect("delete");
    assert_eq!(state.check(&scope, ISSUER_A, &[0xab], now), Verdict::Good);
    // Changing the value replaces the cached reason.
    state.put("main", "ab", "first").expect("put");
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0xab], now),
        revoked("first")
    );
    state.put("main", "ab", "second").expect("put");
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0xab], now),
        revoked("second")
    );
}

#[test]
fn changes_are_persisted_in_the_store_format() {
    let fixture = Fixture::new();
    let (state, _, path) = with_store(&fixture, r#"{"data":[{"key":"0a","value":"old"}]}"#);
    state.put("main", "00:FF", "new").expect("put");
    state.delete("main", "a").expect("delete");

    let written = fs::read(&path).expect("read store");
    assert_eq!(
        StoreFormat::Json.parse(&written).expect("valid JSON store"),
        vec![("ff".to_owned(), "new".to_owned())]
    );
    let leftovers: Vec<_> = fs::read_dir(fixture.dir.path())
        .expect("list dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A new process reading the rewritten file sees the change.
    let config = fixture.config(&[("main", &path, StoreFormat::Json)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    let restarted = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&restarted, &config);
    let now = SystemTime::now();
    assert_eq!(
        restarted.check(&scope, ISSUER_A, &[0xff], now),
        revoked("new")
    );
    assert_eq!(
        restarted.check(&scope, ISSUER_A, &[0x0a], now),
        Verdict::Good
    );
}

#[test]
fn text_stores_are_rewritten_as_text_and_refuse_line_breaks() {
    let fixture = Fixture::new();
    let path = fixture.path("main.txt");
    fs::write(&path, "# revoked serials\n0a lost\n").expect("write store");
    let config = fixture.config(&[("main", &path, StoreFormat::Text)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    let state = RevocationState::for_config(&config).expect("revocation state");
    state.put("main", "b", "").expect("put empty value");
    assert_eq!(fs::read_to_string(&path).expect("read"), "a lost\nb\n");
    let error = state
        .put("main", "c", "two\nlines")
        .expect_err("line break");
    assert!(
        matches!(error, RevocationError::InvalidValue(_)),
        "{error:?}"
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), "a lost\nb\n");
}

#[test]
fn import_merges_and_a_malformed_import_changes_nothing() {
    let fixture = Fixture::new();
    let (state, scope, path) = with_store(&fixture, r#"{"data":[{"key":"1","value":"one"}]}"#);
    let now = SystemTime::now();
    assert_eq!(state.check(&scope, ISSUER_A, &[0x02], now), Verdict::Good);
    let epoch = state.epoch();

    let imported = state
        .import(
            "main",
            br#"{"data":[{"key":"02","value":"two"},{"key":"1","value":"uno"},{"key":"3","value":"two"}]}"#,
        )
        .expect("import");
    assert_eq!(imported, 3);
    assert_eq!(state.epoch(), epoch + 1);
    assert_eq!(state.store_len("main").expect("len"), 3);
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x02], now),
        revoked("two"),
        "cached good dropped"
    );
    assert_eq!(state.check(&scope, ISSUER_A, &[0x01], now), revoked("uno"));
    let after_import = fs::read(&path).expect("read");
    assert_eq!(
        StoreFormat::Json.parse(&after_import).expect("parse"),
        vec![
            ("1".to_owned(), "uno".to_owned()),
            ("2".to_owned(), "two".to_owned()),
            ("3".to_owned(), "two".to_owned()),
        ]
    );

    for bad in [
        &br#"{"data":[{"key":"4","value":"x"},{"key":"zz","value":"y"}]}"#[..],
        b"{\"data\":",
        b"[]",
    ] {
        let error = state.import("main", bad).expect_err("malformed import");
        assert!(
            matches!(error, RevocationError::InvalidImport(ref e) if !e.is_empty()),
            "{error:?}"
        );
        assert_eq!(error.http_status(), 400);
    }
    assert_eq!(
        fs::read(&path).expect("read"),
        after_import,
        "file unchanged"
    );
    assert_eq!(state.store_len("main").expect("len"), 3);
    assert_eq!(state.check(&scope, ISSUER_A, &[0x04], now), Verdict::Good);
    assert_eq!(state.epoch(), epoch + 1);
}

#[test]
fn crl_revokes_only_for_its_issuer() {
    let fixture = Fixture::new();
    let config = fixture.config(&[], |m| {
        m.crls = vec![crl(ISSUER_A, &["abc", "1"], None)];
    });
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&state, &config);
    let now = SystemTime::now();
    let reason = "crl /crls/abc-1.crl";
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x0a, 0xbc], now),
        revoked(reason)
    );
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x00, 0x01], now),
        revoked(reason)
    );
    assert_eq!(
        state.check(&scope, ISSUER_B, &[0x0a, 0xbc], now),
        Verdict::Good
    );
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x0a, 0xbd], now),
        Verdict::Good
    );
    // Cached verdicts keep the issuer apart too.
    assert_eq!(
        state.check(&scope, ISSUER_B, &[0x0a, 0xbc], now),
        Verdict::Good
    );
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x0a, 0xbc], now),
        revoked(reason)
    );
}

#[test]
fn crl_matches_a_real_certificates_issuer_and_serial() {
    let fixture = Fixture::new();
    let (_, client) =
        x509_parser::parse_x509_certificate(&fixture.pki.client.cert_der).expect("client cert");
    let (_, other) = x509_parser::parse_x509_certificate(&fixture.pki.unknown_client.cert_der)
        .expect("other cert");
    let serial = client.tbs_certificate.raw_serial();
    let normal = portcullis_config::revocation::serial_from_bytes(serial);
    let issuer = client.issuer().as_raw();
    let config = fixture.config(&[], |m| {
        m.crls = vec![crl(issuer, &[normal.as_str()], None)];
    });
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&state, &config);
    let now = SystemTime::now();
    assert!(state.check(&scope, issuer, serial, now).is_denied());
    // Same serial under another issuer is not covered by that CRL.
    assert_eq!(
        state.check(&scope, other.issuer().as_raw(), serial, now),
        Verdict::Good
    );
}

#[test]
fn expired_crl_fails_closed_under_deny_only() {
    let fixture = Fixture::new();
    let now = SystemTime::now();
    let next_update = now + Duration::from_secs(60);
    let later = now + Duration::from_secs(120);
    for (policy, expected_later) in [
        (CrlExpiredPolicy::Deny, Verdict::CrlExpired),
        (CrlExpiredPolicy::Allow, Verdict::Good),
    ] {
        let config = fixture.config(&[], |m| {
            m.crls = vec![crl(ISSUER_A, &["5"], Some(next_update))];
            m.crl_expired = policy;
        });
        let state = RevocationState::for_config(&config).expect("revocation state");
        let scope = scope_of(&state, &config);
        // Fresh: good, and that verdict is now cached.
        assert_eq!(state.check(&scope, ISSUER_A, &[0x07], now), Verdict::Good);
        // The cached verdict does not outlive nextUpdate.
        assert_eq!(
            state.check(&scope, ISSUER_A, &[0x07], later),
            expected_later,
            "{policy:?}"
        );
        // Revoked stays revoked either way; other issuers are unaffected.
        assert_eq!(
            state.check(&scope, ISSUER_A, &[0x05], later),
            revoked("crl /crls/5.crl")
        );
        assert_eq!(state.check(&scope, ISSUER_B, &[0x07], later), Verdict::Good);
    }
}

#[test]
fn leading_zeros_and_colons_normalise_on_both_sides() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(
        &fixture,
        r#"{"data":[{"key":"00:0A:BC","value":"from file"}]}"#,
    );
    let now = SystemTime::now();
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x0a, 0xbc], now),
        revoked("from file")
    );
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x00, 0x00, 0x0a, 0xbc], now),
        revoked("from file")
    );
    state.put("main", "0:0:00ff", "api").expect("put");
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x00, 0xff], now),
        revoked("api")
    );
    assert_eq!(
        state.get("main", "FF").expect("get").as_deref(),
        Some("api")
    );
    assert!(state.delete("main", "00:00:0a:bc").expect("delete"));
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x0a, 0xbc], now),
        Verdict::Good
    );
    // Serial zero.
    state.put("main", "00", "zero").expect("put zero");
    assert_eq!(state.check(&scope, ISSUER_A, &[0x00], now), revoked("zero"));
    assert_eq!(state.check(&scope, ISSUER_A, &[], now), revoked("zero"));
}

#[test]
fn serials_longer_than_the_cache_key_work_uncached() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let long: Vec<u8> = (1..=40).collect();
    let hex: String = long.iter().map(|b| format!("{b:02x}")).collect();
    let now = SystemTime::now();
    assert_eq!(state.check(&scope, ISSUER_A, &long, now), Verdict::Good);
    assert_eq!(state.cached_verdicts(), 0, "long serials bypass the cache");
    state.put("main", &hex, "long").expect("put");
    assert_eq!(state.check(&scope, ISSUER_A, &long, now), revoked("long"));
    let mut prefix = long.clone();
    prefix.pop();
    assert_eq!(state.check(&scope, ISSUER_A, &prefix, now), Verdict::Good);
    assert_eq!(state.cached_verdicts(), 0);
}

#[test]
fn invalid_requests_are_refused_with_their_status() {
    let fixture = Fixture::new();
    let (state, _, path) = with_store(&fixture, EMPTY_JSON);
    let before = fs::read(&path).expect("read");
    let cases = [
        (state.put("nope", "1", "x").expect_err("unknown store"), 404),
        (state.put("main", "xyz", "x").expect_err("bad serial"), 400),
        (state.put("main", "", "x").expect_err("empty serial"), 400),
        (
            state
                .put("main", "1", &"v".repeat(MAX_VALUE_BYTES + 1))
                .expect_err("long value"),
            400,
        ),
        (state.delete("nope", "1").expect_err("unknown store"), 404),
        (state.get("main", "0x1").expect_err("bad serial"), 400),
    ];
    for (error, status) in cases {
        assert_eq!(error.http_status(), status, "{error}");
    }
    assert_eq!(fs::read(&path).expect("read"), before);
    assert_eq!(state.store_names(), vec!["main".to_owned()]);
}

#[test]
fn failed_persist_leaves_memory_unchanged() {
    let fixture = Fixture::new();
    let sub = fixture.path("gone");
    fs::create_dir(&sub).expect("mkdir");
    let path = sub.join("main.json");
    fs::write(&path, EMPTY_JSON).expect("write");
    let config = fixture.config(&[("main", &path, StoreFormat::Json)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&state, &config);
    fs::remove_dir_all(&sub).expect("remove store dir");
    let epoch = state.epoch();
    let error = state.put("main", "1", "x").expect_err("cannot persist");
    assert!(
        matches!(&error, RevocationError::Persist { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 500);
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x01], SystemTime::now()),
        Verdict::Good
    );
    assert_eq!(state.epoch(), epoch);
}

#[test]
fn reload_rereads_stores_and_invalidates_old_verdicts() {
    let fixture = Fixture::new();
    let (state, old_scope, path) = with_store(&fixture, EMPTY_JSON);
    let now = SystemTime::now();
    assert_eq!(
        state.check(&old_scope, ISSUER_A, &[0x09], now),
        Verdict::Good
    );
    // The file changes behind our back (e.g. an operator edits it).
    fs::write(&path, r#"{"data":[{"key":"9","value":"edited"}]}"#).expect("edit");
    let config = fixture.config(&[("main", &path, StoreFormat::Json)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    let epoch = state.epoch();
    reload(&state, &config);
    assert_eq!(state.epoch(), epoch + 1);
    let new_scope = scope_of(&state, &config);
    assert_ne!(new_scope.id(), old_scope.id());
    assert_eq!(
        state.check(&new_scope, ISSUER_A, &[0x09], now),
        revoked("edited")
    );
    // The old generation keeps its own data: a handshake that started on it finishes on it.
    assert_eq!(
        state.check(&old_scope, ISSUER_A, &[0x09], now),
        Verdict::Good
    );

    // A reload without the store removes it from the admin API.
    reload(&state, &fixture.config(&[], |_| {}));
    assert!(state.store_names().is_empty());
    assert!(matches!(
        state.get("main", "9"),
        Err(RevocationError::UnknownStore(_))
    ));
}

#[test]
fn site_without_revocation_checks_nothing() {
    let fixture = Fixture::new();
    let config = fixture.config(&[], |_| {});
    let state = RevocationState::for_config(&config).expect("revocation state");
    let scope = scope_of(&state, &config);
    assert!(!scope.is_enabled());
    assert_eq!(
        state.check(&scope, ISSUER_A, &[1], SystemTime::now()),
        Verdict::Good
    );
    assert_eq!(state.cached_verdicts(), 0);
}

#[test]
fn concurrent_checks_never_serve_a_stale_verdict_after_put_returns() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (state, scope, stop) = (Arc::clone(&state), scope.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for serial in 0u8..32 {
                        state.check(&scope, ISSUER_A, &[serial], SystemTime::now());
                    }
                }
            })
        })
        .collect();
    for serial in 0u8..32 {
        let hex = format!("{serial:x}");
        state.put("main", &hex, "r").expect("put");
        for _ in 0..50 {
            assert!(
                state
                    .check(&scope, ISSUER_A, &[serial], SystemTime::now())
                    .is_denied(),
                "serial {hex} served good after put"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("reader thread");
    }
}

#[test]
fn put_drops_exactly_the_serials_shared_cache_entries() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let now = SystemTime::now();
    for serial in 1u8..=10 {
        state.check(&scope, ISSUER_A, &[serial], now);
    }
    assert_eq!(state.cached_verdicts(), 10);
    state.put("main", "3", "r").expect("put");
    assert_eq!(state.cached_verdicts(), 9, "only serial 3 dropped");
    state
        .import(
            "main",
            br#"{"data":[{"key":"4","value":"r"},{"key":"5","value":"r"}]}"#,
        )
        .expect("import");
    assert_eq!(state.cached_verdicts(), 7);
    reload(&state, &fixture.config(&[], |_| {}));
    assert_eq!(state.cached_verdicts(), 0);
}

#[test]
fn verdicts_cached_by_one_thread_are_current_on_another() {
    let fixture = Fixture::new();
    let (state, scope, _) = with_store(&fixture, EMPTY_JSON);
    let now = SystemTime::now();
    // This thread caches "good" in its front cache and the shared cache.
    assert_eq!(state.check(&scope, ISSUER_A, &[0x77], now), Verdict::Good);
    let other = {
        let (state, scope) = (Arc::clone(&state), scope.clone());
        std::thread::spawn(move || state.check(&scope, ISSUER_A, &[0x77], now))
    };
    assert_eq!(other.join().expect("thread"), Verdict::Good);
    // Revoked from yet another thread (the admin API's).
    let admin = {
        let state = Arc::clone(&state);
        std::thread::spawn(move || state.put("main", "77", "admin"))
    };
    admin.join().expect("thread").expect("put");
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x77], now),
        revoked("admin")
    );
    let other = {
        let (state, scope) = (Arc::clone(&state), scope.clone());
        std::thread::spawn(move || state.check(&scope, ISSUER_A, &[0x77], now))
    };
    assert_eq!(other.join().expect("thread"), revoked("admin"));
}

/// Writes a JSON store revoking `serial` (one byte) with `reason`, returns its path.
fn store_file(fixture: &Fixture, file: &str, serial: u8, reason: &str) -> PathBuf {
    let path = fixture.path(file);
    fs::write(
        &path,
        format!(r#"{{"data":[{{"key":"{serial:x}","value":"{reason}"}}]}}"#),
    )
    .expect("write store");
    path
}

#[test]
fn staging_resolves_stores_by_name_whatever_their_position() {
    let fixture = Fixture::new();
    let a = store_file(&fixture, "a.json", 0x0a, "in a");
    let b = store_file(&fixture, "b.json", 0x0b, "in b");
    let c = store_file(&fixture, "c.json", 0x0c, "in c");
    let now = SystemTime::now();
    let verdicts = |config: &Snapshot| {
        let view = RevocationView::stage(config).expect("stage");
        let state = RevocationState::new();
        let scope = view.site(&config.sites[0].name).expect("scope").clone();
        [0x0a, 0x0b, 0x0c].map(|serial| state.check(&scope, ISSUER_A, &[serial], now))
    };
    let uses = |name: &str| {
        let name = name.to_owned();
        move |m: &mut MtlsSettings| m.revocation_store = Some(name)
    };
    let json = StoreFormat::Json;
    // Reordered, with stores before and after: the site gets the store it names.
    for stores in [
        vec![("a", &a, json), ("b", &b, json)],
        vec![("b", &b, json), ("a", &a, json)],
        vec![("c", &c, json), ("b", &b, json), ("a", &a, json)],
    ] {
        let stores: Vec<(&str, &Path, StoreFormat)> = stores
            .into_iter()
            .map(|(n, p, f)| (n, p.as_path(), f))
            .collect();
        assert_eq!(
            verdicts(&fixture.config(&stores, uses("b"))),
            [Verdict::Good, revoked_in("in b", "b"), Verdict::Good],
            "{:?}",
            stores.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }
    // Renamed: the new name with whatever file it now has.
    assert_eq!(
        verdicts(&fixture.config(&[("renamed", &c, json)], uses("renamed"))),
        [Verdict::Good, Verdict::Good, revoked_in("in c", "renamed")]
    );
}

#[test]
fn an_unresolved_store_refuses_the_whole_view() {
    let fixture = Fixture::new();
    let a = store_file(&fixture, "a.json", 0x0a, "in a");
    let config = fixture.config(&[("a", &a, StoreFormat::Json)], |m| {
        m.revocation_store = Some("gone".to_owned());
    });
    let errors = RevocationView::stage(&config).expect_err("unresolved store");
    assert_eq!(errors.len(), 1);
    let error = &errors.0[0];
    assert_eq!(error.key, "site[0].mtls.revocation_store");
    assert!(error.reason.contains("\"gone\""), "{error}");
}

#[test]
fn publishing_a_view_keeps_runtime_revocations_through_the_file() {
    let fixture = Fixture::new();
    let (state, _, path) = with_store(&fixture, EMPTY_JSON);
    state.put("main", "42", "runtime").expect("put");
    let config = fixture.config(&[("main", &path, StoreFormat::Json)], |m| {
        m.revocation_store = Some("main".to_owned());
    });
    reload(&state, &config);
    let scope = scope_of(&state, &config);
    assert_eq!(
        state.check(&scope, ISSUER_A, &[0x42], SystemTime::now()),
        revoked("runtime")
    );
    assert_eq!(state.store_len("main").expect("len"), 1);
}
