//! Connection functions: CloudFront-compatible JavaScript run inside the TLS handshake.
//!
//! A site's `[site.mtls.connection_function]` names a JavaScript module that defines
//! `connectionHandler(connection)` (plain or `async`) and may `import cf from 'cloudfront'`
//! (see `spec/connection-functions.md`). [`ConnectionFunction::new`] checks it when the TLS
//! snapshot is built (syntax errors are configuration errors with line and column), and each
//! worker thread compiles it once into its own QuickJS runtime ([`engine`]: one runtime and
//! context per thread, nothing shared, no locks) the first time it runs there.
//!
//! [`ConnectionFunction::call`] runs the handler for one connection, synchronously, inside
//! BoringSSL's verify callback (or right after a handshake without a client certificate):
//! promises are settled within the call by running the job queue, an interrupt handler stops
//! it at the time limit, and every way of not allowing (deny, throw, rejection, time-out, no
//! decision) is a [`FunctionRefusal`] that fails the handshake closed.
//!
//! `cf.kvs()` reads a revocation store ([`kvs`]), lock-free, live: an admin API change applies
//! to the next call.

pub mod engine;
pub mod event;
pub mod kvs;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::ConnectionFunctionSettings;

pub use event::TestEvent;
pub use kvs::KvsSource;

use crate::telemetry::LeafFields;

/// Most bytes of custom log data kept (`connectionLogCustomData`).
pub const MAX_CUSTOM_DATA_BYTES: usize = 800;

/// Source of [`ConnectionFunction`] ids.
static NEXT_FUNCTION_ID: AtomicU64 = AtomicU64::new(1);

/// A connection function of a snapshot: its source, how it runs and what it reads. Workers
/// compile it on first use (once per worker); a reload builds a new one with a new id.
#[derive(Debug)]
pub struct ConnectionFunction {
    id: u64,
    name: Arc<str>,
    source: Arc<str>,
    time_limit: Duration,
    kvs: Option<KvsSource>,
    digest: [u8; 32],
}

/// Why a function's source cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", location.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default())]
pub struct CompileError {
    /// What is wrong (`SyntaxError: unexpected token in expression: ')'`).
    pub message: String,
    /// Line and column (1-based) in the function's file, when the engine reports them.
    pub location: Option<(u32, u32)>,
}

impl ConnectionFunction {
    /// Checks `source` (compiles and evaluates it in a scratch engine, which must find
    /// `connectionHandler`) and describes the function. `name` is how logs, stack traces and
    /// errors name it (the file name).
    pub fn new(
        name: &str,
        source: Arc<str>,
        time_limit: Duration,
        kvs: Option<KvsSource>,
    ) -> Result<Self, CompileError> {
        let mut digest_input = Vec::with_capacity(source.len() + 64);
        digest_input.extend_from_slice(name.as_bytes());
        digest_input.push(0);
        digest_input.extend_from_slice(source.as_bytes());
        digest_input.push(0);
        if let Some(kvs) = &kvs {
            digest_input.extend_from_slice(kvs.name().as_bytes());
        }
        let function = Self {
            id: NEXT_FUNCTION_ID.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(name),
            source,
            time_limit,
            kvs,
            digest: boring::sha::sha256(&digest_input),
        };
        engine::check(&function)?;
        Ok(function)
    }

    /// The function of a site's validated settings, reading `kvs` (the store its `kvs` names).
    pub fn from_settings(
        settings: &ConnectionFunctionSettings,
        kvs: Option<KvsSource>,
    ) -> Result<Self, CompileError> {
        Self::new(
            &settings.name(),
            Arc::clone(&settings.source),
            settings.time_limit,
            kvs,
        )
    }

    /// Unique for the life of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The execution time limit per call.
    pub fn time_limit(&self) -> Duration {
        self.time_limit
    }

    /// The store `cf.kvs()` reads.
    pub fn kvs(&self) -> Option<&KvsSource> {
        self.kvs.as_ref()
    }

