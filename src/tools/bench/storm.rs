//! The storm load: a server holding many idle clients is killed, and all of them come
//! back at once. It measures what `docs/heartbeats-and-failover.md` ("The storm") reports:
//! when the last is registered again, the CPU each move costs every process, whether a live
//! process was declared dead, that nothing was lost, and the longest wait of the clients
//! that did not move.
//!
//! **Who calls it.** `dsys bench --load storm` (`bench/mod.rs`). It starts a coordinator
//! (`--no-rebalance`) and three servers as children; the idle clients of server 0 are real
//! client sessions ([`super::storm_clients`]) in child processes of at most [`PART_SIZE`]
//! ([`super::storm_part`]); [`CALM`] clients and a publisher ([`Plan::pace`], 4 a second)
//! sit on the other two. One `bench-storm-watch` thread per process sweeps every session's
//! events every [`SWEEP`]; its CPU is left out of the clients' figure.
//!
//! **How it stops.** After the last client is back (or the deadline), the sessions end and
//! every child is killed on drop. CPU per move: `/proc/PID/stat` from the kill to the last
//! one back, less as long a calm stretch before the kill.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, bounded, unbounded};

use super::report::print_report;
use super::storm_clients::{Member, PUBLISHER, SWEEP, current_tid, start_member, watch};
use super::storm_part::{PART_SIZE, Part, PartSummary, ready};
use super::{Cluster, Plan, start_cluster_watching};
use crate::Output;
use crate::error::{Error, Result};
use crate::roles::client::{Command, Event};
use crate::support::cpu::{cpu_time, thread_cpu_time};
use crate::support::histogram::Histogram;
use crate::support::json::Object;

/// The server the idle clients start on, and that is killed (index into the servers).
const DOOMED: usize = 0;
/// The server the publisher sits on.
const PUBLISHER_HOME: usize = 2;
/// Clients that do not move, half on each survivor: their longest pause between two
/// deliveries is the figure "clients that did not move never wait more than 1 s".
const CALM: usize = 4;
/// How long the stream runs before the kill, to measure what calm costs each process.
const CALM_STRETCH: Duration = Duration::from_secs(3);
/// How long the storm may take before the bench gives up on the clients still missing.
const STORM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the stream goes on after the last client is back, so that every client
/// receives messages published after its move, and a loss would show.
const AFTER_STORM: Duration = Duration::from_secs(2);
/// How long deliveries may stop coming in, at the end, before the bench counts what has
/// not arrived as lost.
const STALL: Duration = Duration::from_secs(15);
/// Threads the storm needs for each idle client, on the whole machine: a session's three
/// and the doomed server's connection thread. Every thread takes a thread id, and the ids
/// of a machine (of a PID namespace) are bounded by `kernel.pid_max`, 32,768 by default:
/// 10,000 clients need 40,000 of them, so the bench checks before it starts.
const THREADS_PER_CLIENT: usize = 4;
/// Thread ids left for everything else: the cluster's other threads, the calm clients, and
/// whatever else runs on the machine.
const OTHER_THREADS: usize = 1_000;

/// CPU time of the processes measured, in one reading.
#[derive(Clone, Copy, Default)]
struct Cpu {
    coordinator: Duration,
    survivors: Duration,
    /// This process and the parts, less their watcher threads.
    clients: Duration,
}

impl Cpu {
    /// Reads every process: `clients` are (process id, watcher thread id) pairs.
    fn read(cluster: &Cluster, clients: &[(u32, u32)]) -> Cpu {
        let survivors = (0..cluster.server_pids.len())
            .filter(|&i| i != DOOMED)
            .map(|i| cpu_time(cluster.server_pids[i]))
            .sum();
        let clients = clients
            .iter()
            .map(|&(pid, tid)| cpu_time(pid).saturating_sub(thread_cpu_time(pid, tid)))
            .sum();
        Cpu {
            coordinator: cpu_time(cluster.coordinator_pid()),
            survivors,
            clients,
        }
    }

