//! The records workers hand to the log writer: one per TLS connection attempt (and, with
//! `log_close`, one when it closes) and one per HTTP request.
//!
//! Records hold typed values (addresses, numbers, shared strings), not text: formatting is the
//! writer thread's job, so the worker's cost per record is filling a struct and one queue push.
//! Field values are read by index in the order of the configuration crate's field lists
//! ([`CONNECTION_LOG_FIELDS`](portcullis_config::CONNECTION_LOG_FIELDS),
//! [`ACCESS_LOG_FIELDS`](portcullis_config::ACCESS_LOG_FIELDS)).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use super::connection_id::ConnectionId;
use super::leaf::LeafFields;
use crate::tls::{FailureCode, HandshakeInfo, SiteTls};

/// A record on its way to the writer.
#[derive(Debug)]
pub enum LogRecord {
    /// For the connection log.
    Connection(Box<ConnectionRecord>),
    /// For the access log.
    Access(Box<AccessRecord>),
}

/// One field's value, borrowed from a record.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Absent: `null` in JSON, `-` in text.
    Null,
    /// Text.
    Str(&'a str),
    /// An unsigned number.
    Num(u64),
    /// Milliseconds with a fraction.
    Millis(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time: epoch milliseconds in JSON and plain, ISO 8601 in W3C.
    Time(SystemTime),
    /// An IP address.
    Ip(IpAddr),
    /// An address with port.
    Addr(SocketAddr),
    /// A connection id.
    Id(ConnectionId),
    /// A request id: the connection id and the request's number on it.
    RequestId(ConnectionId, u32),
}

/// What a closing record adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloseStats {
    /// From accept to close, in milliseconds.
    pub duration_ms: f64,
    /// Plaintext bytes received from the client.
    pub bytes_in: u64,
    /// Plaintext bytes sent to the client.
    pub bytes_out: u64,
    /// Requests served on the connection.
    pub requests: u32,
}

/// One connection log record.
#[derive(Debug)]
pub struct ConnectionRecord {
    /// When the handshake ended (or the connection closed, for a closing record).
    pub timestamp: SystemTime,
    /// The connection's id.
    pub id: ConnectionId,
    /// None for `Success`, else the failure code and its detail.
    pub failure: Option<(FailureCode, Box<str>)>,
    /// The client's address.
    pub client: SocketAddr,
    /// The local address that accepted.
    pub server: SocketAddr,
    /// The site the ClientHello selected, if it got that far.
    pub site: Option<Arc<SiteTls>>,
    /// What the handshake negotiated (None if it failed).
    pub tls: Option<HandshakeInfo>,
    /// From accept to the end of the handshake, in milliseconds.
    pub handshake_ms: f64,
    /// The server name the client sent.
    pub sni: Option<Box<str>>,
    /// The client's leaf certificate fields.
    pub leaf: Option<Arc<LeafFields>>,
    /// Text set by a connection function.
    pub custom_data: Option<Box<str>>,
    /// Set on closing records.
    pub close: Option<CloseStats>,
}

impl ConnectionRecord {
    /// The `connectionStatus` value.
    pub fn status(&self) -> &'static str {
        self.failure
            .as_ref()
            .map_or("Success", |(code, _)| code.status())
    }

    /// The value of field `index` of the connection log's field list.
    pub fn value(&self, index: usize) -> Value<'_> {
        let site_name = || {
            self.site
                .as_ref()
                .map_or(Value::Null, |s| Value::Str(&s.config.name))
        };
        let leaf = |get: fn(&LeafFields) -> &str| {
            self.leaf
                .as_deref()
                .map_or(Value::Null, |l| Value::Str(get(l)))
        };
        let close =
            |get: fn(&CloseStats) -> Value<'static>| self.close.as_ref().map_or(Value::Null, get);
        match index {
            0 => Value::Time(self.timestamp),
            1 => Value::Id(self.id),
            2 => Value::Str(self.status()),
            3 => Value::Ip(self.client.ip()),
            4 => Value::Num(u64::from(self.client.port())),
            5 => Value::Ip(self.server.ip()),
            6 | 18 => site_name(),
            8 => self.tls.map_or(Value::Null, |t| Value::Str(t.version)),
            9 => self
                .tls
                .and_then(|t| t.cipher)
                .map_or(Value::Null, Value::Str),
            10 => Value::Millis(self.handshake_ms),
            11 => self.sni.as_deref().map_or(Value::Null, Value::Str),
            12 => leaf(|l| &l.serial),
            13 => leaf(|l| &l.subject),
            14 => leaf(|l| &l.issuer),
            15 => leaf(|l| &l.validity),
            16 => self.custom_data.as_deref().map_or(Value::Null, Value::Str),
            17 => Value::Num(u64::from(self.server.port())),
            19 => self
                .tls
                .and_then(|t| t.alpn)
                .map_or(Value::Null, Value::Str),
            20 => self.tls.map_or(Value::Null, |t| Value::Bool(t.resumed)),
            21 => self
                .site
                .as_ref()
                .map_or(Value::Null, |s| Value::Str(s.policy.mode.as_str())),
            22 => leaf(|l| &l.sha256),
            23 => self
                .failure
                .as_ref()
                .map_or(Value::Null, |(_, detail)| Value::Str(detail)),
            24 => close(|c| Value::Millis(c.duration_ms)),
            25 => close(|c| Value::Num(c.bytes_in)),
            26 => close(|c| Value::Num(c.bytes_out)),
            27 => close(|c| Value::Num(u64::from(c.requests))),
            // 7: distributionTenantId (no tenants).
            _ => Value::Null,
        }
    }
}

