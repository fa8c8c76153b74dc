//! Reloading under load, measured in pieces:
//!
//! - `reload/build_and_swap_1000_ca`: what a reload does once the files are read, for a site
//!   whose trust bundle holds 1,000 CAs: stage the revocation view, build every TLS context
//!   (the trust store parsed and added twice: the site's context and the front one), store the
//!   snapshot in the `ArcSwap` the workers read and drop the old one. Target: 50 ms.
//! - `reload/load_build_swap_1000_ca`: the same from the files (TOML, certificate, key and the
//!   1,000-CA bundle parsed and validated by the config crate).
//! - `snapshot_load/*`: what every connection does to get its snapshot: `ArcSwap::load_full`
//!   (one `Arc` clone, dropped at the end), alone and while another thread reloads in a loop.
//!   Target: 20 ns.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use portcullis::pki::{CertKind, CertSpec, DemoPki, Issued, SERVER_CERT_FILE, SERVER_KEY_FILE};
use portcullis::revocation::{RevocationState, RevocationView};
use portcullis::tls::TlsSnapshot;
use portcullis_config::Snapshot;

/// CAs in the benchmark's trust bundle.
const CAS: usize = 1_000;

/// Writes the demo PKI's server certificate and key, a bundle of [`CAS`] self-signed CAs and a
/// one-site configuration using it into `dir`; returns the configuration's path.
fn write_config(dir: &Path) -> std::path::PathBuf {
    DemoPki::generate(dir).expect("demo PKI");
    let mut bundle = String::new();
    for i in 0..CAS {
        let ca = Issued::self_signed(CertSpec::new(&format!("Bench CA {i:04}"), CertKind::RootCa))
            .expect("CA");
        bundle.push_str(&ca.cert_pem);
    }
    fs::write(dir.join("bundle-1000.pem"), bundle).expect("write bundle");
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 2

[[site]]
name = "fleet"
server_names = ["localhost"]
certificate = "{SERVER_CERT_FILE}"
private_key = "{SERVER_KEY_FILE}"
origin = "http://127.0.0.1:8080"

[site.mtls]
mode = "required"
trust_store = "bundle-1000.pem"
"#
    );
    let path = dir.join("portcullis.toml");
    fs::write(&path, config).expect("write configuration");
    path
}

/// Stages and builds the snapshot of `config`.
fn build(config: Arc<Snapshot>, revocation: &Arc<RevocationState>) -> TlsSnapshot {
    let view = Arc::new(RevocationView::stage(&config).expect("view stages"));
    TlsSnapshot::build(config, revocation, view).expect("TLS snapshot builds")
}

fn reload(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path());
    let config = Arc::new(portcullis_config::load(&path).expect("configuration loads"));
    assert_eq!(config.sites[0].mtls.trust_store.len(), CAS);
    let revocation = RevocationState::new();
    let live = ArcSwap::from_pointee(build(Arc::clone(&config), &revocation));

    let mut group = c.benchmark_group("reload");
    group.sample_size(30);
    group.bench_function("build_and_swap_1000_ca", |b| {
        b.iter(|| {
            let tls = build(Arc::clone(&config), &revocation);
            // The old snapshot is dropped here, as when no connection holds it any more.
            drop(live.swap(Arc::new(tls)));
        })
    });
    group.bench_function("load_build_swap_1000_ca", |b| {
        b.iter(|| {
            let config = portcullis_config::load(black_box(&path)).expect("configuration loads");
            drop(live.swap(Arc::new(build(Arc::new(config), &revocation))));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("snapshot_load");
    group.bench_function("load_full", |b| {
        b.iter(|| black_box(live.load_full()));
    });
    // While another thread swaps snapshots back and forth as fast as it can (a reload storm
    // far beyond any real rate; the swaps reuse two prebuilt snapshots).
    let spare = Arc::new(build(Arc::clone(&config), &revocation));
    let current = live.load_full();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = [Arc::clone(&spare), Arc::clone(&current)];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                live.store(Arc::clone(&next[i % 2]));
                i += 1;
                next.swap(0, 1);
                std::thread::yield_now();
            }
        });
        group.bench_function("load_full_during_swaps", |b| {
            b.iter_batched(
                || (),
                |()| black_box(live.load_full()),
                BatchSize::SmallInput,
            );
        });
        stop.store(true, Ordering::Relaxed);
    });
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