    fn minus(self, other: Cpu) -> Cpu {
        Cpu {
            coordinator: self.coordinator.saturating_sub(other.coordinator),
            survivors: self.survivors.saturating_sub(other.survivors),
            clients: self.clients.saturating_sub(other.clients),
        }
    }

    /// This reading scaled from `from` to `to` (a calm stretch's cost over a storm's length).
    fn scaled(self, from: Duration, to: Duration) -> Cpu {
        let k = to.as_secs_f64() / from.as_secs_f64().max(1e-9);
        let scale = |d: Duration| d.mul_f64(k);
        Cpu {
            coordinator: scale(self.coordinator),
            survivors: scale(self.survivors),
            clients: scale(self.clients),
        }
    }

    fn total(self) -> Duration {
        self.coordinator + self.survivors + self.clients
    }
}

/// The figures of one storm.
pub struct StormReport {
    clients: usize,
    rate: u64,
    /// From the kill to the last client registered again; `None` if some never were.
    all_back_after: Option<Duration>,
    back: Histogram,
    moved: usize,
    moved_twice: usize,
    /// CPU used from the kill to the last client back (`cpu`), and what as long a calm
    /// stretch before the kill cost (`calm_cpu`: the stream, keepalives).
    cpu: Cpu,
    calm_cpu: Cpu,
    /// Live processes the coordinator declared dead during the storm.
    declared_dead: Vec<String>,
    expected: u64,
    delivered: u64,
    duplicated: u64,
    out_of_order: u64,
    missed: u64,
    calm_longest_pause: Duration,
    /// Error events of this process's clients (the parts write theirs on stderr), and
    /// how many there were in every process.
    errors: Vec<String>,
    error_events: usize,
}

/// Runs the storm load of `plan` on a cluster it starts, and prints the report.
///
/// # Errors
/// [`Error::Usage`] with fewer than three servers; when the cluster cannot start or a
/// client cannot register; [`Error::Failed`] (after the report) when anything was lost,
/// duplicated or reordered, a client did not come back, or a live process was declared
/// dead.
pub fn run(plan: &Plan, output: Output) -> Result<()> {
    if plan.servers < 3 {
        return Err(Error::Usage(
            "the storm load needs 3 servers: one to kill, two to take its clients".into(),
        ));
    }
    check_thread_ids(plan.subscribers)?;
    // Lines the coordinator logs about a server declared dead, or a cut.
    let forward = |line: &str| {
        (line.contains("declared dead") || line.contains("cut off")).then(|| line.to_string())
    };
    let (mut cluster, lines) = start_cluster_watching(plan.servers, &["--no-rebalance"], forward)?;
    let report = measure(plan, &mut cluster, &lines)?;
    let text = match output {
        Output::Json => report.to_json(),
        Output::Text => report.to_text(),
    };
    print_report(&text, report.failure())
}

/// Fails, saying what to raise, when `clients` idle clients need more thread ids than
/// `kernel.pid_max` allows ([`THREADS_PER_CLIENT`]). Threads beyond it fail to start with
/// EAGAIN, in the clients or in the server, and the run would only report that.
fn check_thread_ids(clients: usize) -> Result<()> {
    let Some(pid_max) = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return Ok(()); // not Linux, or not readable: the run will tell
    };
    let needed = clients * THREADS_PER_CLIENT + OTHER_THREADS;
    if needed <= pid_max {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "{clients} idle clients need about {needed} threads on this machine ({THREADS_PER_CLIENT} \
         per client), and kernel.pid_max allows {pid_max} thread ids: raise it (as root, \
         `sysctl kernel.pid_max={}`) or use fewer clients",
        needed.next_power_of_two()
    )))
}

