//! HTTP/2 frames from the viewer (and the codec's answers) through the frame guard: any bytes
//! never panic it, and its verdict does not depend on how the bytes were cut into reads (a
//! frame header split across reads counts once). The control-frame rate limit is set out of
//! reach so the verdict depends on the bytes alone, not on the clock.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http2::guard::{FrameGuard, GuardLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limits = GuardLimits {
        control_per_second: u32::MAX,
        early_resets: u32::from(control % 16),
    };
    let whole = FrameGuard::new(limits, None);
    let pieces = FrameGuard::new(limits, None);
    whole.scan(rest);
    // Cut the same bytes into reads of 1..=13 bytes, sized by the bytes themselves.
    let mut left = rest;
    let mut i = 0;
    while !left.is_empty() {
        let n = (usize::from(left[0] ^ control) % 13 + 1).min(left.len());
        pieces.scan(&left[..n]);
        left = &left[n..];
        i += 1;
    }
    assert_eq!(whole.tripped(), pieces.tripped(), "after {i} reads");
    // The same bytes as if the codec had sent them.
    whole.scan_sent(rest);
    let mut left = rest;
    while !left.is_empty() {
        let n = (usize::from(left[0]) % 7 + 1).min(left.len());
        pieces.scan_sent(&left[..n]);
        left = &left[n..];
    }
    assert_eq!(whole.refused_streams(), pieces.refused_streams());
    assert_eq!(whole.oversized_header_lists(), pieces.oversized_header_lists());
});
