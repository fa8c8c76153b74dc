//! Plain HTTP object URLs and SHA-256 pins, against the real binary and a real HTTP file
//! server (Python's `http.server`, started by the test on 127.0.0.1): a pinned bundle that
//! changes on the server is refused and the pinned copy stays; `check` refuses a wrong pin.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    admin_json, config_text, origin, portcullis_cli, wait_for, CertKind, CertSpec, Curl, Issued,
    Portcullis, SiteConfig, TestPki,
};
use serde_json::Value;

/// `python3 -m http.server` serving `dir` on a free loopback port; killed when dropped.
struct FileServer {
    child: Child,
    addr: SocketAddr,
}

impl FileServer {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server (python3 is needed by the tests)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    boring::sha::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_pinned_http_object_that_changes_is_refused_and_the_pinned_copy_stays() {
    let pki = TestPki::new();
    let origin = origin();
    let served = pki.path("served");
    std::fs::create_dir(&served).expect("mkdir");
    let bundle = format!("{}{}", pki.root.cert_pem, pki.intermediate.cert_pem);
    std::fs::write(served.join("bundle.pem"), &bundle).expect("bundle");
    let files = FileServer::start(&served);
    let url = format!("http://{}/bundle.pem", files.addr);

    let config = |pin: &str| {
        let site = SiteConfig::new(origin.addr(), "required", Some(url.clone().into()));
        let extra = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[sources]\npoll_interval = \"300ms\"\ntimeout = \"2s\"\n\n[sources.sha256]\n{url:?} = \"{pin}\"\n"
        );
        config_text(&pki, &[site], &extra)
    };

    // A wrong pin: `check` names the URL, the key and both digests.
    let wrong = pki.write("wrong.toml", &config(&"0".repeat(64)));
    let out = portcullis_cli(&["check", "--config", wrong.to_str().expect("path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{url}: site[0].mtls.trust_store: SHA-256 is {}",
            sha256_hex(bundle.as_bytes())
        )),
        "{stderr}"
    );

    let path = pki.write("portcullis.toml", &config(&sha256_hex(bundle.as_bytes())));
    let server = Portcullis::start_file(&path, tempfile::tempdir().expect("dir"));
    let admin = server.admin.expect("admin");
    let client = TestPki::client(&pki.intermediate, "pinned");
    let (cert, key) = pki.write_client("pinned", &client, &[&pki.intermediate]);
    let get = || {
        Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
            .cert(&cert, &key)
            .run()
    };
    assert_eq!(get().status, Some(200));
    let source = |status: &Value| status["sources"][0].clone();
    let (_, status) = admin_json(admin, "GET", "/status");
    assert_eq!(source(&status)["url"], url.as_str());
    assert_eq!(source(&status)["state"], "ok", "{status:#}");

    // The object changes on the server (another valid bundle): the pin refuses it.
    let other = Issued::self_signed(CertSpec::new("Sneaked In", CertKind::RootCa)).expect("CA");
    std::fs::write(
        served.join("bundle.pem"),
        format!("{bundle}{}", other.cert_pem),
    )
    .expect("change");
    let error = wait_for(
        Duration::from_secs(15),
        "the pin to refuse the object",
        || {
            let (_, status) = admin_json(admin, "GET", "/status");
            source(&status)["last_error"]["message"]
                .as_str()
                .map(str::to_owned)
        },
    );
    assert!(error.contains("[sources.sha256] pins"), "{error}");
    let (_, status) = admin_json(admin, "GET", "/status");
    assert_eq!(status["generation"], 1, "{status:#}");
    assert_eq!(source(&status)["sha256"], sha256_hex(bundle.as_bytes()));
    let intruder = TestPki::client(&other, "intruder");
    let (icert, ikey) = pki.write_client("intruder", &intruder, &[]);
    let r = Curl::new(&server, "localhost", "/", &pki.path("root.pem"))
        .cert(&icert, &ikey)
        .run();
    assert!(r.stderr.contains("unknown ca"), "{r:?}");
    assert_eq!(get().status, Some(200), "the pinned bundle stays");
}
