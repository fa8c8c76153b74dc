//! What the two processes of a binary upgrade say to each other over their Unix socket pair:
//! one JSON message per line, each line at most [`MAX_LINE`] bytes, every read bounded by a
//! deadline.
//!
//! The old process sends [`ToChild::Handover`] (which descriptors are which listener, the
//! session material), the new one answers [`ToParent::Ready`] once every worker listens (or
//! [`ToParent::Failed`] with the reason it cannot start), and the old one then sends
//! [`ToChild::Commit`] (the new process is the service from now on) or [`ToChild::Abort`]
//! (the new process took too long: it drains what it accepted and exits).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest message line.
pub const MAX_LINE: usize = 64 * 1024;

/// From the old process to the new one.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// The inherited descriptors and what keeps sessions valid.
    Handover(Handover),
    /// The new process is the service now: the old one drains and exits.
    Commit,
    /// The old process gave up on the new one (too slow): drain and exit.
    Abort,
}

/// From the new process to the old one.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// Every worker listens.
    Ready {
        /// The new process's id.
        pid: u32,
    },
    /// The new process cannot start; it exits.
    Failed {
        /// Why (the configuration errors, a listener that cannot be used, ...).
        reason: String,
    },
}

/// The descriptors the new process inherited and what they are.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The old process's id.
    pub parent: u32,
    /// Every worker listener of the old process.
    pub listeners: Vec<PassedListener>,
    /// The admin API's listener, if the old process has one.
    pub admin: Option<PassedAdmin>,
    /// The session material, if it could be read.
    pub sessions: Option<PassedSessions>,
}

/// A worker listener.
#[derive(Debug, Serialize, Deserialize)]
pub struct PassedListener {
    /// Its descriptor number in the new process.
    pub fd: RawFd,
    /// The address it is bound to.
    pub addr: SocketAddr,
}

/// The admin API's listener.
#[derive(Debug, Serialize, Deserialize)]
pub struct PassedAdmin {
    /// Its descriptor number in the new process.
    pub fd: RawFd,
    /// Where it listens.
    pub endpoint: AdminEndpoint,
}

/// Where an admin listener listens.
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminEndpoint {
    /// Loopback TCP.
    Tcp(SocketAddr),
    /// A Unix socket file.
    Unix(PathBuf),
}

/// What keeps the old process's sessions resumable (see `control::SessionHandover`).
#[derive(Serialize, Deserialize)]
pub struct PassedSessions {
    /// The 48-byte ticket key, hex.
    pub ticket_key: String,
    /// The live generation's fingerprint, hex.
    pub fingerprint: String,
    /// The revocation epoch.
    pub epoch: u64,
}

impl std::fmt::Debug for PassedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassedSessions")
            .field("fingerprint", &self.fingerprint)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Writes one message line.
pub fn send<T: Serialize>(stream: &mut UnixStream, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Reads one message line, waiting until `deadline` at the latest.
pub fn receive<T: DeserializeOwned>(
    reader: &mut BufReader<UnixStream>,
    deadline: Instant,
) -> io::Result<T> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        reader
            .get_ref()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let limit = (MAX_LINE + 1).saturating_sub(line.len()) as u64;
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) if line.len() > MAX_LINE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "upgrade message too long",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into())
            }
            Err(e) => return Err(e),
        }
    }
    serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reads_are_bounded() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut reader = BufReader::new(b);
        send(&mut a, &ToParent::Ready { pid: 42 }).expect("send");
        send(&mut a, &ToChild::Commit).expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            receive::<ToParent>(&mut reader, deadline),
            Ok(ToParent::Ready { pid: 42 })
        ));
        assert!(matches!(
            receive::<ToChild>(&mut reader, deadline),
            Ok(ToChild::Commit)
        ));
        // Nothing more: the read ends at the deadline.
        let soon = Instant::now() + Duration::from_millis(50);
        let e = receive::<ToChild>(&mut reader, soon).expect_err("nothing sent");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // An endless line is refused.
        a.write_all(&vec![b'x'; MAX_LINE + 10]).expect("write");
        let e = receive::<ToChild>(&mut reader, deadline).expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // The peer closed: end of file.
        drop(a);
        let (a, b) = UnixStream::pair().expect("pair");
        drop(a);
        let e = receive::<ToChild>(&mut BufReader::new(b), deadline).expect_err("closed");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
