//! Body framing while a body streams through: how much is still to come, what of a buffer
//! belongs to the body, chunked trailers dropped (requests), de-chunking (for viewers that
//! take only the payload) and chunk encoding (for request bodies of unknown length).

use std::io::Write as _;

use super::chunked::END_OF_TRAILERS;
use super::{BodyFraming, ChunkedDecoder, HttpError};

/// How much of a body is still to come.
pub enum BodyState {
    /// Complete.
    Done,
    /// This many bytes to come.
    Remaining(u64),
    /// Chunked: the decoder finds the end.
    Chunked(ChunkedDecoder),
    /// Until the peer closes (responses only).
    UntilClose,
}

impl BodyState {
    /// The state at the start of a body with `framing`.
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => Self::Done,
            BodyFraming::ContentLength(n) => Self::Remaining(n),
            BodyFraming::Chunked => Self::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => Self::UntilClose,
        }
    }

    /// Whether the whole body was seen.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// How many of `data`'s leading bytes belong to the body.
    pub fn take(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let taken = match self {
            Self::Done => 0,
            Self::Remaining(n) => {
                let t = data.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= t as u64;
                if *n == 0 {
                    *self = Self::Done;
                }
                t
            }
            Self::Chunked(decoder) => {
                let (used, complete) = decoder.advance(data)?;
                if complete {
                    *self = Self::Done;
                }
                used
            }
            Self::UntilClose => data.len(),
        };
        Ok(taken)
    }

    /// Like [`take`](Self::take), for a request body on its way to the origin: chunked trailers
    /// are dropped (RFC 9110 section 6.5.1: fields such as `Content-Length`, `Host` or a forged
    /// viewer-cert header must not reach the origin as trailers, and origins do not ask for
    /// request trailers). Forward `data[..forward]`, then `end`.
    pub fn take_request(&mut self, data: &[u8]) -> Result<RequestBytes, HttpError> {
        if let Self::Chunked(decoder) = self {
            let (used, forward, complete) = decoder.advance_dropping_trailers(data)?;
            if complete {
                *self = Self::Done;
            }
            let end = if complete { END_OF_TRAILERS } else { b"" };
            return Ok(RequestBytes { used, forward, end });
        }
        let used = self.take(data)?;
        Ok(RequestBytes {
            used,
            forward: used,
            end: b"",
        })
    }

    /// Like [`take`](Self::take), also appending the body's payload to `payload`, without the
    /// chunked framing (for HTTP/1.0 clients, which do not understand it).
    pub fn take_dechunked(
        &mut self,
        data: &[u8],
        payload: &mut Vec<u8>,
    ) -> Result<usize, HttpError> {
        match self {
            Self::Chunked(decoder) => {
                let (used, complete) =
                    decoder.advance_payload(data, |run| payload.extend_from_slice(run))?;
                if complete {
                    *self = Self::Done;
                }
                Ok(used)
            }
            _ => {
                let taken = self.take(data)?;
                payload.extend_from_slice(&data[..taken]);
                Ok(taken)
            }
        }
    }

    /// How much to read next so that no byte past the body is read when its length is known.
    pub fn read_limit(&self, capacity: usize) -> usize {
        match self {
            Self::Remaining(n) => capacity.min(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => capacity,
        }
    }
}

/// What [`BodyState::take_request`] made of some request bytes.
pub struct RequestBytes {
    /// Bytes that belong to the body (the rest belongs to the next request).
    pub used: usize,
    /// Leading bytes to forward to the origin (`forward <= used`).
    pub forward: usize,
    /// Bytes to send after them (the end of a chunked body whose trailers were dropped).
    pub end: &'static [u8],
}

/// Appends `data` as one chunk of a chunked body (nothing for empty data, which would end it).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes `data` as one chunk at the start of `buf` and returns the length written; `buf`
/// must have room for `data` plus [`CHUNK_OVERHEAD`]. Nothing for empty data.
pub fn encode_chunk_into(data: &[u8], buf: &mut [u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut at = digits.len();
    while n > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
    }
    let size = &digits[at..];
    let mut end = 0;
    for part in [size, b"\r\n", data, b"\r\n"] {
        buf[end..end + part.len()].copy_from_slice(part);
        end += part.len();
    }
    end
}

/// The most a chunk's framing adds to its data (16 hex digits and two CRLFs).
pub const CHUNK_OVERHEAD: usize = 20;

/// The end of a chunked body without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_chunks_decode_back() {
        let mut wire = Vec::new();
        encode_chunk(b"hello ", &mut wire);
        encode_chunk(b"", &mut wire);
        encode_chunk(&[b'x'; 300], &mut wire);
        wire.extend_from_slice(LAST_CHUNK);
        assert!(wire.starts_with(b"6\r\nhello \r\n12c\r\n"));
        let mut body = BodyState::new(BodyFraming::Chunked);
        let mut payload = Vec::new();
        let used = body.take_dechunked(&wire, &mut payload).expect("valid");
        assert_eq!(used, wire.len());
        assert!(body.is_done());
        assert_eq!(payload.len(), 306);
        let mut into = [0u8; 400];
        let n = encode_chunk_into(&[b'x'; 300], &mut into);
        assert_eq!(&into[..n], &wire[wire.len() - 5 - 307..wire.len() - 5]);
        assert_eq!(encode_chunk_into(b"", &mut into), 0);
    }

    #[test]
    fn lengths_and_limits() {
        let mut body = BodyState::new(BodyFraming::ContentLength(5));
        assert_eq!(body.read_limit(64), 5);
        assert_eq!(body.take(b"abcdefg").expect("take"), 5);
        assert!(body.is_done());
        assert!(BodyState::new(BodyFraming::None).is_done());
    }
}