/// One access log record.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the response was complete.
    pub timestamp: SystemTime,
    /// The connection's id.
    pub id: ConnectionId,
    /// The request's number on its connection, from 1.
    pub seq: u32,
    /// The client's address.
    pub client: IpAddr,
    /// Method, host and path, one after the other (`None`: the request head was refused
    /// before it could be read).
    pub request: Option<RequestLine>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'static str,
    /// The status sent to the client.
    pub status: u16,
    /// Plaintext bytes received from the client for this request.
    pub bytes_in: u64,
    /// Plaintext bytes sent to the client for this request.
    pub bytes_out: u64,
    /// From the request head to the end of the response, in milliseconds.
    pub duration_ms: f64,
    /// The origin address the request went to.
    pub origin: Option<SocketAddr>,
    /// From connecting to the origin to its response head, in milliseconds.
    pub origin_ms: Option<f64>,
    /// The client's leaf certificate (for its serial).
    pub leaf: Option<Arc<LeafFields>>,
    /// The site.
    pub site: Arc<SiteTls>,
}

/// A request's method, host and path in one allocation.
#[derive(Debug)]
pub struct RequestLine {
    text: Box<str>,
    method_end: u32,
    host_end: u32,
}

impl RequestLine {
    /// Copies the three parts (invalid UTF-8 becomes U+FFFD).
    pub fn new(method: &[u8], host: Option<&[u8]>, path: &[u8]) -> Self {
        let mut text = String::with_capacity(method.len() + path.len() + 32);
        text.push_str(&String::from_utf8_lossy(method));
        let method_end = text.len() as u32;
        if let Some(host) = host {
            text.push_str(&String::from_utf8_lossy(host));
        }
        let host_end = text.len() as u32;
        text.push_str(&String::from_utf8_lossy(path));
        Self {
            text: text.into_boxed_str(),
            method_end,
            host_end,
        }
    }

    fn part(&self, from: u32, to: u32) -> &str {
        self.text.get(from as usize..to as usize).unwrap_or("")
    }
}

impl AccessRecord {
    /// The value of field `index` of the access log's field list.
    pub fn value(&self, index: usize) -> Value<'_> {
        let line = |which: u8| {
            self.request.as_ref().map_or(Value::Null, |r| {
                let text = match which {
                    0 => r.part(0, r.method_end),
                    1 => r.part(r.method_end, r.host_end),
                    _ => r.part(r.host_end, r.text.len() as u32),
                };
                if text.is_empty() {
                    Value::Null
                } else {
                    Value::Str(text)
                }
            })
        };
        match index {
            0 => Value::Time(self.timestamp),
            1 => Value::Id(self.id),
            2 => Value::RequestId(self.id, self.seq),
            3 => Value::Ip(self.client),
            4 => line(0),
            5 => line(1),
            6 => line(2),
            7 => Value::Str(self.protocol),
            8 => Value::Num(u64::from(self.status)),
            9 => Value::Num(self.bytes_in),
            10 => Value::Num(self.bytes_out),
            11 => Value::Millis(self.duration_ms),
            12 => self.origin.map_or(Value::Null, Value::Addr),
            13 => self.origin_ms.map_or(Value::Null, Value::Millis),
            14 => self
                .leaf
                .as_deref()
                .map_or(Value::Null, |l| Value::Str(&l.serial)),
            15 => Value::Str(&self.site.config.name),
            _ => Value::Null,
        }
    }
}
