//! Small socket helpers shared by every role: connecting with a deadline ([`connect`],
//! [`connect_as`]), the opening handshake ([`send_challenge`], [`expect_hello`]), the limits
//! every port applies to strangers ([`ConnectionLimits`]), and refusing a peer with a reason
//! ([`refuse`]). Its children: the accept loop (`net/accept.rs`), one send that never blocks
//! (`net/send_now.rs`), and the metrics port (`net/metrics_http.rs`).
//!
//! Every role, every tool and the tests call it. Nothing in this file starts a thread or
//! keeps state; each call runs on the caller's thread. A blocking call must never wait for
//! ever on a peer that may be dead or hung, so every connect here has a timeout and every
//! stream leaves this module with read and write timeouts set.
//!
//! What a stranger may cost a port, and why: `docs/security.md`, "The limits on every port".

mod accept;
pub mod metrics_http;
mod send_now;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::auth::{self, Secret};
use crate::error::{Error, Result};
use crate::protocol::{Message, PROTOCOL_VERSION, Refusal, Role, read_message, write_message};

pub use accept::AcceptLoop;
pub use send_now::send_now;

/// Resolves `addr` (`host:port`) to its first socket address. The command line has checked
/// the form already, so what fails here is the name itself.
///
/// # Errors
/// [`Error::Unreachable`] when the address cannot be parsed or its name does not resolve.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| Error::Unreachable(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| Error::Unreachable(format!("cannot resolve {addr}: no address found")))
}

/// What a listening role grants a connection it has not identified yet; each is a flag of
/// `dsys server` and `dsys coordinator`, and `docs/security.md` explains the defaults.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once. The next one is told so in an `Error` frame and closed at
    /// once, by the accept thread, without a thread of its own.
    pub max_connections: usize,
    /// Time from accept until the opening frames (`Hello` and the role's first request)
    /// must be in, however slowly they trickle ([`ReadBefore`]).
    pub handshake_timeout: Duration,
    /// How long an established connection may stay silent. Every dsys peer sends
    /// keepalives far more often, so only a dead or hung peer hits it.
    pub idle_timeout: Duration,
}

/// Default for `--handshake-timeout`: far above any real handshake on a LAN; a connection
/// that says nothing holds a thread this long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `--idle-timeout`: clients, peers and heartbeating servers all speak at least
/// every heartbeat interval (500 ms by default), so only a dead or hung peer is this quiet.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnectionLimits {
    /// At most `max_connections`, with the default timeouts.
    pub fn with_max_connections(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The deadline for the opening frames of a connection accepted now.
    pub fn handshake_deadline(&self) -> Instant {
        Instant::now() + self.handshake_timeout
    }
}

/// A reader that gives up at a deadline: each read waits at most the time left. The opening
/// frames of a connection are read through it, so a peer that trickles them a byte at a
/// time is closed at the deadline like one that sends nothing.
pub struct ReadBefore<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> ReadBefore<'a> {
    /// Reads from `stream` until `deadline`.
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> ReadBefore<'a> {
        ReadBefore { stream, deadline }
    }
}

impl Read for ReadBefore<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(handshake_deadline_passed());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        // The read timeout is the time left, so a timeout here is the deadline passing.
        stream.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => handshake_deadline_passed(),
            _ => e,
        })
    }
}

fn handshake_deadline_passed() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the handshake deadline passed")
}

/// Binds a listener on `addr`, with an error that names the address (a port in use is a
/// runtime failure, exit status 1, and the user needs to know which port).
///
/// # Errors
/// [`Error::Usage`] for an unparsable address, [`Error::Io`] when binding fails.
pub fn listen(addr: &str) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(resolve(addr)?).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}"),
        ))
    })?;
    widen_accept_backlog(&listener);
    Ok(listener)
}

