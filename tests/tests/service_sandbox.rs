//! The packaged unit's seccomp sandbox against the real binary: `tests/support/unit_sandbox.py`
//! loads what `dataplane/debian/portcullis.service` asks systemd for (`SystemCallFilter=`
//! expanded by this machine's `systemd-analyze`, `SystemCallErrorNumber=`,
//! `MemoryDenyWriteExecute=`, `RestrictAddressFamilies=`) and execs `portcullis run`. Under
//! it, the workers run on io_uring (no epoll warning), a connection function (QuickJS)
//! decides handshakes, a reload compiles a new function, and a binary upgrade hands the
//! listeners to a new process that inherits the same filters. With `io_uring_setup` refused
//! as well, the workers fall back to epoll, say so, and serve.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_e2e::{
    config_text, origin, portcullis_bin, upgrade_with_cli, wait_for, Curl, DemoOrigin, Portcullis,
    SiteConfig, TestPki,
};

const LIMIT: Duration = Duration::from_secs(30);
const EPOLL_WARNING: &str = "workers fall back to epoll";

/// Denies clients whose subject names `DENIED`, allows the others.
const FUNCTION: &str = r#"
function connectionHandler(connection) {
    const leaf = connection.clientCertificate?.certificates.leaf;
    if (leaf !== undefined && leaf.subject.includes("CN=DENIED")) {
        return connection.deny();
    }
    return connection.allow();
}
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A shell script that runs the binary under the unit's seccomp filters (plus `deny`), so the
/// process the harness starts is `portcullis` itself (exec all the way) in the sandbox.
fn sandboxed_binary(dir: &Path, deny: &[&str]) -> PathBuf {
    let root = workspace_root();
    let deny: String = deny.iter().map(|call| format!(" --deny {call}")).collect();
    let script = format!(
        "#!/bin/sh\nexec python3 {:?} --unit {:?}{deny} -- {:?} \"$@\"\n",
        root.join("tests/support/unit_sandbox.py"),
        root.join("dataplane/debian/portcullis.service"),
        portcullis_bin(),
    );
    let path = dir.join("portcullis-sandboxed");
    std::fs::write(&path, script).expect("write wrapper");
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
    path
}

/// `Seccomp_filters:` of a process: how many seccomp filters it runs under.
fn seccomp_filters(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

struct Sandboxed {
    pki: TestPki,
    function: PathBuf,
    _origin: DemoOrigin,
    server: Portcullis,
}

fn start(deny: &[&str]) -> Sandboxed {
    let pki = TestPki::new();
    let origin = origin();
    let function = pki.write("function.js", FUNCTION);
    let mut site = SiteConfig::new(origin.addr(), "required", Some(pki.path("bundle.pem")));
    site.mtls_extra = format!("\n[site.mtls.connection_function]\nfile = {function:?}\n");
    let config_path = pki.write("portcullis.toml", &config_text(&pki, &[site], ""));
    let dir = tempfile::tempdir().expect("dir");
    let binary = sandboxed_binary(dir.path(), deny);
    // The driver is the filter's to decide, whatever the suite's MONOIO_FORCE_LEGACY_DRIVER.
    let server = Portcullis::start_binary(
        &binary,
        &config_path,
        dir,
        &[("MONOIO_FORCE_LEGACY_DRIVER", "0")],
    );
    let log = server.log();
    assert!(
        log.contains("unit_sandbox: MemoryDenyWriteExecute")
            && log.contains("system calls allowed"),
        "the sandbox did not load its filters:\n{log}"
    );
    // The filters are on portcullis itself: allow-list, address families, W^X.
    assert!(seccomp_filters(server.pid()) >= 3, "{log}");
    Sandboxed {
        pki,
        function,
        _origin: origin,
        server,
    }
}

impl Sandboxed {
    /// `curl` with a fresh client certificate named `cn`: the HTTP status (0 when refused).
    fn get(&self, cn: &str) -> u16 {
        let client = TestPki::client(&self.pki.intermediate, cn);
        let (cert, key) = self
            .pki
            .write_client(cn, &client, &[&self.pki.intermediate]);
        Curl::new(&self.server, "localhost", "/", &self.pki.path("root.pem"))
            .cert(&cert, &key)
            .run()
            .status
            .unwrap_or(0)
    }
}

#[test]
fn under_the_units_seccomp_filters_io_uring_quickjs_reload_and_upgrade_work() {
    let s = start(&[]);
    assert!(
        !s.server.log().contains(EPOLL_WARNING),
        "io_uring refused under the unit's filter:\n{}",
        s.server.log()
    );
    assert_eq!(s.get("viewer-1"), 200, "{}", s.server.log());
    assert_eq!(s.get("DENIED"), 0, "the function did not deny");

    // A reload compiles a new function (QuickJS under MemoryDenyWriteExecute).
    std::fs::write(&s.function, FUNCTION.replace("CN=DENIED", "CN=viewer-2")).expect("write");
    assert!(s.server.reload_with_sighup(), "{}", s.server.log());
    assert_eq!(s.get("viewer-2"), 0, "the reloaded function did not deny");
    assert_eq!(s.get("DENIED"), 200);

    // A binary upgrade under the filters: the new process inherits them and the listeners.
    let new =
        upgrade_with_cli(s.server.pid()).unwrap_or_else(|e| panic!("{e}\n{}", s.server.log()));
    assert_ne!(new.pid, s.server.pid());
    assert!(
        seccomp_filters(new.pid) >= 3,
        "the new process left the sandbox"
    );
    assert_eq!(s.get("viewer-3"), 200, "{}", s.server.log());
    assert_eq!(s.get("viewer-2"), 0);
    wait_for(LIMIT, "the old process to exit", || {
        (!portcullis_e2e::process_alive(s.server.pid())).then_some(())
    });
    // The new process writes to the same stderr: still no fallback.
    assert!(
        !s.server.log().contains(EPOLL_WARNING),
        "{}",
        s.server.log()
    );
    assert!(new.stop(), "the new process did not stop on SIGTERM");
}

#[test]
fn with_io_uring_refused_the_workers_fall_back_to_epoll_say_so_and_serve() {
    let s = start(&["io_uring_setup"]);
    assert!(
        s.server.log().contains(EPOLL_WARNING),
        "no epoll warning:\n{}",
        s.server.log()
    );
    assert_eq!(s.get("viewer-1"), 200, "{}", s.server.log());
    assert_eq!(s.get("DENIED"), 0);
}
