//! The coordinator: the registry of servers, fed by heartbeats; the answer to a client's
//! "which server?"; and the watchdog that declares silent servers dead and plans where their
//! clients go.
//!
//! **Threads.** `accept` runs [`start_coordinator`]'s accept loop and spawns one named thread
//! per connection. A heartbeat connection lives as long as its server (one frame every
//! heartbeat interval); locate and status connections answer one request and close. The
//! `watchdog` thread wakes on a ticker and runs [`check_server_statuses`].
//!
//! **Shared state.** One [`Registry`] behind a mutex, reached through the cloneable
//! [`Coordinator`] handle. Every method locks, changes, copies out what it needs and
//! unlocks; no socket I/O ever happens while the lock is held.
//!
//! **When a peer fails.** A server that stops heartbeating is declared dead after
//! `heartbeat_timeout`; a client that reports a suspect server makes the coordinator check it
//! at once (a refused connection means nobody listens there any more). Either way
//! [`redistribute_clients`] spreads the dead server's clients evenly over the live servers,
//! the plan is logged, and each client that asks is given its planned server. A broken
//! connection costs only that connection.
//!
//! **State is soft.** Everything here is rebuilt from heartbeats, so a restarted coordinator
//! knows the cluster again after one heartbeat interval; while it is down, servers keep
//! relaying to each other and clients keep sharing (the coordinator is never on the data
//! path).
//!
//! **Stopping.** [`CoordinatorHandle::stop`] drops the stop sender (the watchdog wakes on the
//! disconnect), wakes the accept loop with a self-connection, and joins both.

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Message, Role, ServerInfo, read_message, write_message};
use crate::signals;

/// Default for `--max-connections`: heartbeat connections (one per server) and short
/// requests (locate, status). Beyond it a new connection is refused at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long one write to a peer may block: every reply is small.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Stack size of connection threads: they hold no large buffers on the stack, and a
/// burst of thousands of clients asking where to go should not reserve 2 MiB each.
const THREAD_STACK: usize = 256 * 1024;

/// How long the coordinator waits when it checks a server that a client reported as lost.
///
/// A dead process on a reachable host refuses at once; a hung one is accepted by its
/// kernel. Either answer comes in well under this on any network dsys is meant for.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How long a planned assignment counts as load while its client has not shown up.
///
/// Long enough for any client to fail over (seconds), short enough that clients that died
/// with their server stop skewing the spread soon after.
const PLAN_TTL: Duration = Duration::from_secs(30);

/// Bytes of client names a status report may carry, well inside the frame cap.
const STATUS_NAMES_BUDGET: usize = crate::protocol::MAX_PAYLOAD_LEN / 2;

/// How the coordinator is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// A server silent for this long is declared dead.
    pub heartbeat_timeout: Duration,
    /// How often the watchdog checks: a tenth of the timeout (at least 10 ms), so a dead
    /// server is declared at most 10% after its timeout.
    pub check_interval: Duration,
    /// What a connection gets before it has identified itself, and how long it may idle.
    pub limits: net::ConnectionLimits,
    /// The cluster secret every connection must prove, when the cluster has one.
    pub secret: Option<Secret>,
}

impl Config {
    /// A config with the check interval derived from the timeout and default limits.
    pub fn new(listen: String, heartbeat_timeout: Duration) -> Config {
        Config {
            listen,
            heartbeat_timeout,
            check_interval: (heartbeat_timeout / 10).max(Duration::from_millis(10)),
            limits: net::ConnectionLimits::with_max_connections(DEFAULT_MAX_CONNECTIONS),
            secret: None,
        }
    }
}

/// What the registry knows of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// The server's current incarnation.
    pub epoch: u64,
    /// When its last heartbeat arrived.
    pub last_seen: Instant,
    /// False once the watchdog (or a failed check) declared it dead.
    pub alive: bool,
    /// Its clients, as of its last heartbeat.
    pub clients: Vec<String>,
}

