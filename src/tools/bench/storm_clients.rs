//! The storm's clients: real client sessions ([`session::start`]) started a few at a time
//! and watched by one thread, in the bench process (the calm clients) or in a child
//! process (a part of the idle ones, [`super::storm_part`]). Both sides use it, so neither
//! the storm nor its parts import each other.
//!
//! **Threads.** [`start_idle`] registers on `REGISTERING_THREADS` scoped threads and
//! returns when all are registered; each session then runs its own three threads until
//! its [`Member`] is dropped. [`watch`] runs on the caller's thread (`bench-storm-watch`),
//! sweeping every session's events every [`SWEEP`] until its stop channel disconnects.

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::roles::client::session::{self, SessionConfig};
use crate::roles::client::{Command, Event};

/// The publisher's name: the watchers count its messages, in every process.
pub(super) const PUBLISHER: &str = "storm-publisher";
/// How often the watcher looks at every session's events: the resolution of the times
/// measured, and a cost (a `try_recv` per session) that is left out of the CPU figures.
pub(super) const SWEEP: Duration = Duration::from_millis(5);
/// Clients registered at once while setting up (each registration waits for its answer).
const REGISTERING_THREADS: usize = 8;

/// One client session run by the bench. Dropping `commands` ends its input; dropping
/// `stop` ends it at once.
pub(super) struct Member {
    pub(super) name: String,
    pub(super) commands: Sender<Command>,
    pub(super) stop: Sender<()>,
    pub(super) session: thread::JoinHandle<Result<()>>,
    pub(super) events: Receiver<Event>,
}

/// What the watcher saw of one client.
#[derive(Default, Clone)]
pub(super) struct Seen {
    /// The last `seq` from the publisher, and how many arrived in order.
    last_seq: u64,
    pub(super) delivered: u64,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) missed: u64,
    pub(super) failovers: u32,
    /// When it was registered again (its first `failover` event), by the wall clock: a
    /// part in a child process reports it to the bench, and processes share no `Instant`.
    pub(super) back_wall: Option<SystemTime>,
    /// When the last message arrived, and the longest pause between two since the stream
    /// began.
    last_delivery: Option<Instant>,
    pub(super) longest_pause: Duration,
    pub(super) errors: Vec<String>,
}

impl Seen {
    fn take(&mut self, event: Event, now: Instant, wall: SystemTime) {
        match event {
            Event::Message { from, seq, .. } if from == PUBLISHER => {
                if seq <= self.last_seq {
                    self.duplicated += 1;
                    return;
                }
                if seq != self.last_seq + 1 && self.last_seq != 0 {
                    self.out_of_order += 1;
                }
                self.last_seq = seq;
                self.delivered += 1;
                if let Some(last) = self.last_delivery {
                    self.longest_pause = self.longest_pause.max(now - last);
                }
                self.last_delivery = Some(now);
            }
            Event::Failover { .. } => {
                self.failovers += 1;
                self.back_wall.get_or_insert(wall);
            }
            Event::Gap { missed, .. } => self.missed += missed,
            Event::Error { message } => self.errors.push(message),
            _ => {}
        }
    }
}

/// Starts a session named `name` on `server` and returns it with its events.
pub(super) fn start_member(coordinator: &str, server: &str, name: &str) -> Result<Member> {
    let (commands, commands_rx) = bounded(64);
    let (stop, stop_rx) = bounded(0);
    let (events_tx, events) = unbounded();
    let config = SessionConfig {
        coordinator: coordinator.to_string(),
        server: Some(server.to_string()),
        name: name.to_string(),
        download_dir: std::env::temp_dir(),
        max_file_size: 0,
        secret: None,
    };
    let session = session::start(config, commands_rx, events_tx, stop_rx)?;
    Ok(Member {
        name: name.to_string(),
        commands,
        stop,
        session,
        events,
    })
}

/// Starts idle sessions `storm-FIRST` to `storm-(FIRST + COUNT - 1)` on `server`, a few
/// registrations at a time (a part's job, in its own process).
pub(super) fn start_idle(
    coordinator: &str,
    server: &str,
    first: usize,
    count: usize,
) -> Result<Vec<Member>> {
    let per_thread = count.div_ceil(REGISTERING_THREADS).max(1);
    let started: Vec<Result<Vec<Member>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(per_thread)
            .map(|from| {
                scope.spawn(move || {
                    (from..(from + per_thread).min(count))
                        .map(|i| start_member(coordinator, server, &format!("storm-{}", first + i)))
                        .collect::<Result<Vec<Member>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Failed("a registering thread panicked".into())))
            })
            .collect()
    });
    let mut members = Vec::with_capacity(count);
    for batch in started {
        members.extend(batch?);
    }
    Ok(members)
}

/// Sweeps `receivers` every [`SWEEP`] until `stop_rx` disconnects, then returns what it
/// saw of each. After each sweep, the closure gets the clients seen so far, the indexes
/// of those newly back, and the stream's deliveries so far, all clients together.
pub(super) fn watch(
    receivers: Vec<Receiver<Event>>,
    stop_rx: &Receiver<()>,
    mut after_sweep: impl FnMut(&[Seen], &[usize], u64),
) -> Vec<Seen> {
    let mut seen = vec![Seen::default(); receivers.len()];
    let mut newly_back = Vec::new();
    let mut delivered = 0;
    loop {
        let (now, wall) = (Instant::now(), SystemTime::now());
        for (i, events) in receivers.iter().enumerate() {
            while let Ok(event) = events.try_recv() {
                let was_back = seen[i].back_wall.is_some();
                if matches!(&event, Event::Message { from, .. } if from == PUBLISHER) {
                    delivered += 1;
                }
                seen[i].take(event, now, wall);
                if !was_back && seen[i].back_wall.is_some() {
                    newly_back.push(i);
                }
            }
        }
        after_sweep(&seen, &newly_back, delivered);
        newly_back.clear();
        match stop_rx.recv_timeout(SWEEP) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return seen,
        }
    }
}

/// This thread's id in `/proc/self/task` (`gettid`).
pub(super) fn current_tid() -> u32 {
    // `/proc/thread-self` links to `/proc/PID/task/TID`.
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}
