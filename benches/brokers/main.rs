//! Benchmark: dsys against the limit relay, Redis pub/sub and NATS core, on the loads of
//! `docs/benchmarks.md`, in one sitting, so that dsys's figures can be given as ratios to
//! theirs. Run with `cargo bench --bench brokers` (all loads) or
//! `cargo bench --bench brokers -- s1 s3` (some loads); naming systems runs only those
//! (`-- s2w redis nats`).
//!
//! For each load, each run measures the limit relay, dsys, Redis, then NATS, [`RUNS`] times
//! alternating, each on a fresh process (or cluster) started for the run, and prints one
//! line per run; then Markdown tables give the medians and dsys's ratios. Every system is
//! driven by the same lean generator (`benches/lean/`), speaking its protocol with equally
//! lean clients, so the generator takes about the same share of the machine whichever
//! system it drives. S4a (three servers) has no Redis run: Redis has no clustered pub/sub
//! here; NATS runs it as a three-node cluster. A broker that is not installed
//! (`redis-server` or `nats-server` not on `PATH`) is skipped, and said so.
//!
//! The brokers run with their defaults: no limit is raised or lowered. Nothing is
//! asserted on speed: speed is measured here, never in a timed test. A run that loses
//! anything is shown as not valid and left out of the medians.

#[path = "../../tests/common/mod.rs"]
mod common;

#[path = "../lean/mod.rs"]
mod lean;

use std::process::Command;

use lean::figures::{print_medians, print_ratios};
use lean::systems::{System, sitting};
use lean::{LOADS, relay};

/// Runs of each load and each system.
const RUNS: usize = 3;

fn main() {
    // Started again as the limit relay's process (`relay.rs`).
    if std::env::args().any(|a| a == relay::RELAY_FLAG) {
        relay::serve();
        return;
    }
    // `cargo bench` adds flags of its own (`--bench`): only load names are taken.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted: Vec<&String> = args
        .iter()
        .filter(|a| LOADS.iter().any(|l| &l.name == a))
        .collect();
    let named: Vec<System> = System::ALL
        .into_iter()
        .filter(|s| args.iter().any(|a| a == s.name()))
        .collect();
    let systems: Vec<System> = available_systems()
        .into_iter()
        .filter(|s| named.is_empty() || named.contains(s))
        .collect();
    let mut rows = Vec::new();
    for load in LOADS
        .iter()
        .filter(|l| wanted.is_empty() || wanted.iter().any(|w| *w == l.name))
    {
        let systems: Vec<System> = systems.iter().copied().filter(|s| s.runs(load)).collect();
        // A run that loses anything is shown as not valid in the tables, not stopped.
        let summaries = sitting(load, &systems, RUNS, |_, _| {});
        rows.extend(
            summaries
                .into_iter()
                .map(|(system, s)| (load.name, system, s)),
        );
    }
    if !rows.is_empty() {
        print_medians(&rows);
        print_ratios(&rows);
    }
}

/// The limit relay, dsys, and each broker found on `PATH` (with its version); says which
/// are skipped.
fn available_systems() -> Vec<System> {
    let mut systems = vec![System::Limit, System::Dsys];
    for (system, program) in [
        (System::Redis, "redis-server"),
        (System::Nats, "nats-server"),
    ] {
        if lean::brokers::on_path(program) {
            println!("{}", version_of(program));
            systems.push(system);
        } else {
            println!("{program} is not on PATH: {} is skipped", system.name());
        }
    }
    println!("brokers run with their default limits; payloads of 128 bytes over loopback");
    systems
}

/// What `PROGRAM --version` prints, on one line.
fn version_of(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("(no version: {e})"))
}
