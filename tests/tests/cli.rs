//! The command line: `check` reports configuration errors by key; `demo` works out of the box.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_e2e::{config_text, origin, portcullis_bin, portcullis_cli, SiteConfig, TestPki};

/// The configuration of one `required` site in front of `origin`, nothing else set.
fn one_required_site(pki: &TestPki, origin: std::net::SocketAddr) -> String {
    config_text(
        pki,
        &[SiteConfig::new(
            origin,
            "required",
            Some(pki.path("bundle.pem")),
        )],
        "",
    )
}

#[test]
fn check_accepts_a_good_config_and_names_the_key_of_a_broken_one() {
    let pki = TestPki::new();
    let origin = origin();
    let good = one_required_site(&pki, origin.addr());
    let good_path = pki.write("good.toml", &good);
    let out = portcullis_cli(&["check", "--config", good_path.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let broken = good.replace("mode = \"required\"", "mode = \"sometimes\"");
    let broken_path = pki.write("broken.toml", &broken);
    let out = portcullis_cli(&["check", "--config", broken_path.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site[0].mtls.mode"), "{err}");
    assert!(err.contains("broken.toml"), "{err}");

    let missing = good.replace("bundle.pem", "no-such-bundle.pem");
    let missing_path = pki.write("missing.toml", &missing);
    let out = portcullis_cli(&["run", "--config", missing_path.to_str().expect("path")]);
    assert!(!out.status.success(), "run must refuse a broken config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site[0].mtls.trust_store"), "{err}");
    assert!(err.contains("no-such-bundle.pem"), "{err}");

    // A key that does not belong to the server certificate.
    let stranger = TestPki::client(&pki.intermediate, "stranger");
    let (_, stranger_key) = pki.write_client("stranger", &stranger, &[]);
    let mismatched = good.replace(
        &format!("{:?}", pki.path("server.key")),
        &format!("{stranger_key:?}"),
    );
    assert_ne!(mismatched, good);
    let mismatched_path = pki.write("mismatched.toml", &mismatched);
    let out = portcullis_cli(&["run", "--config", mismatched_path.to_str().expect("path")]);
    assert!(
        !out.status.success(),
        "run must refuse a key of another certificate"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site[0].private_key"), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
}

#[test]
fn demo_serves_the_demo_client_and_refuses_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = Command::new(portcullis_bin())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line == "ready" {
            ready = true;
            break;
        }
    }
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
            ])
            .arg(dir.path().join("root-ca.pem"))
            .args(extra)
            .arg(format!("https://localhost:{port}/"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .output()
            .expect("curl")
    };
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("client.key");
    let ok = curl(&[
        "--cert",
        cert.to_str().expect("p"),
        "--key",
        key.to_str().expect("p"),
    ]);
    let none = curl(&[]);
    let ecert = dir.path().join("expired-client.pem");
    let ekey = dir.path().join("expired-client.key");
    let expired = curl(&[
        "--cert",
        ecert.to_str().expect("p"),
        "--key",
        ekey.to_str().expect("p"),
    ]);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert!(ready, "demo did not become ready");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    assert_ne!(String::from_utf8_lossy(&none.stdout), "200");
    assert_ne!(String::from_utf8_lossy(&expired.stdout), "200");
}

#[test]
fn a_second_instance_on_the_same_port_is_refused_instead_of_sharing_it() {
    let pki = TestPki::new();
    let origin = origin();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let text = config_text(
        &pki,
        &[SiteConfig::new(
            origin.addr(),
            "optional",
            Some(pki.path("bundle.pem")),
        )],
        "",
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let first = portcullis_e2e::Portcullis::start(&text);
    assert_eq!(first.addr.port(), port);
    let path = pki.write("second.toml", &text);
    let out = Command::new("timeout")
        .arg("30")
        .arg(portcullis_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("second instance");
    assert!(!out.status.success(), "the second instance started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn check_refuses_absurd_values_for_this_machine() {
    let pki = TestPki::new();
    let origin = origin();
    let good = config_text(
        &pki,
        &[SiteConfig::new(
            origin.addr(),
            "required",
            Some(pki.path("bundle.pem")),
        )],
        "cpu_affinity = [999]\n[server.timeouts]\nhandshake = \"1ns\"\n",
    )
    .replace("workers = 2", "workers = 100000");
    let path = pki.write("absurd.toml", &good);
    let out = portcullis_cli(&["check", "--config", path.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.workers",
        "server.cpu_affinity[0]",
        "server.timeouts.handshake",
    ] {
        assert!(
            err.contains(&format!("absurd.toml: {key}: ")),
            "{key}:\n{err}"
        );
    }
    assert!(err.contains("CPU 999 is not available"), "{err}");
}

#[test]
fn check_warns_about_a_private_key_its_group_or_others_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let pki = TestPki::new();
    let origin = origin();
    let config = one_required_site(&pki, origin.addr());
    let path = pki.write("portcullis.toml", &config);
    let key = pki.path("server.key");
    let check = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = portcullis_cli(&["check", "--config", path.to_str().expect("path")]);
        assert!(out.status.success(), "a warning is not an error");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for private in [0o600, 0o400] {
        let err = check(private);
        assert!(!err.contains("warning"), "mode {private:o}: {err}");
    }
    let err = check(0o640);
    assert!(
        err.contains("site[0].private_key: the private key is readable by its group (mode 0640)"),
        "{err}"
    );
    assert!(err.contains("server.key"), "{err}");
    let err = check(0o604);
    assert!(err.contains("readable by every user (mode 0604)"), "{err}");
}

#[test]
fn run_prints_each_configuration_error_once() {
    let pki = TestPki::new();
    let path = pki.write(
        "bad.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = -5\n",
    );
    let out = portcullis_cli(&["run", "--config", path.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("server.workers").count(), 1, "{err}");
    assert_eq!(err.matches("at least one [[site]]").count(), 1, "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}
