//! Helpers for the end-to-end tests: start the real `portcullis` binary on 127.0.0.1 with a
//! generated PKI and a real origin, and drive it with real clients (curl, openssl s_client).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use portcullis::demo_origin::{pattern_byte, DemoOrigin};
pub use portcullis::pki::{CertKind, CertSpec, Issued, KeyAlgorithm};
pub use scripted_origin::{Journal, OriginConn, OriginRequest, ScriptedOrigin};

pub mod scripted_origin;

pub mod s3;

/// How long the binary may take to print `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the binary may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The `portcullis` binary the tests run: `$PORTCULLIS_BIN` if set, else the one built next to
/// this test executable, found by walking up from it (`target/<profile>/deps/<test>` on
/// stable cargo; other layouts, such as a separate build directory, put it a level or two
/// higher), else in `$CARGO_TARGET_DIR/<profile>`.
pub fn portcullis_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(5)
        .flat_map(|dir| [dir.join("portcullis"), dir.join(profile).join("portcullis")])
        .collect();
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join(profile).join("portcullis"));
    }
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the portcullis binary was not found near {} (build the workspace first: cargo test --workspace builds it; or set PORTCULLIS_BIN)",
                exe.display()
            )
        })
}

/// A root CA, an intermediate and a server certificate for the test host names, on disk.
pub struct TestPki {
    /// The directory holding every file.
    pub dir: tempfile::TempDir,
    /// Root CA.
    pub root: Issued,
    /// Intermediate CA issued by the root.
    pub intermediate: Issued,
    /// Server certificate for localhost, site-a.test, site-b.test, 127.0.0.1.
    pub server: Issued,
}

