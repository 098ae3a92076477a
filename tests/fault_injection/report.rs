//! The run report of the fault-injection test (the seed asks to "record the test results
//! ... any problems that arose"): what the rounds did, so a reader can see it without
//! reading the log. Each round adds its figures ([`Round`]) and the whole report is written
//! again, as Markdown, to `target/fault-report.md` ([`FaultReport::write`]), so it is there
//! even when a later round fails (and then says which).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workload::{file_name, items_per_sender};

/// The report of this test process, shared by its rounds.
pub static REPORT: Mutex<FaultReport> = Mutex::new(FaultReport::new());

/// What every round so far added up to.
pub struct FaultReport {
    rounds: u64,
    failed: Option<(u64, u64)>,
    faults: BTreeMap<&'static str, u64>,
    figures: Counts,
    /// From each fault to the next delivery to each client that failed over after it.
    gaps: Vec<Duration>,
    /// From each planned stop's SIGTERM to the server's exit.
    drains: Vec<Duration>,
}

/// A planned stop of a round: the server's address, when it was sent SIGTERM, when the
/// test saw it exited, and the other faults in force during it (empty for a stop alone).
pub struct PlannedStop {
    pub addr: String,
    pub since: Instant,
    pub exited: Instant,
    pub alongside: Vec<String>,
}

/// How long after a stopped server's exit a client's `moved` or `failover` away from it is
/// still put down to the stop: its output reaches the test a little after the fact. Less
/// when another fault comes sooner: the server is started again on the same address, and
/// a failover after a fault that strikes it there is that fault's.
const STOP_ECHO: Duration = Duration::from_secs(1);

/// Messages counted over every receiver and sender.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    /// Messages the clients sent.
    pub sent: u64,
    /// Deliveries that should have happened (every message to every other client).
    pub expected: u64,
    /// Deliveries that happened, each counted once.
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Deliveries that are not the next text, or the next file, that their sender sent.
    pub stale: u64,
    /// Messages the clients reported unrecoverable (`gap` events).
    pub reported_missing: u64,
    /// `failover` events.
    pub failovers: u64,
    /// `moved` events: clients moved by a planned stop or by a rebalance.
    pub moved: u64,
    /// `moved` events away from a server during its planned stop.
    pub stop_moves: u64,
    /// `failover` events away from a server during its planned stop: right only when
    /// another fault overlapped the stop.
    pub stop_failovers: u64,
    /// Of those, the ones in a stop that no other fault overlapped: each breaks guarantee 8.
    pub lone_stop_failovers: u64,
}

impl Counts {
    /// These counts and `other`'s, added up.
    pub fn plus(self, other: Counts) -> Counts {
        Counts {
            sent: self.sent + other.sent,
            expected: self.expected + other.expected,
            delivered: self.delivered + other.delivered,
            lost: self.lost + other.lost,
            duplicated: self.duplicated + other.duplicated,
            reordered: self.reordered + other.reordered,
            stale: self.stale + other.stale,
            reported_missing: self.reported_missing + other.reported_missing,
            failovers: self.failovers + other.failovers,
            moved: self.moved + other.moved,
            stop_moves: self.stop_moves + other.stop_moves,
            stop_failovers: self.stop_failovers + other.stop_failovers,
            lone_stop_failovers: self.lone_stop_failovers + other.lone_stop_failovers,
        }
    }
}

/// One round's figures.
pub struct Round {
    pub faults: Vec<(Instant, &'static str)>,
    pub counts: Counts,
    pub gaps: Vec<Duration>,
    pub stops: Vec<PlannedStop>,
}

impl FaultReport {
    const fn new() -> FaultReport {
        FaultReport {
            rounds: 0,
            failed: None,
            faults: BTreeMap::new(),
            figures: Counts {
                sent: 0,
                expected: 0,
                delivered: 0,
                lost: 0,
                duplicated: 0,
                reordered: 0,
                stale: 0,
                reported_missing: 0,
                failovers: 0,
                moved: 0,
                stop_moves: 0,
                stop_failovers: 0,
                lone_stop_failovers: 0,
            },
            gaps: Vec::new(),
            drains: Vec::new(),
        }
    }

    /// Adds a finished round.
    pub fn add(&mut self, round: Round) {
        self.rounds += 1;
        for (_, kind) in round.faults {
            *self.faults.entry(kind).or_default() += 1;
        }
        self.figures = self.figures.plus(round.counts);
        self.gaps.extend(round.gaps);
        self.drains
            .extend(round.stops.iter().map(|s| s.exited - s.since));
    }

    /// Notes that round `round` (seed `seed`) failed.
    pub fn failed(&mut self, round: u64, seed: u64) {
        self.failed = Some((round, seed));
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let f = &self.figures;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        let mut gaps = self.gaps.clone();
        gaps.sort();
        let at = |q: f64| quantile(&gaps, q);
        let mut drains = self.drains.clone();
        drains.sort();
        let mut lines = vec![
            "# Fault injection: run report".to_string(),
            String::new(),
            format!("- rounds passed: {}", self.rounds),
            match self.failed {
                Some((round, seed)) => {
                    format!("- **round {round} failed**: replay with `DSYS_FAULT_SEED={seed}`")
                }
                None => "- rounds failed: none".to_string(),
            },
            format!(
                "- faults injected: {} ({})",
                self.faults.values().sum::<u64>(),
                faults.join(", ")
            ),
            format!(
                "- messages sent (texts and files): {}; deliveries expected {}, delivered {}",
                f.sent, f.expected, f.delivered
            ),
            format!(
                "- lost {}, duplicated {}, reordered {}, stale {}, reported missing (`gap`) {}",
                f.lost, f.duplicated, f.reordered, f.stale, f.reported_missing
            ),
            format!(
                "- failovers: {}; gap from the fault to the client's next delivery: p50 {}, \
                 p99 {}, max {}",
                f.failovers,
                at(0.5),
                at(0.99),
                at(1.0)
            ),
            format!(
                "- moved (`moved` events): {}; away from a server in a planned stop: {} moved, \
                 {} failed over ({} of them in a stop that no other fault overlapped)",
                f.moved, f.stop_moves, f.stop_failovers, f.lone_stop_failovers
            ),
            format!(
                "- planned stops, from SIGTERM to exit 0: p50 {}, max {}",
                quantile(&drains, 0.5),
                quantile(&drains, 1.0)
            ),
        ];
        lines.push(String::new());
        lines.join("\n")
    }

