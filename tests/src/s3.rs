//! A real S3-compatible server for the tests: moto's server mode (`moto_server`, from PyPI,
//! installed by `.ci/run`), started by the test on 127.0.0.1, and a signed S3 client
//! (`object_store`) that writes objects into it. A missing `moto_server` fails the test: it is
//! never skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// How long moto may take to answer after it was started (Python imports are slow).
const MOTO_START: Duration = Duration::from_secs(60);

/// Credentials moto accepts (it accepts any) and the region, for Portcullis and the client.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "portcullis-test"),
    ("AWS_SECRET_ACCESS_KEY", "portcullis-test-secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Where `moto_server` is: `$MOTO_SERVER`, else on `PATH`, else the virtualenv `.ci/run`
/// creates (`~/.cache/portcullis-moto`).
pub fn moto_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(path) = on_path {
        return path;
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/portcullis-moto/bin/moto_server"));
    match venv {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "moto_server not found ($MOTO_SERVER, PATH, ~/.cache/portcullis-moto/bin): \
             install it with `pip install 'moto[server]'` (.ci/run does)"
        ),
    }
}

/// A running `moto_server` on 127.0.0.1; stopped when dropped.
pub struct Moto {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it answers.
    pub fn start() -> Self {
        let bin = moto_server_bin();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut moto = Self {
            child: Some(child),
            addr,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        };
        let deadline = Instant::now() + MOTO_START;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("moto_server exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// `http://127.0.0.1:PORT`, for `s3_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket (moto accepts an unsigned `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-X", "PUT"])
            .arg(format!("{}/{bucket}", self.endpoint()))
            .output()
            .expect("curl");
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(status, "200", "create bucket {bucket}");
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        // reqwest runs rustls without a built-in provider in this workspace.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true);
        for (key, value) in AWS_ENV {
            builder = match key {
                "AWS_ACCESS_KEY_ID" => builder.with_access_key_id(value),
                "AWS_SECRET_ACCESS_KEY" => builder.with_secret_access_key(value),
                "AWS_REGION" => builder.with_region(value),
                _ => builder,
            };
        }
        Arc::new(builder.build().expect("S3 client"))
    }

    /// Writes (or overwrites) `s3://bucket/key` with a signed PUT.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let store = self.store(bucket);
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    store.put(&ObjectPath::from(key), payload),
                )
                .await
            })
            .expect("PUT within 30 s")
            .unwrap_or_else(|e| panic!("PUT s3://{bucket}/{key}: {e}"));
    }

    /// Stops the server (objects are lost: moto keeps them in memory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "moto_server still answers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