fn measure(plan: &Plan, cluster: &mut Cluster, lines: &Receiver<String>) -> Result<StormReport> {
    // The idle clients, in parts of at most `PART_SIZE`, each in a child process; they
    // register at the same time.
    eprintln!("registering {} idle clients ...", plan.subscribers);
    let (back_tx, back_rx) = unbounded::<(usize, SystemTime)>();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut parts = Vec::new();
    let mut readies = Vec::new();
    for (k, first) in (0..plan.subscribers).step_by(PART_SIZE).enumerate() {
        let count = PART_SIZE.min(plan.subscribers - first);
        let (part, ready_rx) = Part::start(
            k,
            first,
            count,
            &cluster.coordinator,
            &cluster.servers[DOOMED],
            back_tx.clone(),
            delivered.clone(),
        )?;
        parts.push(part);
        readies.push(ready_rx);
    }
    drop(back_tx);
    for (part, ready_rx) in parts.iter_mut().zip(&readies) {
        ready(part, ready_rx)?;
    }
    let calm: Vec<Member> = (0..CALM)
        .map(|i| {
            let server = &cluster.servers[1 + i % 2];
            start_member(&cluster.coordinator, server, &format!("storm-calm-{i}"))
        })
        .collect::<Result<_>>()?;
    let publisher = start_member(
        &cluster.coordinator,
        &cluster.servers[PUBLISHER_HOME],
        PUBLISHER,
    )?;

    // This process's watcher, for the calm clients.
    let receivers: Vec<Receiver<Event>> = calm.iter().map(|m| m.events.clone()).collect();
    let (tid_tx, tid_rx) = bounded(1);
    let (stop_watch_tx, stop_watch_rx) = bounded::<()>(0);
    let delivered_by_watch = delivered.clone();
    // It sweeps until `stop_watch_tx` is dropped, then returns every calm client's `Seen`.
    let watcher = thread::Builder::new()
        .name("bench-storm-watch".into())
        .spawn(move || {
            let _ = tid_tx.send(current_tid());
            let mut counted = 0;
            watch(receivers, &stop_watch_rx, |_, _, now_delivered| {
                delivered_by_watch.fetch_add(now_delivered - counted, Ordering::Relaxed);
                counted = now_delivered;
            })
        })?;
    let watcher_tid = tid_rx.recv().unwrap_or(0);
    let mut client_processes = vec![(std::process::id(), watcher_tid)];
    client_processes.extend(parts.iter().map(|p| (p.pid(), p.watcher_tid)));

    // The steady stream, from its own thread, until told to stop.
    let rate = plan.pace.rate.unwrap_or(4).max(1);
    let (stop_stream_tx, stop_stream_rx) = bounded::<()>(0);
    let publisher_commands = publisher.commands.clone();
    let stream = thread::Builder::new()
        .name("bench-storm-stream".into())
        .spawn(move || {
            let every = Duration::from_secs(1) / rate as u32;
            let started = Instant::now();
            let mut n: u64 = 0;
            loop {
                n += 1;
                let due = started + every * n as u32;
                match stop_stream_rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return n - 1,
                }
                if publisher_commands
                    .send(Command::Text(format!("message {n}")))
                    .is_err()
                {
                    return n;
                }
            }
        })?;

    // A calm stretch: what the stream and idling cost, before anything fails.
    let calm_start = Cpu::read(cluster, &client_processes);
    let calm_started = Instant::now();
    thread::sleep(CALM_STRETCH);
    let calm_cpu = Cpu::read(cluster, &client_processes).minus(calm_start);
    let calm_for = calm_started.elapsed();
    while lines.try_recv().is_ok() {} // nothing before the kill counts

    // The kill, and the storm.
    eprintln!("killing the server of {} clients ...", plan.subscribers);
    let before = Cpu::read(cluster, &client_processes);
    let killed_at = Instant::now();
    let killed_wall = SystemTime::now();
    cluster.kill_server(DOOMED);
    let deadline = killed_at + STORM_TIMEOUT;
    let mut back_after = vec![None; plan.subscribers];
    let mut back = 0;
    let mut last_back = None;
    while back < plan.subscribers {
        let Ok((i, at)) = back_rx.recv_deadline(deadline) else {
            break;
        };
        let after = at.duration_since(killed_wall).unwrap_or_default();
        if let Some(slot) = back_after.get_mut(i).filter(|slot| slot.is_none()) {
            *slot = Some(after);
            back += 1;
            last_back = Some(after);
        }
    }
    let storm_for = last_back.unwrap_or_else(|| killed_at.elapsed());
    let after = Cpu::read(cluster, &client_processes);
    let calm_cpu = calm_cpu.scaled(calm_for, storm_for);
    let storm_cpu = after.minus(before);
    eprintln!(
        "{back} of {} clients back; letting the stream run on ...",
        plan.subscribers
    );
    thread::sleep(AFTER_STORM);
    let declared_dead: Vec<String> = lines
        .try_iter()
        .filter(|line| !line.contains(&cluster.servers[DOOMED]) || line.contains("cut off"))
        .collect();

    // Stop the stream, let the publisher's last messages be acknowledged, then let every
    // client receive them before the sessions end.
    let _ = stop_stream_tx.send(());
    let published = stream
        .join()
        .map_err(|_| Error::Failed("the stream thread panicked".into()))?;
    drop(publisher.commands);
    let publish_result = publisher
        .session
        .join()
        .unwrap_or_else(|_| Err(Error::Failed("the publisher panicked".into())));
    // The publisher's session has ended: every message it sent is acknowledged, that is,
    // stored on every live server. Every client is to receive each one: wait until they
    // have, or until deliveries stop coming in for `STALL` (the report then counts what is
    // missing).
    let expected = published * (plan.subscribers + calm.len()) as u64;
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let now_delivered = delivered.load(Ordering::Relaxed);
        if now_delivered >= expected || last_change.elapsed() >= STALL {
            break;
        }
        if now_delivered != last {
            (last, last_change) = (now_delivered, Instant::now());
        }
        thread::sleep(SWEEP);
    }
    drop(stop_watch_tx);
    let seen = watcher
        .join()
        .map_err(|_| Error::Failed("the watcher panicked".into()))?;
    for member in calm {
        let _ = member.stop.send(());
        drop(member.commands);
        if let Ok(Err(e)) = member.session.join() {
            eprintln!("session {} ended: {e}", member.name);
        }
    }
    drop(publisher.stop);
    let summaries: Vec<PartSummary> = parts.into_iter().map(Part::finish).collect::<Result<_>>()?;

    let mut report = StormReport {
        clients: plan.subscribers,
        rate,
        all_back_after: (back == plan.subscribers).then_some(storm_for),
        back: Histogram::default(),
        moved: back,
        moved_twice: 0,
        cpu: storm_cpu,
        calm_cpu,
        declared_dead,
        expected,
        delivered: 0,
        duplicated: 0,
        out_of_order: 0,
        missed: 0,
        calm_longest_pause: Duration::ZERO,
        errors: Vec::new(),
        error_events: 0,
    };
    if let Err(e) = publish_result {
        report.errors.push(format!("the publisher: {e}"));
    }
    for after in back_after.into_iter().flatten() {
        report.back.record(after);
    }
    for part in &summaries {
        report.delivered += part.delivered;
        report.duplicated += part.duplicated;
        report.out_of_order += part.out_of_order;
        report.missed += part.missed;
        report.moved_twice += part.moved_twice as usize;
        report.error_events += part.errors as usize;
    }
    for (i, s) in seen.iter().enumerate() {
        report.delivered += s.delivered;
        report.duplicated += s.duplicated;
        report.out_of_order += s.out_of_order;
        report.missed += s.missed;
        report.errors.extend(s.errors.iter().cloned());
        report.calm_longest_pause = report.calm_longest_pause.max(s.longest_pause);
        if s.failovers > 0 {
            report.errors.push(format!("calm client {i} failed over"));
        }
    }
    report.error_events += report.errors.len();
    Ok(report)
}

