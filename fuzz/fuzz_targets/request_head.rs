//! Request heads from the network: parsing never panics, and whatever the parser accepts is
//! rewritten into a head the same parser accepts again, with the same framing and target (so
//! the origin can never read a request's end differently from the proxy).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use portcullis::http::{authority, parse_request_head, write_origin_request};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(head)) = parse_request_head(data, 1000) else {
        return;
    };
    if let Some(host) = head.host(data) {
        let _ = authority::host_of(host);
    }
    let mut out = Vec::new();
    write_origin_request(
        &head,
        data,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        b"CloudFront-Viewer-Cert-Present: 0\r\n",
        b"fallback.test",
        &mut out,
    );
    assert!(out.ends_with(b"\r\n\r\n"));
    let again = parse_request_head(&out, 1000)
        .expect("the rewritten head parses")
        .expect("the rewritten head is complete");
    assert_eq!(again.header_len, out.len());
    assert_eq!(again.framing, head.framing);
    assert_eq!(again.method(&out), head.method(data));
    assert_eq!(again.path(&out), head.path(data));
    // Exactly one viewer-cert field reached the rewritten head: the edge's own (in either
    // spelling: CGI-style origins read `_` as `-`).
    let viewer_fields = out
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|c| &line[..c]))
        .filter(|name| {
            let name: Vec<u8> = name
                .iter()
                .map(|b| if *b == b'_' { b'-' } else { b.to_ascii_lowercase() })
                .collect();
            name.starts_with(b"cloudfront-viewer-cert-")
        })
        .count();
    assert_eq!(viewer_fields, 1);
});
