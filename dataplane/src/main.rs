//! The `portcullis` command: run the data plane, check a configuration, or run the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    Demo {
        /// Where to write the demo PKI and configuration.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("portcullis-demo"))]
        dir: PathBuf,
        /// Address the data plane listens on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => portcullis::run::run(config).map_err(anyhow::Error::from),
        Command::Check { config } => check(config),
        Command::Demo { dir, listen } => demo(dir, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: PathBuf) -> anyhow::Result<()> {
    let snapshot = portcullis::run::load(&config)
        .map_err(|errors| anyhow::anyhow!("{} has errors:\n{errors}", config.display()))?;
    println!(
        "{}: OK ({} site(s), {} worker(s))",
        config.display(),
        snapshot.sites().len(),
        snapshot.config.server.workers
    );
    Ok(())
}

fn demo(dir: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    let demo = portcullis::demo::Demo::prepare(&dir, listen).context("preparing the demo")?;
    eprintln!("{}", demo.instructions(listen));
    portcullis::run::run(demo.config_path.clone())?;
    Ok(())
}
