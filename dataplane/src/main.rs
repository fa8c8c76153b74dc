//! The `portcullis` command: run the data plane, check a configuration, run the demo,
//! revoke and unrevoke certificates through the admin API, or test a connection function.

#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use portcullis::admin::{client, AdminTarget};
use portcullis_config::DiagnosticsFormat;

/// Portcullis: a viewer-mTLS edge data plane.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the data plane with a configuration file.
    Run {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file (and every file it names) without starting.
    Check {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generate a demo PKI, start an echo origin and run the data plane against them.
    #[cfg(feature = "demo")]
    Demo {
        /// Where to write the demo PKI and configuration.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("portcullis-demo"))]
        dir: PathBuf,
        /// Address the data plane listens on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
    /// Upgrade a running `portcullis run` to the binary now at its path without dropping a
    /// connection (sends SIGUSR2 and waits for the outcome).
    Upgrade {
        /// The running process (under systemd: `systemctl show -p MainPID --value portcullis`).
        #[arg(long)]
        pid: u32,
        /// Seconds to wait for the new process to take over and the old one to drain.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Revoke a client certificate serial through a running data plane's admin API.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The revocation store.
        #[arg(long)]
        store: String,
        /// The certificate serial (as given; the server normalises it).
        serial: String,
        /// Why the certificate is revoked (stored as the entry's value).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a client certificate serial's revocation through the admin API.
    Unrevoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The revocation store.
        #[arg(long)]
        store: String,
        /// The certificate serial (as given; the server normalises it).
        serial: String,
    },
    /// Connection functions.
    Function {
        #[command(subcommand)]
        command: FunctionCommand,
    },
}

#[derive(Debug, Subcommand)]
enum FunctionCommand {
    /// Run a connection function against a test connection and print the decision, the
    /// custom log data, the console lines and the time used. Exit status 0: allowed, 2:
    /// refused (denied or failed), 1: the function or the files could not be used.
    Test {
        /// The function (JavaScript module defining connectionHandler).
        #[arg(long)]
        file: PathBuf,
        /// The test connection: JSON in the shape of the event (clientCertificate, clientIp,
        /// endpoint, distributionId, connectionId).
        #[arg(long)]
        event: PathBuf,
        /// The key-value store cf.kvs() reads, in CloudFront's import format.
        #[arg(long)]
        kvs: Option<PathBuf>,
        /// The execution time limit.
        #[arg(long, default_value = "5ms")]
        time_limit: String,
    },
}

/// How to reach the admin API.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// The admin API: `127.0.0.1:9901` or `unix:/path/to/admin.sock`.
    #[arg(long)]
    admin: AdminTarget,
    /// A file holding the admin API's bearer token (the server's `admin.token_file`).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl AdminArgs {
    /// The token from `--token-file`, without surrounding whitespace.
    fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        Ok(Some(text.trim().to_owned()))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Diagnostics go to standard error, human-readable or JSON as `[diagnostics]` says; the
    // configuration is only peeked at here (the run reports its errors properly).
    let format = match &cli.command {
        Command::Run { config } | Command::Check { config } => {
            portcullis_config::peek_diagnostics(config).format
        }
        _ => DiagnosticsFormat::Human,
    };
    init_diagnostics(format);
    let result = match cli.command {
        Command::Run { config } => portcullis::run::run(config).map_err(anyhow::Error::from),
        Command::Check { config } => check(config),
        #[cfg(feature = "demo")]
        Command::Demo { dir, listen } => demo(dir, listen),
        Command::Upgrade { pid, timeout } => upgrade(pid, std::time::Duration::from_secs(timeout)),
        Command::Revoke {
            admin,
            store,
            serial,
            reason,
        } => admin_call(&admin, "PUT", &store, &serial, reason.as_bytes()),
        Command::Unrevoke {
            admin,
            store,
            serial,
        } => admin_call(&admin, "DELETE", &store, &serial, b""),
        Command::Function {
            command:
                FunctionCommand::Test {
                    file,
                    event,
                    kvs,
                    time_limit,
                },
        } => match function_test(&file, &event, kvs.as_deref(), &time_limit) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(2),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_diagnostics(format: DiagnosticsFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, fmt, Layer, Registry};

    // `RUST_LOG` with only `target=level` directives (the usual case) becomes a static
    // `Targets` filter: every connection runs inside a span entered at each poll, and
    // `EnvFilter` takes a lock and a map lookup on every enter and exit to support span-field
    // directives. Those (`[span{field=value}]=level`) still work, through `EnvFilter`.
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let spec = if spec.trim().is_empty() {
        "info"
    } else {
        spec.as_str()
    };
    let (targets, env_filter) = match spec.parse::<filter::Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (
            None,
            Some(
                filter::EnvFilter::try_new(spec).unwrap_or_else(|_| filter::EnvFilter::new("info")),
            ),
        ),
    };
    // A diagnostic that cannot be written (standard error on a full disk or a closed pipe) is
    // dropped: tracing's own report of that failure would go to the same standard error
    // through `eprintln!`, which panics when it fails, taking a worker down with it.
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let layer = match format {
        DiagnosticsFormat::Json => layer.json().with_current_span(true).boxed(),
        DiagnosticsFormat::Human => layer.boxed(),
    };
    Registry::default()
        .with(targets)
        .with(env_filter)
        .with(layer)
        .init();
}

fn check(config: PathBuf) -> anyhow::Result<()> {
    let (snapshot, _) = portcullis::run::load(&config)
        .map_err(|errors| anyhow::anyhow!("{} has errors:\n{errors}", config.display()))?;
    for warning in snapshot.config.warnings() {
        eprintln!("warning: {warning}");
    }
    for warning in portcullis::run::private_key_warnings(&snapshot.config) {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}: OK ({} site(s), {} worker(s))",
        config.display(),
        snapshot.sites().len(),
        snapshot.config.server.workers
    );
    Ok(())
}

