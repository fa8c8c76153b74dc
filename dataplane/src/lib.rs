//! Portcullis data plane: thread-per-core workers that terminate viewer mTLS with BoringSSL and
//! proxy HTTP/1.1 and HTTP/2 viewers to HTTP/1.1 origins.
//!
//! Data flows one way: [`worker`] accepts, [`connection`] runs the TLS handshake under the
//! site's policy ([`tls`]), the ALPN-selected codec ([`http1`] or [`http2`]) reads requests
//! and drives the protocol-neutral [`exchange`], which forwards each to the origin
//! ([`origin_pool`]) with the viewer-cert headers ([`viewer_cert`]). Configuration changes at
//! run time (SIGHUP, the admin API, watched files, polled objects from [`sources`]) go through
//! [`control`].

pub mod admin;
pub mod admin_backend;
pub mod buffer_pool;
pub mod connection;
pub mod control;
pub mod demo;
pub mod demo_origin;
pub mod exchange;
pub mod function;
pub mod http;
pub mod http1;
pub mod http2;
pub mod local_snapshot;
pub mod notify;
pub mod origin_pool;
pub mod pki;
pub mod revocation;
pub mod run;
pub mod server;
pub mod shutdown;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod viewer_cert;
pub mod viewer_header_cache;
pub mod worker;
pub mod write_timeout;