/// Connections the kernel completes and holds for `accept()`, at most, per listening port
/// (Linux caps it at `net.core.somaxconn`, 4096 by default). std listens with 128: when
/// the clients of a crashed server, thousands of them, connect to the coordinator and to
/// the survivors within a few milliseconds, the rest of their SYNs were dropped and sent
/// again a second later, then three: the storm's clients came back in steps of 1 s and
/// 3 s (`docs/heartbeats-and-failover.md`, "The storm"). Held connections cost the kernel
/// a socket each until the accept loop takes them, under its own bounds
/// ([`ConnectionLimits`]).
const ACCEPT_BACKLOG: i32 = 4096;

/// Asks the kernel for a backlog of [`ACCEPT_BACKLOG`] on `listener` (Linux lets
/// `listen(2)` be called again on a listening socket to change it). Where it fails, the
/// listener keeps std's backlog, which only slows a burst of connections down.
fn widen_accept_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsFd;
    if let Err(e) = crate::support::sys::listen(listener.as_fd(), ACCEPT_BACKLOG) {
        log::debug!("cannot widen the accept backlog: {e}");
    }
}

/// Reads one opening frame of an accepted connection (its `Hello`, then its role's first
/// request), which must be in by the handshake `deadline`.
///
/// # Errors
/// As [`read_message`]; [`Error::Io`] when the deadline passes first.
pub fn read_opening(stream: &TcpStream, deadline: Instant) -> Result<Option<Message>> {
    read_message(&mut ReadBefore::new(stream, deadline))
}

/// Logs a warning when a role listens beyond this machine without a cluster secret:
/// anyone on the network could then join (`docs/security.md`).
pub fn warn_if_open_to_the_network(bound: SocketAddr, secret: Option<&Secret>) {
    if !bound.ip().is_loopback() && secret.is_none() {
        log::warn!(
            "listening on {bound} without a cluster secret: anyone who can reach this port \
             may join; set --secret-file or {} (docs/security.md)",
            auth::SECRET_ENV
        );
    }
}

/// Connects to `addr`, waiting at most `timeout`, and sets read and write timeouts of
/// `timeout` on the stream.
///
/// # Errors
/// [`Error::Io`] when nobody listens (refused), or the connect times out.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&resolve(addr)?, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Frames are small and latency matters more than packet count.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, answers the accepting side's challenge with the opening [`Message::Hello`] for
/// `role`, proving `secret` when this process has one (see `auth.rs`).
///
/// # Errors
/// As [`connect`]; [`Error::Refused`] when the other side refuses at once (too many
/// connections); [`Error::Protocol`] when it does not open with a challenge.
pub fn connect_as(
    addr: &str,
    role: Role,
    timeout: Duration,
    secret: Option<&Secret>,
) -> Result<TcpStream> {
    let mut stream = connect(addr, timeout)?;
    let nonce = match read_message(&mut stream)? {
        Some(Message::Challenge { nonce }) => nonce,
        Some(Message::Error { code, reason }) => return Err(Error::Refused(code, reason)),
        Some(other) => {
            return Err(Error::Protocol(format!(
                "expected Challenge from {addr}, got {}",
                other.kind()
            )));
        }
        None => {
            return Err(Error::Protocol(format!(
                "{addr} closed the connection before its challenge"
            )));
        }
    };
    write_message(
        &mut stream,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            role,
            proof: auth::proof_for(secret, &nonce, role),
        },
    )?;
    Ok(stream)
}

/// True when the server at `addr` is gone: it refuses the connection, or the connection is
/// closed or reset before the server's first frame. Waits at most `timeout` to connect and
/// again for that frame.
///
/// Accepting the TCP connection is not enough to count as there. A process being killed
/// loses its client connections a few milliseconds before its listening socket, and
/// meanwhile its kernel still accepts connections, then resets them when the socket
/// closes; its clients, who see their connections end first, ask about it in exactly that
/// window. The first frame settles it: a dying server resets, a live one sends its
/// `Challenge`. A server that accepts and stays silent (hung, or stopped) is not called
/// gone here: the coordinator's heartbeats decide that (`Coordinator::settle_suspect`).
///
/// The coordinator asks it about a server a client reported lost (`Coordinator::locate`);
/// a client asks it about its own lost server before it goes to its standby
/// (`Session::fail_over`).
pub fn is_gone(addr: &str, timeout: Duration) -> bool {
    let Ok(sock) = resolve(addr) else {
        return true;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, timeout) else {
        return true;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return true;
    }
    match read_message(&mut stream) {
        Ok(Some(_)) => false,
        Err(e) if e.is_timeout() => false,
        Ok(None) | Err(_) => true,
    }
}

