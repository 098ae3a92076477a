//! The coordinator: the [`Coordinator`] handle on its registry of servers, the threads it
//! starts, and how they stop. Its state is soft (rebuilt from heartbeats); it is never on
//! the data path.
//!
//! **Threads.** `accept` ([`start_coordinator`], through [`net::AcceptLoop`]) starts a
//! `conn-<peer>` thread per connection, which runs a handler of [`serve`]. `watchdog`
//! ([`watchdog_loop`]) runs [`Coordinator::check`] every check interval; each late server
//! gets a `probe-<addr>` thread ([`Coordinator::start_probe`]).
//!
//! **Deciding and acting.** Every decision is in [`registry`], with `now` passed in and no
//! socket; each method of the handle locks the [`Registry`], decides, copies out what it
//! needs and unlocks before any socket I/O.
//!
//! **Stopping.** [`CoordinatorHandle::stop`]: drop the stop sender (the watchdog wakes on
//! the disconnect), stop the accept loop, join the watchdog; connection threads end with
//! their connections. `docs/architecture.md` ("The coordinator's threads") has the picture.

mod locate;
pub mod metrics;
mod probe;
mod registry;
mod serve;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};

use crate::auth::Secret;
use crate::error::Result;
use crate::net;
use crate::protocol::{Departure, ServerInfo};
use crate::support::signals;

pub use registry::{
    Checks, DEFAULT_PACE, DRAIN_PACE, HeartbeatOutcome, Move, Probe, Rebalance, Registry, Server,
    ServerEntry, check_server_statuses, claim_name, handle_departing_heartbeat, handle_heartbeat,
    rebalance_clients, redistribute_clients,
};

/// Default for `--max-connections`: heartbeat connections (one per server) and short
/// requests (locate, status). Beyond it a new connection is refused at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Stack size of connection threads: they hold no large buffers on the stack, and a
/// burst of thousands of clients asking where to go should not reserve 2 MiB each.
const THREAD_STACK: usize = 256 * 1024;

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
    /// Clients moved a second at most when rebalancing; `None`: no rebalancing.
    pub rebalance_pace: Option<u32>,
    /// Where to serve the metrics over HTTP (`--metrics`); `None`: nowhere.
    pub metrics: Option<String>,
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
            rebalance_pace: Some(DEFAULT_PACE),
            metrics: None,
        }
    }
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
    /// How often the watchdog runs, to notice when it runs late.
    check_interval: Duration,
    /// When this coordinator started: for one heartbeat timeout after that, it may not have
    /// heard from every live server yet, and says so in its replies.
    started: Instant,
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind, never a broken invariant
        // that matters more than staying up, so a poisoned lock is used anyway.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A coordinator with an empty registry, for the cluster of `config`.
    pub fn new(config: &Config) -> Coordinator {
        let registry = Registry {
            rebalance: Rebalance::with_pace(config.rebalance_pace),
            ..Registry::default()
        };
        Coordinator {
            registry: Arc::new(Mutex::new(registry)),
            changed: Arc::default(),
            heartbeat_timeout: config.heartbeat_timeout,
            check_interval: config.check_interval,
            started: Instant::now(),
        }
    }

    /// Records a heartbeat (see [`handle_departing_heartbeat`]), and the peers the server says it
    /// cannot reach ([`Registry::record_cuts`]).
    pub fn heartbeat(
        &self,
        addr: &str,
        epoch: u64,
        clients: Option<Vec<String>>,
        cut_off: &[String],
        departure: Departure,
    ) -> HeartbeatOutcome {
        let now = Instant::now();
        let mut registry = self.lock();
        let outcome =
            handle_departing_heartbeat(&mut registry, now, addr, epoch, clients, departure);
        if matches!(outcome, HeartbeatOutcome::Accepted { .. }) {
            registry.record_cuts(addr, cut_off, now);
        }
        drop(registry);
        self.changed.notify_all();
        outcome
    }

    /// One watchdog round: the registry decides under its lock ([`Registry::tick`], every
    /// step in order); then, the lock gone, this wakes the locate requests waiting on a
    /// suspect and starts a probe of each server whose heartbeat is late.
    pub fn check(&self) {
        let probes = self
            .lock()
            .tick(Instant::now(), self.heartbeat_timeout, self.check_interval);
        self.changed.notify_all();
        for (addr, epoch) in probes {
            self.start_probe(addr, epoch);
        }
    }

    /// Asks the server `(addr, epoch)`, on a `probe-<addr>` thread, whether it still answers
    /// ([`probe`]), and records the answer. When no thread can be started, the question
    /// stays open: the server is then declared dead only at twice the timeout, if it stays
    /// silent (a coordinator short of threads accuses no one for it).
    fn start_probe(&self, addr: String, epoch: u64) {
        let coordinator = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("probe-{addr}"))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let deadline = registry::probe_deadline(coordinator.heartbeat_timeout);
                let answered = probe::probe(&addr, deadline);
                coordinator
                    .lock()
                    .probe_answered(&addr, epoch, answered, Instant::now());
                coordinator.changed.notify_all();
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a probe thread: {e}");
        }
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

    /// Claims `name` for a client registering on `server` (see [`claim_name`]): the server
    /// that has the name already, or `None` when it is `server`'s to give.
    ///
    /// For one heartbeat timeout after this coordinator started, a name may belong to a
    /// server that has not heartbeated yet, so the answer waits out that time (at most one
    /// heartbeat timeout) rather than give a name twice.
    pub fn claim(&self, name: &str, server: &str) -> Option<String> {
        let warming =
            (self.started + self.heartbeat_timeout).saturating_duration_since(Instant::now());
        if !warming.is_zero() {
            thread::sleep(warming); // only time can end it: no event to wait for
        }
        claim_name(
            &mut self.lock(),
            Instant::now(),
            name,
            server,
            self.heartbeat_timeout,
        )
    }
}

