//! The pool: the `send-<name>` writer threads ([`run_writer`]), and the `pool` thread
//! ([`pool_loop`]) that starts one for each pen handed over ([`Pool::hand_over`]) while no
//! writer lingers to take it, within the process's thread budget ([`writer_budget`]).
//!
//! **Who calls it.** A thread holding a pen it cannot finish with hands it over: one writing
//! through (`through.rs`), a client's connection thread, the hub's lock guard. The server
//! starts the `pool` thread. Only that thread starts writers, so nobody starts a thread under
//! the hub's lock or waits for one.
//!
//! **Failures and stopping.** A writer whose write fails or times out shuts the socket down;
//! a thread that cannot be started is retried every [`WRITER_RETRY`], and gets its job by
//! rendezvous, so one that dies before it runs gives the pen back. A writer ends after
//! lingering without the pen ([`WRITER_LINGER`]); the `pool` thread when the server's stop
//! channel disconnects. The pool against the Rust Book's `ThreadPool`, and the budget:
//! `docs/thread-per-connection.md`, "Who writes a client's socket".

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select, unbounded};

use super::WRITER_STACK;
use super::pen::Pen;
use super::writer_loop::{Ended, Flow, WhenIdle, write_frames};
use crate::net;
use crate::protocol::{Message, Refusal};
use crate::roles::server::metrics::Metrics;
use crate::support::limits;

/// The way into the pool: where a pen goes when its holder will not write what waits. The
/// hub holds one, and so does every thread that writes through ([`Pens`](super::Pens)).
#[derive(Clone)]
pub struct Pool {
    jobs_tx: Sender<Pen>,
}

impl Pool {
    /// A pool's way in, and the end its `pool` thread reads the jobs from ([`pool_loop`]):
    /// each job is a [`Pen`], so the channel holds at most one per client.
    pub fn channel() -> (Pool, Receiver<Pen>) {
        let (jobs_tx, jobs_rx) = unbounded();
        (Pool { jobs_tx }, jobs_rx)
    }

    /// Hands `pen`, with the bytes it holds, to a writer: the client's lingering writer if
    /// one waits for it (no thread to start), or else a new one, started by the `pool`
    /// thread. Never blocks. When the `pool` thread has gone, the server is stopping and
    /// nothing is started, which is what stopping wants.
    pub fn hand_over(&self, pen: Pen) {
        if let Err(pen) = pen.offer() {
            let _ = self.jobs_tx.send(pen);
        }
    }
}

/// What [`CatchUpSource::catch_up`] did for a client that was behind.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// The client has every frame queued; live frames go to its outbox again.
    Done,
    /// The outbox filled again; call again when it has drained.
    Behind,
    /// The window no longer holds what the client missed. It has been removed; the writer
    /// tells it why and closes the connection.
    FellBehind(String),
    /// The connection was replaced or removed meanwhile.
    Gone,
}

/// Where a client's writer refills the outbox of a client that fell behind: the history
/// window, which the hub holds and answers for (`Hub::catch_up`). The pool knows the hub only
/// through this, so nothing in `write/` looks back up into the hub.
pub trait CatchUpSource: Send + Sync {
    /// Refills the outbox of `name` (connection `conn`) for as long as it has room.
    fn catch_up(&self, name: &str, conn: u64) -> CatchUp;
}

/// How long a client's writer lingers without the pen once its outbox is empty, ready to be
/// handed it again, before it ends and gives its thread back. A client whose socket fills
/// now and then keeps one writer; after a burst to every client, the writers are gone a
/// second later. While other clients wait for a place, a writer lingers only
/// [`CROWDED_LINGER`] instead: starting a writer costs tens of microseconds, waiting out a
/// linger a whole second.
const WRITER_LINGER: Duration = Duration::from_secs(1);
/// How long a client's writer lingers while other clients wait for a place: long enough for
/// the next message of a burst to reach it (a message reaches ten thousand outboxes in a
/// few milliseconds), so that it does not end between two messages and leave its client
/// to queue for a writer again. (It looks once, when it starts to linger, and then sleeps:
/// thousands of lingering writers waking every few milliseconds to look again cost more
/// than the waiting they save.)
const CROWDED_LINGER: Duration = Duration::from_millis(50);
/// How often the `pool` thread tries again to start a writer it could not start.
const WRITER_RETRY: Duration = Duration::from_millis(50);
/// The least time between two warnings that writers have to wait.
const WARNING_EVERY: Duration = Duration::from_secs(1);
/// Room for waiting jobs kept once the queue has emptied; more is given back.
const WAITING_KEPT: usize = 64;
/// Memory mappings per thread: stack, its guard page, the signal stack, its guard page.
const MAPS_PER_THREAD: u64 = 4;
/// Threads kept out of the budget for everything that is not a client's: accept, heartbeat,
/// writers, two per peer link, handshakes, and the main thread.
const OTHER_THREADS: u64 = 256;