/// One request, one reply: writes `request` and blocks for the answer (bounded by the
/// stream's read timeout). An [`Message::Error`] reply becomes [`Error::Refused`].
///
/// # Errors
/// [`Error::Io`] on timeout or reset, [`Error::Protocol`] when the peer closes without
/// answering or answers garbage.
pub fn request(stream: &mut TcpStream, request: &Message) -> Result<Message> {
    write_message(stream, request)?;
    match read_message(stream)? {
        Some(Message::Error { code, reason }) => Err(Error::Refused(code, reason)),
        Some(reply) => Ok(reply),
        None => Err(Error::Protocol("connection closed before the reply".into())),
    }
}

/// The longest `HOST:PORT` a server may advertise: a DNS name of 253 bytes, or an IPv6
/// address in brackets, a colon and five digits.
pub const MAX_ADDR_LEN: usize = 261;

/// Whether `addr`, which another process sent, can be a server's `HOST:PORT`: a colon, at
/// most [`MAX_ADDR_LEN`] bytes, and nothing but printable ASCII (DNS names, IPv4, and IPv6
/// in brackets are all written so). Such an address goes on into replies, status reports
/// and log lines; checking it where it comes in keeps an oversized one out of every frame,
/// and keeps control characters out of the operator's terminal.
pub fn is_plausible_addr(addr: &str) -> bool {
    addr.len() <= MAX_ADDR_LEN && addr.contains(':') && addr.bytes().all(|b| b.is_ascii_graphic())
}

/// The nonce an accepted connection was challenged with ([`send_challenge`]), against which
/// its `Hello` proves the cluster secret ([`expect_hello`]).
#[derive(Debug, Clone, Copy)]
pub struct Challenge([u8; 16]);

/// Opens an accepted connection: sends a [`Message::Challenge`] with a fresh nonce and
/// returns it. The accept thread calls this before it starts the connection's thread, so a
/// peer hears from this process as soon as it is accepted, whatever the rest of the process
/// is doing: the coordinator's probe of a late server counts that first frame as the
/// answer (`docs/protocol.md`, 6.6). The write cannot block: 25 bytes into a new
/// connection's empty send buffer.
pub fn send_challenge(stream: &TcpStream) -> Challenge {
    let nonce = auth::new_nonce();
    let mut writer = stream;
    // A peer that has closed already (a reachability check) may make this fail; the read
    // in `expect_hello` then sees the end of the stream.
    let _ = write_message(&mut writer, &Message::Challenge { nonce });
    Challenge(nonce)
}

/// Reads the [`Message::Hello`] that answers `challenge` by `deadline` and checks its
/// version and its proof of `secret`. Returns the role the peer announced, or `None` when
/// the peer closed without a byte: what the coordinator's reachability check and its probe
/// do, so it is an expected event, not a misbehaviour.
///
/// # Errors
/// [`Error::Protocol`] for anything else (another version or a wrong or missing secret
/// are told why in an `Error` frame first); [`Error::Io`] when `deadline` passes first (a
/// connection that says nothing, or too slowly, is closed).
pub fn expect_hello(
    stream: &TcpStream,
    challenge: Challenge,
    deadline: Instant,
    secret: Option<&Secret>,
) -> Result<Option<Role>> {
    let Challenge(nonce) = challenge;
    match read_opening(stream, deadline)? {
        Some(Message::Hello {
            version,
            role,
            proof,
        }) if version == PROTOCOL_VERSION => {
            if auth::accepts(secret, &nonce, role, &proof) {
                Ok(Some(role))
            } else {
                refuse(
                    stream,
                    &format!(
                        "refused {role:?}: this cluster requires its secret and the connection \
                         did not prove it (check --secret-file or {})",
                        auth::SECRET_ENV
                    ),
                )
            }
        }
        Some(Message::Hello { version, .. }) => refuse(
            stream,
            &format!("protocol version {version}, this build speaks {PROTOCOL_VERSION}"),
        ),
        Some(other) => Err(Error::Protocol(format!(
            "expected Hello as first frame, got {}",
            other.kind()
        ))),
        None => Ok(None),
    }
}

