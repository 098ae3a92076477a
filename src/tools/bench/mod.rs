//! `dsys bench`: how many messages a second dsys delivers, and how late, with nothing lost.
//! It starts a coordinator and servers as child processes ([`crate::tools::children`]), or
//! uses servers that already run (`--connect`), then runs one load: N publishers and M
//! subscribers, messages of a given size, as fast as a credit window allows or at a fixed
//! rate. This file owns the loads (S1 to S4a are presets) and the steps of a run; beside it
//! are its clients ([`load`]), the failover load ([`failover`]) and the [`report`]; the
//! latency histogram is [`crate::support::histogram`], shared with the lean benches.
//!
//! **Who calls it.** `main.rs`, for `dsys bench`; `benches/throughput` runs its failover
//! load as a child process. Every delivery is checked: a run that loses, duplicates or
//! reorders anything reports that instead of a throughput, and exits with status 1. The
//! children are killed on drop, as the demo's are.
//! The loads, how a run goes and the figures: `docs/benchmarks.md`.

mod failover;
mod load;
mod report;
mod storm;
mod storm_clients;
mod storm_part;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded, unbounded};

use crate::Output;
use crate::error::{Error, Result};
use crate::support::cpu;
use crate::support::histogram::Histogram;
use crate::tools::children::{ChildGuard, spawn_role};
pub use load::when_due;
use load::{Client, Gates, Pace, Progress, Spec, Tally};
pub use report::Report;
use report::print_report;

/// The named loads of `docs/benchmarks.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Fan-out: 1 publisher, 100 subscribers, one server.
    S1,
    /// Chat: 20 clients, each publishing to all the others, one server.
    S2w,
    /// Latency: 1 publisher at 2,000 messages a second, 100 subscribers, one server.
    S3,
    /// Cluster: 3 servers, 1 publisher, 99 subscribers spread over them.
    S4a,
    /// Failover: 1 publisher at 1,000 a second, 100 subscribers on a server that is killed
    /// a third of the way through ([`failover`]).
    Failover,
    /// Storm: 1,000 idle clients (`--subscribers`, or `--clients`) on a server that is
    /// killed, 2 servers to take them, a stream of 4 messages a second to everyone
    /// ([`storm`]).
    Storm,
}

/// What `dsys bench` was asked for; `None` takes the load's value.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The preset the other fields change.
    pub load: Load,
    /// Clients that publish (and receive).
    pub publishers: Option<usize>,
    /// Clients that only receive.
    pub subscribers: Option<usize>,
    /// Servers to start.
    pub servers: Option<usize>,
    /// Messages per publisher.
    pub messages: Option<u64>,
    /// Messages a second per publisher.
    pub rate: Option<u64>,
    /// Bytes of text per message.
    pub size: usize,
    /// Most unacknowledged messages per publisher.
    pub window: usize,
    /// Servers that already run (`HOST:PORT`); empty: start a cluster.
    pub connect: Vec<String>,
    /// Text, or one JSON object.
    pub output: Output,
    /// Set in a child process of the storm load only: the part of its idle clients this
    /// process runs (`FIRST,COUNT,COORDINATOR,SERVER`, see [`storm_part`]).
    pub storm_part: Option<String>,
}

/// A load with every number settled.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The preset it came from.
    pub load: Load,
    /// Clients that publish (and receive).
    pub publishers: usize,
    /// Clients that only listen (every publisher listens too).
    pub subscribers: usize,
    /// Servers the clients are spread over.
    pub servers: usize,
    /// Messages per publisher, after its warm-up one.
    pub messages: u64,
    /// Size, window and rate of the messages.
    pub pace: Pace,
}

/// Smallest message: the send time it carries.
pub const MIN_SIZE: usize = load::STAMP_LEN;
/// How long the deliveries may stop before the run is ended and what is missing counted
/// as lost.
const STALL: Duration = Duration::from_secs(10);
/// How long the warm-up may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