/// How many writers may run at once: the threads the process may have (from
/// `vm.max_map_count`), less one per connection (`max_connections`) and a reserve. At least
/// 16, so a server with a huge `--max-connections` still delivers, slowly.
pub fn writer_budget(max_connections: usize) -> usize {
    let threads = limits::max_map_count().unwrap_or(65_530) / MAPS_PER_THREAD;
    threads
        .saturating_sub(max_connections as u64)
        .saturating_sub(OTHER_THREADS)
        .max(16) as usize
}

/// The `pool` thread: starts a writer for each job, at most `budget` running at once; the
/// others wait in order. Writers catch their clients up from `source`. Ends when `stop_rx`
/// disconnects: the server stops.
pub fn pool_loop(
    jobs_rx: Receiver<Pen>,
    stop_rx: Receiver<()>,
    source: Arc<dyn CatchUpSource>,
    budget: usize,
) {
    // Each writer sends one `()` as it ends (see `Done`), which frees a place. At most
    // `budget` messages are ever queued on it.
    let (done_tx, done_rx) = unbounded::<()>();
    // At most one job per client (its pen is taken until its writer runs).
    let mut waiting: VecDeque<Pen> = VecDeque::new();
    let mut running = 0usize;
    let mut last_warning: Option<Instant> = None;
    // Set while jobs wait: lingering writers then end early and free their places.
    let crowded = Arc::new(AtomicBool::new(false));
    loop {
        let retry = if waiting.is_empty() || running >= budget {
            never()
        } else {
            after(WRITER_RETRY)
        };
        select! {
            recv(jobs_rx) -> job => match job {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            },
            recv(done_rx) -> _ => running -= 1,
            recv(retry) -> _ => {}
            recv(stop_rx) -> _ => break,
        }
        while running < budget {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            match start_writer(job, &source, done_tx.clone(), crowded.clone()) {
                Ok(()) => running += 1,
                Err((job, e)) => {
                    waiting.push_front(job);
                    warn_now_and_then(
                        &mut last_warning,
                        &format!("cannot start a writer thread ({e})"),
                        waiting.len(),
                    );
                    break;
                }
            }
        }
        // Jobs not received yet count too: a burst to every client queues them all at once,
        // far faster than writers start, and the first writers must know it.
        crowded.store(
            !waiting.is_empty() || !jobs_rx.is_empty(),
            Ordering::Relaxed,
        );
        if running >= budget && !waiting.is_empty() {
            let reason = format!("{budget} writers run already, the thread budget");
            warn_now_and_then(&mut last_warning, &reason, waiting.len());
        }
        if waiting.is_empty() && waiting.capacity() > WAITING_KEPT {
            // A burst to ten thousand clients left room for thousands of jobs: give it back.
            waiting.shrink_to(WAITING_KEPT);
        }
    }
    log::debug!("pool thread stopped");
}

/// Logs that clients wait for a writer, at most once per [`WARNING_EVERY`].
fn warn_now_and_then(last: &mut Option<Instant>, why: &str, waiting: usize) {
    if last.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
        log::warn!(
            "clients wait for a writer waiting={waiting} reason=\"{why}\" \
             (docs/thread-per-connection.md: the thread limits)"
        );
        *last = Some(Instant::now());
    }
}