/// A running coordinator, for tests and the demo: its address and a way to stop it.
pub struct CoordinatorHandle {
    /// The address it listens on.
    pub addr: String,
    /// Dropped by [`CoordinatorHandle::stop`]: the watchdog's `select!` sees the disconnect.
    stop_tx: Option<Sender<()>>,
    /// The `accept` thread, with its stop flag and wake-up ([`net::AcceptLoop::stop`]).
    accept: net::AcceptLoop,
    /// The `watchdog` thread, joined once `stop_tx` is dropped.
    watchdog: Option<JoinHandle<()>>,
    /// The metrics port, with `--metrics`: the `metrics` thread, stopped with the accept
    /// loop.
    metrics: Option<net::metrics_http::MetricsPort>,
}

impl CoordinatorHandle {
    /// Stops accepting, stops the watchdog and joins both threads. Connection threads end
    /// on their own when their peers close or their read deadlines pass.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop_tx.take();
        self.accept.stop();
        if let Some(metrics) = &mut self.metrics {
            metrics.stop();
        }
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
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
/// [`Error::Io`](crate::Error::Io) when the address cannot be bound.
pub fn start_coordinator(config: Config) -> Result<CoordinatorHandle> {
    let listener = net::listen(&config.listen)?;
    let bound = listener.local_addr()?;
    let addr = bound.to_string();
    net::warn_if_open_to_the_network(bound, config.secret.as_ref());
    log::info!(
        "coordinator listening on {addr} pid={} heartbeat_timeout_ms={}",
        std::process::id(),
        config.heartbeat_timeout.as_millis()
    );
    let coordinator = Coordinator::new(&config);
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let limits = config.limits;
    let check_interval = config.check_interval;
    let secret = config.secret;

    let watchdog = {
        let coordinator = coordinator.clone();
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watchdog_loop(coordinator, check_interval, stop_rx))?
    };
    let metrics = match &config.metrics {
        Some(addr) => {
            let coordinator = coordinator.clone();
            let render = move |out: &mut _| metrics::render(&coordinator, out);
            Some(net::metrics_http::MetricsPort::start(
                addr,
                limits.handshake_timeout,
                render,
            )?)
        }
        None => None,
    };
    let accept = net::AcceptLoop::start(
        listener,
        limits.max_connections,
        THREAD_STACK,
        move |stream, challenge| {
            serve::serve_connection(stream, challenge, &coordinator, limits, secret.as_ref())
        },
    )?;
    Ok(CoordinatorHandle {
        addr,
        stop_tx: Some(stop_tx),
        accept,
        watchdog: Some(watchdog),
        metrics,
    })
}

/// `dsys coordinator`: runs until SIGINT or SIGTERM.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the listen address cannot be bound.
pub fn run(config: Config) -> Result<()> {
    let stop_rx = signals::stop_on_signal();
    let handle = start_coordinator(config)?;
    let _ = stop_rx.recv(); // returns Err(Disconnected) on the first signal
    handle.stop();
    log::info!("coordinator stopped");
    Ok(())
}

/// The watchdog: every `check_interval`, declare dead the servers whose heartbeats stopped.
/// Exits when `stop_rx` disconnects.
fn watchdog_loop(coordinator: Coordinator, check_interval: Duration, stop_rx: Receiver<()>) {
    let ticker = tick(check_interval);
    loop {
        select! {
            recv(ticker) -> _ => coordinator.check(),
            recv(stop_rx) -> _ => break,
        }
    }
    log::debug!("watchdog stopped");
}