impl StormReport {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// CPU per moved client, summed over the processes, and for each.
    fn per_move(&self, cpu: Duration) -> Duration {
        cpu / self.moved.max(1) as u32
    }

    /// Why the run does not count, if it does not.
    pub fn failure(&self) -> Option<String> {
        if self.lost() > 0 || self.duplicated > 0 || self.out_of_order > 0 || self.missed > 0 {
            return Some(format!(
                "{} deliveries lost, {} duplicated, {} out of order, {} reported missing",
                self.lost(),
                self.duplicated,
                self.out_of_order,
                self.missed
            ));
        }
        if self.all_back_after.is_none() {
            return Some(format!(
                "{} of {} clients registered again within {STORM_TIMEOUT:?}",
                self.moved, self.clients
            ));
        }
        if !self.declared_dead.is_empty() {
            return Some(format!(
                "a live process was declared dead: {:?}",
                self.declared_dead
            ));
        }
        None
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut lines = vec![format!(
            "dsys bench storm: {} idle clients on a server killed (SIGKILL), 2 servers to take \
             them, a stream of {} messages a second to every client",
            self.clients, self.rate
        )];
        match self.failure() {
            Some(why) => lines.push(format!("  FAILED: {why}")),
            None => lines.push(format!(
                "  delivered {} of {}: nothing lost, duplicated or reordered; no live process \
                 declared dead",
                self.delivered, self.expected
            )),
        }
        if !self.declared_dead.is_empty() {
            lines.push(format!(
                "  declared dead or cut off meanwhile ({}): {}",
                self.declared_dead.len(),
                self.declared_dead.join(" | ")
            ));
        }
        lines.push(format!(
            "  all registered again after {}; p50 {:.1?}, p99 {:.1?} ({} moved more than once)",
            self.all_back_after
                .map_or("never".to_string(), |d| format!("{d:.2?}")),
            self.back.quantile(0.5),
            self.back.quantile(0.99),
            self.moved_twice
        ));
        let net = self.cpu.minus(self.calm_cpu);
        for (what, cpu) in [
            (
                "CPU per moved client, from the kill to the last back",
                self.cpu,
            ),
            ("  of which as long a calm stretch costs", self.calm_cpu),
            ("  the difference", net),
        ] {
            lines.push(format!(
                "  {what}: {:.3} ms in all (coordinator {:.3}, survivors {:.3}, clients {:.3})",
                ms(self.per_move(cpu.total())),
                ms(self.per_move(cpu.coordinator)),
                ms(self.per_move(cpu.survivors)),
                ms(self.per_move(cpu.clients)),
            ));
        }
        lines.push(format!(
            "  clients that did not move: longest pause between deliveries {:.1?}",
            self.calm_longest_pause
        ));
        if self.error_events > 0 {
            lines.push(format!(
                "  {} error events; here: {}",
                self.error_events,
                self.errors.join(" | ")
            ));
        }
        lines.join("\n")
    }