/// Everything the coordinator knows, rebuilt from heartbeats.
#[derive(Debug, Default)]
pub struct Registry {
    /// Servers by advertised address.
    servers: HashMap<String, ServerEntry>,
    /// Incarnations declared dead: a heartbeat from one of them is fenced.
    dead_epochs: HashSet<u64>,
    /// Where each client is to go (a dead server's clients, and clients just assigned),
    /// with when it was planned. An entry ends when the client shows up in any server's
    /// heartbeat, or after [`PLAN_TTL`] if it never does (the client died too).
    plan: HashMap<String, (String, Instant)>,
    /// The last epoch handed out; epochs only grow.
    last_epoch: u64,
}

/// A cloneable handle on the shared [`Registry`].
#[derive(Clone)]
pub struct Coordinator {
    registry: Arc<Mutex<Registry>>,
    /// Notified after every heartbeat and every watchdog round, for the locate requests
    /// that wait to learn whether a suspect server is alive
    /// ([`Coordinator::settle_suspect`]). Used with the `registry` mutex.
    changed: Arc<Condvar>,
    heartbeat_timeout: Duration,
    /// When this coordinator started: for one heartbeat timeout after that, it may not have
    /// heard from every live server yet, and says so in its replies.
    started: Instant,
}

/// What [`handle_heartbeat`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// Accepted: the server is to use `epoch`; `servers` are the live servers.
    Accepted {
        /// The server's epoch (freshly assigned when it sent 0).
        epoch: u64,
        /// Every live server.
        servers: Vec<ServerInfo>,
    },
    /// That incarnation was declared dead; it must start again as a new one.
    Fenced,
}

/// Records a heartbeat from the server at `addr` and says what to answer. Called with the
/// registry locked; pure apart from the registry, so it is unit-tested directly.
///
/// - `epoch == 0`: a new server (or one that was fenced) gets a fresh epoch. An older
///   incarnation at the same address is gone (two processes cannot bind one address), so it
///   is declared dead and its clients are planned elsewhere.
/// - a known dead epoch: fenced, so a zombie that wakes up learns it was replaced.
/// - an epoch the registry does not know (the coordinator restarted): adopted as is.
pub fn handle_heartbeat(
    registry: &mut Registry,
    now: Instant,
    addr: &str,
    epoch: u64,
    clients: Vec<String>,
) -> HeartbeatOutcome {
    if registry.dead_epochs.contains(&epoch) {
        return HeartbeatOutcome::Fenced;
    }
    let epoch = if epoch == 0 {
        registry.next_epoch()
    } else {
        registry.last_epoch = registry.last_epoch.max(epoch);
        epoch
    };
    if let Some(old) = registry.servers.get(addr)
        && old.epoch != epoch
        && old.alive
    {
        if old.epoch > epoch {
            // A newer incarnation already owns this address: this one is stale.
            registry.dead_epochs.insert(epoch);
            return HeartbeatOutcome::Fenced;
        }
        log::info!(
            "server replaced addr={addr} old_epoch={} new_epoch={epoch}",
            old.epoch
        );
        declare_dead(registry, addr);
    }
    let is_new = registry.servers.get(addr).is_none_or(|s| !s.alive);
    for name in &clients {
        registry.plan.remove(name);
    }
    if is_new {
        log::info!("server up addr={addr} epoch={epoch}");
    }
    log::debug!(
        "heartbeat addr={addr} epoch={epoch} clients={}",
        clients.len()
    );
    registry.servers.insert(
        addr.to_string(),
        ServerEntry {
            epoch,
            last_seen: now,
            alive: true,
            clients,
        },
    );
    HeartbeatOutcome::Accepted {
        epoch,
        servers: registry.live_peers(),
    }
}

