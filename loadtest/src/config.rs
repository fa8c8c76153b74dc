//! What a run does ([`Config`], [`Mode`]) and the limits every run is held to.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::certs::CertSource;
use crate::errors::LoadError;
use crate::tls_client::TlsVersion;

/// Most worker threads.
pub const MAX_THREADS: usize = 64;
/// Most keep-alive connections.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Longest `--duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Highest `--rate` (requests per second).
pub const MAX_RATE: f64 = 1_000_000.0;
/// Longest per-operation timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// Duration of a run given neither a duration nor a count.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// Time limit of a run given a count but no duration.
pub const COUNT_ONLY_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The load pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// A new TCP + TLS connection per request (`Connection: close`).
    Handshake {
        /// Resume the TLS session cached for the client certificate (after a first full
        /// handshake with it); a full handshake where a session was offered is an error of
        /// kind `not_resumed`.
        resume: bool,
    },
    /// `connections` keep-alive connections with `requests` sequential requests each, all
    /// connections with a request in flight at once.
    KeepAlive {
        /// How many connections (spread over the threads; each thread runs its own as an
        /// event loop).
        connections: usize,
        /// Requests per connection.
        requests: u64,
    },
    /// Open loop: `rate` requests per second over `connections` keep-alive connections, for
    /// the duration; latency is measured from each request's intended send time.
    Rate {
        /// Requests per second.
        rate: f64,
        /// How many connections.
        connections: usize,
    },
}

impl Mode {
    /// `handshake`, `keepalive` or `rate`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Handshake { .. } => "handshake",
            Mode::KeepAlive { .. } => "keepalive",
            Mode::Rate { .. } => "rate",
        }
    }
}

/// Everything a run needs. Build one with [`Config::new`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The load pattern.
    pub mode: Mode,
    /// The server: a loopback address only.
    pub target: SocketAddr,
    /// SNI, `Host` header and the name the server certificate must match.
    pub sni: String,
    /// Trust anchors (PEM) for the server certificate; `None` skips server verification.
    pub ca: Option<PathBuf>,
    /// The request path.
    pub path: String,
    /// Worker threads.
    pub threads: usize,
    /// How long to run (the run stops starting operations after it).
    pub duration: Option<Duration>,
    /// Most operations (handshakes or requests) in total.
    pub count: Option<u64>,
    /// Timeout of each connect, read and write.
    pub timeout: Duration,
    /// The pinned TLS version.
    pub version: TlsVersion,
    /// Key exchange groups offered, BoringSSL syntax (default `X25519:P-256`, what nginx and
    /// HAProxy on OpenSSL 3.0 negotiate; `X25519MLKEM768:X25519` adds the post-quantum hybrid).
    pub groups: String,
    /// The client certificates presented round-robin.
    pub certs: CertSource,
    /// A refused handshake is the expected outcome (and an accepted one an error).
    pub expect_refused: bool,
    /// Most unexpected errors for [`crate::Summary::passed`].
    pub max_errors: u64,
    /// Draw the live progress line on stderr (only when stderr is a terminal).
    pub progress: bool,
}

/// Key exchange groups offered unless configured otherwise.
pub const DEFAULT_GROUPS: &str = "X25519:P-256";

impl Config {
    /// A configuration for `mode` against `target` with the defaults: SNI `localhost`, no
    /// server verification, path `/`, 2 threads, 5 s, 5 s timeout, TLS 1.3, no client
    /// certificate, no expected refusals, zero tolerated errors, no progress line.
    pub fn new(mode: Mode, target: SocketAddr) -> Self {
        Config {
            mode,
            target,
            sni: "localhost".to_owned(),
            ca: None,
            path: "/".to_owned(),
            threads: 2,
            duration: None,
            count: None,
            timeout: Duration::from_secs(5),
            version: TlsVersion::Tls13,
            groups: DEFAULT_GROUPS.to_owned(),
            certs: CertSource::None,
            expect_refused: false,
            max_errors: 0,
            progress: false,
        }
    }