    /// The report for scripts: one JSON object, times in microseconds.
    pub fn to_json(&self) -> String {
        let us = |d: Duration| d.as_micros() as u64;
        let mut object = Object::new()
            .str("load", "storm")
            .num("clients", self.clients as u64)
            .num("rate", self.rate)
            .num("moved", self.moved as u64)
            .num("moved_twice", self.moved_twice as u64)
            .num("expected", self.expected)
            .num("delivered", self.delivered)
            .num("lost", self.lost())
            .num("duplicated", self.duplicated)
            .num("declared_dead", self.declared_dead.len() as u64)
            .bool("ok", self.failure().is_none())
            .num("all_back_us", self.all_back_after.map_or(0, us))
            .num("back_p50_us", us(self.back.quantile(0.5)))
            .num("back_p99_us", us(self.back.quantile(0.99)))
            .num("cpu_per_move_us", us(self.per_move(self.cpu.total())))
            .num(
                "net_cpu_per_move_us",
                us(self.per_move(self.cpu.minus(self.calm_cpu).total())),
            )
            .num(
                "cpu_per_move_coordinator_us",
                us(self.per_move(self.cpu.coordinator)),
            )
            .num(
                "cpu_per_move_survivors_us",
                us(self.per_move(self.cpu.survivors)),
            )
            .num(
                "cpu_per_move_clients_us",
                us(self.per_move(self.cpu.clients)),
            )
            .num(
                "calm_cpu_per_client_us",
                us(self.per_move(self.calm_cpu.total())),
            )
            .num("calm_longest_pause_us", us(self.calm_longest_pause))
            .num("error_events", self.error_events as u64);
        if let Some(why) = self.failure() {
            object = object.str("failure", &why);
        }
        object.finish()
    }
}
