//! The systems the benches measure, each started fresh for one run and stopped after it:
//! the limit relay (`relay.rs`, a process of its own), a dsys cluster (a coordinator and
//! its servers, children of the bench), Redis and NATS (`brokers.rs`). [`measure`] starts
//! one, runs one load on it with the lean generator and the matching [`Wire`], and gives
//! the run's figures. Every process is held by a guard that kills it when dropped.

use crate::common::{Proc, start_coordinator, start_server};
use crate::lean::brokers::{NatsServers, RedisServer};
use crate::lean::dsys_wire::Dsys;
use crate::lean::figures::{Figures, Summary};
use crate::lean::nats::Nats;
use crate::lean::redis::Redis;
use crate::lean::relay::LimitRelay;
use crate::lean::{Load, Outcome, run};

/// dsys's defaults: the coordinator's heartbeat timeout and the servers' interval (ms).
const HEARTBEAT_TIMEOUT_MS: u64 = 1500;
const HEARTBEAT_INTERVAL_MS: u64 = 500;
/// Lines of a broker's log shown when it closed connections.
const SHOWN_LOG_LINES: usize = 5;

/// A system under measurement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum System {
    Limit,
    Dsys,
    Redis,
    Nats,
}

impl System {
    pub const ALL: [System; 4] = [System::Limit, System::Dsys, System::Redis, System::Nats];

    pub fn name(self) -> &'static str {
        match self {
            System::Limit => "limit",
            System::Dsys => "dsys",
            System::Redis => "redis",
            System::Nats => "nats",
        }
    }

    /// Whether it can run `load`: Redis has no clustered pub/sub here.
    pub fn runs(self, load: &Load) -> bool {
        self != System::Redis || load.servers == 1
    }
}

/// A sitting of `load`: `runs` runs of each of `systems`, alternating system by system
/// within each run, so that a machine whose speed drifts slows them alike. Prints a line per
/// run, hands each to `check` (which may stop the bench), and returns each system's name
/// with the summary of its runs, for the tables.
pub fn sitting(
    load: &Load,
    systems: &[System],
    runs: usize,
    check: impl Fn(System, &Figures),
) -> Vec<(&'static str, Summary)> {
    let mut figures: Vec<Vec<Figures>> = vec![Vec::new(); systems.len()];
    for run in 1..=runs {
        for (&system, figures) in systems.iter().zip(&mut figures) {
            let measured = measure(system, load);
            println!(
                "{} run {run} {:<5} {}",
                load.name,
                system.name(),
                measured.line()
            );
            check(system, &measured);
            figures.push(measured);
        }
    }
    systems
        .iter()
        .zip(&figures)
        .map(|(system, figures)| (system.name(), Summary::of(figures)))
        .collect()
}

/// One run of `load` on `system`, started for it and stopped after.
pub fn measure(system: System, load: &Load) -> Figures {
    let outcome = match system {
        System::Limit => {
            // One relay holds every client, S4a's too: a cluster of relays would have to
            // relay to each other, and the single relay is the ceiling to compare with.
            let relay = LimitRelay::start();
            let servers = vec![relay.addr.clone(); load.servers];
            run::<Dsys>(load, &servers, &[relay.pid()], || {})
        }
        System::Dsys => {
            let cluster = DsysCluster::start(load.servers);
            run::<Dsys>(load, &cluster.addrs, &cluster.server_pids(), || {})
        }
        System::Redis => {
            let redis = RedisServer::start();
            let addrs = std::slice::from_ref(&redis.addr);
            let outcome = run::<Redis>(load, addrs, &[redis.pid()], || {});
            show_why_cut_off(&outcome, &redis.log());
            outcome
        }
        System::Nats => {
            let nats = NatsServers::start(load.servers);
            let outcome = run::<Nats>(load, &nats.addrs, &nats.pids(), || {
                nats.wait_for_interest(0, "bench")
            });
            show_why_cut_off(&outcome, &nats.log());
            outcome
        }
    };
    Figures::from_outcome(&outcome)
}

/// When a broker closed connections during the run, the last lines of its log, which say
/// why (a subscriber over its output buffer limit, say).
fn show_why_cut_off(outcome: &Outcome, log: &[String]) {
    if outcome.cut_off > 0 {
        eprintln!(
            "the broker closed {} connections; its log ends:",
            outcome.cut_off
        );
        for line in &log[log.len().saturating_sub(SHOWN_LOG_LINES)..] {
            eprintln!("    {line}");
        }
    }
}

/// A coordinator and `n` servers with dsys's defaults, on free loopback ports. Only the
/// servers' CPU time is measured, as `dsys bench` does.
struct DsysCluster {
    addrs: Vec<String>,
    servers: Vec<Proc>,
    _coordinator: Proc,
}

impl DsysCluster {
    fn start(n: usize) -> DsysCluster {
        let (coordinator, coordinator_addr) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
        let (mut servers, mut addrs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (server, addr) = start_server(&coordinator_addr, HEARTBEAT_INTERVAL_MS);
            servers.push(server);
            addrs.push(addr);
        }
        DsysCluster {
            addrs,
            servers,
            _coordinator: coordinator,
        }
    }

    fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(Proc::pid).collect()
    }
}
