//! Reloading under load, measured in pieces:
//!
//! - `reload/build_and_swap_1000_ca_changed`: what a reload does once the files are read, for
//!   a site whose trust bundle of 1,000 CAs changed (two bundles alternate, one CA apart):
//!   stage the revocation view, build every TLS context (the trust store built anew), publish
//!   the snapshot to the slot the workers read and drop the old one. Target: 50 ms.
//! - `reload/build_and_swap_1000_ca_unchanged`: the same when the bundle did not change (a
//!   reload for a revocation list, a certificate, ...): the trust store is reused.
//! - `reload/load_build_swap_1000_ca_changed`: the changed case from the files (TOML,
//!   certificate, key and the 1,000-CA bundle parsed and validated by the config crate).
//! - `snapshot_load/*`: what every connection does to get its snapshot: `worker_local` is what
//!   `connection.rs` does (the worker's copy: one atomic load, an `Rc` clone, dropped at the
//!   end), `arc_swap_load_full` the plain `ArcSwap::load_full` for comparison; each alone and
//!   while another thread publishes snapshots in a loop. Target: 20 ns.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::local_snapshot::{LocalSnapshot, SnapshotSlot};
use portcullis::pki::{CertKind, CertSpec, DemoPki, Issued, SERVER_CERT_FILE, SERVER_KEY_FILE};
use portcullis::revocation::{RevocationState, RevocationView};
use portcullis::tls::TlsSnapshot;
use portcullis_config::Snapshot;

/// CAs in the benchmark's trust bundle.
const CAS: usize = 1_000;

/// Writes the demo PKI's server certificate and key, two bundles of [`CAS`] self-signed CAs
/// (one CA apart) and a one-site configuration for each into `dir`; returns the two
/// configurations' paths.
fn write_configs(dir: &Path) -> [std::path::PathBuf; 2] {
    DemoPki::generate(dir).expect("demo PKI");
    let cas: Vec<Issued> = (0..=CAS)
        .map(|i| {
            Issued::self_signed(CertSpec::new(&format!("Bench CA {i:04}"), CertKind::RootCa))
                .expect("CA")
        })
        .collect();
    [0, 1].map(|which| {
        let bundle: String = cas[which..which + CAS]
            .iter()
            .map(|ca| ca.cert_pem.as_str())
            .collect();
        fs::write(dir.join(format!("bundle-{which}.pem")), bundle).expect("write bundle");
        write_config(dir, which)
    })
}

/// The configuration using `bundle-{which}.pem`.
fn write_config(dir: &Path, which: usize) -> std::path::PathBuf {
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
trust_store = "bundle-{which}.pem"
"#
    );
    let path = dir.join(format!("portcullis-{which}.toml"));
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
    let paths = write_configs(dir.path());
    let configs = paths
        .clone()
        .map(|path| Arc::new(portcullis_config::load(&path).expect("configuration loads")));
    assert_eq!(configs[0].sites[0].mtls.trust_store.len(), CAS);
    assert_ne!(
        configs[0].sites[0].mtls.trust_store,
        configs[1].sites[0].mtls.trust_store
    );
    let revocation = RevocationState::new();
    let slot = SnapshotSlot::new(build(Arc::clone(&configs[0]), &revocation));

    let mut group = c.benchmark_group("reload");
    group.sample_size(30);
    let mut next = 0;
    group.bench_function("build_and_swap_1000_ca_changed", |b| {
        b.iter(|| {
            next = 1 - next;
            // Publishing drops the previous snapshot (no connection holds it), and with it the
            // only reference to the other bundle's trust store: every build is a full one.
            slot.publish(Arc::new(build(Arc::clone(&configs[next]), &revocation)));
        })
    });
    group.bench_function("build_and_swap_1000_ca_unchanged", |b| {
        b.iter(|| {
            slot.publish(Arc::new(build(Arc::clone(&configs[next]), &revocation)));
        })
    });
    group.bench_function("load_build_swap_1000_ca_changed", |b| {
        b.iter(|| {
            next = 1 - next;
            let config =
                portcullis_config::load(black_box(&paths[next])).expect("configuration loads");
            slot.publish(Arc::new(build(Arc::new(config), &revocation)));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("snapshot_load");
    let local = LocalSnapshot::new(&slot);
    group.bench_function("worker_local", |b| {
        b.iter(|| black_box(local.get(&slot)));
    });
    group.bench_function("arc_swap_load_full", |b| {
        b.iter(|| black_box(slot.load_full()));
    });
    // While another thread publishes snapshots back and forth as fast as it can (a reload
    // storm far beyond any real rate; the publishes reuse two prebuilt snapshots, so the
    // worker's copy is mostly outdated and reloaded).
    let spare = Arc::new(build(Arc::clone(&configs[0]), &revocation));
    let current = slot.load_full();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let next = [Arc::clone(&spare), Arc::clone(&current)];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                slot.publish(Arc::clone(&next[i % 2]));
                i += 1;
                std::thread::yield_now();
            }
        });
        group.bench_function("worker_local_during_swaps", |b| {
            b.iter(|| black_box(local.get(&slot)));
        });
        group.bench_function("arc_swap_load_full_during_swaps", |b| {
            b.iter(|| black_box(slot.load_full()));
        });
        stop.store(true, Ordering::Relaxed);
    });
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
