//! A part of the storm's idle clients, run in a child process of the bench. One process
//! cannot hold 10,000 client sessions here: each session holds 3 descriptors and 3 threads
//! (a stack and a guard page each), against a hard open-file limit of 20,000 and
//! `vm.max_map_count` of 65,530 per process. So the storm ([`super::storm`]) runs its idle
//! clients in parts of at most [`PART_SIZE`], each in `dsys bench --storm-part ...` (a flag
//! clap hides: it is the bench talking to itself, not a command for people).
//!
//! **Who talks to whom.** The parent holds the child's stdin and stdout (pipes). The child
//! registers its clients, then writes one line per event on stdout:
//! `ready TID` (all registered; TID is its watcher thread, whose CPU the parent leaves out),
//! `back I MICROS` (client I of the part registered again, at MICROS since the Unix epoch:
//! the wall clock is the one clock both processes read), `delivered N` (the part's stream
//! deliveries so far), and at the end `done ...` with its counts. The parent closing the
//! child's stdin means "finish": the child stops watching, ends its sessions and writes
//! `done`.
//!
//! **Threads.** In the child, the storm's watcher (`bench-storm-watch`) writes the lines.
//! In the parent, one `bench-storm-part-K` thread per part reads them and ends at the
//! child's end of output. **Failure.** The child dies with the parent (parent-death
//! signal), and the parent kills it when its [`Part`] drops.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::storm_clients::{Seen, current_tid, start_idle, watch};
use crate::error::{Error, Result};
use crate::support::sys;
use crate::tools::children::this_executable;

/// Most client sessions in one process: 15,000 descriptors and 15,000 threads, three
/// quarters of the open-file limit and under half the mappings allowed. A storm of more
/// clients runs in more parts.
pub const PART_SIZE: usize = 5_000;
/// The nice value of a part's threads (0 is the servers'; at 10 a thread gets about a
/// tenth of the CPU a thread at 0 gets when both want it).
const CLIENTS_NICE: i32 = 10;
/// How long a part may take to register its clients. Generous: 5,000 take a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a part may take to end its sessions and report, once told to finish.
const DONE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a part saw of its clients, summed, once it has finished.
#[derive(Default, Debug)]
pub struct PartSummary {
    pub delivered: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub missed: u64,
    pub moved_twice: u64,
    /// Error events (the child writes the first on stderr).
    pub errors: u64,
}

/// A part as the parent holds it: the child process, killed on drop.
pub struct Part {
    child: Child,
    /// Closing it tells the child to finish.
    stdin: Option<ChildStdin>,
    /// The child's watcher thread, left out of the clients' CPU.
    pub watcher_tid: u32,
    /// The summary, sent by the reader thread when the `done` line comes.
    summary_rx: Receiver<PartSummary>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Part {
    /// Starts part `k`: clients `first..first + count` (named `storm-I`) on `server`.
    /// Each `back` line goes to `back_tx` as (index among all idle clients, when); each
    /// `delivered` line adds to `delivered`. Returns before the clients are registered:
    /// [`ready`] waits for that.
    ///
    /// # Errors
    /// When the child cannot start.
    pub fn start(
        k: usize,
        first: usize,
        count: usize,
        coordinator: &str,
        server: &str,
        back_tx: Sender<(usize, SystemTime)>,
        delivered: Arc<AtomicU64>,
    ) -> Result<(Part, Receiver<u32>)> {
        let spec = format!("{first},{count},{coordinator},{server}");
        let mut command =
            this_executable(&["bench", "--load", "storm", "--storm-part", spec.as_str()])?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Failed(format!("storm part {k} has no pipes"))); // piped above
        };
        let (ready_tx, ready_rx) = bounded(1);
        let (summary_tx, summary_rx) = bounded(1);
        let reader = thread::Builder::new()
            .name(format!("bench-storm-part-{k}"))
            .spawn(move || {
                let mut last_delivered = 0;
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    let mut words = line.splitn(3, ' ');
                    let (word, a, b) = (words.next(), words.next(), words.next());
                    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
                    match word {
                        Some("ready") => {
                            let _ = ready_tx.send(num(a).unwrap_or(0) as u32);
                        }
                        Some("back") => {
                            if let (Some(i), Some(us)) = (num(a), num(b)) {
                                let at = UNIX_EPOCH + Duration::from_micros(us);
                                let _ = back_tx.send((first + i as usize, at));
                            }
                        }
                        Some("delivered") => {
                            let n = num(a).unwrap_or(last_delivered);
                            delivered.fetch_add(n - last_delivered, Ordering::Relaxed);
                            last_delivered = n;
                        }
                        Some("done") => {
                            let rest = line.trim_start_matches("done ");
                            let mut n = rest.split(' ').map(|s| s.parse().unwrap_or(0));
                            let mut next = || n.next().unwrap_or(0);
                            let summary = PartSummary {
                                delivered: next(),
                                duplicated: next(),
                                out_of_order: next(),
                                missed: next(),
                                moved_twice: next(),
                                errors: next(),
                            };
                            let _ = summary_tx.send(summary);
                        }
                        _ => {}
                    }
                }
            })?;
        let part = Part {
            child,
            stdin: Some(stdin),
            watcher_tid: 0,
            summary_rx,
            reader: Some(reader),
        };
        Ok((part, ready_rx))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the child to finish, and waits for its summary.
    ///
    /// # Errors
    /// When the child ends or stays silent for [`DONE_TIMEOUT`] without one.
    pub fn finish(mut self) -> Result<PartSummary> {
        drop(self.stdin.take());
        self.summary_rx
            .recv_timeout(DONE_TIMEOUT)
            .map_err(|_| Error::Failed("a storm part did not report".into()))
    }
}

