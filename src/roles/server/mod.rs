//! A dsys server: accepts clients (one thread per connection), registers them, and broadcasts
//! every message to every other client, here and on every other live server.
//!
//! **Threads.**
//! - `accept`: [`start_server`]'s accept loop; spawns one thread per connection.
//! - `conn-<peer>`: reads one connection. For a client it is the seed's "thread per client":
//!   it registers the client ([`register_client`]) and then reads its publishes into the hub.
//!   For a peer server it reads relays into the hub and answers each with an ack.
//! - `send-<name>`: a client's writer. It drains the client's bounded outbox into the socket,
//!   batching whatever is queued into one write, and sends a keepalive when idle.
//!   The reader and writer of one socket are separate threads (each with a `try_clone` of
//!   the stream), so a client that is slow to read never delays its own publishes, and a
//!   socket that blocks on write blocks only its own writer.
//! - `heartbeat`: every `heartbeat_interval`, tells the coordinator this server lives and
//!   which clients it has; the reply lists the live servers, from which the peer links are
//!   made ([`heartbeat`]).
//! - `peer-<addr>`: one per live peer, relaying this server's clients' messages ([`peers`]).
//!
//! **Channels.** Each client's outbox (hub → `send-<name>`) and each peer link's queue
//! (hub → `peer-<addr>`) are crossbeam channels bounded in frames and bytes ([`outbox`]);
//! the hub only ever `try_push`es, and what it does when one is full is written where it
//! happens (`hub.rs`).
//!
//! **Backpressure.** A publish waits in the hub until there is room for it
//! ([`hub::Hub::publish`]): until the peers have confirmed enough of this server's relays,
//! and until the clients still reading have had what the history window would forget. The
//! connection thread waits on a condition variable, holding no lock and doing no I/O;
//! meanwhile it reads nothing, and TCP slows the sender down. So a fast sender goes at the
//! pace of the slowest peer and the slowest reading client, memory stays bounded whatever
//! clients send, and nobody loses a message for being slower than the sender
//! (`docs/guarantees.md`, section 5). A client that stops reading altogether holds nobody
//! back for longer than `--stall-timeout` ([`DEFAULT_STALL_TIMEOUT`]).
//!
//! **When a peer fails.** A broken client connection removes that client; a broken peer link
//! is retried from its thread; a protocol error costs only its connection, with the reason
//! logged. A dead coordinator only stops heartbeats: clients and peers carry on.
//!
//! **Stopping.** [`ServerHandle::stop`] stops the heartbeat and peer threads (their stop
//! channel disconnects), wakes the accept loop with a self-connection, shuts down every
//! client socket through the hub, and joins the accept and heartbeat threads.

mod heartbeat;
pub mod hub;
mod outbox;
mod peers;

use std::io::{BufWriter, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Body, MAX_PAYLOAD_LEN, Message, Role, read_message, write_message};
use crate::signals;
use hub::{CatchUp, Frame, Hub, Limits, Origin};
use outbox::OutboxReceiver;

/// Default for `--max-clients`. Each client costs two threads with small stacks
/// ([`THREAD_STACK`]): ten thousand reserve about 5 GiB of address space, but only the
/// pages a stack really touches (a few KiB each) become resident memory.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default for `--history-messages`: enough for a few seconds of traffic at full rate, which
/// is what a failover needs.
pub const DEFAULT_HISTORY_MESSAGES: usize = 100_000;
/// Default for `--history-bytes`: 16 MiB of payload, about a tenth of a second of file
/// chunks at full rate on loopback, or seconds of text. With the relay window and the
/// outboxes derived from it (below), a server's memory stays well under 64 MiB.
pub const DEFAULT_HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// Frames queued for one client; beyond it the client is behind and catches up from the
/// history window (see `Hub::catch_up`).
const CLIENT_QUEUE: usize = 4096;
/// Frames queued for one peer, and the relay window in messages (see `Limits::peer_queue`).
const PEER_QUEUE: usize = 16_384;

