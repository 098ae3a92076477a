//! A dsys server: accepts clients (one thread per connection), registers them, and broadcasts
//! every message to every other client, here and on every other live server. This file owns
//! how a server starts and stops ([`start_server`], [`run`], [`ServerHandle`]), what every
//! server thread shares ([`Shared`]), its bounds and the capacity log. Each thread has its own
//! file (`client.rs`, `peers.rs`, `heartbeat.rs`, `keepalive.rs`, `trim.rs`, `write/`), and the state they
//! share is the hub (`hub/`).
//!
//! **Who calls it.** `main.rs` through [`run`], which waits for a signal; the tests through
//! [`start_server`]. The accept loop runs [`serve_connection`] for each connection, which
//! tells a client from a peer by the role in its `Hello`. A failed client or peer costs only
//! its connection; a dead coordinator only stops heartbeats and the check of new names.
//!
//! **Stopping.** A first signal starts a planned stop ([`ServerHandle::leave`], `leave.rs`);
//! [`ServerHandle::stop`] then drops the stop channel, stops the accept loop and cuts every
//! client and peer off through the hub. The threads: `docs/architecture.md`, "A server's
//! threads"; the stop, step by step: `docs/shutdown.md`, "A server".

mod claim;
mod client;
mod heartbeat;
pub mod hub;
mod keepalive;
mod leave;
pub mod metrics;
mod peers;
mod trim;
mod write;

use std::net::TcpStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select};

use crate::auth::Secret;
use crate::error::Result;
use crate::net;
use crate::protocol::{MAX_FRAME_LEN, Role};
use crate::support::signals;
use crate::support::{limits, memory};
use hub::{Hub, Limits};
pub use leave::DEFAULT_DRAIN_TIMEOUT;
use leave::{Drained, Leave, LeaveControl};
use metrics::Metrics;

/// Default for `--max-clients`. An idle client costs one thread with a small stack
/// ([`THREAD_STACK`]) and one descriptor; `docs/thread-per-connection.md` has the measured
/// bytes and the system limits a server meets next.
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
/// Stack size of connection threads: they hold no large buffers on the stack, and small
/// stacks let a server hold thousands of connections.
const THREAD_STACK: usize = 256 * 1024;
/// Default for `--max-name-len`: the longest accepted client name (in bytes, which the
/// alphabet makes characters). Names travel in every message and every status report. The
/// highest is the name rule's own, [`MAX_NAME_LEN_LIMIT`](crate::protocol::MAX_NAME_LEN_LIMIT).
pub const DEFAULT_MAX_NAME_LEN: usize = 32;

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
    /// Longest client name accepted (see [`valid_name`](crate::protocol::valid_name)).
    pub max_name_len: usize,
    /// The cluster secret every connection must prove, when the cluster has one.
    pub secret: Option<Secret>,
    /// How long a planned stop may take (see [`DEFAULT_DRAIN_TIMEOUT`]).
    pub drain_timeout: Duration,
    /// Where to serve the metrics over HTTP (`--metrics`); `None`: nowhere.
    pub metrics: Option<String>,
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
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            metrics: None,
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
    /// How long a peer link may be silent before its peer counts as cut off
    /// ([`peers::link_silence_limit`]).
    link_silence: Duration,
    limits: net::ConnectionLimits,
    write_timeout: Duration,
    max_name_len: usize,
    /// When a quiet client is written a keepalive, and the timers it is told
    /// ([`keepalive::ClientTimers`]).
    client_timers: keepalive::ClientTimers,
    /// The way into the pool, for client writer threads (the hub holds another; a
    /// connection thread uses this one when it hands its pen over).
    pool: write::Pool,
    secret: Option<Secret>,
    /// Every long-lived loop selects on this; [`ServerHandle::stop`] drops the only sender.
    stop_rx: Receiver<()>,
    /// A planned stop under way, or not ([`leave`]).
    leave: Leave,
    /// The counters of `--metrics` ([`metrics`]); counted whether or not they are served.
    metrics: Arc<Metrics>,
}

/// A running server: its address and a way to stop it.
pub struct ServerHandle {
    /// The address clients and peers use.
    pub addr: String,
    hub: Hub,
    /// Dropped on stop: the heartbeat and peer threads see the disconnect and end.
    stop_tx: Option<Sender<()>>,
    /// The `accept` thread, with its stop flag and wake-up ([`net::AcceptLoop::stop`]).
    accept: net::AcceptLoop,
    /// The `heartbeat` thread, which ends when `stop_tx` is dropped; joined first on stop,
    /// so that a leaving server has told the coordinator it left before its clients'
    /// connections close.
    heartbeat: Option<JoinHandle<()>>,
    /// The `pool`, `trim` and `keepalives` threads, which end when `stop_tx` is dropped;
    /// joined last on stop.
    threads: Vec<JoinHandle<()>>,
    /// Starts a planned stop and hears how it ended ([`ServerHandle::leave`]).
    leave: LeaveControl,
    /// The metrics port, with `--metrics`: the `metrics` thread, stopped with the accept
    /// loop.
    metrics: Option<net::metrics_http::MetricsPort>,
}

