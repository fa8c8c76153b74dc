//! The new process's side of a binary upgrade: take the inherited descriptors named in the
//! old process's [`Handover`](super::protocol::Handover) (each checked to be what it is said
//! to be), report ready or the reason it cannot start, and wait for the old process's
//! decision.

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::protocol::{self, AdminEndpoint, PassedSessions, ToChild, ToParent};
use super::ENV_FD;
use crate::admin::InheritedAdmin;
use crate::control::SessionHandover;
use crate::server::InheritedListener;

/// How long the new process waits for the old one's handover message.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the new process, once ready, waits for the old one's decision.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the old process handed to this one.
#[derive(Debug)]
pub struct Inherited {
    /// The old process's id.
    pub parent: u32,
    /// Its worker listeners.
    pub listeners: Vec<InheritedListener>,
    /// Its admin API listener.
    pub admin: Option<InheritedAdmin>,
    /// Its session material.
    pub sessions: Option<SessionHandover>,
    channel: Channel,
}

/// The old process's decision once this one is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This process is the service now.
    Commit,
    /// The old process gave up on this one (or fell silent): drain and exit.
    Abort,
    /// The old process is gone without deciding: this process is the only one serving.
    ParentGone,
}

#[derive(Debug)]
struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Inherited {
    /// The handover, if this process was started by a binary upgrade (`PORTCULLIS_UPGRADE_FD`
    /// is set): reads the old process's message and takes every descriptor it names.
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(value) = std::env::var_os(ENV_FD) else {
            return Ok(None);
        };
        // Not for a later child of this process (a later upgrade sets its own).
        std::env::remove_var(ENV_FD);
        let fd: RawFd = value
            .to_str()
            .and_then(|v| v.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{ENV_FD}={value:?} is not a descriptor number"))?;
        let socket = take_socket(fd, Domain::UNIX).map_err(|e| format!("{ENV_FD}: {e}"))?;
        let writer = UnixStream::from(OwnedFd::from(socket));
        let reader = writer
            .try_clone()
            .map(BufReader::new)
            .map_err(|e| format!("{ENV_FD}: {e}"))?;
        let mut channel = Channel { writer, reader };
        let deadline = Instant::now() + HANDOVER_TIMEOUT;
        let handover = match protocol::receive::<ToChild>(&mut channel.reader, deadline) {
            Ok(ToChild::Handover(handover)) => handover,
            Ok(other) => return Err(format!("unexpected upgrade message {other:?}")),
            Err(e) => return Err(format!("reading the old process's handover: {e}")),
        };
        let mut inherited = Self {
            parent: handover.parent,
            listeners: Vec::new(),
            admin: None,
            sessions: None,
            channel,
        };
        let result = inherited.take(handover);
        if let Err(reason) = &result {
            inherited.fail(reason);
        }
        result.map(|()| Some(inherited))
    }

    fn take(&mut self, handover: protocol::Handover) -> Result<(), String> {
        for passed in handover.listeners {
            let socket = take_socket(passed.fd, domain_of(passed.addr))
                .map_err(|e| format!("inherited listener {}: {e}", passed.addr))?;
            check_listening(&socket, Some(passed.addr))
                .map_err(|e| format!("inherited listener {}: {e}", passed.addr))?;
            self.listeners.push(InheritedListener {
                addr: passed.addr,
                socket: TcpListener::from(OwnedFd::from(socket)),
            });
        }
        if let Some(admin) = handover.admin {
            let (domain, tcp) = match &admin.endpoint {
                AdminEndpoint::Tcp(addr) => (domain_of(*addr), Some(*addr)),
                AdminEndpoint::Unix(_) => (Domain::UNIX, None),
            };
            let socket = take_socket(admin.fd, domain)
                .map_err(|e| format!("inherited admin listener: {e}"))?;
            check_listening(&socket, tcp).map_err(|e| format!("inherited admin listener: {e}"))?;
            self.admin = Some(match admin.endpoint {
                AdminEndpoint::Tcp(_) => {
                    InheritedAdmin::Tcp(TcpListener::from(OwnedFd::from(socket)))
                }
                AdminEndpoint::Unix(path) => InheritedAdmin::Unix {
                    listener: UnixListener::from(OwnedFd::from(socket)),
                    path,
                },
            });
        }
        self.sessions = handover.sessions.and_then(|passed| sessions(&passed));
        Ok(())
    }

    /// Tells the old process this one cannot start (it keeps serving).
    pub fn fail(&mut self, reason: &str) {
        let _ = protocol::send(
            &mut self.channel.writer,
            &ToParent::Failed {
                reason: reason.to_owned(),
            },
        );
    }

    /// Tells the old process every worker listens, and waits for its decision.
    pub fn ready(&mut self) -> Decision {
        let ready = ToParent::Ready {
            pid: std::process::id(),
        };
        if protocol::send(&mut self.channel.writer, &ready).is_err() {
            return Decision::ParentGone;
        }
        let deadline = Instant::now() + DECISION_TIMEOUT;
        match protocol::receive::<ToChild>(&mut self.channel.reader, deadline) {
            Ok(ToChild::Commit) => Decision::Commit,
            Ok(_) => Decision::Abort,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Decision::ParentGone,
            Err(_) => Decision::Abort,
        }
    }
}

fn domain_of(addr: SocketAddr) -> Domain {
    Domain::for_address(addr)
}

/// Takes ownership of inherited descriptor `fd`, which must be an open stream socket of
/// `domain`, and marks it close-on-exec again.
fn take_socket(fd: RawFd, domain: Domain) -> io::Result<Socket> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is a standard stream"),
        ));
    }
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags; it fails with EBADF on a
    // descriptor that is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was inherited for this process to
    // own: the old process names each one once in its handover message and this process
    // takes each named one once, right here, before anything else could use it.
    let socket = unsafe { Socket::from(OwnedFd::from_raw_fd(fd)) };
    socket.set_cloexec(true)?;
    if socket.domain()? != domain || socket.r#type()? != Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a stream socket of the expected family"),
        ));
    }
    Ok(socket)
}

/// Checks that `socket` listens, on `addr` if given.
fn check_listening(socket: &Socket, addr: Option<SocketAddr>) -> io::Result<()> {
    if !socket.is_listener()? {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not listening"));
    }
    if let Some(addr) = addr {
        let bound = socket.local_addr()?.as_socket();
        if bound != Some(addr) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bound to {bound:?}, not {addr}"),
            ));
        }
    }
    Ok(())
}

/// The session material, if well-formed.
fn sessions(passed: &PassedSessions) -> Option<SessionHandover> {
    let mut ticket_key = [0u8; crate::tls::ext::TICKET_KEYS_LEN];
    let mut fingerprint = [0u8; 32];
    hex::decode_to_slice(&passed.ticket_key, &mut ticket_key).ok()?;
    hex::decode_to_slice(&passed.fingerprint, &mut fingerprint).ok()?;
    Some(SessionHandover {
        ticket_key,
        fingerprint,
        epoch: passed.epoch,
    })
}

/// The session material as sent.
pub(super) fn passed_sessions(sessions: &SessionHandover) -> PassedSessions {
    PassedSessions {
        ticket_key: hex::encode(sessions.ticket_key),
        fingerprint: hex::encode(sessions.fingerprint),
        epoch: sessions.epoch,
    }
}
