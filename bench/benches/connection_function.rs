//! Cost per call of a connection function on a worker thread: the announcement's function
//! (`cf.kvs().exists(serial)`, async) against a live revocation store of one million serials,
//! allowed and denied, and the smallest function. What is timed is what the verify callback
//! pays: building the event object, the call, settling the promise, reading the decision.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::function::{ConnectionFunction, FunctionInput};
use portcullis::pki::DemoPki;
use portcullis::telemetry::LeafFields;
use portcullis_bench::fixture::{demo_snapshot, serial, FUNCTION_MTLS};

const STORE_SIZE: u64 = 1_000_000;

fn leaf(serial: &[u8]) -> LeafFields {
    let colon: Vec<String> = serial.iter().map(|b| format!("{b:02x}")).collect();
    LeafFields {
        serial: colon.join(":").into(),
        subject: "C=US, O=Portcullis Demo, OU=Viewers, CN=client".into(),
        issuer: "C=US, O=Portcullis Demo, CN=Portcullis Demo Intermediate CA".into(),
        validity: "NotBefore=2025-09-10T23:43:10Z;NotAfter=2026-09-10T23:43:10Z".into(),
        sha256: "ab".repeat(32).into(),
        subject_alternative_names: Box::default(),
    }
}

fn input(leaf: &LeafFields) -> FunctionInput<'_> {
    FunctionInput {
        leaf: Some(leaf),
        client_ip: IpAddr::from([127, 0, 0, 1]),
        endpoint: "localhost",
        distribution_id: "demo",
        connection_id: "Dg3ekfFTF04AAAAAAAAAAA",
        tls_version: Some("TLSv1.3"),
    }
}

fn calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    DemoPki::generate(dir.path()).expect("demo PKI");
    let snapshot = demo_snapshot(dir.path(), FUNCTION_MTLS, STORE_SIZE).expect("snapshot");
    let announcement = Arc::clone(
        snapshot.sites()[0]
            .function
            .as_ref()
            .expect("the site's function"),
    );
    let limit = Duration::from_millis(5);
    let smallest = ConnectionFunction::new(
        "allow.js",
        Arc::from("function connectionHandler(connection) { connection.allow(); }"),
        limit,
        None,
    )
    .expect("compile");
    let revoked = leaf(&serial(42));
    let good = leaf(&serial(STORE_SIZE + 7));
    assert!(announcement.call(&input(&revoked)).decision.is_err());
    assert!(announcement.call(&input(&good)).decision.is_ok());

    let mut group = c.benchmark_group("connection_function");
    group.throughput(Throughput::Elements(1));
    group.bench_function("announcement_allow_1m_keys", |b| {
        b.iter(|| announcement.call(black_box(&input(&good))))
    });
    group.bench_function("announcement_deny_1m_keys", |b| {
        b.iter(|| announcement.call(black_box(&input(&revoked))))
    });
    group.bench_function("smallest_allow", |b| {
        b.iter(|| smallest.call(black_box(&input(&good))))
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