impl Plan {
    /// Settles every number of `config`: what was given, else the load's.
    pub fn from(config: &BenchConfig) -> Plan {
        let (publishers, subscribers, servers, messages, rate) = match config.load {
            Load::S1 => (1, 100, 1, 100_000, None),
            Load::S2w => (20, 0, 1, 10_000, None),
            Load::S3 => (1, 100, 1, 10_000, Some(2_000)),
            Load::S4a => (1, 99, 3, 100_000, None),
            Load::Failover => (1, 100, 3, 3_000, Some(1_000)),
            // The stream runs until every client is back, whatever `messages` says.
            Load::Storm => (1, 1_000, 3, 0, Some(4)),
        };
        let servers = if config.connect.is_empty() {
            config.servers.unwrap_or(servers)
        } else {
            config.connect.len()
        };
        Plan {
            load: config.load,
            publishers: config.publishers.unwrap_or(publishers),
            subscribers: config.subscribers.unwrap_or(subscribers),
            servers,
            messages: config.messages.unwrap_or(messages),
            pace: Pace {
                size: config.size.max(MIN_SIZE),
                window: config.window,
                rate: config.rate.or(rate),
            },
        }
    }

    /// Deliveries of one message from each publisher: every client but the sender.
    fn fan_out(&self) -> u64 {
        (self.publishers * (self.publishers + self.subscribers - 1)) as u64
    }
}

/// `dsys bench`: runs the load and prints the report.
///
/// # Errors
/// When the cluster cannot start or be reached, a client cannot register, or anything was
/// lost, duplicated or reordered ([`Error::Failed`], after the report).
pub fn run(config: &BenchConfig) -> Result<()> {
    if let Some(spec) = &config.storm_part {
        return storm_part::run_part(spec);
    }
    let plan = Plan::from(config);
    if plan.load == Load::Failover {
        if !config.connect.is_empty() {
            return Err(Error::Usage(
                "the failover load kills a server, so it starts its own: drop --connect".into(),
            ));
        }
        return failover::run(&plan, config.output);
    }
    if plan.load == Load::Storm {
        if !config.connect.is_empty() {
            return Err(Error::Usage(
                "the storm load kills a server, so it starts its own: drop --connect".into(),
            ));
        }
        return storm::run(&plan, config.output);
    }
    let cluster = if config.connect.is_empty() {
        start_cluster(plan.servers)?
    } else {
        Cluster {
            children: Vec::new(),
            coordinator: String::new(),
            servers: config.connect.clone(),
            server_pids: Vec::new(),
        }
    };
    let report = measure(&plan, &cluster.servers, &cluster.server_pids)?;
    let text = match config.output {
        Output::Json => report.to_json(),
        Output::Text => report.to_text(),
    };
    print_report(&text, report.failure())
}

/// The processes a run talks to. Those the bench started are killed when this is dropped.
struct Cluster {
    /// The coordinator and then each server, when the bench started them.
    children: Vec<ChildGuard>,
    /// The coordinator's address (empty with `--connect`).
    coordinator: String,
    /// Each server's address for clients.
    servers: Vec<String>,
    /// Each server's process id, when the bench started them.
    server_pids: Vec<u32>,
}

impl Cluster {
    /// The coordinator's process id, when the bench started it (0 otherwise).
    fn coordinator_pid(&self) -> u32 {
        self.children.first().map_or(0, ChildGuard::pid)
    }

    /// Kills server `index` (SIGKILL) without waiting for it to be gone: the publisher
    /// that calls this goes on at once, as it would in a real crash. The server is reaped
    /// when the cluster is dropped.
    fn kill_server(&mut self, index: usize) {
        if let Some(server) = self.children.get_mut(index + 1) {
            server.kill_without_waiting();
        }
    }
}

/// Starts a coordinator and `servers` servers on free ports.
fn start_cluster(servers: usize) -> Result<Cluster> {
    // The children's logs are drained and dropped: the bench's output is its report.
    Ok(start_cluster_watching(servers, &[], |_| None)?.0)
}