    /// Checks the target is loopback and every setting is within its limits.
    pub fn validate(&self) -> Result<(), LoadError> {
        ensure_loopback(self.target)?;
        let invalid = |msg: String| Err(LoadError::InvalidConfig(msg));
        if self.threads == 0 || self.threads > MAX_THREADS {
            return invalid(format!("threads must be 1..={MAX_THREADS}"));
        }
        if let Some(d) = self.duration {
            if d.is_zero() || d > MAX_DURATION {
                return invalid(format!("duration must be > 0 and <= {MAX_DURATION:?}"));
            }
        }
        if self.count == Some(0) {
            return invalid("count must be > 0".into());
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return invalid(format!("timeout must be > 0 and <= {MAX_TIMEOUT:?}"));
        }
        if !self.path.starts_with('/') || self.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return invalid(format!(
                "path {:?} must start with / and have no spaces",
                self.path
            ));
        }
        if self.sni.is_empty() || self.sni.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return invalid(format!("bad SNI {:?}", self.sni));
        }
        match self.mode {
            Mode::Handshake { .. } => {}
            Mode::KeepAlive {
                connections,
                requests,
            } => {
                check_connections(connections)?;
                if requests == 0 {
                    return invalid("requests per connection must be > 0".into());
                }
            }
            Mode::Rate { rate, connections } => {
                check_connections(connections)?;
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    return invalid(format!("rate must be > 0 and <= {MAX_RATE}"));
                }
            }
        }
        Ok(())
    }

    /// How long the run may start operations: the duration, else [`DEFAULT_DURATION`]
    /// without a count, or [`COUNT_ONLY_TIME_LIMIT`] with one.
    pub fn time_limit(&self) -> Duration {
        match (self.duration, self.count) {
            (Some(d), _) => d,
            (None, None) => DEFAULT_DURATION,
            (None, Some(_)) => COUNT_ONLY_TIME_LIMIT,
        }
    }

    /// The most operations the run will attempt (`None`: only the time limits it).
    pub fn op_limit(&self) -> Option<u64> {
        let mode_limit = match self.mode {
            Mode::KeepAlive {
                connections,
                requests,
            } => Some((connections as u64).saturating_mul(requests)),
            _ => None,
        };
        match (self.count, mode_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn check_connections(connections: usize) -> Result<(), LoadError> {
    if connections == 0 || connections > MAX_CONNECTIONS {
        return Err(LoadError::InvalidConfig(format!(
            "connections must be 1..={MAX_CONNECTIONS}"
        )));
    }
    Ok(())
}

/// Whether `ip` is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuses any target that is not loopback.
pub fn ensure_loopback(target: SocketAddr) -> Result<(), LoadError> {
    if is_loopback(target.ip()) {
        Ok(())
    } else {
        Err(LoadError::NotLoopback { target })
    }
}

/// Parses `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT` into a loopback address; any other
/// host, or a name resolving to anything but loopback, is refused.
pub fn parse_target(text: &str) -> Result<SocketAddr, LoadError> {
    let invalid = |reason: &str| LoadError::InvalidTarget {
        target: text.to_owned(),
        reason: reason.to_owned(),
    };
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let (host, _) = text
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected HOST:PORT"))?;
            if !host.eq_ignore_ascii_case("localhost") {
                return Err(invalid(
                    "the host must be a loopback IP address or localhost",
                ));
            }
            let addrs: Vec<SocketAddr> = text
                .to_socket_addrs()
                .map_err(|e| invalid(&e.to_string()))?
                .collect();
            if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
                return Err(LoadError::NotLoopback { target: *bad });
            }
            let first = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first());
            *first.ok_or_else(|| invalid("localhost did not resolve"))?
        }
    };
    if addr.port() == 0 {
        return Err(invalid("port 0"));
    }
    ensure_loopback(addr)?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:8443").expect("v4"),
            "127.0.0.1:8443".parse().expect("addr")
        );
        assert!(parse_target("127.1.2.3:1").is_ok());
        assert!(parse_target("[::1]:8443").is_ok());
        assert!(parse_target("[::ffff:127.0.0.1]:8443").is_ok());
        assert!(parse_target("localhost:8443")
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false));
        for refused in [
            "10.0.0.1:443",
            "192.168.1.1:443",
            "8.8.8.8:443",
            "[::2]:443",
            "0.0.0.0:443",
        ] {
            assert!(
                matches!(parse_target(refused), Err(LoadError::NotLoopback { .. })),
                "{refused}"
            );
        }
        for invalid in ["example.com:443", "127.0.0.1", "127.0.0.1:0", "nonsense"] {
            assert!(
                matches!(parse_target(invalid), Err(LoadError::InvalidTarget { .. })),
                "{invalid}"
            );
        }
    }

    #[test]
    fn validation_and_limits() {
        let target: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut config = Config::new(Mode::Handshake { resume: false }, target);
        assert!(config.validate().is_ok());
        assert_eq!(config.time_limit(), DEFAULT_DURATION);
        assert_eq!(config.op_limit(), None);
        config.count = Some(10);
        assert_eq!(config.time_limit(), COUNT_ONLY_TIME_LIMIT);
        assert_eq!(config.op_limit(), Some(10));

        config.target = "10.1.1.1:1".parse().expect("addr");
        assert!(matches!(
            config.validate(),
            Err(LoadError::NotLoopback { .. })
        ));
        config.target = target;
        config.threads = 0;
        assert!(config.validate().is_err());
        config.threads = 2;
        config.duration = Some(Duration::from_secs(3600));
        assert!(config.validate().is_err());
        config.duration = Some(Duration::from_secs(1));
        config.path = "no-slash".into();
        assert!(config.validate().is_err());
        config.path = "/".into();

        config.mode = Mode::KeepAlive {
            connections: 4,
            requests: 3,
        };
        assert!(config.validate().is_ok());
        assert_eq!(config.op_limit(), Some(10));
        config.count = None;
        assert_eq!(config.op_limit(), Some(12));
        config.mode = Mode::Rate {
            rate: 0.0,
            connections: 1,
        };
        assert!(config.validate().is_err());
        config.mode = Mode::Rate {
            rate: f64::NAN,
            connections: 1,
        };
        assert!(config.validate().is_err());
    }
}