impl ServerHandle {
    /// A planned stop, before [`ServerHandle::stop`]: takes no new client, tells the
    /// coordinator this server is leaving, and waits while the coordinator moves its
    /// clients to the other servers (see [`leave`]). Returns once no client is left, or
    /// there is no other live server to take them, or `at_once` disconnects (a second
    /// signal), or after `timeout`, whichever comes first; each is logged.
    pub fn leave(&mut self, timeout: Duration, at_once: &Receiver<()>) {
        if !self.leave.start() {
            return;
        }
        log::info!(
            "stopping: moving {} client(s) to the other servers first (a second signal, or \
             --drain-timeout {} ms, stops at once)",
            self.hub.client_count(),
            timeout.as_millis()
        );
        select! {
            recv(self.leave.done_rx) -> done => match done {
                Ok(Drained::Empty) => log::info!("every client has moved; stopping"),
                Ok(Drained::Nowhere { clients }) => log::warn!(
                    "no other live server to take the {clients} client(s) of this server: \
                     stopping with them (they fail over when a server comes)"
                ),
                Err(_) => {}
            },
            recv(at_once) -> _ => log::info!(
                "second signal: stopping at once with {} client(s) still here",
                self.hub.client_count()
            ),
            default(timeout) => log::warn!(
                "the planned stop took longer than --drain-timeout {} ms: stopping at once \
                 with {} client(s) still here (they fail over)",
                timeout.as_millis(),
                self.hub.client_count()
            ),
        }
    }

    /// Stops the server (see the module doc) and joins its main threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stop_tx.take().is_none() {
            return;
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
        self.accept.stop();
        if let Some(metrics) = &mut self.metrics {
            metrics.stop();
        }
        self.hub.shut_down();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if self.leave.is_leaving() {
            log::info!("server stopped addr={} (a planned stop)", self.addr);
        } else {
            log::info!("server stopped addr={}", self.addr);
        }
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
/// [`crate::Error::Io`] when the address cannot be bound (say, the port is in use);
/// [`crate::Error::Usage`] when `--max-clients` names of `--max-name-len` bytes would not
/// fit in one heartbeat.
pub fn start_server(config: Config) -> Result<ServerHandle> {
    check_names_fit_a_heartbeat(config.max_clients, config.max_name_len)?;
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
    check_capacity(config.max_clients);
    memory::limit_arenas();
    let writer_budget = write::writer_budget(config.limits.max_connections);
    log::info!("writer threads at once: at most {writer_budget} (the thread budget)");

    let half_window = byte_bounds(config.history_bytes);
    // Jobs for client writer threads, at most one per client: a job goes with the pen.
    let (pool, pool_rx) = write::Pool::channel();
    let metrics = Arc::new(Metrics::default());
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
        pool.clone(),
        metrics.clone(),
    );
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (leave, leave_control) = leave::leave();
    let shared = Shared {
        hub: hub.clone(),
        addr: addr.clone(),
        coordinator: config.coordinator.clone(),
        heartbeat_interval: config.heartbeat_interval,
        link_silence: peers::link_silence_limit(config.heartbeat_interval, config.stall_timeout),
        limits: config.limits,
        write_timeout: config.write_timeout,
        max_name_len: config.max_name_len,
        client_timers: keepalive::ClientTimers::new(
            config.heartbeat_interval,
            config.limits.idle_timeout,
        ),
        pool,
        secret: config.secret.clone(),
        stop_rx,
        leave,
        metrics,
    };
    let pool = {
        let stop_rx = shared.stop_rx.clone();
        let source: Arc<dyn write::CatchUpSource> = Arc::new(hub.clone());
        thread::Builder::new()
            .name("pool".into())
            .spawn(move || write::pool_loop(pool_rx, stop_rx, source, writer_budget))?
    };
    let heartbeat = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat::heartbeat_loop(shared))?
    };
    let trim = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("trim".into())
            .spawn(move || trim::trim_loop(shared))?
    };
    let keepalives = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("keepalives".into())
            .spawn(move || keepalive::keepalive_loop(shared))?
    };
    let metrics_port = match &config.metrics {
        Some(addr) => {
            let shared = shared.clone();
            let render = move |out: &mut _| metrics::render(&shared, out);
            let head_timeout = config.limits.handshake_timeout;
            Some(net::metrics_http::MetricsPort::start(
                addr,
                head_timeout,
                render,
            )?)
        }
        None => None,
    };
    let max_connections = config.limits.max_connections;
    let accept = net::AcceptLoop::start(
        listener,
        max_connections,
        THREAD_STACK,
        move |stream, challenge| serve_connection(stream, challenge, &shared),
    )?;
    Ok(ServerHandle {
        addr,
        hub,
        stop_tx: Some(stop_tx),
        accept,
        heartbeat: Some(heartbeat),
        threads: vec![pool, trim, keepalives],
        leave: leave_control,
        metrics: metrics_port,
    })
}

