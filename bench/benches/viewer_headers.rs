//! The `CloudFront-Viewer-Cert-*` headers: `ViewerCertInfo::from_der` + `render_headers` for a
//! typical client certificate (the once-per-connection work), and `render_headers` alone (the
//! per-request work on a keep-alive connection), and the per-worker cache hit that replaces
//! the parse for a certificate seen before.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::pki::{CertKind, CertSpec, Issued};
use portcullis::viewer_cert::{render_headers, ForwardHeaders, ViewerCertInfo};
use portcullis::viewer_header_cache::{BlockStyle, ViewerHeaderCache, DEFAULT_CAPACITY};

/// A client certificate like a real viewer's: ECDSA P-256, issued by an intermediate, with O,
/// OU and CN in the subject.
fn client_certificate() -> Vec<u8> {
    let root = Issued::self_signed(
        CertSpec::new("Benchmark Root CA", CertKind::RootCa).organization("Portcullis Bench"),
    )
    .expect("root CA");
    let intermediate = root
        .issue(
            CertSpec::new("Benchmark Intermediate CA", CertKind::IntermediateCa)
                .organization("Portcullis Bench"),
        )
        .expect("intermediate CA");
    let client = intermediate
        .issue(
            CertSpec::new("viewer-0042.devices.example.com", CertKind::Client)
                .organization("Portcullis Bench")
                .organizational_unit("Viewers"),
        )
        .expect("client certificate");
    client.cert_der
}

fn viewer_headers(c: &mut Criterion) {
    let der = client_certificate();
    let forward = ForwardHeaders::default();
    let info = ViewerCertInfo::from_der(&der).expect("certificate parses");
    let mut out = Vec::with_capacity(4096);
    render_headers(Some(&info), &forward, true, &mut out);
    println!(
        "client certificate: {} bytes DER; rendered header block: {} bytes",
        der.len(),
        out.len()
    );

    let mut group = c.benchmark_group("viewer_headers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_der_and_render", |b| {
        b.iter(|| {
            let info = ViewerCertInfo::from_der(black_box(&der)).expect("certificate parses");
            out.clear();
            render_headers(Some(&info), &forward, true, &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("from_der_only", |b| {
        b.iter(|| ViewerCertInfo::from_der(black_box(&der)).expect("certificate parses"))
    });
    group.bench_function("render_all_headers", |b| {
        b.iter(|| {
            out.clear();
            render_headers(Some(black_box(&info)), &forward, true, &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("render_without_pem", |b| {
        b.iter(|| {
            out.clear();
            render_headers(Some(black_box(&info)), &forward, false, &mut out);
            black_box(out.len())
        })
    });
    // What a connection pays when its worker already rendered this certificate's block:
    // SHA-256 of the leaf DER and a map lookup (the data plane's path since the cache).
    let cache = ViewerHeaderCache::new(DEFAULT_CAPACITY);
    let style = BlockStyle {
        site_id: 1,
        forward: &forward,
        include_pem: true,
    };
    cache.block_with(&style, Some(&der)).expect("block");
    group.bench_function("cached_block", |b| {
        b.iter(|| {
            black_box(
                cache
                    .block_with(&style, Some(black_box(&der)))
                    .expect("block"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, viewer_headers);
criterion_main!(benches);
