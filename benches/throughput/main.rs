//! Benchmark: dsys against the limit of this machine, on the loads of `docs/benchmarks.md`.
//! Run with `cargo bench --bench throughput` (all loads) or `cargo bench --bench throughput
//! -- s1 s3` (some).
//!
//! For each load, each run measures the limit relay (`benches/lean/relay.rs`) and then
//! dsys, both driven by the lean generator (`benches/lean/`), each on a fresh process (or
//! cluster) started for the run, so the load generator is the same and takes the same
//! share of the machine. Runs alternate, [`RUNS`] of each, and the report gives medians,
//! the servers' and the generator's CPU per delivery, and dsys's ratio to the relay
//! measured in the same sitting. For S4a the relay is one process holding all the clients.
//!
//! The failover load (`-- failover`) has no relay run: the relay cannot fail over. It runs
//! `dsys bench --load failover` [`RUNS`] times (real client sessions, which fail over by
//! themselves) and gives the medians of the move gap (from the kill to each moved
//! subscriber's next delivery), beside the reference each run measures before its kill:
//! the pauses between two deliveries to one subscriber while nothing fails.
//!
//! Nothing is asserted on speed: speed is measured here, never in a timed test. A dsys run
//! that loses, duplicates or reorders anything ends the bench with a panic saying so.

#[path = "../../tests/common/mod.rs"]
mod common;

// The brokers' parts of the shared generator are the brokers bench's.
#[allow(dead_code)]
#[path = "../lean/mod.rs"]
mod lean;

use lean::figures::{print_medians, print_ratios};
use lean::systems::{System, sitting};
use lean::{LOADS, relay};
use serde_json::Value;

/// Runs of each load and each system.
const RUNS: usize = 3;
/// The failover load's name, run after the others.
const FAILOVER: &str = "failover";

fn main() {
    // Started again as the limit relay's process (`relay.rs`).
    if std::env::args().any(|a| a == relay::RELAY_FLAG) {
        relay::serve();
        return;
    }
    // `cargo bench` adds flags of its own (`--bench`): only load names are taken.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| LOADS.iter().any(|l| l.name == a) || a == FAILOVER)
        .collect();
    let mut rows = Vec::new();
    for load in LOADS
        .iter()
        .filter(|l| wanted.is_empty() || wanted.iter().any(|w| w == l.name))
    {
        let systems = [System::Limit, System::Dsys];
        let summaries = sitting(load, &systems, RUNS, |system, measured| {
            assert!(
                system != System::Dsys || measured.clean(),
                "dsys lost, duplicated or reordered messages on {}: {}",
                load.name,
                measured.line()
            );
        });
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
    if wanted.is_empty() || wanted.iter().any(|w| w == FAILOVER) {
        failover();
    }
}

/// The failover load, [`RUNS`] times: medians of the move gap and of the calm pauses that
/// each run measured before its kill.
fn failover() {
    let keys = ["gap_p50_us", "gap_p99_us", "calm_pause_p99_us", "lost"];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    for run in 1..=RUNS {
        let report = bench(FAILOVER, &[]);
        let values: Vec<f64> = keys
            .iter()
            .map(|k| report[k].as_f64().unwrap_or(0.0))
            .collect();
        println!(
            "failover run {run}: move gap p50 {:.1} ms, p99 {:.1} ms; calm pauses p99 {:.1} ms",
            values[0] / 1000.0,
            values[1] / 1000.0,
            values[2] / 1000.0
        );
        for (all, value) in runs.iter_mut().zip(values) {
            all.push(value);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let m: Vec<f64> = runs.iter_mut().map(median).collect();
    println!(
        "\n| load | move gap p50 / p99 | calm pauses p99 (same runs) | gap p99 / calm p99 | lost |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| failover | {:.1} / {:.1} ms | {:.1} ms | {:.1} | {:.0} |",
        m[0] / 1000.0,
        m[1] / 1000.0,
        m[2] / 1000.0,
        m[1] / m[2].max(1.0),
        m[3]
    );
}

/// Runs `dsys bench --load LOAD --output json EXTRA...` and returns its report. Exits the
/// bench with the report when the run failed.
fn bench(load: &str, extra: &[&str]) -> Value {
    let output = common::dsys()
        .args(["bench", "--load", load, "--output", "json"])
        .args(extra)
        .output()
        .expect("run dsys bench");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "dsys bench {load} {extra:?} printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success() && report["ok"] == true,
        "dsys bench {load} {extra:?} failed: {report}"
    );
    report
}
