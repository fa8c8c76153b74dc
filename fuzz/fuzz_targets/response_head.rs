//! Response heads from origins: parsing never panics, and an accepted head is rewritten for
//! HTTP/1.1 and HTTP/1.0 clients into heads that parse again with the same status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::{
    parse_response_head, write_client_response_head, write_client_response_head_http10,
    MAX_RESPONSE_HEADERS,
};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let keep_alive = flags & 2 == 2;
    let Ok(Some(head)) = parse_response_head(data, head_request) else {
        return;
    };
    for http10 in [false, true] {
        let mut out = Vec::new();
        if http10 {
            write_client_response_head_http10(&head, data, keep_alive, &mut out);
        } else {
            write_client_response_head(&head, data, keep_alive, &mut out);
        }
        assert!(out.ends_with(b"\r\n\r\n"));
        // A client reads it as one whole, well-formed head with the same status. (Not with
        // our own origin-side parser: the rewrite may add a field or two to a head that was
        // at the origin-side field limit.)
        let mut fields = [httparse::EMPTY_HEADER; 2 * MAX_RESPONSE_HEADERS];
        let mut again = httparse::Response::new(&mut fields);
        let parsed = again.parse(&out).expect("the rewritten head parses");
        assert_eq!(parsed, httparse::Status::Complete(out.len()), "one whole head");
        assert_eq!(again.code, Some(head.status));
    }
});