/// The byte bounds, derived from `--history-bytes`: a client's outbox, the relay window and
/// a peer's queue each hold at most half the history window. The outboxes and the queues
/// hold frames shared with the window and the outbound log, so what they add is small; the
/// outbound log, which holds the unconfirmed relays, costs at most half again what the
/// window costs.
fn byte_bounds(history_bytes: usize) -> usize {
    (history_bytes / 2).max(1)
}
/// Default for `--stall-timeout`: how long a client that is behind may take no frame and
/// still slow publishers down. A reading client takes one at least every few milliseconds,
/// even from a slow disk. Beyond it the client is taken to have stopped reading; it is cut
/// off when a write to it blocks for `--write-timeout`, or when it reads again and finds its
/// messages gone from the window.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for `--max-connections`: every client, plus room for peers, handshakes and
/// reachability checks. Beyond it a new connection is refused at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = DEFAULT_MAX_CLIENTS + 1024;
/// How long a registration waits for a just-started server to link with all its peers
/// (see `Hub::wait_ready`). Beyond it the client is registered anyway, with a warning: a
/// server that cannot reach the coordinator must still serve the clients sent to it.
const READY_WAIT: Duration = Duration::from_secs(3);
/// Default for `--write-timeout`: how long one write to a client may block before the client
/// is cut off as a reader that has stopped. A client that reads at all drains a socket
/// buffer in milliseconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames a writer gathers into one batch when a backlog exists, bounding batch latency.
const MAX_BATCH: usize = 256;
/// Stack size of connection threads: they hold no large buffers on the stack, and small
/// stacks let a server hold thousands of connections.
const THREAD_STACK: usize = 256 * 1024;
/// Default for `--max-name-len`: the longest accepted client name (in bytes, which the
/// alphabet makes characters). Names travel in every message and every status report.
pub const DEFAULT_MAX_NAME_LEN: usize = 32;
/// The highest `--max-name-len`, and what a client checks its own name against before it
/// registers: plenty for a name, and far below the 64 KiB a string on the wire may hold.
pub const MAX_NAME_LEN_LIMIT: usize = 255;

/// How a server is set up (`dsys server` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`host:port`; port 0 picks a free port).
    pub bind: String,
    /// The address others should use, when it differs from the bound one.
    pub advertise: Option<String>,
    /// The coordinator's address.
    pub coordinator: String,
    /// How often to heartbeat (and to send keepalives to idle clients and peers).
    pub heartbeat_interval: Duration,
    /// Most clients at once.
    pub max_clients: usize,
    /// History window, in messages.
    pub history_messages: usize,
    /// History window, in payload bytes.
    pub history_bytes: usize,
    /// What a connection gets before it has identified itself, and how long it may idle.
    pub limits: net::ConnectionLimits,
    /// See [`DEFAULT_STALL_TIMEOUT`].
    pub stall_timeout: Duration,
    /// See [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// Longest client name accepted (see [`valid_name`]).
    pub max_name_len: usize,
    /// The cluster secret every connection must prove, when the cluster has one.
    pub secret: Option<Secret>,
}

impl Config {
    /// A server on `bind` with every other setting at its default.
    pub fn new(bind: String, coordinator: String, heartbeat_interval: Duration) -> Config {
        Config {
            bind,
            advertise: None,
            coordinator,
            heartbeat_interval,
            max_clients: DEFAULT_MAX_CLIENTS,
            history_messages: DEFAULT_HISTORY_MESSAGES,
            history_bytes: DEFAULT_HISTORY_BYTES,
            limits: net::ConnectionLimits::with_max_connections(DEFAULT_MAX_CONNECTIONS),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            secret: None,
        }
    }
}

/// What every thread of one server shares.
#[derive(Clone)]
struct Shared {
    hub: Hub,
    /// The advertised address.
    addr: String,
    coordinator: String,
    heartbeat_interval: Duration,
    limits: net::ConnectionLimits,
    write_timeout: Duration,
    max_name_len: usize,
    secret: Option<Secret>,
    /// Every long-lived loop selects on this; [`ServerHandle::stop`] drops the only sender.
    stop_rx: Receiver<()>,
}