/// The watchdog's decision: which live servers have been silent longer than `timeout` at
/// `now`. Pure, so tests drive it with synthetic instants.
pub fn check_server_statuses(
    now: Instant,
    servers: &HashMap<String, ServerEntry>,
    timeout: Duration,
) -> Vec<String> {
    let mut dead: Vec<String> = servers
        .iter()
        .filter(|(_, s)| s.alive && now.saturating_duration_since(s.last_seen) > timeout)
        .map(|(addr, _)| addr.clone())
        .collect();
    dead.sort();
    dead
}

/// Plans where the clients of a dead server go: round-robin over the live servers, least
/// loaded first, so the moved clients differ by at most one between any two live servers
/// and the emptiest servers take the extra ones.
///
/// `live` holds each live server's address and current load. Returns `(client, server)`
/// pairs; empty when no server is alive.
pub fn redistribute_clients(clients: &[String], live: &[(String, usize)]) -> Vec<(String, String)> {
    if live.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<&(String, usize)> = live.iter().collect();
    order.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    clients
        .iter()
        .zip(order.iter().cycle())
        .map(|(client, (server, _))| (client.clone(), server.clone()))
        .collect()
}

/// Marks `addr` dead, fences its epoch and plans its clients onto the live servers. Returns
/// nothing: the plan is stored in the registry and logged, which is how a learner sees it.
fn declare_dead(registry: &mut Registry, addr: &str) {
    let Some(entry) = registry.servers.get_mut(addr) else {
        return;
    };
    if !entry.alive {
        return;
    }
    entry.alive = false;
    let epoch = entry.epoch;
    let orphans = std::mem::take(&mut entry.clients);
    registry.dead_epochs.insert(epoch);
    log::info!(
        "server declared dead addr={addr} epoch={epoch} clients={}",
        orphans.len()
    );
    // Earlier plans for these clients are void: they are about to be planned again, and
    // must not count as load where they were going.
    for name in &orphans {
        registry.plan.remove(name);
    }
    let plan = redistribute_clients(&orphans, &registry.loads());
    if !orphans.is_empty() {
        let shown: Vec<String> = plan.iter().map(|(c, s)| format!("{c}->{s}")).collect();
        log::info!(
            "redistribution plan from={addr} moves=[{}]",
            shown.join(", ")
        );
    }
    if plan.is_empty() && !orphans.is_empty() {
        log::warn!("no live server to take the clients of addr={addr}");
    }
    let now = Instant::now();
    registry.plan.extend(
        plan.into_iter()
            .map(|(client, server)| (client, (server, now))),
    );
}

impl Registry {
    fn next_epoch(&mut self) -> u64 {
        // Epochs start from the wall clock in microseconds, so that a restarted coordinator
        // never hands out an epoch that an earlier run already gave to someone else.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        self.last_epoch = clock.max(self.last_epoch + 1);
        self.last_epoch
    }

    /// Each live server's load: its clients plus the clients planned to arrive there.
    fn loads(&self) -> Vec<(String, usize)> {
        self.servers
            .iter()
            .filter(|(_, s)| s.alive)
            .map(|(addr, s)| {
                let planned = self.plan.values().filter(|(t, _)| t == addr).count();
                (addr.clone(), s.clients.len() + planned)
            })
            .collect()
    }

    /// The live servers without their client lists: what a server needs to make its peer
    /// links, and small enough for a frame however many clients the cluster has.
    fn live_peers(&self) -> Vec<ServerInfo> {
        let mut live: Vec<ServerInfo> = self
            .servers
            .iter()
            .filter(|(_, s)| s.alive)
            .map(|(addr, s)| ServerInfo {
                clients: Vec::new(),
                ..info(addr, s)
            })
            .collect();
        live.sort_by(|a, b| a.addr.cmp(&b.addr));
        live
    }

