//! `[server.http2]` (HTTP/2 limits for viewers) and the per-site `alpn` list.

use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::error::Collector;

/// An application protocol a site may offer in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppProtocol {
    /// `h2`: HTTP/2 over TLS.
    H2,
    /// `http/1.1`.
    Http11,
}

impl AppProtocol {
    /// The ALPN identifier (`"h2"`, `"http/1.1"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H2 => "h2",
            Self::Http11 => "http/1.1",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "h2" => Some(Self::H2),
            "http/1.1" => Some(Self::Http11),
            _ => None,
        }
    }
}

/// The protocols a site offers when no `alpn` is configured, in preference order.
pub const DEFAULT_ALPN: [AppProtocol; 2] = [AppProtocol::H2, AppProtocol::Http11];

/// HTTP/2 settings from `[server.http2]`, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// Streams a viewer may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; default 128,
    /// 1..=1000). More are refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE; default
    /// `server.limits.max_header_bytes`, 1024..=1048576). Larger gets 431; more than four
    /// times larger (an HPACK bomb) ends the connection.
    pub max_header_list_size: u32,
    /// Flow-control window of each request stream (default 262144, 65535..=16777215): the
    /// most request body a stream buffers before the origin takes it.
    pub initial_stream_window: u32,
    /// Flow-control window of the whole connection (default 1048576, 65535..=67108864).
    pub initial_connection_window: u32,
    /// A stream that makes no progress for this long (no request body from the viewer, no
    /// window for the response) is reset (default 30s, 100ms..=24h).
    pub stream_idle_timeout: Duration,
    /// Streams a viewer may reset before their response is complete, counted over the
    /// connection; beyond it, when resets are more than half of the streams opened, the
    /// connection is closed with ENHANCE_YOUR_CALM (rapid reset; default 100, 1..=100000).
    pub max_early_resets: u32,
    /// Control frames (PING, SETTINGS, PRIORITY, RST_STREAM, WINDOW_UPDATE, empty DATA) a
    /// viewer may send per second before the connection is closed with ENHANCE_YOUR_CALM
    /// (default 1000, 10..=1000000).
    pub max_control_frames_per_second: u32,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            max_header_list_size: 16384,
            initial_stream_window: 262_144,
            initial_connection_window: 1_048_576,
            stream_idle_timeout: Duration::from_secs(30),
            max_early_resets: 100,
            max_control_frames_per_second: 1000,
        }
    }
}

/// `[server.http2]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp2 {
    pub(crate) max_concurrent_streams: Option<i64>,
    pub(crate) max_header_list_size: Option<i64>,
    pub(crate) initial_stream_window: Option<i64>,
    pub(crate) initial_connection_window: Option<i64>,
    pub(crate) stream_idle_timeout: Option<String>,
    pub(crate) max_early_resets: Option<i64>,
    pub(crate) max_control_frames_per_second: Option<i64>,
}

pub(crate) fn validate_http2(
    raw: &RawHttp2,
    max_header_bytes: usize,
    c: &mut Collector<'_>,
) -> Http2Settings {
    let d = Http2Settings {
        max_header_list_size: u32::try_from(max_header_bytes).unwrap_or(16384),
        ..Http2Settings::default()
    };
    let mut int = |name: &str, value: Option<i64>, min: i64, max: i64, default: u32| -> u32 {
        let Some(v) = value else { return default };
        if (min..=max).contains(&v) {
            u32::try_from(v).unwrap_or(default)
        } else {
            c.config(
                format!("server.http2.{name}"),
                format!("must be in range {min}..={max}, got {v}"),
            );
            default
        }
    };
    let max_concurrent_streams = int(
        "max_concurrent_streams",
        raw.max_concurrent_streams,
        1,
        1000,
        d.max_concurrent_streams,
    );
    let max_header_list_size = int(
        "max_header_list_size",
        raw.max_header_list_size,
        1024,
        1_048_576,
        d.max_header_list_size,
    );
    let initial_stream_window = int(
        "initial_stream_window",
        raw.initial_stream_window,
        65_535,
        16_777_215,
        d.initial_stream_window,
    );
    let initial_connection_window = int(
        "initial_connection_window",
        raw.initial_connection_window,
        65_535,
        67_108_864,
        d.initial_connection_window,
    );
    let max_early_resets = int(
        "max_early_resets",
        raw.max_early_resets,
        1,
        100_000,
        d.max_early_resets,
    );
    let max_control_frames_per_second = int(
        "max_control_frames_per_second",
        raw.max_control_frames_per_second,
        10,
        1_000_000,
        d.max_control_frames_per_second,
    );
    let stream_idle_timeout = match &raw.stream_idle_timeout {
        None => d.stream_idle_timeout,
        Some(text) => match parse_duration(text) {
            Ok(t) if t >= Duration::from_millis(100) && t <= Duration::from_secs(24 * 3600) => t,
            Ok(_) => {
                c.config(
                    "server.http2.stream_idle_timeout",
                    format!("must be in range 100ms..=24h, got {text:?}"),
                );
                d.stream_idle_timeout
            }
            Err(reason) => {
                c.config("server.http2.stream_idle_timeout", reason);
                d.stream_idle_timeout
            }
        },
    };
    Http2Settings {
        max_concurrent_streams,
        max_header_list_size,
        initial_stream_window,
        initial_connection_window,
        stream_idle_timeout,
        max_early_resets,
        max_control_frames_per_second,
    }
}

/// Checks a site's `alpn` list (`key` is `site[i].alpn`): known protocols, none twice, at
/// least one. Absent: [`DEFAULT_ALPN`].
pub(crate) fn validate_alpn(
    raw: Option<&[String]>,
    key: &str,
    c: &mut Collector<'_>,
) -> Vec<AppProtocol> {
    let Some(raw) = raw else {
        return DEFAULT_ALPN.to_vec();
    };
    if raw.is_empty() {
        c.config(
            key,
            "must name at least one protocol (\"h2\", \"http/1.1\")",
        );
        return DEFAULT_ALPN.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        match AppProtocol::parse(name.trim()) {
            Some(p) if out.contains(&p) => {
                c.config(format!("{key}[{i}]"), format!("{name:?} is listed twice"))
            }
            Some(p) => out.push(p),
            None => c.config(
                format!("{key}[{i}]"),
                format!("unknown protocol {name:?} (expected \"h2\" or \"http/1.1\")"),
            ),
        }
    }
    if out.is_empty() {
        return DEFAULT_ALPN.to_vec();
    }
    out
}