/// Starts a writer thread (`send-<name>`) for `job`'s client. The job goes to the thread
/// through a rendezvous once it runs, so a thread that dies at its start gives it back.
///
/// # Errors
/// The job, with the reason, when no thread could be started or it died before it ran.
fn start_writer(
    job: Pen,
    source: &Arc<dyn CatchUpSource>,
    done_tx: Sender<()>,
    crowded: Arc<AtomicBool>,
) -> Result<(), (Pen, std::io::Error)> {
    let source = source.clone();
    let (job_tx, job_rx) = bounded::<Pen>(0);
    let spawned = thread::Builder::new()
        .name(format!("send-{}", job.side().name()))
        .stack_size(WRITER_STACK)
        .spawn(move || {
            let _done = Done(done_tx); // however the writer ends, its place is freed
            if let Ok(job) = job_rx.recv() {
                run_writer(job, &*source, &crowded);
            }
        });
    if let Err(e) = spawned {
        return Err((job, e));
    }
    job_tx.send(job).map_err(|returned| {
        let e = std::io::Error::other("the writer thread ended before it started");
        (returned.0, e)
    })
}

/// Tells the `pool` thread, when dropped, that a writer has ended.
struct Done(Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(()); // fails only when the `pool` thread has stopped
    }
}

/// A writer's life: sends what the pen's last holder could not, then runs the one writer
/// loop over the client's outbox ([`write_frames`]), catching up from the history window
/// whenever the hub marked the client behind, until the outbox is empty and the pen is
/// down; then lingers for [`WRITER_LINGER`] ([`CROWDED_LINGER`] while other clients wait
/// for a writer) to be handed the pen again, and goes round. Ends when nobody hands it the
/// pen in that time, when the hub removed the client, when the client fell behind the
/// window (it is told why), or when a write fails or times out; the last two shut the
/// socket down, so the connection thread ends too.
fn run_writer(pen: Pen, source: &dyn CatchUpSource, crowded: &AtomicBool) {
    let side = pen.side().clone();
    let mut pen = pen;
    let written = loop {
        let ended = write_frames(
            &mut pen,
            side.outbox(),
            Duration::ZERO,
            WhenIdle::Return,
            |pen: &mut Pen| catch_up_if_behind(pen, source),
        );
        match ended {
            Ok(Ended::Idle) => {}
            Ok(Ended::Done) => break Ok(()),
            Err(e) => break Err(e),
        }
        match pen.put_down() {
            Ok(Some(again)) => {
                pen = again; // frames came as it went down
                continue;
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let linger = if crowded.load(Ordering::Relaxed) {
            CROWDED_LINGER
        } else {
            WRITER_LINGER
        };
        match side.await_pen(linger) {
            Some(handed) => pen = handed,
            None => break Ok(()),
        }
    };
    if let Err(e) = written {
        let name = side.name();
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            // The client has let its socket buffer stay full for the whole write timeout:
            // it has stopped reading. It resumes from the history window.
            Metrics::add(&side.metrics().slow_consumer_cutoffs, 1);
            log::warn!(
                "slow consumer cut off name={name} peer={} reason=\"a write blocked for the \
                 write timeout; the client has stopped reading\"",
                net::peer_of(side.stream())
            );
        } else {
            log::debug!("client writer stopped name={name}: {e}");
        }
        let _ = side.stream().shutdown(Shutdown::Both);
    }
}

/// The writer's refill step: when the hub marked the client behind, refills the outbox from
/// the history window ([`CatchUpSource`]). A client that fell behind the window is told why
/// and its connection closed.
fn catch_up_if_behind(pen: &mut Pen, source: &dyn CatchUpSource) -> std::io::Result<Flow> {
    let side = pen.side().clone();
    if !side.outbox().is_behind() {
        return Ok(Flow::Continue);
    }
    match source.catch_up(side.name(), side.conn()) {
        CatchUp::Done | CatchUp::Behind => Ok(Flow::Continue),
        CatchUp::Gone => Ok(Flow::Stop),
        CatchUp::FellBehind(reason) => {
            let code = Refusal::Other;
            pen.write_all(&Message::Error { code, reason }.encode())?;
            pen.flush()?;
            let _ = side.stream().shutdown(Shutdown::Both);
            Ok(Flow::Stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_every_connection_and_never_falls_below_sixteen() {
        let threads = (limits::max_map_count().unwrap_or(65_530) / MAPS_PER_THREAD) as usize;
        let budget = writer_budget(1_000);
        assert!(budget + 1_000 <= threads, "{budget} + 1000 > {threads}");
        assert_eq!(writer_budget(usize::MAX / 2), 16);
    }
}