    /// Every known server with its clients, for `dsys status`. The client names are cut
    /// to [`STATUS_NAMES_BUDGET`] bytes in all, so that the report always fits in one frame;
    /// a cut list ends with a `…N more` entry.
    fn all_servers(&self) -> Vec<ServerInfo> {
        let mut all: Vec<ServerInfo> = self.servers.iter().map(|(a, s)| info(a, s)).collect();
        all.sort_by(|a, b| a.addr.cmp(&b.addr));
        let mut budget = STATUS_NAMES_BUDGET;
        for server in &mut all {
            let mut kept = 0;
            for name in &server.clients {
                if budget < name.len() + 2 + 16 {
                    break;
                }
                budget -= name.len() + 2;
                kept += 1;
            }
            let cut = server.clients.len() - kept;
            if cut > 0 {
                server.clients.truncate(kept);
                server.clients.push(format!("…{cut} more"));
                budget = budget.saturating_sub(16);
            }
        }
        all
    }

    /// The server `name` should use: its planned server if it has one; else the live server
    /// that lists the name already; else the least loaded live server. The choice counts as
    /// load at once (as a plan entry), so that clients asking together are spread rather
    /// than all sent to the same server.
    ///
    /// Sending a name back to the server that lists it is what keeps names unique across
    /// the cluster: that server refuses the name while its owner is there ("already taken"),
    /// and takes it when the owner has just left, which the lists here, a heartbeat old, may
    /// not show yet. So the check is made where the truth is, without a false refusal.
    fn assign(&mut self, name: &str) -> Option<String> {
        if let Some((target, _)) = self.plan.get(name)
            && self.servers.get(target).is_some_and(|s| s.alive)
        {
            return Some(target.clone());
        }
        if let Some(holder) = self
            .servers
            .iter()
            .find(|(_, s)| s.alive && s.clients.iter().any(|c| c == name))
            .map(|(addr, _)| addr.clone())
        {
            return Some(holder);
        }
        let (target, _) = self
            .loads()
            .into_iter()
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))?;
        self.plan
            .insert(name.to_string(), (target.clone(), Instant::now()));
        Some(target)
    }
}

