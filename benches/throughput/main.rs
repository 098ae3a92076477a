//! Benchmark: dsys against the limit of this machine, on the loads of `docs/benchmarks.md`.
//! Run with `cargo bench --bench throughput` (all loads) or `cargo bench --bench throughput
//! -- s1 s3` (some).
//!
//! For each load, each run measures the limit relay (`relay.rs`, built into this bench) and
//! then dsys, both driven by the same `dsys bench` (`--connect` for the relay), so the load
//! generator is the same and takes the same share of the machine. Runs alternate, [`RUNS`]
//! of each, and the report gives medians and dsys's ratio to the relay measured in the same
//! sitting. For S4a the relay is one process holding all the clients: a cluster of relays
//! would need them to relay to each other, and the relay's single-server figure is the
//! ceiling the issue named.
//!
//! The failover load (`-- failover`) has no relay run: the relay cannot fail over. It runs
//! dsys [`RUNS`] times and gives the medians of the move gap (from the kill to each moved
//! subscriber's next delivery), beside the reference each run measures before its kill: the
//! pauses between two deliveries to one subscriber while nothing fails.
//!
//! Nothing is asserted: speed is measured here, never in a timed test. A dsys run that
//! loses anything ends the bench with that run's report.

#[path = "../../tests/common/mod.rs"]
mod common;

mod relay;

use relay::Relay;
use serde_json::Value;

/// Runs of each load and each system.
const RUNS: usize = 3;
/// The loads, as `dsys bench --load` names them.
const LOADS: [&str; 4] = ["s1", "s2w", "s3", "s4a"];
/// The failover load's name, run after the others.
const FAILOVER: &str = "failover";

/// One measured run: deliveries a second, latency p99 and p99.9 (microseconds).
#[derive(Clone, Copy, Default)]
struct Figures {
    rate: f64,
    p99_us: f64,
    p999_us: f64,
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| LOADS.contains(&a.as_str()) || a == FAILOVER)
        .collect();
    let loads: Vec<&str> = LOADS
        .into_iter()
        .filter(|l| wanted.is_empty() || wanted.iter().any(|w| w == l))
        .collect();
    let mut table = Vec::new();
    for load in loads {
        let (mut limit, mut dsys) = (Vec::new(), Vec::new());
        for run in 1..=RUNS {
            let relay = Relay::start();
            let connect = vec![relay.addr.as_str(); servers_of(load)].join(",");
            let l = figures(&bench(load, &["--connect", &connect]));
            drop(relay);
            let d = figures(&bench(load, &[]));
            println!(
                "{load} run {run}: limit {:.0}/s p99 {:.0} us, dsys {:.0}/s p99 {:.0} us",
                l.rate, l.p99_us, d.rate, d.p99_us
            );
            limit.push(l);
            dsys.push(d);
        }
        table.push((load, median_of(&limit), median_of(&dsys)));
    }
    if !table.is_empty() {
        print_table(&table);
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == FAILOVER) {
        failover();
    }
}

/// The throughput loads' medians and ratios, as a Markdown table.
fn print_table(table: &[(&str, Figures, Figures)]) {
    println!(
        "\n| load | limit relay msgs/s | dsys msgs/s | dsys / limit | limit p99 / p99.9 | dsys p99 / p99.9 |"
    );
    println!("|---|---|---|---|---|---|");
    for &(load, l, d) in table {
        println!(
            "| {load} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
            l.rate,
            d.rate,
            d.rate / l.rate,
            l.p99_us / 1000.0,
            l.p999_us / 1000.0,
            d.p99_us / 1000.0,
            d.p999_us / 1000.0
        );
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

/// Servers the load spreads its clients over.
fn servers_of(load: &str) -> usize {
    if load == "s4a" { 3 } else { 1 }
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

/// The figures a report gives.
fn figures(report: &Value) -> Figures {
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    Figures {
        rate: number("msgs_per_s"),
        p99_us: number("p99_us"),
        p999_us: number("p999_us"),
    }
}

/// The median of each figure, taken separately.
fn median_of(runs: &[Figures]) -> Figures {
    let median = |pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Figures {
        rate: median(|f| f.rate),
        p99_us: median(|f| f.p99_us),
        p999_us: median(|f| f.p999_us),
    }
}
