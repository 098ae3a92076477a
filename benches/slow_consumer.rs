//! Benchmark: what a client that stops reading costs everyone else. Run with
//! `cargo bench --bench slow_consumer`.
//!
//! `alice` on server 0 sends [`LINES`] lines of [`LINE_LEN`] bytes (about 20 MB, more than the
//! socket buffers and an outbox hold) to `bob` on server 1, timed from the first line to
//! bob's last message. Runs alternate: everyone reading, then the same with `carol`, on
//! alice's server, stopped (SIGSTOP) for the whole run. Each run has a fresh cluster. The
//! report gives medians and their ratio; nothing is asserted.
//!
//! What to expect (`docs/guarantees.md`, section 5): carol falls behind, holds the history
//! window for at most `--stall-timeout` (2 s) while the senders wait for her, and from then
//! on costs nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Client, Cluster, median};

const RUNS: usize = 3;
const LINES: usize = 50_000;
const LINE_LEN: usize = 400;

fn main() {
    let mut reading = Vec::new();
    let mut stopped = Vec::new();
    for run in 1..=RUNS {
        let r = one_run(false);
        let s = one_run(true);
        println!(
            "run {run}: all reading {:.0} msg/s, one client stopped {:.0} msg/s",
            rate(r),
            rate(s)
        );
        reading.push(r);
        stopped.push(s);
    }
    let (r, s) = (median(&mut reading), median(&mut stopped));
    println!(
        "median of {RUNS}: all reading {:.0} msg/s ({:.0} ms), one client stopped {:.0} msg/s \
         ({:.0} ms); rate with one stopped / rate with all reading = {:.2}",
        rate(r),
        r.as_secs_f64() * 1000.0,
        rate(s),
        s.as_secs_f64() * 1000.0,
        r.as_secs_f64() / s.as_secs_f64()
    );
}

/// One run on a fresh cluster; returns the time for all of alice's lines to reach bob.
fn one_run(with_a_stopped_client: bool) -> Duration {
    let cluster = Cluster::start(2);
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    let carol = with_a_stopped_client
        .then(|| Client::start_on("carol", cluster.coordinator(), cluster.addr(0)));
    for client in [Some(&alice), Some(&bob), carol.as_ref()]
        .into_iter()
        .flatten()
    {
        client.wait_registered();
    }
    if let Some(carol) = &carol {
        carol.proc.stop();
    }
    let padding = "x".repeat(LINE_LEN);
    let start = Instant::now();
    for i in 0..LINES {
        alice.send_line(&format!("{i} {padding}"));
    }
    bob.wait_messages(&["alice"], LINES, Duration::from_secs(300));
    start.elapsed()
    // Dropping the clients and the cluster kills them, carol (stopped) included.
}

fn rate(elapsed: Duration) -> f64 {
    LINES as f64 / elapsed.as_secs_f64()
}