fn info(addr: &str, entry: &ServerEntry) -> ServerInfo {
    ServerInfo {
        addr: addr.to_string(),
        epoch: entry.epoch,
        alive: entry.alive,
        clients: entry.clients.clone(),
    }
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind, never a broken invariant
        // that matters more than staying up, so a poisoned lock is used anyway.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A coordinator with an empty registry.
    pub fn new(heartbeat_timeout: Duration) -> Coordinator {
        Coordinator {
            registry: Arc::default(),
            changed: Arc::default(),
            heartbeat_timeout,
            started: Instant::now(),
        }
    }

    /// Records a heartbeat (see [`handle_heartbeat`]).
    pub fn heartbeat(&self, addr: &str, epoch: u64, clients: Vec<String>) -> HeartbeatOutcome {
        let outcome = handle_heartbeat(&mut self.lock(), Instant::now(), addr, epoch, clients);
        self.changed.notify_all();
        outcome
    }

    /// One watchdog round: declares dead every server silent longer than `timeout`.
    pub fn check(&self, timeout: Duration) {
        let mut registry = self.lock();
        let now = Instant::now();
        registry
            .plan
            .retain(|_, (_, planned)| now.duration_since(*planned) < PLAN_TTL);
        for addr in check_server_statuses(now, &registry.servers, timeout) {
            log::info!(
                "heartbeat missed addr={addr} timeout_ms={}",
                timeout.as_millis()
            );
            declare_dead(&mut registry, &addr);
        }
        drop(registry);
        self.changed.notify_all();
    }

    /// Answers a client's "which server?". Blocks while it settles a suspect.
    ///
    /// When the client names a `suspect` server it lost, that server is checked first
    /// (outside the lock): if nothing listens there any more it is declared dead at once,
    /// rather than after the heartbeat timeout. If something still listens, the server may
    /// be fine (only the client's connection broke) or hung (its kernel still accepts).
    /// The heartbeats tell which (see [`Coordinator::settle_suspect`]).
    ///
    /// # Errors
    /// [`Error::NoLiveServer`] when no server is alive.
    pub fn locate(&self, name: &str, suspect: &str) -> Result<String> {
        let suspect_alive = !suspect.is_empty()
            && self
                .lock()
                .servers
                .get(suspect)
                .is_some_and(|entry| entry.alive);
        if suspect_alive {
            if answers_connect(suspect) {
                return self.settle_suspect(name, suspect);
            }
            let mut registry = self.lock();
            if registry.servers.get(suspect).is_some_and(|s| s.alive) {
                log::info!("server unreachable addr={suspect} reported_by={name}");
                declare_dead(&mut registry, suspect);
            }
        }
        self.lock().assign(name).ok_or_else(no_live_server)
    }

    /// Waits until the `suspect` either heartbeats again (it is fine: the client is sent
    /// back to it) or is declared dead by the watchdog (the client gets its planned server).
    /// One of the two happens within the heartbeat timeout plus a watchdog tick; the wait is
    /// capped at twice the timeout in case the watchdog is stopping.
    ///
    /// Waiting here, rather than telling the client to stay and ask again, is what moves a
    /// hung server's clients the moment it is declared dead, and all by the same plan.
    fn settle_suspect(&self, name: &str, suspect: &str) -> Result<String> {
        let asked = Instant::now();
        let unsettled = |registry: &mut Registry| {
            registry
                .servers
                .get(suspect)
                .is_some_and(|s| s.alive && s.last_seen <= asked)
        };
        let registry = self.lock();
        let (mut registry, _) = self
            .changed
            .wait_timeout_while(registry, self.heartbeat_timeout * 2, unsettled)
            .unwrap_or_else(|p| p.into_inner());
        if registry.servers.get(suspect).is_some_and(|s| s.alive) {
            return Ok(suspect.to_string());
        }
        registry.assign(name).ok_or_else(no_live_server)
    }

    /// True once every live server has had time to heartbeat since this coordinator
    /// started, so the live list is the whole cluster. Until then a server must not drop a
    /// peer just because the list lacks it: that peer may simply not have heartbeated yet.
    pub fn knows_whole_cluster(&self) -> bool {
        self.started.elapsed() > self.heartbeat_timeout
    }

    /// Every known server, for `dsys status`.
    pub fn status(&self) -> Vec<ServerInfo> {
        self.lock().all_servers()
    }
}

/// True when something accepts a TCP connection at `addr` within [`PROBE_TIMEOUT`].
fn answers_connect(addr: &str) -> bool {
    net::resolve(addr)
        .ok()
        .and_then(|sock| TcpStream::connect_timeout(&sock, PROBE_TIMEOUT).ok())
        .is_some()
}

