//! Admin server and client tests over real TCP and Unix sockets, with an in-memory backend.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_config::{AdminSettings, AdminToken};
use serde_json::Value;

use super::client::{self, import_path, revocation_path};
use super::server::{self, HEAD_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEAD_BYTES};
use super::{AdminError, AdminListen, AdminServer, AdminTarget, ClientError, RevocationAdmin};

/// Stores `viewers` and `partners`; serials are hex (colons allowed) normalised to upper
/// case without colons. Store `panic` panics; store `weird` fails with a non-error status.
#[derive(Default)]
struct Memory {
    entries: Mutex<HashMap<(String, String), String>>,
}

impl Memory {
    fn check(store: &str, serial: &str) -> Result<(String, String), AdminError> {
        match store {
            "viewers" | "partners" => {}
            "panic" => panic!("backend panic requested by the test"),
            "weird" => return Err(AdminError::new(200, "not really an error")),
            _ => return Err(AdminError::not_found(format!("unknown store {store:?}"))),
        }
        let normal: String = serial
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if normal.is_empty() || normal.len() > 40 || !normal.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(AdminError::bad_request(format!(
                "invalid serial {serial:?}"
            )));
        }
        Ok((store.to_owned(), normal))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RevocationAdmin for Memory {
    fn put(&self, store: &str, serial: &str, value: &str) -> Result<(), AdminError> {
        let key = Memory::check(store, serial)?;
        self.entries().insert(key, value.to_owned());
        Ok(())
    }

    fn delete(&self, store: &str, serial: &str) -> Result<bool, AdminError> {
        let key = Memory::check(store, serial)?;
        Ok(self.entries().remove(&key).is_some())
    }

    fn get(&self, store: &str, serial: &str) -> Result<Option<String>, AdminError> {
        let key = Memory::check(store, serial)?;
        Ok(self.entries().get(&key).cloned())
    }

    fn import(&self, store: &str, json: &[u8]) -> Result<usize, AdminError> {
        let invalid = || AdminError::bad_request("invalid import document");
        let doc: Value = serde_json::from_slice(json).map_err(|_| invalid())?;
        let data = doc
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(invalid)?;
        let mut parsed = Vec::new();
        for item in data {
            let key = item
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(invalid)?;
            let value = item
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(invalid)?;
            parsed.push((Memory::check(store, key)?, value.to_owned()));
        }
        let count = parsed.len();
        self.entries().extend(parsed);
        Ok(count)
    }
}

/// Settings for `listen` without a token.
fn no_token(listen: AdminListen) -> AdminSettings {
    AdminSettings {
        listen,
        token: None,
    }
}

fn start_tcp(backend: Arc<Memory>) -> (AdminServer, AdminTarget) {
    let server = server::start(
        &no_token(AdminListen::Tcp(([127, 0, 0, 1], 0).into())),
        backend,
    )
    .expect("start admin server on 127.0.0.1:0");
    let addr = server.local_addr().expect("TCP server has an address");
    assert_ne!(addr.port(), 0);
    (server, AdminTarget::Tcp(addr))
}

fn start_unix(dir: &Path, backend: Arc<Memory>) -> (AdminServer, AdminTarget) {
    let path = dir.join("admin.sock");
    let server = server::start(&no_token(AdminListen::Unix(path.clone())), backend)
        .expect("start admin server");
    assert_eq!(server.local_addr(), None);
    assert_eq!(server.socket_path(), Some(path.as_path()));
    (server, AdminTarget::Unix(path))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn call(target: &AdminTarget, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (status, body) = client::request(target, method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (status, json(&body))
}

/// A raw response: status, head (lower-cased) and body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

fn connect(target: &AdminTarget) -> Box<dyn ReadWrite> {
    match target {
        AdminTarget::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Box::new(s)
        }
        AdminTarget::Unix(path) => {
            let s = UnixStream::connect(path).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Box::new(s)
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn read_raw(stream: &mut dyn ReadWrite) -> Raw {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            // A reset after the full response has arrived is fine for these checks.
            Err(e) if !bytes.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn raw(target: &AdminTarget, request: &[u8]) -> Raw {
    let mut stream = connect(target);
    stream.write_all(request).expect("write request");
    read_raw(stream.as_mut())
}

/// Every route, through the client, against `target`.
fn exercise_routes(target: &AdminTarget, backend: &Memory) {
    assert_eq!(
        call(target, "GET", "/healthz", b""),
        (200, serde_json::json!({ "status": "ok" }))
    );

    let path = revocation_path("viewers", "0a:1b");
    let (status, body) = call(target, "PUT", &path, "key compromise ✓".as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "store": "viewers", "key": "0a:1b", "value": "key compromise ✓" })
    );
    assert_eq!(
        backend.entries().get(&("viewers".into(), "0A1B".into())),
        Some(&"key compromise ✓".to_owned()),
        "the backend saw the percent-decoded serial"
    );

    // Same serial spelled differently: the backend normalises.
    let (status, body) = call(target, "GET", "/revocations/viewers/0A1B", b"");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({ "key": "0A1B", "value": "key compromise ✓" })
    );

    // Empty value is allowed.
    let (status, body) = call(target, "PUT", "/revocations/partners/ff", b"");
    assert_eq!((status, &body["value"]), (200, &Value::from("")));

    let (status, body) = call(target, "DELETE", &path, b"");
    assert_eq!(
        (status, body),
        (200, serde_json::json!({ "deleted": true }))
    );
    let (status, body) = call(target, "DELETE", &path, b"");
    assert_eq!(
        (status, body),
        (404, serde_json::json!({ "error": "not found" }))
    );
    let (status, body) = call(target, "GET", &path, b"");
    assert_eq!(
        (status, body),
        (404, serde_json::json!({ "error": "not found" }))
    );

    let doc =
        br#"{"data":[{"key":"01","value":"a"},{"key":"02","value":"b"},{"key":"03","value":""}]}"#;
    let (status, body) = call(target, "POST", &import_path("partners"), doc);
    assert_eq!((status, body), (200, serde_json::json!({ "imported": 3 })));
    let (status, body) = call(target, "GET", "/revocations/partners/02", b"");
    assert_eq!((status, &body["value"]), (200, &Value::from("b")));

    // Backend errors keep their status and message.
    let (status, body) = call(target, "PUT", "/revocations/nosuch/01", b"x");
    assert_eq!(
        (status, body),
        (
            404,
            serde_json::json!({ "error": "unknown store \"nosuch\"" })
        )
    );
    let (status, body) = call(target, "PUT", "/revocations/viewers/xyz", b"x");
    assert_eq!(
        (status, body),
        (
            400,
            serde_json::json!({ "error": "invalid serial \"xyz\"" })
        )
    );
    let (status, body) = call(target, "POST", "/revocations/viewers/import", b"{not json");
    assert_eq!(
        (status, body),
        (
            400,
            serde_json::json!({ "error": "invalid import document" })
        )
    );
}

#[test]
fn admin_routes_over_tcp() {
    let backend = Arc::new(Memory::default());
    let (_server, target) = start_tcp(Arc::clone(&backend));
    exercise_routes(&target, &backend);
}

#[test]
fn admin_routes_over_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Arc::new(Memory::default());
    let (server, target) = start_unix(dir.path(), Arc::clone(&backend));
    let path = server.socket_path().expect("path").to_path_buf();
    let meta = std::fs::symlink_metadata(&path).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    exercise_routes(&target, &backend);
    drop(server);
    assert!(!path.exists(), "socket file removed on drop");
}

#[test]
fn admin_unix_socket_replaces_only_stale_sockets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.sock");
    let backend: Arc<Memory> = Arc::default();

    // A stale socket (its listener is gone) is replaced.
    drop(UnixListener::bind(&path).expect("bind stale"));
    assert!(path.exists());
    let server = server::start(&no_token(AdminListen::Unix(path.clone())), backend.clone())
        .expect("stale socket replaced");
    let target = AdminTarget::Unix(path.clone());
    assert_eq!(call(&target, "GET", "/healthz", b"").0, 200);

    // A live socket is not.
    let err = server::start(&no_token(AdminListen::Unix(path.clone())), backend.clone())
        .expect_err("live socket must not be replaced");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(
        call(&target, "GET", "/healthz", b"").0,
        200,
        "first server unharmed"
    );
    drop(server);

    // Nor is a regular file.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").expect("write");
    let err = server::start(&no_token(AdminListen::Unix(file.clone())), backend)
        .expect_err("regular file must not be replaced");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
}

#[test]
fn admin_refuses_non_loopback_tcp() {
    let backend: Arc<Memory> = Arc::default();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.10:9901", "10.1.2.3:0"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        let err = server::start(&no_token(AdminListen::Tcp(addr)), backend.clone())
            .expect_err("non-loopback must be refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{addr}");
    }
    // Any 127/8 address is loopback.
    let server = server::start(
        &no_token(AdminListen::Tcp(([127, 0, 0, 1], 0).into())),
        backend,
    )
    .expect("loopback accepted");
    assert!(server.local_addr().is_some_and(|a| a.ip().is_loopback()));
}

