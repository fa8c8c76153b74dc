//! Chunked bodies from clients and origins: the decoder never panics, however the bytes are
//! split; every way of feeding them agrees on where the body ends; the trailer-dropping mode
//! forwards a prefix of what it consumed and produces a body the decoder accepts again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::chunked::END_OF_TRAILERS;
use portcullis::http::ChunkedDecoder;

/// Feeds `data` in pieces cut at `cut` (and the rest); returns where the body ended.
fn body_end(data: &[u8], cut: usize) -> Option<usize> {
    let mut d = ChunkedDecoder::new();
    let mut at = 0;
    for piece in [&data[..cut], &data[cut..]] {
        match d.advance(piece) {
            Ok((used, true)) => return Some(at + used),
            Ok((used, false)) => {
                assert_eq!(used, piece.len());
                at += used;
            }
            Err(_) => return None,
        }
    }
    None
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let cut = usize::from(cut) % (data.len() + 1);
    let whole = body_end(data, data.len());
    assert_eq!(body_end(data, cut), whole);

    let mut payload = Vec::new();
    let mut d = ChunkedDecoder::new();
    let dechunked = d.advance_payload(data, |run| payload.extend_from_slice(run));
    assert_eq!(dechunked.ok().filter(|r| r.1).map(|r| r.0), whole);

    let mut d = ChunkedDecoder::new();
    let mut forwarded = Vec::new();
    let mut at = 0;
    for piece in [&data[..cut], &data[cut..]] {
        match d.advance_dropping_trailers(piece) {
            Ok((used, forward, complete)) => {
                assert!(forward <= used && used <= piece.len());
                forwarded.extend_from_slice(&piece[..forward]);
                at += used;
                if complete {
                    assert_eq!(Some(at), whole);
                    forwarded.extend_from_slice(END_OF_TRAILERS);
                    let mut again = ChunkedDecoder::new();
                    assert_eq!(again.advance(&forwarded).ok(), Some((forwarded.len(), true)));
                    return;
                }
            }
            Err(_) => {
                assert_eq!(whole, None);
                return;
            }
        }
    }
});
