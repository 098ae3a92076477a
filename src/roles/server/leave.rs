//! A planned stop: what the first SIGTERM or SIGINT starts. The server takes no new client,
//! says in its heartbeats that it is leaving, and waits while the coordinator moves its
//! clients to the other servers; once its heartbeat lists no client, or no other live server
//! takes clients, it stops, and its last heartbeat tells the coordinator it has left.
//!
//! **Who calls it.** [`Leave`] is shared, and starts no thread: the main thread starts the
//! drain and waits ([`super::ServerHandle::leave`]), client connection threads refuse new
//! registrations, and the `heartbeat` thread sends `Leaving`, passes on the coordinator's
//! moves, tells the main thread when the drain is over, and sends `Gone` as it ends. Who
//! decides what: `docs/heartbeats-and-failover.md`, "Leaving is not dying: a planned stop";
//! the stop itself: `docs/shutdown.md`, "A planned stop".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

/// Default for `--drain-timeout`: how long a planned stop may take before the server stops
/// at once, with whatever clients are still on it (they fail over, as after a crash).
/// Moves go at 500 a second (`coordinator::DRAIN_PACE`), so a full server of 10,000
/// clients takes 20 s; 30 s leaves room for that and is what orchestrators wait by default
/// between SIGTERM and SIGKILL (Kubernetes' grace period), so the server ends on its own
/// terms before it is killed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How a drain ended, as the `heartbeat` thread saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// The last heartbeat listed no client: every one has moved.
    Empty,
    /// The coordinator lists no other live server that takes clients: nowhere to move the
    /// `clients` still here.
    Nowhere {
        /// Clients still on this server.
        clients: usize,
    },
}

/// What the threads of one server share about a planned stop.
#[derive(Clone)]
pub(super) struct Leave {
    leaving: Arc<AtomicBool>,
    /// Disconnects when the drain starts, so that the `heartbeat` thread says it at once.
    pub(super) started: Receiver<()>,
    /// `heartbeat` → main thread: the drain is over. Holds one: later news is dropped.
    done_tx: Sender<Drained>,
}

/// The main thread's side of [`Leave`].
pub(super) struct LeaveControl {
    leaving: Arc<AtomicBool>,
    start: Option<Sender<()>>,
    pub(super) done_rx: Receiver<Drained>,
}

/// A [`Leave`] for the server's threads and the control its main thread keeps.
pub(super) fn leave() -> (Leave, LeaveControl) {
    let leaving = Arc::new(AtomicBool::new(false));
    let (start, started) = bounded(0);
    let (done_tx, done_rx) = bounded(1);
    let shared = Leave {
        leaving: leaving.clone(),
        started,
        done_tx,
    };
    let control = LeaveControl {
        leaving,
        start: Some(start),
        done_rx,
    };
    (shared, control)
}

impl Leave {
    /// Whether the drain has started: no new client, and every heartbeat says `Leaving`.
    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    /// Tells the main thread how the drain ended (the first news only).
    pub(super) fn done(&self, how: Drained) {
        let _ = self.done_tx.try_send(how);
    }
}

impl LeaveControl {
    /// Starts the drain. Returns false when it had started already.
    pub(super) fn start(&mut self) -> bool {
        self.leaving.store(true, Ordering::SeqCst);
        self.start.take().is_some()
    }

    /// Whether the drain has started.
    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }
}
