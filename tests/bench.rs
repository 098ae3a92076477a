//! `dsys bench` through the real binary: it starts its own cluster, checks every delivery
//! (across a killed server, too), and reports in JSON what scripts read; it fails with exit
//! status 1 and one line when it cannot run, and with 2 on flags it cannot use. Speed is never asserted here (that is
//! `cargo bench --bench throughput`): only that every message was counted, once and in
//! order.

mod common;

use std::time::Duration;

use common::{run_dsys, unused_addr};
use serde_json::Value;

/// A small run starts a coordinator and servers and takes a few seconds on an idle machine.
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `dsys bench ARGS --output json`, expects exit status 0, and returns its report.
fn bench_report(args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let done = run_dsys(&all, &[], BENCH_TIMEOUT);
    assert_eq!(
        done.code(),
        Some(0),
        "`dsys {}` failed; stdout: {}\nstderr: {:?}",
        all.join(" "),
        done.stdout,
        done.stderr
    );
    serde_json::from_str(done.stdout.trim()).expect("one JSON object on stdout")
}

/// Asserts that the report counts exactly `expected` deliveries, none lost, duplicated or
/// out of order, with a throughput and latencies.
fn assert_every_delivery_counted(report: &Value, expected: u64) {
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["expected"], expected, "{report}");
    assert_eq!(report["delivered"], expected, "{report}");
    for zero in ["lost", "duplicated", "gaps"] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
    assert!(
        report["msgs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    assert!(report["p99_us"].as_u64().is_some(), "{report}");
    assert!(
        report["server_cpu_ns_per_delivery"].as_u64().is_some(),
        "the bench started the servers, so it reports their CPU: {report}"
    );
}

#[test]
fn fan_out_on_one_server_counts_every_delivery_once_and_in_order() {
    let report = bench_report(&["--load", "s1", "--subscribers", "4", "--messages", "300"]);
    assert_eq!(report["load"], "S1");
    assert_every_delivery_counted(&report, 4 * 300);
}

#[test]
fn chat_across_three_servers_counts_every_delivery_once_and_in_order() {
    // Every client publishes and receives the others: 5 x 4 deliveries per round, with
    // the clients spread over three servers, so most go through a peer relay.
    let report = bench_report(&[
        "--load",
        "s2w",
        "--publishers",
        "5",
        "--servers",
        "3",
        "--messages",
        "200",
        "--window",
        "16",
    ]);
    assert_eq!(report["servers"], 3);
    assert_every_delivery_counted(&report, 5 * 4 * 200);
}

#[test]
fn a_fixed_rate_run_reports_its_rate() {
    let report = bench_report(&[
        "--load",
        "s3",
        "--subscribers",
        "3",
        "--messages",
        "200",
        "--rate",
        "1000",
    ]);
    assert_eq!(report["rate"], 1000);
    assert_every_delivery_counted(&report, 3 * 200);
}

#[test]
fn a_server_nobody_runs_is_a_runtime_failure_with_one_line() {
    let addr = unused_addr();
    let done = run_dsys(
        &["bench", "--connect", &addr],
        &[("RUST_LOG", "off")],
        BENCH_TIMEOUT,
    );
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    let lines = done.stderr_lines();
    assert_eq!(lines.len(), 1, "one line on stderr: {lines:?}");
    assert!(lines[0].contains(&addr), "it names the address: {lines:?}");
}

#[test]
fn a_message_too_small_for_its_send_time_is_a_usage_error() {
    let done = run_dsys(&["bench", "--size", "8"], &[], BENCH_TIMEOUT);
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
}

#[test]
fn the_failover_load_moves_every_subscriber_once_and_loses_nothing() {
    let report = bench_report(&[
        "--load",
        "failover",
        "--subscribers",
        "6",
        "--messages",
        "300",
    ]);
    assert_eq!(report["load"], "failover");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["expected"], 6 * 300, "{report}");
    assert_eq!(report["delivered"], 6 * 300, "{report}");
    for zero in ["lost", "duplicated", "gaps", "moved_twice"] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
    assert_eq!(
        report["moved"], 6,
        "every subscriber left the killed server: {report}"
    );
    assert!(report["gap_p99_us"].as_u64().is_some(), "{report}");
}

#[test]
fn the_storm_load_brings_every_idle_client_back_and_loses_nothing() {
    let report = bench_report(&["--load", "storm", "--clients", "20"]);
    assert_eq!(report["load"], "storm");
    assert_eq!(report["ok"], true, "{report}");
    for zero in ["lost", "duplicated", "moved_twice", "declared_dead"] {
        assert_eq!(report[zero], 0, "{zero}: {report}");
    }
    assert_eq!(
        report["moved"], 20,
        "every client left the killed server: {report}"
    );
    assert!(report["all_back_us"].as_u64().unwrap_or(0) > 0, "{report}");
    assert!(report["cpu_per_move_us"].as_u64().is_some(), "{report}");
}

#[test]
fn the_failover_load_cannot_use_running_servers() {
    let addr = unused_addr();
    let done = run_dsys(
        &["bench", "--load", "failover", "--connect", &addr],
        &[("RUST_LOG", "off")],
        BENCH_TIMEOUT,
    );
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
}