/// [`start_cluster`] with `coordinator_flags`, and the log lines of its members that
/// `forward` keeps, on the channel returned.
fn start_cluster_watching(
    servers: usize,
    coordinator_flags: &[&str],
    forward: fn(&str) -> Option<String>,
) -> Result<(Cluster, Receiver<String>)> {
    let (lines_tx, lines_rx) = unbounded();
    let mut args = vec!["coordinator", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(coordinator_flags);
    let (coordinator, coordinator_addr) = spawn_role("coordinator", &args, forward, &lines_tx)?;
    let mut children = vec![coordinator];
    let (mut addrs, mut pids) = (Vec::new(), Vec::new());
    for i in 1..=servers {
        let args = ["server", "--port", "0", "--coordinator", &coordinator_addr];
        let (server, addr) = spawn_role(&format!("server-{i}"), &args, forward, &lines_tx)?;
        pids.push(server.pid());
        addrs.push(addr);
        children.push(server);
    }
    let cluster = Cluster {
        children,
        coordinator: coordinator_addr,
        servers: addrs,
        server_pids: pids,
    };
    Ok((cluster, lines_rx))
}

/// Runs `plan` against `servers` and counts what arrived.
fn measure(plan: &Plan, servers: &[String], server_pids: &[u32]) -> Result<Report> {
    let epoch = Instant::now();
    let progress = Arc::new(Progress::default());
    // Declared before the senders, so dropped after them: a client's drop waits for its
    // publisher, which waits for these gates to close.
    let mut clients = Vec::new();
    let (warm_up_tx, warm_up) = bounded::<()>(0);
    let (start_tx, start) = bounded::<()>(0);
    let gates = Gates { warm_up, start };
    // Listeners first, so that each has the publishers' every message.
    for i in 0..plan.subscribers + plan.publishers {
        let publishes = i >= plan.subscribers;
        let spec = Spec {
            name: format!("bench-{}-{i}", if publishes { "pub" } else { "sub" }),
            server: servers[i % servers.len()].clone(),
            messages: if publishes { plan.messages } else { 0 },
        };
        clients.push(Client::start(&spec, plan.pace, epoch, &gates, &progress)?);
    }
    drop(warm_up_tx); // every client is registered: the publishers send their warm-up
    let warm_up = plan.fan_out();
    wait_for(&progress, warm_up, WARM_UP_TIMEOUT).map_err(|got| {
        Error::Failed(format!(
            "the warm-up messages reached {got} of {warm_up} receivers in {WARM_UP_TIMEOUT:?}"
        ))
    })?;
    let cpu_before = cpu_time(server_pids);
    let started = Instant::now();
    drop(start_tx); // the publishers go
    let expected = warm_up * (plan.messages + 1);
    show_progress(&progress, warm_up, expected, started);
    let cpu = cpu_time(server_pids).saturating_sub(cpu_before);

    let mut total = Tally::default();
    let mut latency = Histogram::default();
    let mut publish_error = None;
    for client in clients {
        let (tally, published) = client.finish();
        total.delivered += tally.delivered;
        total.duplicated += tally.duplicated;
        total.gaps += tally.gaps;
        total.last_delivery = total.last_delivery.max(tally.last_delivery);
        latency.merge(&tally.latency);
        if let Err(e) = published {
            publish_error.get_or_insert(e.to_string());
        }
    }
    let elapsed = total.last_delivery.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    Ok(Report {
        plan: plan.clone(),
        expected: expected - warm_up,
        delivered: total.delivered.saturating_sub(warm_up),
        duplicated: total.duplicated,
        gaps: total.gaps,
        elapsed,
        latency,
        server_cpu: (!server_pids.is_empty()).then_some(cpu),
        publish_error,
    })
}

/// Waits until `count` deliveries; on timeout returns how many there were.
fn wait_for(progress: &Progress, count: u64, timeout: Duration) -> std::result::Result<(), u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = progress.delivered.load(Ordering::Relaxed);
        if got >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Prints a progress line on stderr every second until `expected` deliveries, or until
/// none came for [`STALL`]. The line leaves out the `warm_up` ones.
fn show_progress(progress: &Progress, warm_up: u64, expected: u64, started: Instant) {
    let (mut last, mut last_change) = (0, Instant::now());
    let mut next_line = started + Duration::from_secs(1);
    loop {
        let got = progress.delivered.load(Ordering::Relaxed);
        if got >= expected {
            break;
        }
        let now = Instant::now();
        if got != last {
            (last, last_change) = (got, now);
        } else if now - last_change >= STALL {
            eprintln!("\nno delivery for {STALL:?}: ending the run");
            return;
        }
        if now >= next_line {
            let secs = (now - started).as_secs_f64();
            let got = got - warm_up;
            eprint!(
                "\r  {got} of {} delivered, {:.0} a second so far",
                expected - warm_up,
                got as f64 / secs
            );
            next_line += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if started.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
}

/// The CPU time (user and system) the processes `pids` have used so far.
fn cpu_time(pids: &[u32]) -> Duration {
    pids.iter().map(|&pid| cpu::cpu_time(pid)).sum()
}
