//! The status codes the proxy answers with itself, as one type instead of bare numbers.

use std::fmt;

/// An HTTP status code (100..=999).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(u16);

impl Status {
    /// 400: malformed request.
    pub const BAD_REQUEST: Status = Status(400);
    /// 403: the client certificate was revoked on an open connection.
    pub const FORBIDDEN: Status = Status(403);
    /// 405: CONNECT.
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 408: request head or body too slow.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 421: the request names a host another site serves.
    pub const MISDIRECTED_REQUEST: Status = Status(421);
    /// 431: request head too large.
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    /// 499 (nginx's): the client went away before its response was complete (logs only).
    pub const CLIENT_CLOSED_REQUEST: Status = Status(499);
    /// 500.
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    /// 502: the origin failed or answered something unusable.
    pub const BAD_GATEWAY: Status = Status(502);
    /// 503.
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 504: the origin did not connect or answer in time.
    pub const GATEWAY_TIMEOUT: Status = Status(504);

    /// A status from its code; None outside 100..=999.
    pub const fn new(code: u16) -> Option<Status> {
        if code >= 100 && code <= 999 {
            Some(Status(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase of the statuses the proxy sends itself ("" for others).
    pub fn reason(self) -> &'static str {
        match self.0 {
            400 => "Bad Request",
            403 => "Forbidden",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            421 => "Misdirected Request",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "",
        }
    }
}

impl PartialEq<u16> for Status {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl From<Status> for u16 {
    fn from(s: Status) -> u16 {
        s.0
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        assert_eq!(Status::new(99), None);
        assert_eq!(Status::new(1000), None);
        assert_eq!(Status::new(204).map(Status::code), Some(204));
        assert_eq!(Status::MISDIRECTED_REQUEST, 421);
        assert_eq!(Status::MISDIRECTED_REQUEST.reason(), "Misdirected Request");
        assert_eq!(Status::new(299).map(Status::reason), Some(""));
    }
}