    /// Writes the report to `target/fault-report.md` (or `$CARGO_TARGET_DIR`), and says
    /// where on stdout.
    pub fn write(&self) {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let path = dir.join("fault-report.md");
        match std::fs::write(&path, self.to_markdown()) {
            Ok(()) => println!("report: {}", path.display()),
            Err(e) => println!("cannot write the report to {}: {e}", path.display()),
        }
    }
}

/// The `q` quantile of `sorted`, in ms, or `-` when it is empty.
fn quantile(sorted: &[Duration], q: f64) -> String {
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted
        .get(i)
        .map_or("-".to_string(), |d| format!("{} ms", d.as_millis()))
}

/// Counts one receiver's deliveries from `senders`, each of which sent `texts` texts
/// `m1`, `m2`, ... and the files of `workload.rs`: what arrived once, twice, out of order,
/// not as sent, or not at all.
pub fn count_deliveries(events: &[Value], senders: &[&str], texts: u64) -> Counts {
    let mut counts = Counts::default();
    let items = items_per_sender(texts);
    for sender in senders {
        let mut seen = std::collections::HashSet::new();
        let mut highest = 0;
        let (mut next_text, mut next_file) = (1, 0);
        for event in events
            .iter()
            .filter(|e| (e["event"] == "message" || e["event"] == "file") && e["from"] == *sender)
        {
            let seq = event["seq"].as_u64().unwrap_or_default();
            if !seen.insert(seq) {
                counts.duplicated += 1;
                continue;
            }
            if seq < highest {
                counts.reordered += 1;
            }
            highest = highest.max(seq);
            let as_sent = if event["event"] == "message" {
                let sent = format!("m{next_text}");
                next_text += 1;
                event["text"] == sent
            } else {
                let sent = file_name(sender, next_file);
                next_file += 1;
                event["name"] == sent
            };
            if !as_sent {
                counts.stale += 1;
            }
        }
        let delivered = (1..=items).filter(|s| seen.contains(s)).count() as u64;
        counts.expected += items;
        counts.delivered += delivered;
        counts.lost += items - delivered;
    }
    for event in events {
        match event["event"].as_str() {
            Some("gap") => counts.reported_missing += event["missed"].as_u64().unwrap_or(1),
            Some("failover") => counts.failovers += 1,
            Some("moved") => counts.moved += 1,
            _ => {}
        }
    }
    counts
}

/// One client's (`name`'s) `moved` and `failover` events (in `timed`) away from a server
/// during its planned stop, as counts: `stop_moves`, `stop_failovers` and
/// `lone_stop_failovers`. Each failover is printed with the faults that overlapped its stop,
/// so the log shows what a failover there is put down to. `faults` are the round's, to end
/// a stop's echo at the next one ([`STOP_ECHO`]).
pub fn planned_stop_events(
    name: &str,
    timed: &[(Instant, Value)],
    stops: &[PlannedStop],
    faults: &[(Instant, &'static str)],
) -> Counts {
    let echo_end = |s: &PlannedStop| {
        let next_fault = faults.iter().map(|(at, _)| *at).filter(|at| *at > s.exited);
        next_fault.fold(s.exited + STOP_ECHO, Instant::min)
    };
    let mut counts = Counts::default();
    for (at, event) in timed {
        let during = |s: &&PlannedStop| {
            event["from"] == s.addr.as_str() && s.since <= *at && *at <= echo_end(s)
        };
        let Some(stop) = stops.iter().find(during) else {
            continue;
        };
        match event["event"].as_str() {
            Some("moved") => counts.stop_moves += 1,
            Some("failover") => {
                counts.stop_failovers += 1;
                if stop.alongside.is_empty() {
                    counts.lone_stop_failovers += 1;
                }
                println!(
                    "  {name} failed over from {} during its planned stop; alongside: {:?}",
                    stop.addr, stop.alongside
                );
            }
            _ => {}
        }
    }
    counts
}

/// For each `failover` event in `timed` (one client's events), the time from the latest
/// fault before it to the client's next delivery.
pub fn failover_gaps(
    timed: &[(Instant, Value)],
    faults: &[(Instant, &'static str)],
) -> Vec<Duration> {
    let mut gaps = Vec::new();
    for (i, (at, event)) in timed.iter().enumerate() {
        if event["event"] != "failover" {
            continue;
        }
        let Some((fault_at, _)) = faults.iter().rev().find(|(f, _)| f <= at) else {
            continue;
        };
        let next = timed[i..]
            .iter()
            .find(|(_, e)| e["event"] == "message")
            .map(|(t, _)| *t);
        if let Some(next) = next {
            gaps.push(next.saturating_duration_since(*fault_at));
        }
    }
    gaps
}