/// A running coordinator, for tests and the demo: its address and a way to stop it.
pub struct CoordinatorHandle {
    /// The address it listens on.
    pub addr: String,
    /// Dropped by [`CoordinatorHandle::stop`]: the watchdog's `select!` sees the disconnect.
    stop_tx: Option<Sender<()>>,
    /// Set before the accept loop is woken, so it knows to return.
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CoordinatorHandle {
    /// Stops accepting, stops the watchdog and joins both threads. Connection threads end
    /// on their own when their peers close or their read deadlines pass.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop_tx.take();
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocked accept(): it checks `stopping` after every accepted connection.
        let _ = net::connect(&self.addr, PROBE_TIMEOUT);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for CoordinatorHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the listener, then starts the accept and watchdog threads. The returned address
/// is valid as soon as this returns (the socket is bound before any thread starts).
///
/// # Errors
/// [`Error::Io`] when the address cannot be bound.
pub fn start_coordinator(config: Config) -> Result<CoordinatorHandle> {
    let listener = net::listen(&config.listen)?;
    let bound = listener.local_addr()?;
    let addr = bound.to_string();
    net::warn_if_open_to_the_network(bound, config.secret.as_ref());
    log::info!(
        "coordinator listening on {addr} heartbeat_timeout_ms={}",
        config.heartbeat_timeout.as_millis()
    );
    let coordinator = Coordinator::new(config.heartbeat_timeout);
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let limits = config.limits;
    let secret = config.secret.clone();

    let watchdog = {
        let coordinator = coordinator.clone();
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watchdog_loop(coordinator, config, stop_rx))?
    };
    let accept = net::spawn_accept_loop(
        listener,
        stopping.clone(),
        limits.max_connections,
        THREAD_STACK,
        move |stream| serve_connection(stream, &coordinator, limits, secret.as_ref()),
    )?;
    Ok(CoordinatorHandle {
        addr,
        stop_tx: Some(stop_tx),
        stopping,
        threads: vec![watchdog, accept],
    })
}

/// `dsys coordinator`: runs until SIGINT or SIGTERM.
///
/// # Errors
/// [`Error::Io`] when the listen address cannot be bound.
pub fn run(config: Config) -> Result<()> {
    let stop_rx = signals::stop_on_signal();
    let handle = start_coordinator(config)?;
    let _ = stop_rx.recv(); // returns Err(Disconnected) on the first signal
    handle.stop();
    log::info!("coordinator stopped");
    Ok(())
}

/// The watchdog: on every tick, declare dead the servers whose heartbeats stopped. Exits
/// when `stop_rx` disconnects.
fn watchdog_loop(coordinator: Coordinator, config: Config, stop_rx: Receiver<()>) {
    let ticker = tick(config.check_interval);
    loop {
        select! {
            recv(ticker) -> _ => coordinator.check(config.heartbeat_timeout),
            recv(stop_rx) -> _ => break,
        }
    }
    log::debug!("watchdog stopped");
}

/// Serves one connection according to the role its first frame announces. The opening
/// frames, `Hello` and the role's first request, must be in by the handshake deadline.
fn serve_connection(
    stream: TcpStream,
    coordinator: &Coordinator,
    limits: net::ConnectionLimits,
    secret: Option<&Secret>,
) -> Result<()> {
    let deadline = limits.handshake_deadline();
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let first_request = |stream: &TcpStream| net::read_opening(stream, deadline);
    match net::expect_hello(&stream, deadline, secret)? {
        Some(Role::Heartbeat) => {
            let first = first_request(&stream)?;
            stream.set_read_timeout(Some(limits.idle_timeout))?;
            serve_heartbeats(stream, first, coordinator)
        }
        Some(Role::Locate) => {
            let first = first_request(&stream)?;
            serve_locate(stream, first, coordinator)
        }
        Some(Role::Status) => {
            let first = first_request(&stream)?;
            serve_status(stream, first, coordinator)
        }
        Some(other) => refuse(stream, &format!("the coordinator does not serve {other:?}")),
        None => Ok(()),
    }
}

/// A server's heartbeat connection: one Heartbeat, one reply, for as long as it lives.
/// `first` is the frame read under the handshake deadline; later ones may each take up to
/// the idle timeout.
fn serve_heartbeats(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let mut next = first;
    while let Some(message) = next {
        let Message::Heartbeat {
            addr,
            epoch,
            clients,
        } = message
        else {
            return refuse(
                stream,
                &format!("expected Heartbeat, got {}", message.kind()),
            );
        };
        let reply = match coordinator.heartbeat(&addr, epoch, clients) {
            HeartbeatOutcome::Accepted { epoch, servers } => Message::HeartbeatReply {
                epoch,
                complete: coordinator.knows_whole_cluster(),
                servers,
            },
            HeartbeatOutcome::Fenced => {
                log::info!("fenced a stale server incarnation addr={addr} epoch={epoch}");
                Message::Fenced {
                    reason: format!("epoch {epoch} of {addr} was declared dead; rejoin"),
                }
            }
        };
        write_message(&mut stream, &reply)?;
        next = read_message(&mut stream)?;
    }
    Ok(())
}

fn serve_locate(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let Some(Message::Locate { name, suspect }) = first else {
        return refuse(stream, "expected Locate");
    };
    let reply = match coordinator.locate(&name, &suspect) {
        Ok(server) => {
            log::debug!("assigned name={name} server={server}");
            Message::Assign { server }
        }
        Err(e) => Message::Error {
            reason: e.to_string(),
        },
    };
    write_message(&mut stream, &reply)
}

fn serve_status(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let Some(Message::StatusQuery) = first else {
        return refuse(stream, "expected StatusQuery");
    };
    let servers = coordinator.status();
    write_message(&mut stream, &Message::StatusReport { servers })
}

/// The answer to a client when no server can take it, with what to do about it.
fn no_live_server() -> Error {
    Error::NoLiveServer("the coordinator knows no live server; start one with `dsys server`".into())
}

/// Tells the peer why, then closes. The refusal is an expected outcome for us, but the
/// caller logs it as the reason the connection cost was paid.
fn refuse(mut stream: TcpStream, reason: &str) -> Result<()> {
    let _ = write_message(
        &mut stream,
        &Message::Error {
            reason: reason.to_string(),
        },
    );
    Err(Error::Protocol(reason.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn silent_server_is_declared_dead_only_after_the_timeout() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "a:1", 0, vec![]);
        let timeout = Duration::from_millis(100);
        let just_before = start + Duration::from_millis(100);
        let just_after = start + Duration::from_millis(101);
        assert!(check_server_statuses(just_before, &registry.servers, timeout).is_empty());
        assert_eq!(
            check_server_statuses(just_after, &registry.servers, timeout),
            names(&["a:1"])
        );
    }

    #[test]
    fn moved_clients_are_spread_evenly_least_loaded_first() {
        let clients = names(&["c1", "c2", "c3", "c4", "c5"]);
        let live = vec![
            ("b".to_string(), 3),
            ("a".to_string(), 3),
            ("c".to_string(), 1),
        ];
        let plan = redistribute_clients(&clients, &live);
        let count = |s: &str| plan.iter().filter(|(_, t)| t == s).count();
        // c is emptiest and gets the extra client; a and b (tied) take one more each in order.
        assert_eq!((count("a"), count("b"), count("c")), (2, 1, 2));
    }

    #[test]
    fn no_live_server_means_an_empty_plan() {
        assert!(redistribute_clients(&names(&["x"]), &[]).is_empty());
    }

    #[test]
    fn dead_server_is_fenced_and_its_clients_planned() {
        let now = Instant::now();
        let mut registry = Registry::default();
        let HeartbeatOutcome::Accepted { epoch, .. } =
            handle_heartbeat(&mut registry, now, "a:1", 0, names(&["x", "y"]))
        else {
            panic!("first heartbeat must be accepted")
        };
        handle_heartbeat(&mut registry, now, "b:1", 0, vec![]);
        handle_heartbeat(&mut registry, now, "c:1", 0, vec![]);
        declare_dead(&mut registry, "a:1");
        // The zombie's next heartbeat is refused ...
        assert_eq!(
            handle_heartbeat(&mut registry, now, "a:1", epoch, vec![]),
            HeartbeatOutcome::Fenced
        );
        // ... and its two clients go one to each live server.
        assert_ne!(registry.plan["x"].0, registry.plan["y"].0);
        assert_eq!(registry.assign("x"), Some(registry.plan["x"].0.clone()));
    }

    #[test]
    fn restarted_coordinator_adopts_known_epochs() {
        let mut registry = Registry::default();
        let outcome = handle_heartbeat(&mut registry, Instant::now(), "a:1", 42, vec![]);
        assert!(matches!(
            outcome,
            HeartbeatOutcome::Accepted { epoch: 42, .. }
        ));
    }

    #[test]
    fn fresh_clients_are_spread_over_servers() {
        let now = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, now, "a:1", 0, vec![]);
        handle_heartbeat(&mut registry, now, "b:1", 0, vec![]);
        let first = registry.assign("x").unwrap();
        let second = registry.assign("y").unwrap();
        assert_ne!(first, second);
    }
}