/// A heartbeat lists every client's name in one frame ([`heartbeat`]), so the names of a
/// full server must fit in one: 10,000 names of 32 bytes take about 340 KB, but 10,000 of
/// 255 bytes would not fit in the frame cap. Such flags are refused at start, with what to
/// change, rather than met at the 4,000th client.
fn check_names_fit_a_heartbeat(max_clients: usize, max_name_len: usize) -> Result<()> {
    // Each name costs its length and a 2-byte prefix; the rest of the frame is the address,
    // the epoch and room to spare.
    let room = MAX_FRAME_LEN as usize - 4096;
    let needed = max_clients.saturating_mul(max_name_len + 2);
    if needed <= room {
        return Ok(());
    }
    Err(crate::Error::Usage(format!(
        "--max-clients {max_clients} with --max-name-len {max_name_len} is up to {needed} bytes \
         of names, more than one heartbeat carries ({room}): lower --max-clients to {} or \
         --max-name-len to {}",
        room / (max_name_len + 2),
        (room / max_clients.max(1)).saturating_sub(2)
    )))
}

/// Raises the open-file limit as far as the system allows, and says at start how many
/// clients that makes room for, with a warning when `--max-clients` asks for more: better
/// to learn it now than from refusals under load. Each client holds one descriptor and one
/// thread (two while it receives); the thread limit is the system's, `pid_max`.
fn check_capacity(max_clients: usize) {
    // Descriptors for everything that is not a client: the listener, peer links, the
    // heartbeat, the spare, log files, connections still in their handshake.
    const RESERVED: u64 = 64;
    match limits::raise_open_files_limit() {
        Ok(files) => {
            let room = files.soft.saturating_sub(RESERVED);
            log::info!(
                "open-file limit {} (hard {}): room for about {room} clients",
                files.soft,
                files.hard
            );
            if max_clients as u64 > room {
                log::warn!(
                    "--max-clients {max_clients} is more than the open-file limit allows \
                     (about {room} clients); raise the hard limit (ulimit -Hn, or \
                     LimitNOFILE= in a systemd unit) or lower --max-clients"
                );
            }
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
    if let Some(pid_max) = limits::pid_max()
        && (max_clients as u64) > pid_max / 2
    {
        log::warn!(
            "--max-clients {max_clients} may need up to {} threads, and this system allows \
             {pid_max} in all (kernel.pid_max; docs/thread-per-connection.md)",
            2 * max_clients
        );
    }
}

/// `dsys server`: runs until SIGINT or SIGTERM, then moves its clients to the other servers
/// before it stops (a planned stop, [`ServerHandle::leave`]); a second signal, or
/// `--drain-timeout`, cuts that short.
///
/// # Errors
/// As [`start_server`].
pub fn run(config: Config) -> Result<()> {
    let stop_rx = signals::stop_on_signal();
    let at_once = signals::stop_at_once_on_signal();
    let drain_timeout = config.drain_timeout;
    let mut handle = start_server(config)?;
    let _ = stop_rx.recv(); // Err(Disconnected) on the first signal
    handle.leave(drain_timeout, &at_once);
    handle.stop();
    Ok(())
}

/// Dispatches a new connection on the role its first frame announces.
fn serve_connection(stream: TcpStream, challenge: net::Challenge, shared: &Shared) -> Result<()> {
    let deadline = shared.limits.handshake_deadline();
    stream.set_write_timeout(Some(shared.write_timeout))?;
    stream.set_nodelay(true)?;
    match net::expect_hello(&stream, challenge, deadline, shared.secret.as_ref())? {
        Some(Role::Client) => client::serve_client(stream, shared, deadline),
        Some(Role::Peer) => peers::serve_peer(stream, shared, deadline),
        Some(other) => net::refuse(&stream, &format!("a server does not serve {other:?}")),
        // The coordinator's reachability check or probe: it closed without a word, once
        // it had the challenge or nothing at all.
        None => Ok(()),
    }
}
