//! Response heads from origins: parsing never panics, and an accepted head is rewritten for
//! HTTP/1.1 and HTTP/1.0 clients into heads that parse again with the same status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::{
    parse_response_head, write_client_response_head, write_client_response_head_http10,
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
        let again = parse_response_head(&out, head_request)
            .expect("the rewritten head parses")
            .expect("the rewritten head is complete");
        assert_eq!(again.status, head.status);
        assert_eq!(again.header_len, out.len());
    }
});
