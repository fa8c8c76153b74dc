//! Client certificates (DER, as a passthrough site accepts them from anyone): extracting and
//! rendering the viewer-cert headers never panics and never produces a byte that could break
//! the request head (only printable ASCII inside `Name: value\r\n` lines).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::viewer_cert::{render_headers, ViewerCertInfo};
use portcullis_config::ForwardHeaders;

fuzz_target!(|der: &[u8]| {
    let Ok(info) = ViewerCertInfo::from_der(der) else {
        return;
    };
    for include_pem in [false, true] {
        let mut out = Vec::new();
        render_headers(Some(&info), &ForwardHeaders::default(), include_pem, &mut out);
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").expect("CRLF line endings");
            assert!(line.starts_with(b"CloudFront-Viewer-Cert-"));
            assert!(line.iter().all(|&b| (0x20..0x7f).contains(&b)), "{line:?}");
        }
    }
});
