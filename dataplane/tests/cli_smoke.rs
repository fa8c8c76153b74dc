//! The binary starts and reports a missing configuration file by name. (Being an integration
//! test of this package, it also makes `cargo test --workspace` build the `portcullis` binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

#[test]
fn version_and_missing_config_are_reported() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .expect("run portcullis");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("portcullis "));

    let out = Command::new(bin)
        .args(["check", "--config", "/nonexistent/portcullis.toml"])
        .output()
        .expect("run portcullis");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/portcullis.toml"), "{err}");
}