#[test]
fn admin_protocol_errors() {
    let backend: Arc<Memory> = Arc::default();
    let (_server, target) = start_tcp(Arc::clone(&backend));

    let r = raw(
        &target,
        b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert!(r.head.contains("\r\nallow: get"), "{}", r.head);
    assert_eq!(
        json(&r.body),
        serde_json::json!({ "error": "method not allowed" })
    );

    let r = raw(&target, b"PATCH /revocations/viewers/01 HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 405);
    assert!(r.head.contains("\r\nallow: get, put, delete"), "{}", r.head);
    let r = raw(
        &target,
        b"POST /revocations/viewers/01 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 405, "POST only imports");

    for path in [
        "/",
        "/nope",
        "/revocations",
        "/revocations/viewers",
        "/revocations/viewers/01/extra",
        "/revocations//01",
        "/healthz/",
    ] {
        let r = raw(&target, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(json(&r.body), serde_json::json!({ "error": "not found" }));
    }

    // Body too large: refused from the header alone, without reading the body.
    let r = raw(
        &target,
        format!(
            "PUT /revocations/viewers/01 HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    let r = raw(
        &target,
        b"PUT /revocations/viewers/01 HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    );
    assert_eq!(r.status, 413);

    // Length required.
    let r = raw(&target, b"PUT /revocations/viewers/01 HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 411);
    let r = raw(
        &target,
        b"POST /revocations/viewers/import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 411);

    // Bad framing and bad requests.
    let r = raw(
        &target,
        b"PUT /revocations/viewers/01 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    );
    assert_eq!(r.status, 400);
    let r = raw(
        &target,
        b"PUT /revocations/viewers/01 HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    let r = raw(&target, b"GARBAGE\0 \r\n\r\n");
    assert_eq!(r.status, 400);
    let r = raw(&target, b"GET /revocations/viewers/%FF HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "non-UTF-8 segment");
    let r = raw(
        &target,
        b"PUT /revocations/viewers/01 HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    );
    assert_eq!(r.status, 400, "non-UTF-8 value");
    assert!(
        backend.entries().is_empty(),
        "nothing stored by bad requests"
    );

    // Head too large.
    let mut big = b"GET /healthz HTTP/1.1\r\nX-Filler: ".to_vec();
    big.resize(MAX_HEAD_BYTES + 100, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let r = raw(&target, &big);
    assert_eq!(r.status, 431);

    // Every response is JSON, sized and closes the connection.
    let r = raw(&target, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.head.contains("\r\ncontent-type: application/json"));
    assert!(r.head.contains("\r\nconnection: close"));
    assert!(r
        .head
        .contains(&format!("\r\ncontent-length: {}", r.body.len())));
}

#[test]
fn admin_body_split_across_reads_and_expect_continue() {
    let backend: Arc<Memory> = Arc::default();
    let (_server, target) = start_tcp(Arc::clone(&backend));

    // A large import (well over one read) through the client.
    let entries: Vec<Value> = (0..20_000)
        .map(|i| serde_json::json!({ "key": format!("{i:08x}"), "value": "x".repeat(40) }))
        .collect();
    let doc = serde_json::to_vec(&serde_json::json!({ "data": entries })).expect("doc");
    assert!(doc.len() > 1024 * 1024);
    let (status, body) = call(&target, "POST", &import_path("viewers"), &doc);
    assert_eq!(
        (status, body),
        (200, serde_json::json!({ "imported": 20_000 }))
    );
    assert_eq!(backend.entries().len(), 20_000);

    // Expect: 100-continue gets an interim response before the body is sent.
    let mut stream = connect(&target);
    stream
        .write_all(b"PUT /revocations/viewers/abcd HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .expect("write head");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").expect("write body");
    let r = read_raw(stream.as_mut());
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.body)["value"], "hello");
}

#[test]
fn admin_backend_panic_and_bad_status_become_500() {
    let backend: Arc<Memory> = Arc::default();
    let (server, target) = start_tcp(backend);
    let (status, body) = call(&target, "GET", "/revocations/panic/01", b"");
    assert_eq!(
        (status, body),
        (500, serde_json::json!({ "error": "internal error" }))
    );
    let (status, body) = call(&target, "GET", "/revocations/weird/01", b"");
    assert_eq!(
        (status, body),
        (500, serde_json::json!({ "error": "not really an error" }))
    );
    assert_eq!(
        call(&target, "GET", "/healthz", b"").0,
        200,
        "still serving"
    );
    wait_for(|| server.open_connections() == 0);
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn admin_connection_cap_and_recovery() {
    let backend: Arc<Memory> = Arc::default();
    let (server, target) = start_tcp(backend);
    let AdminTarget::Tcp(addr) = target else {
        unreachable!("start_tcp returns a TCP target")
    };
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    wait_for(|| server.open_connections() == MAX_CONNECTIONS);
    let r = raw(&target, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 503);
    for stream in &idle {
        stream.shutdown(Shutdown::Both).expect("shutdown");
    }
    drop(idle);
    wait_for(|| server.open_connections() == 0);
    assert_eq!(call(&target, "GET", "/healthz", b"").0, 200);
}

#[test]
fn admin_idle_connections_give_their_slot_back() {
    let backend: Arc<Memory> = Arc::default();
    let (server, target) = start_tcp(backend);
    let AdminTarget::Tcp(addr) = target else {
        unreachable!("start_tcp returns a TCP target")
    };
    // Sixteen local connections that never send a request (or only part of one).
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            if i % 2 == 0 {
                s.write_all(b"GET /heal").expect("partial head");
            }
            s
        })
        .collect();
    wait_for(|| server.open_connections() == MAX_CONNECTIONS);
    let full = Instant::now();
    wait_for(|| server.open_connections() == 0);
    let freed = full.elapsed();
    assert!(
        freed < HEAD_TIMEOUT + Duration::from_millis(1500),
        "idle connections held their slots for {freed:?}"
    );
    assert_eq!(call(&target, "GET", "/healthz", b"").0, 200);
    drop(idle);
}

#[test]
fn admin_token_is_required_before_the_body_is_read() {
    let backend: Arc<Memory> = Arc::default();
    let token = "0123456789abcdef0123456789abcdef";
    let settings = AdminSettings {
        listen: AdminListen::Tcp(([127, 0, 0, 1], 0).into()),
        token: Some(AdminToken::new(token.as_bytes().to_vec())),
    };
    let server = server::start(&settings, backend.clone()).expect("start");
    let target = AdminTarget::Tcp(server.local_addr().expect("addr"));
    let path = revocation_path("viewers", "0a");
    for presented in [
        None,
        Some("wrong-token-wrong-token-wrong-tok"),
        Some(&token[1..]),
    ] {
        let (status, body) =
            client::request_with_token(&target, presented, "PUT", &path, b"stolen")
                .expect("request");
        assert_eq!(status, 401, "{presented:?}: {body}");
    }
    assert!(backend.entries().is_empty(), "no change without the token");
    // Refused on the head alone: a client without the token cannot make the server wait
    // for (or read) a large body.
    let started = Instant::now();
    let r = raw(
        &target,
        b"POST /revocations/viewers/import HTTP/1.1\r\nContent-Length: 60000000\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Two Authorization fields are refused even if one is right.
    let r = raw(
        &target,
        format!("GET /revocations/viewers/0a HTTP/1.1\r\nAuthorization: Bearer {token}\r\nAuthorization: Bearer x\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 401);
    // The right token works; probes need none.
    let (status, body) =
        client::request_with_token(&target, Some(token), "PUT", &path, b"stolen").expect("put");
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.entries().len(), 1);
    assert_eq!(call(&target, "GET", "/healthz", b"").0, 200);
}

#[test]
fn admin_drop_closes_listener_and_open_connections() {
    let backend: Arc<Memory> = Arc::default();
    let (server, target) = start_tcp(backend);
    let AdminTarget::Tcp(addr) = target else {
        unreachable!("start_tcp returns a TCP target")
    };
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.write_all(b"GET /heal").expect("partial request");
    wait_for(|| server.open_connections() == 1);
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "drop is bounded"
    );
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "no response to a request cut by shutdown: {rest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle connection closed promptly"
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "listener closed"
    );
}

#[test]
fn admin_target_parsing() {
    let tcp: AdminTarget = "127.0.0.1:9901".parse().expect("tcp");
    assert_eq!(tcp, AdminTarget::Tcp(([127, 0, 0, 1], 9901).into()));
    assert_eq!(tcp.to_string(), "127.0.0.1:9901");
    let v6: AdminTarget = "[::1]:9901".parse().expect("v6");
    assert!(matches!(v6, AdminTarget::Tcp(a) if a.ip().is_loopback()));
    let unix: AdminTarget = "unix:/run/portcullis/admin.sock".parse().expect("unix");
    assert_eq!(unix, AdminTarget::Unix("/run/portcullis/admin.sock".into()));
    assert_eq!(unix.to_string(), "unix:/run/portcullis/admin.sock");
    for bad in [
        "",
        "unix:",
        "localhost:9901",
        "127.0.0.1",
        "9901",
        "http://127.0.0.1:9901",
    ] {
        assert!(
            matches!(
                bad.parse::<AdminTarget>(),
                Err(ClientError::InvalidTarget(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn admin_client_paths_and_errors() {
    assert_eq!(
        revocation_path("viewers", "0a:1b/2 c"),
        "/revocations/viewers/0a%3A1b%2F2%20c"
    );
    assert_eq!(import_path("a b"), "/revocations/a%20b/import");
    assert_eq!(
        client::error_message(r#"{"error":"unknown store"}"#),
        "unknown store"
    );
    assert_eq!(client::error_message("plain text\n"), "plain text");

    let backend: Arc<Memory> = Arc::default();
    let (server, target) = start_tcp(Arc::clone(&backend));
    // An encoded '/' stays inside its segment and reaches the backend decoded.
    let (status, body) = call(&target, "GET", &revocation_path("viewers", "01/02"), b"");
    assert_eq!(
        (status, body),
        (
            400,
            serde_json::json!({ "error": "invalid serial \"01/02\"" })
        )
    );
    // Query strings are ignored.
    assert_eq!(call(&target, "GET", "/healthz?verbose=1", b"").0, 200);

    assert!(matches!(
        client::request(&target, "get", "/healthz", b""),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(matches!(
        client::request(&target, "GET", "/a b", b""),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(matches!(
        client::request(&target, "GET", "healthz", b""),
        Err(ClientError::InvalidRequest(_))
    ));
    drop(server);
    assert!(matches!(
        client::request(&target, "GET", "/healthz", b""),
        Err(ClientError::Io { .. })
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = AdminTarget::Unix(dir.path().join("missing.sock"));
    assert!(matches!(
        client::request(&missing, "GET", "/healthz", b""),
        Err(ClientError::Io { .. })
    ));
}

#[test]
fn admin_client_rejects_oversized_and_truncated_responses() {
    // A fake server that answers with a truncated body, then one that never stops.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Reads the whole request first, so that closing sends FIN rather than a reset.
    fn read_request(s: &mut TcpStream) {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
    }
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        drop(s);
        let (mut s, _) = listener.accept().expect("accept");
        read_request(&mut s);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
        let _ = s.write_all(head);
        let block = vec![b'x'; 64 * 1024];
        while s.write_all(&block).is_ok() {}
    });
    let target = AdminTarget::Tcp(addr);
    let truncated = client::request(&target, "GET", "/healthz", b"");
    assert!(
        matches!(truncated, Err(ClientError::InvalidResponse { .. })),
        "{truncated:?}"
    );
    let endless = client::request(&target, "GET", "/healthz", b"");
    assert!(
        matches!(endless, Err(ClientError::ResponseTooLarge(_))),
        "{endless:?}"
    );
    fake.join().expect("fake server");
}
