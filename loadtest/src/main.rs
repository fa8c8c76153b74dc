//! `portcullis-loadtest`: see `portcullis-loadtest --help`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use portcullis_loadtest::cli::Cli;

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("portcullis-loadtest: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load; `Ok(false)` when the run failed its error budget or completed nothing.
fn real_main() -> anyhow::Result<bool> {
    let (config, json) = Cli::parse().into_config().context("invalid arguments")?;
    portcullis_loadtest::stop_early_on_signals().context("installing signal handlers")?;
    let summary = portcullis_loadtest::run(&config).context("load run failed")?;
    if json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_table());
    }
    if !summary.passed {
        eprintln!(
            "portcullis-loadtest: FAIL: {} unexpected errors (max {}), {} completed",
            summary.unexpected_errors, summary.max_errors, summary.completed
        );
    }
    Ok(summary.passed)
}
