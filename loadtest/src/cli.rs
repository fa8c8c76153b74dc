//! Command-line interface: `portcullis-loadtest <handshake|keepalive|rate> [OPTIONS]`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::certs::CertSource;
use crate::config::{parse_target, Config, Mode};
use crate::errors::LoadError;
use crate::tls_client::TlsVersion;

/// mTLS load generator for Portcullis (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "portcullis-loadtest", version, about)]
pub struct Cli {
    /// The load pattern.
    #[command(subcommand)]
    pub mode: ModeArgs,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum ModeArgs {
    /// A new TCP + TLS connection (full handshake) per request, `Connection: close`.
    Handshake {
        /// Resume TLS sessions: one full handshake per client certificate, then resumptions
        /// (a full handshake where a session was offered counts as `not_resumed`).
        #[arg(long)]
        resume: bool,
        /// Options of every mode.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// C keep-alive connections with R sequential requests each.
    Keepalive {
        /// Connections.
        #[arg(long, short = 'c', default_value_t = 8)]
        connections: usize,
        /// Requests per connection.
        #[arg(long, short = 'r', default_value_t = 100)]
        requests: u64,
        /// Options of every mode.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Open loop at a fixed rate over keep-alive connections; latency from the intended send
    /// time (coordinated-omission corrected).
    Rate {
        /// Requests per second: `N` or `N/s`.
        #[arg(long, value_parser = parse_rate)]
        rate: f64,
        /// Connections (default: the thread count).
        #[arg(long, short = 'c')]
        connections: Option<usize>,
        /// Options of every mode.
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Options of every mode.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The server: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT (nothing else is accepted).
    #[arg(long)]
    pub target: String,
    /// SNI, Host header and the name the server certificate must match.
    #[arg(long, default_value = "localhost")]
    pub sni: String,
    /// Root CA (PEM) that verifies the server certificate.
    #[arg(long, required_unless_present = "insecure")]
    pub ca: Option<PathBuf>,
    /// Do not verify the server certificate.
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Worker threads.
    #[arg(long, short = 't', default_value_t = 2)]
    pub threads: usize,
    /// Run time in seconds (default 5 s; with only --count, at most 60 s).
    #[arg(long, short = 'd', value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Most operations (handshakes or requests) in total.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Timeout in seconds of every connect, read and write.
    #[arg(long, value_parser = parse_secs, default_value = "5")]
    pub timeout: Duration,
    /// Use TLS 1.2 (default: TLS 1.3).
    #[arg(long)]
    pub tls12: bool,
    /// Key exchange groups to offer, BoringSSL syntax (e.g. `X25519MLKEM768:X25519`).
    #[arg(long, default_value = crate::config::DEFAULT_GROUPS)]
    pub groups: String,
    /// Directory of client-*.pem (leaf, then intermediates) + client-*.key pairs.
    #[arg(long, conflicts_with = "generate")]
    pub certs: Option<PathBuf>,
    /// Mint N client certificates from --ca-cert / --ca-key.
    #[arg(long, requires_all = ["ca_cert", "ca_key"])]
    pub generate: Option<usize>,
    /// Issuing CA certificate (PEM) for --generate; every certificate in it is sent as chain.
    #[arg(long, requires = "generate")]
    pub ca_cert: Option<PathBuf>,
    /// Issuing CA private key (PKCS#8 PEM) for --generate.
    #[arg(long, requires = "generate")]
    pub ca_key: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not draw the progress line (it is only drawn when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Exit non-zero if more than this many unexpected errors occur.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Refused handshakes are the expected outcome; an accepted one is an error.
    #[arg(long)]
    pub expect_refused: bool,
}

impl Cli {
    /// The run configuration, and whether to print JSON.
    pub fn into_config(self) -> Result<(Config, bool), LoadError> {
        let (mode, common) = match self.mode {
            ModeArgs::Handshake { resume, common } => (Mode::Handshake { resume }, common),
            ModeArgs::Keepalive {
                connections,
                requests,
                common,
            } => (
                Mode::KeepAlive {
                    connections,
                    requests,
                },
                common,
            ),
            ModeArgs::Rate {
                rate,
                connections,
                common,
            } => (
                Mode::Rate {
                    rate,
                    connections: connections.unwrap_or(common.threads),
                },
                common,
            ),
        };
        let json = common.json;
        Ok((common.into_config(mode)?, json))
    }
}

impl CommonArgs {
    fn into_config(self, mode: Mode) -> Result<Config, LoadError> {
        let mut config = Config::new(mode, parse_target(&self.target)?);
        config.sni = self.sni;
        config.ca = self.ca;
        config.path = self.path;
        config.threads = self.threads;
        config.duration = self.duration;
        config.count = self.count;
        config.timeout = self.timeout;
        config.groups = self.groups;
        config.version = if self.tls12 {
            TlsVersion::Tls12
        } else {
            TlsVersion::Tls13
        };
        config.certs = match (self.certs, self.generate, self.ca_cert, self.ca_key) {
            (Some(dir), _, _, _) => CertSource::Dir(dir),
            (None, Some(count), Some(ca_cert), Some(ca_key)) => CertSource::Generate {
                count,
                ca_cert,
                ca_key,
            },
            _ => CertSource::None,
        };
        config.expect_refused = self.expect_refused;
        config.max_errors = self.max_errors;
        config.progress = !self.no_progress;
        config.validate()?;
        Ok(config)
    }
}

/// Parses seconds (`2`, `0.5`, `1.5s`).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let number = text.trim().trim_end_matches('s');
    let secs: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a rate (`500`, `500/s`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    let rate: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (N or N/s)"))?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("{text:?}: the rate must be > 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<(Config, bool), String> {
        let cli =
            Cli::try_parse_from(std::iter::once("portcullis-loadtest").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn modes_and_options() {
        let (config, json) = parse(&[
            "handshake",
            "--resume",
            "--target",
            "127.0.0.1:8443",
            "--ca",
            "root.pem",
            "--generate",
            "4",
            "--ca-cert",
            "ca.pem",
            "--ca-key",
            "ca.key",
            "--tls12",
            "--duration",
            "1.5",
            "--json",
            "--max-errors",
            "3",
            "--timeout",
            "2s",
        ])
        .expect("parse");
        assert!(json);
        assert_eq!(config.mode, Mode::Handshake { resume: true });
        assert_eq!(config.version, TlsVersion::Tls12);
        assert_eq!(config.duration, Some(Duration::from_millis(1500)));
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.max_errors, 3);
        assert!(config.progress, "stderr progress unless --no-progress");
        assert!(matches!(
            config.certs,
            CertSource::Generate { count: 4, .. }
        ));

        let (config, _) = parse(&[
            "keepalive",
            "-c",
            "3",
            "-r",
            "7",
            "--target",
            "localhost:9",
            "--insecure",
            "--certs",
            "dir",
            "--expect-refused",
            "--path",
            "/x",
        ])
        .expect("parse");
        assert_eq!(
            config.mode,
            Mode::KeepAlive {
                connections: 3,
                requests: 7
            }
        );
        assert_eq!(config.ca, None);
        assert!(config.expect_refused);
        assert_eq!(config.certs, CertSource::Dir("dir".into()));
        assert_eq!(config.path, "/x");

        let (config, _) = parse(&[
            "rate",
            "--rate",
            "250/s",
            "--target",
            "[::1]:9",
            "--insecure",
            "-t",
            "4",
        ])
        .expect("parse");
        assert_eq!(
            config.mode,
            Mode::Rate {
                rate: 250.0,
                connections: 4
            }
        );
    }

    #[test]
    fn refusals() {
        let err = parse(&["handshake", "--target", "10.0.0.1:443", "--insecure"])
            .expect_err("non-loopback");
        assert!(err.contains("only loopback"), "{err}");
        assert!(
            parse(&["handshake", "--target", "127.0.0.1:1"]).is_err(),
            "--ca or --insecure"
        );
        assert!(parse(&[
            "handshake",
            "--target",
            "127.0.0.1:1",
            "--insecure",
            "--generate",
            "2"
        ])
        .is_err());
        assert!(parse(&[
            "rate",
            "--rate",
            "0",
            "--target",
            "127.0.0.1:1",
            "--insecure"
        ])
        .is_err());
        assert!(parse(&[
            "handshake",
            "--target",
            "127.0.0.1:1",
            "--insecure",
            "--threads",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("x").is_err());
        assert_eq!(parse_rate("1000/s"), Ok(1000.0));
        assert!(parse_rate("inf").is_err());
    }
}