impl TestPki {
    /// Generates the hierarchy and writes root.pem, bundle.pem (root + intermediate) and
    /// server.pem (leaf + intermediate) / server.key.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Issued::self_signed(
            CertSpec::new("Test Root CA", CertKind::RootCa).organization("Portcullis Tests"),
        )
        .expect("root");
        let intermediate = root
            .issue(CertSpec::new(
                "Test Intermediate CA",
                CertKind::IntermediateCa,
            ))
            .expect("intermediate");
        let server = intermediate
            .issue(CertSpec::new(
                "localhost",
                CertKind::Server {
                    dns_names: vec![
                        "localhost".into(),
                        "site-a.test".into(),
                        "site-b.test".into(),
                        "*.wild.test".into(),
                    ],
                    ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
                },
            ))
            .expect("server");
        let pki = Self {
            dir,
            root,
            intermediate,
            server,
        };
        pki.write("root.pem", &pki.root.cert_pem);
        pki.write(
            "bundle.pem",
            &format!("{}{}", pki.root.cert_pem, pki.intermediate.cert_pem),
        );
        pki.write(
            "server.pem",
            &format!("{}{}", pki.server.cert_pem, pki.intermediate.cert_pem),
        );
        pki.write("server.key", &pki.server.key_pem);
        pki
    }

    /// Path of a file in the PKI directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the PKI directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// Writes a client's certificate (followed by `chain` PEMs) and key; returns
    /// (cert path, key path).
    pub fn write_client(
        &self,
        stem: &str,
        client: &Issued,
        chain: &[&Issued],
    ) -> (PathBuf, PathBuf) {
        let mut pem = client.cert_pem.clone();
        for c in chain {
            pem.push_str(&c.cert_pem);
        }
        let cert = self.write(&format!("{stem}.pem"), &pem);
        let key = self.write(&format!("{stem}.key"), &client.key_pem);
        (cert, key)
    }

    /// A client certificate issued by `issuer` with the given common name.
    pub fn client(issuer: &Issued, cn: &str) -> Issued {
        issuer
            .issue(
                CertSpec::new(cn, CertKind::Client)
                    .organization("Portcullis Tests")
                    .organizational_unit("Viewers"),
            )
            .expect("client certificate")
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// The usual fixture: a PKI, an echo origin, and a server with one `localhost` site.
/// Fields drop in reverse order when destructured as `let OneSite { pki, origin, server }`:
/// the server stops first, then the origin, then the PKI directory goes.
pub struct OneSite {
    /// The test PKI.
    pub pki: TestPki,
    /// The echo origin.
    pub origin: DemoOrigin,
    /// The running data plane.
    pub server: Portcullis,
}

impl OneSite {
    /// Starts a `localhost` site in `mode` with the PKI file `trust_store` (e.g. `bundle.pem`),
    /// extra `[site.mtls]` lines and extra server-level TOML.
    pub fn start(
        mode: &'static str,
        trust_store: Option<&str>,
        mtls_extra: &str,
        server_extra: &str,
    ) -> Self {
        let pki = TestPki::new();
        let origin = origin();
        let mut site = SiteConfig::new(origin.addr(), mode, trust_store.map(|f| pki.path(f)));
        site.mtls_extra = mtls_extra.to_string();
        let server = Portcullis::start(&config_text(&pki, &[site], server_extra));
        Self {
            pki,
            origin,
            server,
        }
    }
}

/// One `[[site]]` of a test configuration.
pub struct SiteConfig {
    /// Site name.
    pub name: String,
    /// SNI names (TOML array body, e.g. `"localhost"`).
    pub server_names: Vec<String>,
    /// Origin address.
    pub origin: SocketAddr,
    /// mtls mode.
    pub mode: &'static str,
    /// Trust store path, if any.
    pub trust_store: Option<PathBuf>,
    /// Extra lines for `[site.mtls]`.
    pub mtls_extra: String,
}

impl SiteConfig {
    /// A site for `localhost` in `mode` with `trust_store`.
    pub fn new(origin: SocketAddr, mode: &'static str, trust_store: Option<PathBuf>) -> Self {
        Self {
            name: "main".into(),
            server_names: vec!["localhost".into()],
            origin,
            mode,
            trust_store,
            mtls_extra: String::new(),
        }
    }
}

/// A configuration file for `sites`, using the PKI's server certificate.
pub fn config_text(pki: &TestPki, sites: &[SiteConfig], server_extra: &str) -> String {
    let mut s = format!("[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n{server_extra}\n");
    for site in sites {
        let names: Vec<String> = site.server_names.iter().map(|n| format!("{n:?}")).collect();
        s.push_str(&format!(
            "[[site]]\nname = {:?}\nserver_names = [{}]\ncertificate = {:?}\nprivate_key = {:?}\norigin = \"http://{}\"\n\n[site.mtls]\nmode = {:?}\n",
            site.name,
            names.join(", "),
            pki.path("server.pem"),
            pki.path("server.key"),
            site.origin,
            site.mode,
        ));
        if let Some(ts) = &site.trust_store {
            s.push_str(&format!("trust_store = {ts:?}\n"));
        }
        s.push_str(&site.mtls_extra);
        s.push_str("\n\n");
    }
    s
}

/// A running `portcullis run` process; stopped with SIGTERM when dropped.
pub struct Portcullis {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin API's address, when configured on TCP.
    pub admin: Option<SocketAddr>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Portcullis {
    /// Writes `config` to a file and starts `portcullis run` on it; waits (bounded) for `ready`.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write config");
        Self::start_file(&config_path, dir)
    }

    /// Starts `portcullis run` on an existing configuration file.
    pub fn start_file(config_path: &Path, dir: tempfile::TempDir) -> Self {
        Self::start_file_with_env(config_path, dir, &[])
    }

    /// Starts `portcullis run` on an existing configuration file with extra environment
    /// variables (e.g. AWS credentials for an S3-compatible test server).
    pub fn start_file_with_env(
        config_path: &Path,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_wrapped(config_path, dir, env, &[])
    }

    /// Like [`start_file_with_env`](Self::start_file_with_env), run through `wrapper` (a
    /// command that execs its arguments, e.g. `["prlimit", "--fsize=65536", "--"]`; empty:
    /// none).
    pub fn start_wrapped(
        config_path: &Path,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        Self::launch(&portcullis_bin(), config_path, dir, env, wrapper)
    }

    /// Starts `binary` (e.g. a copy of `portcullis` that a test replaces later, as a package
    /// upgrade does) with `run --config config_path` and extra environment variables.
    pub fn start_binary(
        binary: &Path,
        config_path: &Path,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(binary, config_path, dir, env, &[])
    }

    /// Runs `binary run --config config_path` (through `wrapper`, if any); waits (bounded)
    /// until it is ready.
    fn launch(
        binary: &Path,
        config_path: &Path,
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .envs(env.iter().copied())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // A binary a test has just copied can be busy for a moment (ETXTBSY): a process another
        // test thread forked meanwhile holds the copy's write descriptor until it execs.
        let mut attempts = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.expect("spawn portcullis"),
            }
        };
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addr = None;
        let mut admin = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("listening on https://") => {
                    addr = line["listening on https://".len()..].parse().ok();
                }
                Ok(line) if line.starts_with("admin on http://") => {
                    admin = line["admin on http://".len()..].parse().ok();
                }
                Ok(line) if line == "ready" => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "portcullis did not become ready:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        }
        Self {
            child: Some(child),
            addr: addr.expect("listen address printed before ready"),
            admin,
            stderr_path,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident set size now (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `kB` field of the process's `/proc/PID/status`.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Sends SIGHUP and waits (bounded) until the log reports that reload's outcome: true
    /// when the configuration was reloaded, false when the reload was refused.
    pub fn reload_with_sighup(&self) -> bool {
        let before = self.reload_outcomes();
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -HUP {pid} failed");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let now = self.reload_outcomes();
            if now.0 > before.0 {
                return true;
            }
            if now.1 > before.1 {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "no reload outcome logged after SIGHUP:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many reloads the log reports as (applied, refused).
    pub fn reload_outcomes(&self) -> (usize, usize) {
        let log = self.log();
        (
            log.matches("configuration reloaded").count(),
            log.matches("reload refused").count(),
        )
    }

    /// Waits (bounded by `limit`) for the process to exit by itself (after a binary upgrade
    /// handed over); its exit code, or None if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        self.terminate();
        let mut child = self.child.take()?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A raw TLS 1.3/1.2 connection without a client certificate, trusting `ca`, for requests
    /// written by hand (reads time out after 20 s).
    pub fn tls_connect(
        &self,
        host: &str,
        ca: &Path,
    ) -> Result<
        boring::ssl::SslStream<std::net::TcpStream>,
        boring::ssl::HandshakeError<std::net::TcpStream>,
    > {
        let mut connector =
            boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).expect("connector");
        connector.set_ca_file(ca).expect("trust the test root");
        let tcp = std::net::TcpStream::connect(self.addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        connector.build().connect(host, tcp)
    }

    /// A raw TLS connection for requests written by hand: SNI `host`, trusting `ca`, with an
    /// optional client certificate and receive buffer size (a small one lets a test stop
    /// reading and stall the server's sends). Reads time out after 20 s.
    pub fn tls_client(
        &self,
        host: &str,
        ca: &Path,
        cert: Option<(&Path, &Path)>,
        recv_buffer: Option<usize>,
    ) -> boring::ssl::SslStream<std::net::TcpStream> {
        use boring::ssl::{SslConnector, SslFiletype, SslMethod};
        let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
        connector.set_ca_file(ca).expect("trust the test root");
        if let Some((cert, key)) = cert {
            connector
                .set_certificate_chain_file(cert)
                .expect("client certificate");
            connector
                .set_private_key_file(key, SslFiletype::PEM)
                .expect("client key");
        }
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("receive buffer");
        }
        socket
            .connect_timeout(&self.addr.into(), Duration::from_secs(10))
            .expect("connect");
        let tcp: std::net::TcpStream = socket.into();
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        connector
            .build()
            .connect(host, tcp)
            .unwrap_or_else(|e| panic!("TLS handshake with {host}: {e}"))
    }

    /// `https://{host}:{port}{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process the test did not start itself (the new process of a binary upgrade): stopped
/// with SIGTERM, then SIGKILL, when dropped.
pub struct Adopted {
    /// The process id.
    pub pid: u32,
}

impl Adopted {
    /// Whether the process still runs (exists and is not a zombie).
    pub fn alive(&self) -> bool {
        process_alive(self.pid)
    }

    /// Sends SIGTERM and waits (bounded) until the process is gone; false if it had to be
    /// killed.
    pub fn stop(&self) -> bool {
        signal(self.pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while process_alive(self.pid) {
            if Instant::now() > deadline {
                signal(self.pid, "KILL");
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if process_alive(self.pid) {
            self.stop();
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// `kill -SIGNAL pid`.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fake systemd `NOTIFY_SOCKET`: a Unix datagram socket in a temporary directory whose
/// messages the test reads, in the order they were sent.
pub struct NotifySocket {
    /// The socket's path (the value of `NOTIFY_SOCKET`).
    pub path: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// Binds a new socket.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        Self {
            path,
            socket,
            _dir: dir,
        }
    }

    /// The `NOTIFY_SOCKET` value.
    pub fn env(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }

    /// The next message, waiting at most `limit`.
    pub fn next(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one with the line `line` (included), waiting at most `limit` in all;
    /// panics with what arrived when the time is up.
    pub fn until(&self, line: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {line} within {limit:?}; got {seen:?}");
            if let Some(message) = self.next(left) {
                let done = message.lines().any(|l| l == line);
                seen.push(message);
                if done {
                    return seen;
                }
            }
        }
    }

    /// Every message that arrives within `limit`.
    pub fn drain(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen;
            }
            if let Some(message) = self.next(left) {
                seen.push(message);
            }
        }
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

/// A curl invocation against a running Portcullis.
pub struct Curl {
    cmd: Command,
}

/// What curl did.
#[derive(Debug)]
pub struct CurlResult {
    /// curl's exit code.
    pub exit: Option<i32>,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The response body.
    pub body: Vec<u8>,
    /// curl's diagnostics.
    pub stderr: String,
}

impl CurlResult {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Header lines the echo origin reports having received, as (lowercase name, value).
    pub fn echoed_headers(&self) -> Vec<(String, String)> {
        self.text()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    /// The value of an echoed header (case-insensitive name), if the origin received it.
    pub fn echoed(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.echoed_headers()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The `CloudFront-Viewer-Cert-Present` value the origin received, if any.
    pub fn cert_present(&self) -> Option<String> {
        self.echoed("CloudFront-Viewer-Cert-Present")
    }
}

impl Curl {
    /// `curl` for `url` on `host` (resolved to the server's address), trusting `ca`.
    pub fn new(server: &Portcullis, host: &str, path: &str, ca: &Path) -> Self {
        let mut cmd = Command::new("curl");
        cmd.arg("--silent")
            .arg("--show-error")
            .arg("--max-time")
            .arg("60")
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", server.addr.port()))
            .arg("--cacert")
            .arg(ca)
            .arg("--write-out")
            .arg("\n%{http_code}")
            .arg(server.url(host, path));
        Self { cmd }
    }

    /// Presents a client certificate.
    pub fn cert(mut self, cert: &Path, key: &Path) -> Self {
        self.cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        self
    }

    /// Adds any other arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Runs curl (bounded by --max-time) and collects the result.
    pub fn run(mut self) -> CurlResult {
        let Output {
            status,
            stdout,
            stderr,
        } = self.cmd.output().expect("run curl");
        let split = stdout.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&stdout[split..])
            .trim()
            .parse::<u16>()
            .ok();
        let body = stdout[..split].to_vec();
        CurlResult {
            exit: status.code(),
            status: code.filter(|&c| c != 0),
            body,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// A response read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The head, as received.
    pub head: String,
    /// The body (per Content-Length; up to the close otherwise).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (interim 1xx heads are returned as their own responses) from `conn`;
/// None if the connection closed (or failed) first. Bounded by the socket's read time-out.
pub fn read_response(conn: &mut impl std::io::Read) -> Option<RawResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        _ if (100..200).contains(&status) || status == 204 || status == 304 => {}
        Some(n) => {
            body.resize(n, 0);
            conn.read_exact(&mut body).ok()?;
        }
        None => {
            let _ = conn.read_to_end(&mut body);
        }
    }
    Some(RawResponse { status, head, body })
}

/// Runs `openssl` with `args` and `stdin` (bounded by `timeout` seconds via coreutils).
pub fn openssl(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .arg("30")
        .arg("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("openssl output")
}

/// One `openssl s_client` TLS 1.3 exchange with `server` on `localhost`, presenting `cert` and
/// `key`, trusting `ca`, sending one `Connection: close` request; `session_arg` is
/// `-sess_out` (save the session to `session`) or `-sess_in` (offer it). Returns (stdout,
/// stderr).
pub fn s_client_with_session(
    server: &Portcullis,
    ca: &Path,
    cert: &Path,
    key: &Path,
    session_arg: &str,
    session: &Path,
) -> (String, String) {
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let out = openssl(
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-CAfile",
            &path(ca),
            "-cert",
            &path(cert),
            "-key",
            &path(key),
            session_arg,
            &path(session),
            "-ign_eof",
        ],
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A PEM CRL from `issuer` listing `revoked`, current now (issued an hour ago, next update in
/// a week).
pub fn current_crl(issuer: &Issued, revoked: &[&Issued]) -> String {
    let now = time::OffsetDateTime::now_utc();
    issuer
        .crl(
            revoked,
            now - time::Duration::hours(1),
            now + time::Duration::days(7),
        )
        .expect("crl")
}

/// Saves a TLS 1.3 session of `cert` to `session` and checks that it resumes (both exchanges
/// answered 200): the starting point of every "is this session still resumed after ..." test.
pub fn assert_session_resumes(
    server: &Portcullis,
    ca: &Path,
    cert: &Path,
    key: &Path,
    session: &Path,
) {
    let (first, _) = s_client_with_session(server, ca, cert, key, "-sess_out", session);
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    let (again, _) = s_client_with_session(server, ca, cert, key, "-sess_in", session);
    assert!(
        again.contains("Reused, TLSv1.3") && again.contains("HTTP/1.1 200"),
        "the session does not resume to begin with:\n{again}"
    );
}

/// Starts the echo origin on 127.0.0.1 with an ephemeral port.
pub fn origin() -> DemoOrigin {
    DemoOrigin::start("127.0.0.1:0".parse().expect("addr")).expect("start origin")
}

/// The serial number of a certificate as uppercase hex (as `openssl x509 -serial` prints it).
pub fn serial_hex(cert: &Issued) -> String {
    boring::x509::X509::from_der(&cert.cert_der)
        .expect("certificate")
        .serial_number()
        .to_bn()
        .expect("serial")
        .to_hex_str()
        .expect("hex")
        .to_string()
}

/// Runs the `portcullis` binary with `args` (bounded by coreutils `timeout`).
pub fn portcullis_cli(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("30")
        .arg(portcullis_bin())
        .args(args)
        .output()
        .expect("run portcullis")
}

/// `portcullis upgrade --pid PID --timeout 25`: the new process on success (its PID from the
/// CLI's `handed over to process N` line), the CLI's output on failure.
pub fn upgrade_with_cli(pid: u32) -> Result<Adopted, String> {
    let out = portcullis_cli(&["upgrade", "--pid", &pid.to_string(), "--timeout", "25"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{stdout}{stderr}"));
    }
    let new = stdout
        .split("handed over to process ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("new pid in {stdout:?} {stderr:?}"));
    Ok(Adopted { pid: new })
}

/// A request to the admin API over a plain TCP connection (no client process): (HTTP status,
/// JSON body). Bounded by a 60 s read timeout.
pub fn admin_json(admin: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(admin).expect("connect to the admin API");
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`; panics with
/// `what` when the time is up.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces `path` with `contents` atomically (temporary file, rename), as a deployment
/// tool would.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let temp = path.with_extension("tmp-replace");
    std::fs::write(&temp, contents).expect("write temporary file");
    std::fs::rename(&temp, path).expect("rename over the file");
}

/// Whether the binaries run under a sanitizer (`.ci/asan` sets `PORTCULLIS_SANITIZER`): its
/// shadow memory and quarantine make resident-memory figures meaningless, so tests skip their
/// RSS bounds (and only those).
pub fn under_sanitizer() -> bool {
    std::env::var_os("PORTCULLIS_SANITIZER").is_some()
}

/// Another binary of the workspace, built next to `portcullis` (e.g. `portcullis-loadtest`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let bin = portcullis_bin().with_file_name(name);
    assert!(
        bin.exists(),
        "{} not found: build the workspace first (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// `curl` against the admin API: (HTTP status, body).
pub fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Path>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(body) = body {
        cmd.arg("--data-binary").arg(format!("@{}", body.display()));
    }
    let out = cmd
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The metrics of `server` (which has an admin API), parsed with a Prometheus text-format
/// parser.
pub fn scrape(server: &Portcullis) -> prometheus_parse::Scrape {
    let admin = server.admin.expect("admin address");
    let (status, body) = admin_call(admin, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse metrics")
}

/// Sum of a metric's samples whose labels include every `(name, value)` of `labels`.
pub fn sample_sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}
