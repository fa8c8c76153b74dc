//! Portcullis data plane: thread-per-core workers that terminate viewer mTLS with BoringSSL and
//! proxy HTTP/1.1 and HTTP/2 viewers to HTTP/1.1 origins.
//!
//! Data flows one way: `worker` accepts, `connection` runs the TLS handshake under the
//! site's policy ([`tls`]), the ALPN-selected codec (`http1` or [`http2`]) reads requests and
//! drives the protocol-neutral `exchange`, which forwards each to the origin (`origin_pool`)
//! with the viewer-cert headers ([`viewer_cert`]). Configuration changes at run time (SIGHUP,
//! the admin API, watched files, polled objects from `sources`) go through `control`.
//!
//! Public modules are the ones other crates use (the `portcullis` binary, the end-to-end
//! tests, the benchmarks, the fuzz targets); the rest of the data path is private. The demo
//! ([`demo`]: PKI generation with `rcgen`, the echo origin) is behind the default cargo
//! feature `demo`; `portcullis::pki` and `portcullis::demo_origin` name its two halves.

pub mod admin;
mod admin_backend;
mod buffer_pool;
mod client_ip_limit;
mod connection;
mod control;
#[cfg(any(test, feature = "demo"))]
pub mod demo;
mod exchange;
pub mod function;
pub mod http;
mod http1;
pub mod http2;
pub mod local_snapshot;
mod notify;
mod origin_pool;
pub mod revocation;
pub mod run;
mod server;
mod service;
mod shutdown;
mod sources;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod viewer_cert;
pub mod viewer_header_cache;
mod worker;
mod write_timeout;

#[cfg(any(test, feature = "demo"))]
pub use demo::{origin as demo_origin, pki};
