//! Canned error responses sent by the proxy itself.

use super::Status;

macro_rules! canned {
    ($code:literal, $reason:literal, $len:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\nContent-Type: text/plain\r\nContent-Length: ",
            $len,
            "\r\nConnection: close\r\n\r\n",
            $reason,
            "\n"
        )
        .as_bytes()
    };
}

/// A complete response for `status` (400, 403, 405, 408, 421, 431, 500, 501, 502, 503 or 504; any other
/// value gives the 500 response): status line, `Content-Type: text/plain`, `Content-Length`,
/// `Connection: close` and the reason phrase as body. The connection is closed after it.
pub fn error_response(status: Status) -> &'static [u8] {
    match status.code() {
        400 => canned!("400", "Bad Request", "12"),
        403 => canned!("403", "Forbidden", "10"),
        405 => canned!("405", "Method Not Allowed", "19"),
        408 => canned!("408", "Request Timeout", "16"),
        421 => canned!("421", "Misdirected Request", "20"),
        431 => canned!("431", "Request Header Fields Too Large", "32"),
        501 => canned!("501", "Not Implemented", "16"),
        502 => canned!("502", "Bad Gateway", "12"),
        503 => canned!("503", "Service Unavailable", "20"),
        504 => canned!("504", "Gateway Timeout", "16"),
        _ => canned!("500", "Internal Server Error", "22"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_response_head, BodyFraming};

    #[test]
    fn responses_are_well_formed() {
        for status in [400u16, 403, 405, 408, 421, 431, 500, 501, 502, 503, 504] {
            let bytes = error_response(Status::new(status).expect("status"));
            let head = parse_response_head(bytes, false)
                .expect("valid")
                .expect("complete");
            assert_eq!(head.status, status);
            assert!(!head.origin_keep_alive, "Connection: close");
            let body = &bytes[head.header_len..];
            assert_eq!(head.framing, BodyFraming::ContentLength(body.len() as u64));
            assert_eq!(body.last(), Some(&b'\n'));
            let text = std::str::from_utf8(bytes).expect("ascii");
            assert!(text.contains("\r\nContent-Type: text/plain\r\n"));
            assert!(text.contains("\r\nConnection: close\r\n"));
        }
        let teapot = Status::new(418).expect("status");
        assert_eq!(
            error_response(teapot),
            error_response(Status::INTERNAL_SERVER_ERROR)
        );
    }
}
