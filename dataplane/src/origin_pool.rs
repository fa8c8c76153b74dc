//! Per-worker pools of keep-alive connections to origins.
//!
//! A worker is one thread, so its pool is a plain `RefCell` map: no locks. Idle connections
//! older than the pool's idle limit are dropped instead of reused, and each origin keeps at
//! most a bounded number of idle connections.
//!
//! An idle connection is reused only if it is provably quiet: anything the origin sends on
//! it while idle (a late or unsolicited response, a HEAD body in a later segment, bytes past a
//! Content-Length, or its close) would otherwise be read as the response to the next request,
//! which may come from another client. [`OriginPool::get`] therefore peeks at each candidate
//! without blocking and closes any that has bytes or an end of stream waiting, and the
//! worker's [`OriginPool::sweep`] closes such connections (and expired ones) while they wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

/// An origin connection taken from the pool or newly opened.
#[derive(Debug)]
pub struct OriginConn {
    /// The socket.
    pub stream: TcpStream,
    /// Whether it was reused from the pool (it may have been closed by the origin meanwhile).
    pub reused: bool,
    addr: SocketAddr,
}

impl OriginConn {
    /// The origin address this connection goes to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Why no origin connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Every address refused or failed.
    #[error("origin unreachable: {0}")]
    Unreachable(io::Error),
    /// The connect time-out passed.
    #[error("origin connect timed out")]
    TimedOut,
}

/// Idle origin connections of one worker, by origin address.
#[derive(Debug)]
pub struct OriginPool {
    idle: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
    max_idle_per_origin: usize,
    idle_limit: Duration,
}

impl OriginPool {
    /// A pool keeping at most `max_idle_per_origin` idle connections per origin, each for at
    /// most `idle_limit`.
    pub fn new(max_idle_per_origin: usize, idle_limit: Duration) -> Self {
        Self {
            idle: RefCell::new(HashMap::new()),
            max_idle_per_origin,
            idle_limit,
        }
    }

    /// A connection to the first reachable of `addrs`: a pooled one if a fresh enough one is
    /// idle, else a new one (each attempt bounded by `connect_timeout`).
    pub async fn get(
        &self,
        addrs: &[SocketAddr],
        connect_timeout: Duration,
    ) -> Result<OriginConn, ConnectError> {
        if let Some(conn) = self.take_idle(addrs) {
            return Ok(conn);
        }
        Self::connect(addrs, connect_timeout).await
    }

    /// A new connection, never a pooled one.
    pub async fn connect(
        addrs: &[SocketAddr],
        connect_timeout: Duration,
    ) -> Result<OriginConn, ConnectError> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no origin address");
        for &addr in addrs {
            match monoio::time::timeout(connect_timeout, TcpStream::connect_addr(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(OriginConn {
                        stream,
                        reused: false,
                        addr,
                    });
                }
                Ok(Err(e)) => last = e,
                Err(_) => return Err(ConnectError::TimedOut),
            }
        }
        Err(ConnectError::Unreachable(last))
    }

    /// Returns a connection whose last response was complete and kept alive.
    pub fn put(&self, conn: OriginConn) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(conn.addr).or_default();
        if list.len() < self.max_idle_per_origin {
            list.push((conn.stream, Instant::now()));
        }
    }

    /// Closes the idle connections that expired or are no longer quiet. Called by the
    /// worker about once a second.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for (addr, list) in idle.iter_mut() {
            list.retain(|(stream, since)| {
                now.duration_since(*since) < self.idle_limit && is_quiet(stream, *addr)
            });
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn take_idle(&self, addrs: &[SocketAddr]) -> Option<OriginConn> {
        let mut idle = self.idle.borrow_mut();
        for &addr in addrs {
            let Some(list) = idle.get_mut(&addr) else {
                continue;
            };
            while let Some((stream, since)) = list.pop() {
                if since.elapsed() < self.idle_limit && is_quiet(&stream, addr) {
                    return Some(OriginConn {
                        stream,
                        reused: true,
                        addr,
                    });
                }
            }
        }
        None
    }
}

/// Whether nothing waits to be read on an idle origin connection: no bytes, no end of stream,
/// no error. One non-blocking `recv(MSG_PEEK)`; anything but "would block" means the
/// connection must not carry another request.
fn is_quiet(stream: &TcpStream, addr: SocketAddr) -> bool {
    let mut byte = 0u8;
    // SAFETY: a valid socket descriptor owned by `stream`, and a one-byte buffer; MSG_PEEK
    // leaves the data in place and MSG_DONTWAIT never blocks the worker.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            std::ptr::from_mut(&mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return true;
        }
        tracing::debug!(origin = %addr, error = %e, "idle origin connection failed; closing it");
    } else if n == 0 {
        tracing::debug!(origin = %addr, "origin closed an idle connection");
    } else {
        tracing::warn!(origin = %addr, "origin sent unsolicited data on an idle keep-alive connection; closing it");
    }
    false
}
