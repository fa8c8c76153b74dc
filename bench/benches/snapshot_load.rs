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
use portcullis::revocation::RevocationState;
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

fn snapshot_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path());
    let config = portcullis_config::load(&path).expect("configuration loads");
    assert_eq!(config.sites.len(), 2);
    TlsSnapshot::build(Arc::new(config.clone()), &RevocationState::new(&config))
        .expect("TLS snapshot builds");

    let mut group = c.benchmark_group("snapshot_load");
    group.bench_function("config_load_2_sites", |b| {
        b.iter(|| portcullis_config::load(black_box(&path)).expect("configuration loads"))
    });
    group.bench_function("revocation_state_new", |b| {
        b.iter(|| RevocationState::new(black_box(&config)))
    });
    group.bench_function("tls_snapshot_build_2_sites", |b| {
        b.iter_batched(
            || {
                let snapshot = config.clone();
                let revocation = RevocationState::new(&snapshot);
                (Arc::new(snapshot), revocation)
            },
            |(snapshot, revocation)| {
                TlsSnapshot::build(snapshot, &revocation).expect("TLS snapshot builds")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The whole reload: files to a ready-to-serve TLS snapshot.
    group.bench_function("load_and_build_2_sites", |b| {
        b.iter(|| {
            let config = portcullis_config::load(black_box(&path)).expect("configuration loads");
            let revocation = RevocationState::new(&config);
            TlsSnapshot::build(Arc::new(config), &revocation).expect("TLS snapshot builds")
        })
    });
    group.finish();
}

criterion_group!(benches, snapshot_load);
criterion_main!(benches);
