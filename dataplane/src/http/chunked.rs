//! Finding the end of a chunked body without touching its bytes.

use super::HttpError;

/// Longest accepted chunk-size line, extensions and CRLF included.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Largest accepted trailer section (every byte after the last-chunk line).
pub const MAX_TRAILERS: usize = 16 * 1024;
/// What ends a chunked body whose trailer section was dropped
/// ([`ChunkedDecoder::advance_dropping_trailers`]): the empty line after the last chunk.
pub const END_OF_TRAILERS: &[u8] = b"\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits of a chunk size.
    SizeDigits,
    /// Whitespace after the digits (before `;` or CR).
    SizeWs,
    /// In chunk extensions.
    Ext,
    /// Expecting LF of the chunk-size line.
    SizeLf,
    /// In chunk data.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer field line.
    TrailerLine,
    /// Expecting LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final CRLF.
    FinalLf,
    /// The body is complete.
    Done,
    /// An error was reported; the decoder stays failed.
    Failed,
}

/// Streaming recogniser of a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1).
///
/// It neither copies nor alters data: [`advance`](Self::advance) says how many of the given
/// bytes belong to the body, so the proxy can forward them verbatim and knows exactly where the
/// body (last chunk, trailers and final CRLF included) ends. Limits: chunk-size lines of at most
/// [`MAX_CHUNK_LINE`] bytes, trailers of at most [`MAX_TRAILERS`] bytes, sizes fitting in `u64`.
/// Line endings must be CRLF; bare LF, control characters and obs-fold in trailers are errors.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, then bytes of data left in it.
    remaining: u64,
    /// Bytes of the current chunk-size line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub const fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// Resets to the start of a new body.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True once the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next bytes of the stream. Returns how many bytes at the start of `data` belong
    /// to the body, and whether the body is complete (then the remaining bytes belong to the
    /// next message; if not complete, all of `data` was consumed). After completion it returns
    /// `(0, true)`; after an error it keeps returning an error.
    pub fn advance(&mut self, data: &[u8]) -> Result<(usize, bool), HttpError> {
        self.advance_payload(data, |_| {})
    }

    /// Like [`advance`](Self::advance), for forwarding a body without its trailer section:
    /// also returns how many of the leading bytes to forward, which is everything up to the end
    /// of the last-chunk line and nothing after it. Once the body is complete the forwarded
    /// bytes end with that line, and the caller completes the body with [`END_OF_TRAILERS`].
    /// Returns `(used, forward, complete)`.
    pub fn advance_dropping_trailers(
        &mut self,
        data: &[u8],
    ) -> Result<(usize, usize, bool), HttpError> {
        if self.in_trailers() {
            let (used, complete) = self.advance(data)?;
            return Ok((used, 0, complete));
        }
        let mut trailers_at = None;
        let (used, complete) = self.advance_inner(data, |_| {}, &mut trailers_at)?;
        Ok((used, trailers_at.unwrap_or(used), complete))
    }

    /// Whether the last chunk has been seen (only trailers and the final CRLF may follow).
    fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart
                | State::TrailerLine
                | State::TrailerLf
                | State::FinalLf
                | State::Done
        )
    }

    /// Like [`advance`](Self::advance), also calling `on_payload` with every run of chunk data
    /// (the de-chunked payload, in order), e.g. to serve an HTTP/1.0 client.
    pub fn advance_payload(
        &mut self,
        data: &[u8],
        on_payload: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), HttpError> {
        self.advance_inner(data, on_payload, &mut None)
    }

    /// The decoding loop; `trailers_at` receives the offset in `data` just after the
    /// last-chunk line, if that line ends in `data`.
    fn advance_inner(
        &mut self,
        data: &[u8],
        mut on_payload: impl FnMut(&[u8]),
        trailers_at: &mut Option<usize>,
    ) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Done => return Ok((i, true)),
                State::Failed => {
                    return Err(HttpError::InvalidChunkedBody("decoder failed earlier"))
                }
                State::Data => {
                    let avail = data.len() - i;
                    let n = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                    on_payload(&data[i..i + n]);
                    i += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let b = data[i];
                    i += 1;
                    let before = self.state;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed;
                        return Err(e);
                    }
                    if before == State::SizeLf && self.state == State::TrailerStart {
                        *trailers_at = Some(i);
                    }
                    if self.state == State::Done {
                        return Ok((i, true));
                    }
                }
            }
        }
        match self.state {
            State::Failed => Err(HttpError::InvalidChunkedBody("decoder failed earlier")),
            s => Ok((i, s == State::Done)),
        }
    }

    /// Consumes one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        match self.state {
            State::SizeStart | State::SizeDigits | State::SizeWs | State::Ext | State::SizeLf => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(HttpError::ChunkLineTooLong);
                }
            }
            State::TrailerStart | State::TrailerLine | State::TrailerLf | State::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILERS {
                    return Err(HttpError::TrailersTooLarge);
                }
            }
            _ => {}
        }
        self.state = match (self.state, b) {
            (State::SizeStart, _) => {
                let d =
                    hex_value(b).ok_or(HttpError::InvalidChunkedBody("chunk size is not hex"))?;
                self.remaining = u64::from(d);
                State::SizeDigits
            }
            (State::SizeDigits, _) if hex_value(b).is_some() => {
                let d = hex_value(b).unwrap_or(0);
                if self.remaining > u64::MAX >> 4 {
                    return Err(HttpError::ChunkSizeOverflow);
                }
                self.remaining = (self.remaining << 4) | u64::from(d);
                State::SizeDigits
            }
            (State::SizeDigits | State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::SizeDigits | State::SizeWs | State::Ext, b';') => State::Ext,
            (State::SizeDigits | State::SizeWs | State::Ext, b'\r') => State::SizeLf,
            (State::Ext, _) if !is_ctl(b) => State::Ext,
            (State::SizeDigits | State::SizeWs | State::Ext, _) => {
                return Err(HttpError::InvalidChunkedBody(
                    "invalid byte in chunk size line",
                ))
            }
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::SizeLf, _) => {
                return Err(HttpError::InvalidChunkedBody(
                    "chunk size line not ended by CRLF",
                ))
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::SizeStart,
            (State::DataCr | State::DataLf, _) => {
                return Err(HttpError::InvalidChunkedBody(
                    "chunk data not followed by CRLF",
                ))
            }
            (State::TrailerStart, b'\r') => State::FinalLf,
            (State::TrailerStart, b' ' | b'\t') => {
                return Err(HttpError::InvalidChunkedBody("obs-fold in trailers"))
            }
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::TrailerLine, _) if !is_ctl(b) => State::TrailerLine,
            (State::TrailerStart | State::TrailerLine, _) => {
                return Err(HttpError::InvalidChunkedBody("invalid byte in trailers"))
            }
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::FinalLf, b'\n') => State::Done,
            (State::TrailerLf | State::FinalLf, _) => {
                return Err(HttpError::InvalidChunkedBody(
                    "trailer line not ended by CRLF",
                ))
            }
            (State::Data | State::Done | State::Failed, _) => {
                return Err(HttpError::InvalidChunkedBody("decoder misuse"))
            }
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Control characters other than horizontal tab (CR and LF included).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one go and split at every position (two pieces) and byte by byte;
    /// checks every way gives the same answer and returns it with the payload.
    fn run(input: &[u8]) -> Result<(usize, Vec<u8>), HttpError> {
        let whole = feed(input, &[input.len()]);
        for split in 0..=input.len() {
            assert_eq!(
                feed(input, &[split, input.len()]),
                whole,
                "split at {split}"
            );
        }
        let bytes: Vec<usize> = (1..=input.len()).collect();
        assert_eq!(feed(input, &bytes), whole, "byte by byte");
        whole
    }

    /// Feeds `input` cut at the given positions; returns the body length once complete.
    fn feed(input: &[u8], cuts: &[usize]) -> Result<(usize, Vec<u8>), HttpError> {
        let mut d = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut start = 0;
        for &end in cuts {
            let piece = &input[start..end];
            let (n, done) = d.advance_payload(piece, |p| payload.extend_from_slice(p))?;
            if done {
                assert!(d.is_done());
                assert_eq!(d.advance(b"more").ok(), Some((0, true)));
                return Ok((start + n, payload));
            }
            assert_eq!(n, piece.len(), "incomplete body must consume everything");
            start = end;
        }
        Err(HttpError::InvalidChunkedBody("incomplete"))
    }

    #[test]
    fn simple_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1;q=\"a b\"\r\n world\r\n0\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(run(&input), Ok((body.len(), b"hello world".to_vec())));

        let body = b"0\r\n\r\n";
        assert_eq!(run(body), Ok((5, Vec::new())));

        let body = b"A\r\n0123456789\r\n00000\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"NEXT");
        assert_eq!(run(&input), Ok((body.len(), b"0123456789".to_vec())));

        let body = b"1 ;e\r\nx\r\n0 \r\n\r\n";
        assert_eq!(run(body), Ok((body.len(), b"x".to_vec())));

        let body = b"ffFF\r\n";
        let mut input = body.to_vec();
        input.extend(std::iter::repeat_n(b'z', 0xffff));
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(
            feed(&input, &[input.len()]).map(|(n, p)| (n, p.len())),
            Ok((input.len(), 0xffff))
        );
    }

    #[test]
    fn incomplete_consumes_everything() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        for n in 0..body.len() {
            let mut d = ChunkedDecoder::new();
            assert_eq!(d.advance(&body[..n]), Ok((n, false)), "prefix {n}");
            assert!(!d.is_done());
        }
    }

    #[test]
    fn malformed_bodies() {
        let bad: [&[u8]; 16] = [
            b"\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"0\r\nX: a\nY: b\r\n\r\n",
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\nX: \x00\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"0\r\r\n\r\n",
        ];
        for input in bad {
            let r = run(input);
            assert!(
                matches!(r, Err(HttpError::InvalidChunkedBody(_))),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn overflow_and_limits() {
        assert_eq!(
            run(b"ffffffffffffffff\r\n").map(|_| ()),
            Err(HttpError::InvalidChunkedBody("incomplete"))
        );
        assert_eq!(
            run(b"10000000000000000\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        // Leading zeros do not overflow.
        let mut input = vec![b'0'; 100];
        input.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&input).map(|(n, _)| n), Ok(input.len()));

        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&long_ext), Err(HttpError::ChunkLineTooLong));
        let mut ok_ext = b"1;".to_vec();
        ok_ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE - 4));
        ok_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(run(&ok_ext).map(|(n, _)| n), Ok(ok_ext.len()));

        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILERS / 10) {
            trailers.extend_from_slice(b"X: 123456\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            feed(&trailers, &[trailers.len()]),
            Err(HttpError::TrailersTooLarge)
        );
    }

    #[test]
    fn failed_decoder_stays_failed() {
        let mut d = ChunkedDecoder::new();
        assert!(d.advance(b"zz").is_err());
        assert!(d.advance(b"0\r\n\r\n").is_err());
        assert!(d.advance(b"").is_err());
        d.reset();
        assert_eq!(d.advance(b"0\r\n\r\n"), Ok((5, true)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seed: &[u8] = b"4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
        for i in 0..seed.len() {
            for flip in [0x01u8, 0x0d, 0x20, 0x80, 0xff] {
                let mut b = seed.to_vec();
                b[i] ^= flip;
                let mut d = ChunkedDecoder::new();
                if let Ok((n, _)) = d.advance(&b) {
                    assert!(n <= b.len());
                }
            }
        }
    }

    /// Forwards `input` cut at every position, dropping trailers; returns the forwarded bytes.
    fn forward_without_trailers(input: &[u8], cut: usize) -> Vec<u8> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for piece in [&input[..cut], &input[cut..]] {
            let (used, forward, complete) = d.advance_dropping_trailers(piece).expect("valid");
            assert!(forward <= used);
            out.extend_from_slice(&piece[..forward]);
            if complete {
                out.extend_from_slice(END_OF_TRAILERS);
                return out;
            }
            assert_eq!(used, piece.len());
        }
        panic!("incomplete body");
    }

    #[test]
    fn trailers_are_dropped_when_forwarding() {
        let with = b"3\r\nabc\r\n0;x=y\r\nContent-Length: 9\r\nCloudFront-Viewer-Cert-Present: 1\r\n\r\nNEXT";
        let without = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        for cut in 0..=with.len() - 4 {
            assert_eq!(
                forward_without_trailers(&with[..with.len() - 4], cut),
                b"3\r\nabc\r\n0;x=y\r\n\r\n",
                "cut at {cut}"
            );
        }
        for cut in 0..=without.len() - 4 {
            assert_eq!(
                forward_without_trailers(&without[..without.len() - 4], cut),
                b"3\r\nabc\r\n0\r\n\r\n"
            );
        }
        // The body still ends where it ends: the pipelined bytes are not consumed.
        let mut d = ChunkedDecoder::new();
        let (used, forward, complete) = d.advance_dropping_trailers(with).expect("valid");
        assert!(complete);
        assert_eq!(&with[used..], b"NEXT");
        assert_eq!(&with[..forward], b"3\r\nabc\r\n0;x=y\r\n");
    }
}