/// Refuses a peer that broke the protocol, telling it why first: writes `reason` in a
/// [`Message::Error`] frame, then returns it as [`Error::Protocol`]. The serve function
/// passes that error up, and the connection thread (see [`AcceptLoop`]) logs it as the
/// reason the connection ended. Every role refuses through here (or through [`turn_away`],
/// for a peer that broke no rule), so a refused peer always learns the reason, and the log
/// always shows it.
///
/// The write is best effort and blocks at most the stream's write timeout: a peer that has
/// gone cannot be told, and the refusal stands all the same. Dropping the stream (the
/// caller returns) closes it.
///
/// # Errors
/// Always: [`Error::Protocol`] carrying `reason`. It is generic in `T` so that any
/// connection function can `return refuse(...)`.
pub fn refuse<T>(stream: &TcpStream, reason: &str) -> Result<T> {
    turn_away(stream, Refusal::Other, reason);
    Err(Error::Protocol(reason.to_string()))
}

/// The address of the other end of `stream`, for a log line: `IP:PORT`, or `unknown` when
/// the socket no longer knows it (a connection reset before it was asked).
pub fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string())
}

/// Turns away a peer that broke no rule, telling it why: writes `code` and `reason` in a
/// [`Message::Error`] frame, as [`refuse`] does, but leaves the logging to the caller, at
/// the level the event deserves (an expected step of the protocol is no WARN). Dropping
/// the stream closes it.
pub fn turn_away(stream: &TcpStream, code: Refusal, reason: &str) {
    let mut writer = stream;
    let _ = write_message(
        &mut writer,
        &Message::Error {
            code,
            reason: reason.to_string(),
        },
    );
}

/// The error a command gives when it cannot talk to the `what` ("coordinator", "server")
/// at `addr`: one sentence that says what failed and what to check, as `CONTRACT.md` asks.
///
/// How `cause` tells what failed: a refused connect means nothing listens there; a
/// connect that timed out (`TimedOut`) means nothing answered at all; a read that timed
/// out (`WouldBlock`, the socket's timeout) means something accepted the connection but
/// said nothing, as a hung or overloaded process does (one out of file descriptors cannot
/// accept, but its kernel still completes the connection).
pub fn unreachable(what: &str, addr: &str, cause: Error) -> Error {
    let why = match cause {
        // It answered, so it runs: what matters is what it said (a missing secret, say).
        Error::Refused(code, why) => {
            return Error::Refused(code, format!("the {what} at {addr}: {why}"));
        }
        Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => {
                format!("nothing listens at {addr}: is a {what} running there?")
            }
            io::ErrorKind::TimedOut => format!(
                "no answer from {addr} (connecting timed out): is the address right, and is \
                 a {what} running there?"
            ),
            io::ErrorKind::WouldBlock => format!(
                "the {what} at {addr} accepted the connection but did not answer in time: it \
                 may be hung or overloaded"
            ),
            _ => format!("cannot talk to the {what} at {addr}: {e}"),
        },
        Error::Protocol(why) => {
            format!("the {what} at {addr} did not answer as a dsys {what} does: {why}")
        }
        // Already a sentence about this address (a name that does not resolve), or not
        // about reaching it at all.
        other => return other,
    };
    Error::Unreachable(why)
}
