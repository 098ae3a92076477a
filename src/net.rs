//! Small socket helpers shared by every role: the accept loop with its thread per
//! connection, connecting with a deadline, the opening handshake, and random identifiers.
//!
//! Every dsys socket is a blocking `std::net::TcpStream`. A blocking call must never wait
//! forever on a peer that may be dead or hung, so every connect here has a timeout and
//! every stream leaves this module with read and write timeouts set.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::protocol::{Message, PROTOCOL_VERSION, Role, read_message, write_message};

/// Resolves `addr` (`host:port`) to its first socket address.
///
/// # Errors
/// [`Error::Usage`] when the address cannot be parsed or resolved.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| Error::Usage(format!("bad address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::Usage(format!("address {addr:?} resolves to nothing")))
}

/// Starts the `accept` thread of a thread-per-connection server (see [`accept_loop`]).
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn_accept_loop<F>(
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    stack_size: usize,
    serve: F,
) -> std::io::Result<thread::JoinHandle<()>>
where
    F: Fn(TcpStream) -> Result<()> + Clone + Send + 'static,
{
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(listener, stopping, stack_size, serve))
}

/// The heart of a thread-per-connection server: accepts connections until `stopping` is
/// set, and gives each one its own thread (named `conn-<peer>`, with `stack_size` bytes of
/// stack) that runs `serve`. A connection's error is logged and costs only that
/// connection. The owner sets `stopping` and then connects once to wake this loop up.
fn accept_loop<F>(listener: TcpListener, stopping: Arc<AtomicBool>, stack_size: usize, serve: F)
where
    F: Fn(TcpStream) -> Result<()> + Clone + Send + 'static,
{
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Mostly "too many open files": pause instead of spinning on the error.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let serve = serve.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn-{peer}"))
            .stack_size(stack_size)
            .spawn(move || {
                if let Err(e) = serve(stream) {
                    log::warn!("connection closed peer={peer} reason={e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
    log::debug!("accept loop stopped");
}

/// Binds a listener on `addr`, with an error that names the address (a port in use is a
/// runtime failure, exit status 1, and the user needs to know which port).
///
/// # Errors
/// [`Error::Usage`] for an unparsable address, [`Error::Io`] when binding fails.
pub fn listen(addr: &str) -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind(resolve(addr)?).map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}"),
        ))
    })
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

/// Connects and sends the opening [`Message::Hello`] for `role`.
///
/// # Errors
/// As [`connect`], plus [`Error::Io`] when the hello cannot be written.
pub fn connect_as(addr: &str, role: Role, timeout: Duration) -> Result<TcpStream> {
    let mut stream = connect(addr, timeout)?;
    write_message(
        &mut stream,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            role,
        },
    )?;
    Ok(stream)
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
        Some(Message::Error { reason }) => Err(Error::Refused(reason)),
        Some(reply) => Ok(reply),
        None => Err(Error::Protocol("connection closed before the reply".into())),
    }
}

/// Reads the first frame of an accepted connection and checks that it is a
/// [`Message::Hello`] of our version. Returns the role the peer announced, or `None` when
/// the peer closed without a byte: what the coordinator's reachability check does, so it is
/// an expected event, not a misbehaviour.
///
/// # Errors
/// [`Error::Protocol`] for anything else; [`Error::Io`] when the deadline set on the
/// stream passes first (a connection that says nothing is closed).
pub fn expect_hello(stream: &mut TcpStream) -> Result<Option<Role>> {
    match read_message(stream)? {
        Some(Message::Hello { version, role }) if version == PROTOCOL_VERSION => Ok(Some(role)),
        Some(Message::Hello { version, .. }) => Err(Error::Protocol(format!(
            "protocol version {version}, this build speaks {PROTOCOL_VERSION}"
        ))),
        Some(other) => Err(Error::Protocol(format!(
            "expected Hello as first frame, got {}",
            other.kind()
        ))),
        None => Ok(None),
    }
}

/// A random 64-bit number, different on every call (session ids, tokens, epochs' salt).
///
/// std's `RandomState` is seeded from the operating system's randomness for each process;
/// mixing in a counter makes successive calls differ. Not cryptographic: good enough for
/// identifiers, and `docs/security.md` says what tokens do and do not protect.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// The error every command gives when the coordinator does not answer: it names the address
/// and says what to check, as `CONTRACT.md` asks.
pub fn coordinator_unreachable(coordinator: &str, cause: Error) -> Error {
    Error::NoLiveServer(format!(
        "is a coordinator running at {coordinator}? (connecting failed: {cause})"
    ))
}
