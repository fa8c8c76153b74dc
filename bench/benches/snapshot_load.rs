//! Loading a configuration snapshot (what `run` does at start and on every SIGHUP):
//! `portcullis_config::load` of a two-site configuration (TOML, certificates, keys, trust
//! stores, a CRL), and building its TLS side (`TlsSnapshot::build`: one BoringSSL context per
//! site plus the SNI front context).

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::pki::{DemoPki, SERVER_CERT_FILE, SERVER_KEY_FILE, TRUST_BUNDLE_FILE};
use portcullis::revocation::{RevocationState, RevocationView};
use portcullis::tls::TlsSnapshot;
use time::{Duration, OffsetDateTime};

/// Writes the demo PKI, a CRL of the intermediate CA and a two-site configuration into `dir`;
/// returns the configuration's path.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let pki = DemoPki::generate(dir).expect("demo PKI");
    let now = OffsetDateTime::now_utc();
    let crl = pki
        .intermediate
        .crl(
            &[&pki.expired_client],
            now - Duration::hours(1),
            now + Duration::days(7),
        )
        .expect("CRL");
    fs::write(dir.join("intermediate.crl"), crl).expect("write CRL");
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 2

[[site]]
name = "shop"
server_names = ["shop.example.com", "*.shop.example.com", "localhost"]
default = true
certificate = "{SERVER_CERT_FILE}"
private_key = "{SERVER_KEY_FILE}"
origin = "http://127.0.0.1:8080"

[site.mtls]
mode = "required"
trust_store = "{TRUST_BUNDLE_FILE}"

[[site]]
name = "api"
server_names = ["api.example.com"]
certificate = "{SERVER_CERT_FILE}"
private_key = "{SERVER_KEY_FILE}"
origin = "http://127.0.0.1:8081"

[site.mtls]
mode = "optional"
trust_store = "{TRUST_BUNDLE_FILE}"
advertise_ca_names = true
crls = ["intermediate.crl"]
"#
    );
    let path = dir.join("portcullis.toml");
    fs::write(&path, config).expect("write configuration");
    path
}

/// Stages the revocation view and builds the TLS snapshot of `config`.
fn build(config: portcullis_config::Snapshot) -> TlsSnapshot {
    let view = Arc::new(RevocationView::stage(&config).expect("view stages"));
    TlsSnapshot::build(Arc::new(config), &RevocationState::new(), view)
        .expect("TLS snapshot builds")
}

fn snapshot_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path());
    let config = portcullis_config::load(&path).expect("configuration loads");
    assert_eq!(config.sites.len(), 2);
    build(config.clone());

    let mut group = c.benchmark_group("snapshot_load");
    group.bench_function("config_load_2_sites", |b| {
        b.iter(|| portcullis_config::load(black_box(&path)).expect("configuration loads"))
    });
    group.bench_function("revocation_view_stage", |b| {
        b.iter(|| RevocationView::stage(black_box(&config)).expect("view stages"))
    });
    group.bench_function("tls_snapshot_build_2_sites", |b| {
        b.iter_batched(|| config.clone(), build, criterion::BatchSize::SmallInput)
    });
    // The whole reload: files to a ready-to-serve TLS snapshot.
    group.bench_function("load_and_build_2_sites", |b| {
        b.iter(|| build(portcullis_config::load(black_box(&path)).expect("configuration loads")))
    });
    group.finish();
}

criterion_group!(benches, snapshot_load);
criterion_main!(benches);