#[cfg(feature = "demo")]
fn demo(dir: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    let demo = portcullis::demo::Demo::prepare(&dir, listen).context("preparing the demo")?;
    eprintln!("{}", demo.instructions(listen));
    portcullis::run::run_without_upgrades(demo.config_path.clone())?;
    Ok(())
}

fn upgrade(pid: u32, timeout: std::time::Duration) -> anyhow::Result<()> {
    let new = portcullis::upgrade::cli::upgrade(pid, timeout)?;
    println!("upgraded: process {pid} handed over to process {new} and exited after its drain");
    Ok(())
}

/// `portcullis function test`: true when the function allowed the test connection.
fn function_test(
    file: &std::path::Path,
    event: &std::path::Path,
    kvs: Option<&std::path::Path>,
    time_limit: &str,
) -> anyhow::Result<bool> {
    use portcullis::function::{ConnectionFunction, KvsSource, TestEvent};
    use portcullis::tls::Refusal;

    let source = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if source.len() > portcullis_config::MAX_FUNCTION_BYTES {
        anyhow::bail!(
            "{}: function is {} bytes long, more than the limit of {} bytes",
            file.display(),
            source.len(),
            portcullis_config::MAX_FUNCTION_BYTES
        );
    }
    let source = String::from_utf8(source)
        .map_err(|_| anyhow::anyhow!("{}: function is not valid UTF-8", file.display()))?;
    let limit = humantime_limit(time_limit)?;
    let kvs = kvs
        .map(KvsSource::from_import_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--kvs {e}"))?;
    let name = file.file_name().map_or_else(
        || "function.js".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let function = ConnectionFunction::new(&name, source.into(), limit, kvs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let text = std::fs::read(event).with_context(|| format!("reading {}", event.display()))?;
    let event: TestEvent = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not an event", event.display()))?;
    let leaf = event.leaf();
    let report = function.call_collecting_console(&event.input(leaf.as_ref()));
    let allowed = report.decision.is_ok();
    match &report.decision {
        Ok(()) => {
            println!("decision: allow");
            println!("connectionStatus: Success");
        }
        Err(refusal) => {
            println!(
                "decision: {}",
                if refusal.is_denial() { "deny" } else { "error" }
            );
            let refusal = Refusal::Function(refusal.clone());
            println!("connectionStatus: {}", refusal.code().status());
            println!("failureDetail: {refusal}");
        }
    }
    match &report.custom_data {
        Some(text) => println!("connectionLogCustomData: {text}"),
        None => println!("connectionLogCustomData: -"),
    }
    println!("console: {} line(s)", report.console.len());
    for line in &report.console {
        println!("  {line}");
    }
    let used = report.elapsed.as_secs_f64() * 1e3;
    let limit_ms = limit.as_secs_f64() * 1e3;
    println!(
        "time used: {used:.3} ms of {limit_ms} ms ({:.1} %)",
        used / limit_ms * 100.0
    );
    Ok(allowed)
}

/// `5ms`, `500us`, `1s` (the range of the configuration's `time_limit`).
fn humantime_limit(text: &str) -> anyhow::Result<std::time::Duration> {
    let limit = portcullis_config::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("--time-limit: {e}"))?;
    if limit < std::time::Duration::from_micros(100) || limit > std::time::Duration::from_secs(1) {
        anyhow::bail!("--time-limit {text:?}: must be in range 100us..=1s");
    }
    Ok(limit)
}

/// Sends one revocation request to the admin API and prints the JSON answer; a non-2xx
/// status is an error carrying the server's message.
fn admin_call(
    args: &AdminArgs,
    method: &str,
    store: &str,
    serial: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let admin = &args.admin;
    let token = args.token()?;
    let path = client::revocation_path(store, serial);
    let (status, response) =
        client::request_with_token(admin, token.as_deref(), method, &path, body)
            .with_context(|| format!("{method} {path} on {admin}"))?;
    if !(200..300).contains(&status) {
        anyhow::bail!(
            "{method} {path} on {admin}: HTTP {status}: {}",
            client::error_message(&response)
        );
    }
    println!("{}", response.trim_end());
    Ok(())
}
