//! The HTTP/1.1 codec on the request path: parsing a browser-like request head and rewriting it
//! for the origin (viewer-cert headers appended, a forged one stripped), parsing an origin
//! response head and rewriting it for the client, and recognising a 64 KiB chunked body.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::http::{
    parse_request_head, parse_response_head, write_client_response_head, write_origin_request,
    BodyFraming, ChunkedDecoder,
};

/// A browser-like GET with 14 header fields, one of them a forged viewer-cert header the proxy
/// must strip.
const REQUEST: &[u8] = b"GET /catalog/items/4711?view=full&lang=en HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://shop.example.com/catalog/items\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
CloudFront-Viewer-Cert-Present: 1\r\n\
Priority: u=0, i\r\n\
\r\n";

/// A typical origin response head (chunked HTML).
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Tue, 26 Nov 2026 04:12:39 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Transfer-Encoding: chunked\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=5\r\n\
Cache-Control: private, max-age=0\r\n\
ETag: \"5e0f-62a1c3b0\"\r\n\
Vary: Accept-Encoding\r\n\
X-Request-Id: 0b6e2f1c-9a43-4d1e-8c55-2f6a1d7e9b30\r\n\
Strict-Transport-Security: max-age=31536000\r\n\
\r\n";

/// A viewer-cert header block of typical size (as `render_headers` produces it, PEM omitted).
const VIEWER_HEADERS: &[u8] =
    b"CloudFront-Viewer-Cert-Serial-Number: 4a:3f:5c:91:0e:77:12:ab:cd:ef:01:23:45:67:89:aa\r\n\
CloudFront-Viewer-Cert-Issuer: CN=Portcullis Demo Intermediate CA,O=Portcullis Demo\r\n\
CloudFront-Viewer-Cert-Subject: CN=demo-client,OU=Viewers,O=Portcullis Demo\r\n\
CloudFront-Viewer-Cert-Present: 1\r\n\
CloudFront-Viewer-Cert-Sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\r\n\
CloudFront-Viewer-Cert-Validity: NotBefore=2026-01-01T00:00:00Z;NotAfter=2027-01-01T00:00:00Z\r\n";

/// `payload` bytes as a chunked body of `chunk`-byte chunks (hex size lines, CRLFs, last chunk,
/// no trailers).
fn chunked_body(payload: usize, chunk: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload + payload / chunk * 10 + 16);
    let mut left = payload;
    while left > 0 {
        let n = left.min(chunk);
        body.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        body.extend((0..n).map(|i| (i % 251) as u8));
        body.extend_from_slice(b"\r\n");
        left -= n;
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn request(c: &mut Criterion) {
    let client_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let head = parse_request_head(REQUEST, 100)
        .expect("valid request")
        .expect("complete head");
    assert_eq!(head.header_count, 14);
    let mut out = Vec::with_capacity(4096);
    write_origin_request(
        &head,
        REQUEST,
        client_ip,
        VIEWER_HEADERS,
        b"shop.example.com",
        &mut out,
    );
    let rewritten = String::from_utf8_lossy(&out);
    assert_eq!(
        rewritten.matches("CloudFront-Viewer-Cert-Present").count(),
        1,
        "the forged header is stripped, the edge's one added"
    );

    let mut group = c.benchmark_group("http_request");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("parse_request_head", |b| {
        b.iter(|| parse_request_head(black_box(REQUEST), 100))
    });
    group.bench_function("parse_and_write_origin_request", |b| {
        b.iter(|| {
            let head = parse_request_head(black_box(REQUEST), 100)
                .expect("valid request")
                .expect("complete head");
            out.clear();
            write_origin_request(
                &head,
                REQUEST,
                client_ip,
                VIEWER_HEADERS,
                b"shop.example.com",
                &mut out,
            );
            black_box(out.len())
        })
    });
    group.finish();
}

fn response(c: &mut Criterion) {
    let head = parse_response_head(RESPONSE, false)
        .expect("valid response")
        .expect("complete head");
    assert_eq!(head.framing, BodyFraming::Chunked);
    let mut out = Vec::with_capacity(2048);

    let mut group = c.benchmark_group("http_response");
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("parse_response_head", |b| {
        b.iter(|| parse_response_head(black_box(RESPONSE), false))
    });
    group.bench_function("parse_and_write_client_response_head", |b| {
        b.iter(|| {
            let head = parse_response_head(black_box(RESPONSE), false)
                .expect("valid response")
                .expect("complete head");
            out.clear();
            write_client_response_head(&head, RESPONSE, true, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked_decoder");
    for (name, chunk) in [
        ("64KiB_in_4KiB_chunks", 4096),
        ("64KiB_in_256B_chunks", 256),
    ] {
        let body = chunked_body(64 * 1024, chunk);
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.advance(&body).expect("valid body"),
            (body.len(), true)
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("advance_{name}_one_slice"), |b| {
            b.iter(|| {
                decoder.reset();
                decoder.advance(black_box(&body)).expect("valid body")
            })
        });
        // As the proxy sees it: 16 KiB reads (one TLS record or socket read at a time).
        group.bench_function(format!("advance_{name}_16KiB_reads"), |b| {
            b.iter(|| {
                decoder.reset();
                let mut done = false;
                for piece in body.chunks(16 * 1024) {
                    let (_, complete) = decoder.advance(black_box(piece)).expect("valid body");
                    done = complete;
                }
                done
            })
        });
    }
    group.finish();
}

criterion_group!(benches, request, response, chunked);
criterion_main!(benches);