/// A running server: its address and a way to stop it.
pub struct ServerHandle {
    /// The address clients and peers use.
    pub addr: String,
    hub: Hub,
    /// Dropped on stop: the heartbeat and peer threads see the disconnect and end.
    stop_tx: Option<Sender<()>>,
    /// Set before the accept loop is woken, so it knows to return.
    stopping: Arc<AtomicBool>,
    /// The bound address, for the self-connection that wakes `accept()`.
    bound: String,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops the server (see the module doc) and joins its main threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stop_tx.take().is_none() {
            return;
        }
        self.stopping.store(true, Ordering::SeqCst);
        let _ = net::connect(&self.bound, Duration::from_millis(300));
        self.hub.shut_down();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        log::info!("server stopped addr={}", self.addr);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the listener and starts the accept and heartbeat threads. The returned address is
/// usable as soon as this returns.
///
/// # Errors
/// [`Error::Io`] when the address cannot be bound (say, the port is in use).
pub fn start_server(config: Config) -> Result<ServerHandle> {
    let listener = net::listen(&config.bind)?;
    let bound = listener.local_addr()?;
    let addr = config.advertise.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            log::warn!("bound to {bound} without --advertise: advertising 127.0.0.1");
            format!("127.0.0.1:{}", bound.port())
        } else {
            bound.to_string()
        }
    });
    log::info!(
        "server listening on {addr} bind={bound} pid={}",
        std::process::id()
    );
    net::warn_if_open_to_the_network(bound, config.secret.as_ref());

    let half_window = byte_bounds(config.history_bytes);
    let hub = Hub::new(
        addr.clone(),
        Limits {
            max_clients: config.max_clients,
            history_messages: config.history_messages.max(1),
            history_bytes: config.history_bytes.max(1),
            client_queue: CLIENT_QUEUE,
            client_queue_bytes: half_window,
            peer_queue: PEER_QUEUE,
            peer_queue_bytes: half_window,
            relay_window_bytes: half_window,
            stall_timeout: config.stall_timeout,
        },
        config.secret.clone(),
    );
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let shared = Shared {
        hub: hub.clone(),
        addr: addr.clone(),
        coordinator: config.coordinator.clone(),
        heartbeat_interval: config.heartbeat_interval,
        limits: config.limits,
        write_timeout: config.write_timeout,
        max_name_len: config.max_name_len,
        secret: config.secret.clone(),
        stop_rx,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat::heartbeat_loop(shared))?
    };
    let max_connections = config.limits.max_connections;
    let accept = net::spawn_accept_loop(
        listener,
        stopping.clone(),
        max_connections,
        THREAD_STACK,
        move |stream| serve_connection(stream, &shared),
    )?;
    Ok(ServerHandle {
        addr,
        hub,
        stop_tx: Some(stop_tx),
        stopping,
        bound: bound.to_string(),
        threads: vec![heartbeat, accept],
    })
}

/// `dsys server`: runs until SIGINT or SIGTERM.
///
/// # Errors
/// As [`start_server`].
pub fn run(config: Config) -> Result<()> {
    let stop_rx = signals::stop_on_signal();
    let handle = start_server(config)?;
    let _ = stop_rx.recv(); // Err(Disconnected) on the first signal
    handle.stop();
    Ok(())
}

/// Dispatches a new connection on the role its first frame announces.
fn serve_connection(mut stream: TcpStream, shared: &Shared) -> Result<()> {
    let deadline = shared.limits.handshake_deadline();
    stream.set_write_timeout(Some(shared.write_timeout))?;
    stream.set_nodelay(true)?;
    match net::expect_hello(&stream, deadline, shared.secret.as_ref())? {
        Some(Role::Client) => serve_client(stream, shared, deadline),
        Some(Role::Peer) => peers::serve_peer(stream, shared, deadline),
        Some(other) => refuse(&mut stream, &format!("a server does not serve {other:?}")),
        None => Ok(()), // a reachability check: connected and closed without a word
    }
}