    /// SHA-256 of the name, source and store name: changes whenever the function changes.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// A number that changes whenever the data the function reads changes (its store's
    /// version; 0 without a store): sessions are bound to it.
    pub fn data_version(&self) -> u64 {
        self.kvs.as_ref().map_or(0, KvsSource::version)
    }

    /// Runs the handler for one connection on this thread's engine.
    pub fn call(&self, input: &FunctionInput<'_>) -> CallReport {
        engine::call(self, input, false)
    }

    /// Like [`Self::call`], also collecting the `console.log` lines (`function test`).
    pub fn call_collecting_console(&self, input: &FunctionInput<'_>) -> CallReport {
        engine::call(self, input, true)
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

/// What a connection function sees of one connection (the event of the spec).
#[derive(Debug, Clone, Copy)]
pub struct FunctionInput<'a> {
    /// The client leaf's fields; None when no certificate was presented.
    pub leaf: Option<&'a LeafFields>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The SNI, or the site's first server name.
    pub endpoint: &'a str,
    /// The site's name.
    pub distribution_id: &'a str,
    /// The connection's id.
    pub connection_id: &'a str,
    /// The negotiated TLS version (`TLSv1.3`), an extension.
    pub tls_version: Option<&'a str>,
}

/// The decision a function made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `connection.allow()`.
    Allow,
    /// `connection.deny()`.
    Deny,
}

/// Why a connection function did not allow a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionFailure {
    /// It called `connection.deny()`.
    Denied,
    /// It ran past its time limit.
    TimeLimit(Duration),
    /// It threw (the exception and where).
    Exception(Box<str>),
    /// The promise of an async handler was rejected.
    Rejected(Box<str>),
    /// It settled without calling `allow()` or `deny()`.
    NoDecision,
    /// Its promise never settled and it made no decision.
    NeverSettled,
    /// The engine could not run it (out of memory at start-up, compile failure on a worker).
    Unavailable(Box<str>),
}

/// A connection refused by its site's connection function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRefusal {
    /// The function's file name.
    pub function: Arc<str>,
    /// How it refused.
    pub failure: FunctionFailure,
}

impl FunctionRefusal {
    /// Whether the function decided to deny (rather than failed).
    pub fn is_denial(&self) -> bool {
        self.failure == FunctionFailure::Denied
    }
}

impl fmt::Display for FunctionRefusal {
    /// The connection log's `failureDetail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.function;
        match &self.failure {
            FunctionFailure::Denied => write!(f, "denied by connection function {name}"),
            FunctionFailure::TimeLimit(limit) => write!(
                f,
                "time limit: connection function {name} ran past {} ms",
                limit.as_secs_f64() * 1e3
            ),
            FunctionFailure::Exception(what) => {
                write!(f, "connection function {name} threw: {what}")
            }
            FunctionFailure::Rejected(what) => {
                write!(f, "connection function {name}: promise rejected: {what}")
            }
            FunctionFailure::NoDecision => write!(
                f,
                "connection function {name} made no decision (neither allow() nor deny() was called)"
            ),
            FunctionFailure::NeverSettled => write!(
                f,
                "connection function {name} never settled and made no decision"
            ),
            FunctionFailure::Unavailable(what) => {
                write!(f, "connection function {name} could not run: {what}")
            }
        }
    }
}

/// What one call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// Allowed, or why not.
    pub decision: Result<(), FunctionRefusal>,
    /// The last `connection.logCustomData()` text (at most 800 bytes).
    pub custom_data: Option<Box<str>>,
    /// `console.log` lines, when collected.
    pub console: Vec<String>,
    /// Time spent running the handler and its promise jobs.
    pub elapsed: Duration,
}

/// `text` cut to at most [`MAX_CUSTOM_DATA_BYTES`], back to a character boundary.
pub fn cut_custom_data(text: &str) -> &str {
    if text.len() <= MAX_CUSTOM_DATA_BYTES {
        return text;
    }
    let mut end = MAX_CUSTOM_DATA_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