/// Waits until a part started by [`Part::start`] has registered its clients.
///
/// # Errors
/// When the child ends (a registration failed: it said why on stderr) or takes longer than
/// [`READY_TIMEOUT`].
pub fn ready(part: &mut Part, ready_rx: &Receiver<u32>) -> Result<()> {
    part.watcher_tid = ready_rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| Error::Failed("a storm part could not register its clients".into()))?;
    Ok(())
}

impl Drop for Part {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join(); // ends at the child's end of output
        }
    }
}

/// The child's side: `spec` is `FIRST,COUNT,COORDINATOR,SERVER`. Registers the clients,
/// reports as the module doc says until stdin closes, then ends the sessions and reports
/// the counts.
///
/// # Errors
/// [`Error::Usage`] when `spec` is not of that form; a registration's error.
pub fn run_part(spec: &str) -> Result<()> {
    let fields: Vec<&str> = spec.splitn(4, ',').collect();
    let bad = || {
        Error::Usage(format!(
            "--storm-part takes FIRST,COUNT,COORDINATOR,SERVER, not {spec:?}"
        ))
    };
    let [first, count, coordinator, server] = fields[..] else {
        return Err(bad());
    };
    let first: usize = first.parse().map_err(|_| bad())?;
    let count: usize = count.parse().map_err(|_| bad())?;
    // These clients stand for thousands of machines elsewhere: on this one they must not
    // outrank the servers for the CPU, or the storm measures the clients' scheduling
    // rather than the servers. Every thread started from here on inherits it.
    if let Err(e) = sys::set_nice(CLIENTS_NICE) {
        eprintln!("storm part: could not lower its priority ({e}); going on without");
    }
    let members = start_idle(coordinator, server, first, count)?;
    let receivers = members.iter().map(|m| m.events.clone()).collect();
    let (tid_tx, tid_rx) = bounded(1);
    let (stop_watch_tx, stop_watch_rx) = bounded::<()>(0);
    let watcher = thread::Builder::new()
        .name("bench-storm-watch".into())
        .spawn(move || {
            let _ = tid_tx.send(current_tid());
            let mut last_delivered = 0;
            watch(receivers, &stop_watch_rx, |seen, newly_back, delivered| {
                let mut out = std::io::stdout().lock();
                for &i in newly_back {
                    let at = seen[i].back_wall.unwrap_or(UNIX_EPOCH);
                    let us = at
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_micros();
                    let _ = writeln!(out, "back {i} {us}");
                }
                if delivered != last_delivered {
                    let _ = writeln!(out, "delivered {delivered}");
                    last_delivered = delivered;
                }
                let _ = out.flush();
            })
        })?;
    let watcher_tid = tid_rx.recv().unwrap_or(0);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {watcher_tid}");
        let _ = out.flush();
    }
    // Until the parent closes stdin: that is the order to finish.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
    drop(stop_watch_tx);
    let seen: Vec<Seen> = watcher
        .join()
        .map_err(|_| Error::Failed("the watcher panicked".into()))?;
    // Every session is told first and joined after, so that they leave together: one at a
    // time, five thousand goodbyes took longer than the parent waits.
    // (Dropping `stop` is the order; a send would wait for each session in turn to take it.)
    let mut sessions = Vec::with_capacity(members.len());
    for member in members {
        drop(member.stop);
        drop(member.commands);
        sessions.push((member.session, member.events));
    }
    for (session, _events) in sessions {
        let _ = session.join();
    }
    let sum = |f: fn(&Seen) -> u64| seen.iter().map(f).sum::<u64>();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "done {} {} {} {} {} {}",
        sum(|s| s.delivered),
        sum(|s| s.duplicated),
        sum(|s| s.out_of_order),
        sum(|s| s.missed),
        sum(|s| u64::from(s.failovers > 1)),
        sum(|s| s.errors.len() as u64),
    );
    if let Some(first) = seen.iter().flat_map(|s| &s.errors).next() {
        eprintln!("storm part: first error event: {first}");
    }
    let _ = out.flush();
    Ok(())
}