/// A client connection, from registration to goodbye, on its own thread.
fn serve_client(mut stream: TcpStream, shared: &Shared, deadline: Instant) -> Result<()> {
    let Some((name, registration)) = register_client(&mut stream, shared, deadline)? else {
        return Ok(()); // refused: the client was told why
    };
    let hub::Registration {
        conn,
        initial,
        session,
        outbox,
    } = registration;
    let writer = {
        let writer = ClientWriter {
            stream: stream.try_clone()?,
            hub: shared.hub.clone(),
            name: name.clone(),
            conn,
            outbox,
            keepalive: shared.heartbeat_interval,
        };
        thread::Builder::new()
            .name(format!("send-{name}"))
            .stack_size(THREAD_STACK)
            .spawn(move || writer.run(initial))?
    };
    let result = read_publishes(&mut stream, shared, &name, conn, session);
    // Whatever ended the read loop, this connection no longer speaks for `name`. Removing it
    // drops its outbox sender, which ends the writer; shutting the socket unblocks it.
    // `deregister` is false when the client is no longer this connection's: a newer one
    // replaced it, or the hub dropped it (fenced, stopping), which was logged then.
    if shared.hub.deregister(&name, conn) {
        let reason = match &result {
            Ok(true) => "deregistered".to_string(),
            // What a client that failed over does to the server it left; after a hang,
            // this is how a woken server learns of each client that moved meanwhile.
            Ok(false) => "connection closed without a goodbye: the client ended, or moved to \
                          another server"
                .to_string(),
            Err(e) if e.is_timeout() => {
                "silent for longer than the idle timeout (--idle-timeout)".to_string()
            }
            Err(e) => e.to_string(),
        };
        log::info!(
            "client left name={name} server={} reason=\"{reason}\"",
            shared.addr
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    result.map(|_| ())
}

/// The seed's `register_client`: reads the `Register` frame, asks the hub, and answers
/// `RegisterRefused` with a reason, or hands back the registration and the client's outbox.
/// Returns `None` when the registration was refused (the client has been told why).
///
/// # Errors
/// [`Error::Protocol`] when the first frame is not a `Register`, [`Error::Io`] when it is
/// not in by the handshake `deadline`.
fn register_client(
    stream: &mut TcpStream,
    shared: &Shared,
    deadline: Instant,
) -> Result<Option<(String, hub::Registration)>> {
    let first = net::read_opening(stream, deadline)?;
    let Some(Message::Register { name, resume }) = first else {
        return refuse(stream, "expected Register");
    };
    if let Err(why) = valid_name(&name, shared.max_name_len) {
        log::warn!("registration refused name={name:?} reason=\"{why}\"");
        write_message(stream, &Message::RegisterRefused { reason: why })?;
        return Ok(None);
    }
    if !shared.hub.wait_ready(READY_WAIT) {
        log::warn!("registering name={name} before every peer has linked in");
    }
    let resuming = resume.is_some();
    let keepalive_ms = shared.heartbeat_interval.as_millis().min(u32::MAX as u128) as u32;
    match shared
        .hub
        .register(&name, resume, stream.try_clone()?, keepalive_ms)
    {
        Ok(registration) => {
            let how = if resuming { "resumed" } else { "registered" };
            log::info!(
                "client {how} name={name} server={} replay={}",
                shared.addr,
                registration.initial.len() - 1
            );
            stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
            Ok(Some((name, registration)))
        }
        Err(reason) => {
            log::warn!("registration refused name={name} reason=\"{reason}\"");
            write_message(stream, &Message::RegisterRefused { reason })?;
            Ok(None)
        }
    }
}

/// Reads a registered client's frames until it leaves. Each publish goes into the hub,
/// which stamps it with the registered `name` and `session`: nothing the client writes
/// can make it speak as someone else. Returns whether the client said goodbye
/// (`Deregister`) rather than just closing the connection.
fn read_publishes(
    stream: &mut TcpStream,
    shared: &Shared,
    name: &str,
    conn: u64,
    session: u64,
) -> Result<bool> {
    while let Some(message) = read_message(stream)? {
        match message {
            Message::Publish { seq, body } => {
                check_body(&body)?;
                log::debug!("publish name={name} seq={seq}");
                if !shared
                    .hub
                    .publish(Origin::Local { conn }, name, session, seq, &body)
                {
                    return Err(Error::Protocol("connection replaced by a newer one".into()));
                }
            }
            Message::Keepalive => {}
            Message::Deregister => return Ok(true),
            other => {
                return refuse(
                    stream,
                    &format!("unexpected {} from a client", other.kind()),
                );
            }
        }
    }
    Ok(false)
}

/// A client's writer thread (`send-<name>`): what it needs to write one client's socket.
struct ClientWriter {
    stream: TcpStream,
    hub: Hub,
    name: String,
    conn: u64,
    outbox: OutboxReceiver,
    keepalive: Duration,
}

impl ClientWriter {
    /// Writes the initial frames, then the outbox, batched, with a keepalive after each quiet
    /// `keepalive` interval. When the hub marks the outbox behind, it refills it from the
    /// history window (`Hub::catch_up`) before it waits for more. Ends when the outbox
    /// disconnects (the hub removed the client), the client fell behind the window (it is
    /// told why), or a write fails; each way it shuts the socket so the reader ends too.
    fn run(self, initial: Vec<Frame>) {
        let mut out = BufWriter::with_capacity(64 * 1024, &self.stream);
        match self.write_all(&mut out, &initial) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The client has let its socket buffer stay full for the whole write
                // timeout: it has stopped reading. It resumes from the history window.
                log::warn!(
                    "slow consumer cut off name={} reason=\"a write blocked for the write \
                     timeout; the client has stopped reading\"",
                    self.name
                );
            }
            Err(e) => log::debug!("client writer stopped name={}: {e}", self.name),
            Ok(()) => {}
        }
        drop(out);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn write_all(&self, out: &mut impl Write, initial: &[Frame]) -> std::io::Result<()> {
        let keepalive_frame = Message::Keepalive.encode();
        for frame in initial {
            out.write_all(frame)?;
        }
        out.flush()?;
        loop {
            if self.outbox.is_behind() {
                match self.hub.catch_up(&self.name, self.conn) {
                    CatchUp::Done | CatchUp::Behind => {}
                    CatchUp::Gone => return Ok(()),
                    CatchUp::FellBehind(reason) => {
                        out.write_all(&Message::Error { reason }.encode())?;
                        return out.flush();
                    }
                }
            }
            match self.outbox.recv_timeout(self.keepalive) {
                Ok(frame) => {
                    out.write_all(&frame)?;
                    // A backlog goes out in one write instead of one per frame.
                    for frame in self.outbox.try_iter().take(MAX_BATCH) {
                        out.write_all(&frame)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => out.write_all(&keepalive_frame)?,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            out.flush()?;
        }
    }
}

/// Checks what a client asks to broadcast against the protocol's bounds.
fn check_body(body: &Body) -> Result<()> {
    let len = body.payload_len();
    if len > MAX_PAYLOAD_LEN {
        return Err(Error::Protocol(format!(
            "payload of {len} bytes is too large"
        )));
    }
    Ok(())
}

/// The name rule: 1 to `max_len` characters from `A-Z a-z 0-9 - _ .`, not starting with a
/// dot. Names appear in logs, file names and terminals, so the alphabet is small.
///
/// # Errors
/// The reason, as a sentence for the client.
pub fn valid_name(name: &str, max_len: usize) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > max_len {
        return Err(format!("name must be 1 to {max_len} characters"));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name {name:?} is invalid: use letters, digits, '-', '_' and '.' (not first)"
        ));
    }
    Ok(())
}

/// Tells the peer why its connection is closed, then reports it as a protocol error so the
/// connection thread logs the reason.
fn refuse<T>(stream: &mut TcpStream, reason: &str) -> Result<T> {
    let _ = write_message(
        stream,
        &Message::Error {
            reason: reason.to_string(),
        },
    );
    Err(Error::Protocol(reason.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_MAX_NAME_LEN, valid_name};

    #[test]
    fn names_outside_the_alphabet_or_too_long_are_refused() {
        let max = DEFAULT_MAX_NAME_LEN;
        assert!(valid_name("alice", max).is_ok());
        assert!(valid_name("bob-2_x.y", max).is_ok());
        assert!(valid_name(&"x".repeat(max), max).is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(max + 1)] {
            assert!(valid_name(bad, max).is_err(), "{bad:?} should be refused");
        }
    }
}
