//! Benchmark: dsys against Redis pub/sub and NATS core, on the loads of
//! `docs/benchmarks.md`, in the same sitting, so that dsys's figures can be given as
//! ratios to theirs. Run with `cargo bench --bench brokers` (all loads) or
//! `cargo bench --bench brokers -- s1 s3` (some).
//!
//! For each load, each run measures Redis, then NATS, then dsys, [`RUNS`] times
//! alternating, each on a fresh broker, and prints one line per run; then Markdown tables
//! give the medians and dsys's ratios. S4a (three servers) has no Redis run: Redis has no
//! clustered pub/sub here. A broker that is not installed (`redis-server` or `nats-server`
//! not on `PATH`) is skipped, and said so.
//!
//! **The same load on every side.** dsys is measured by `dsys bench --output json` (as in
//! `benches/throughput`), given every number of the load explicitly. Redis and NATS are
//! driven by this bench's own clients (`driver.rs`, `clients.rs`), with the same shape as
//! dsys bench's: one publisher with a window of 1,024 unacknowledged messages (or a fixed
//! rate, latency counted from when each message was due), subscribers that read into one
//! reused buffer and check every message's `seq`, a warm-up message before the clock
//! starts, and the brokers' CPU time read from `/proc` over the same window with the same
//! function. Throughput is deliveries a second; a run that loses, duplicates or reorders
//! anything says so and gives no rate.
//!
//! **Files.** `brokers.rs` starts the broker processes; `driver.rs` runs one load against
//! one of them; `clients.rs` holds its publisher and subscribers; `redis.rs` and `nats.rs`
//! speak the protocols; `inbox.rs` reads and checks what arrives; `figures.rs` prints.
//! Every process and thread started is stopped when its guard drops, pass or fail.
//!
//! The brokers run with their defaults: no limit is raised or lowered. Nothing is
//! asserted: speed is measured here, never in a timed test.

#[path = "../../tests/common/mod.rs"]
mod common;

// The same histogram as dsys bench's, so that quantiles are cut the same way on every
// side. Its drawing functions are not used here, nor are its unit tests run (they run
// with the library's).
#[allow(dead_code, unused_imports)]
#[path = "../../src/roles/bench/histogram.rs"]
mod histogram;

mod brokers;
mod clients;
mod driver;
mod figures;
mod inbox;
mod nats;
mod redis;

use std::process::Command;

use brokers::{NatsServers, RedisServer, on_path};
use driver::{Load, SUBJECT};
use figures::{Figures, Summary, print_medians, print_ratios};
use inbox::PAYLOAD_LEN;

/// Runs of each load and each system.
const RUNS: usize = 3;
/// Most unacknowledged messages per publisher, as in `docs/benchmarks.md`.
const WINDOW: usize = 1024;
/// The loads of `docs/benchmarks.md` that Redis or NATS can run: S2w (every client
/// publishing) is left out, S4a runs on NATS only.
const LOADS: [Load; 3] = [
    Load {
        name: "s1",
        subscribers: 100,
        servers: 1,
        messages: 100_000,
        rate: None,
        window: WINDOW,
    },
    Load {
        name: "s3",
        subscribers: 100,
        servers: 1,
        messages: 10_000,
        rate: Some(2_000),
        window: WINDOW,
    },
    Load {
        name: "s4a",
        subscribers: 99,
        servers: 3,
        messages: 100_000,
        rate: None,
        window: WINDOW,
    },
];

/// A system under measurement.
#[derive(Clone, Copy, PartialEq)]
enum System {
    Redis,
    Nats,
    Dsys,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Redis => "redis",
            System::Nats => "nats",
            System::Dsys => "dsys",
        }
    }
}

fn main() {
    // `cargo bench` adds flags of its own (`--bench`): only load names are taken.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| LOADS.iter().any(|l| l.name == a))
        .collect();
    let systems = available_systems();
    let mut rows = Vec::new();
    for load in LOADS
        .iter()
        .filter(|l| wanted.is_empty() || wanted.iter().any(|w| w == l.name))
    {
        let systems: Vec<System> = systems
            .iter()
            .copied()
            .filter(|&s| s != System::Redis || load.servers == 1)
            .collect();
        if load.servers > 1 {
            println!("{}: no redis run (no clustered pub/sub here)", load.name);
        }
        let mut runs = vec![Vec::new(); systems.len()];
        for run in 1..=RUNS {
            for (&system, figures) in systems.iter().zip(&mut runs) {
                let measured = measure(system, load);
                println!(
                    "{} run {run} {:<5} {}",
                    load.name,
                    system.name(),
                    measured.line()
                );
                figures.push(measured);
            }
        }
        for (&system, figures) in systems.iter().zip(&runs) {
            rows.push((load.name, system.name(), Summary::of(figures)));
        }
    }
    if !rows.is_empty() {
        print_medians(&rows);
        print_ratios(&rows);
    }
}

/// dsys, and each broker found on `PATH`, with its version; says which are skipped.
fn available_systems() -> Vec<System> {
    let mut systems = Vec::new();
    for (system, program) in [
        (System::Redis, "redis-server"),
        (System::Nats, "nats-server"),
    ] {
        if on_path(program) {
            println!("{}", version_of(program));
            systems.push(system);
        } else {
            println!("{program} is not on PATH: {} is skipped", system.name());
        }
    }
    println!(
        "brokers run with their default limits; payloads of {PAYLOAD_LEN} bytes over loopback"
    );
    systems.push(System::Dsys);
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

/// One run of `load` on `system`, on a broker (or cluster) started for it and killed after.
fn measure(system: System, load: &Load) -> Figures {
    match system {
        System::Redis => {
            let redis = RedisServer::start();
            let subscribe_to = [redis.addr.clone()];
            let outcome = driver::run::<redis::Redis>(
                load,
                &redis.addr,
                &subscribe_to,
                &[redis.pid()],
                || {},
            );
            Figures::from_outcome(&outcome)
        }
        System::Nats => {
            let nats = NatsServers::start(load.servers);
            // The publisher is on the first server, as dsys bench's is when it has
            // 100 clients over 3 servers (client i on server i % 3; the publisher is the
            // 100th).
            let outcome =
                driver::run::<nats::Nats>(load, &nats.addrs[0], &nats.addrs, &nats.pids(), || {
                    nats.wait_for_interest(0, SUBJECT)
                });
            Figures::from_outcome(&outcome)
        }
        System::Dsys => Figures::from_dsys_report(&dsys_bench(load)),
    }
}

/// Runs `dsys bench` on `load`, every number given, and returns its JSON report. A run
/// that lost anything exits with status 1 but still reports, and that report is returned.
///
/// # Panics
/// When it printed no report (it could not start its cluster, say), with its stderr.
fn dsys_bench(load: &Load) -> serde_json::Value {
    let mut args = vec![
        "bench".to_string(),
        "--load".into(),
        load.name.into(),
        "--output".into(),
        "json".into(),
    ];
    for (flag, value) in [
        ("--subscribers", load.subscribers as u64),
        ("--servers", load.servers as u64),
        ("--messages", load.messages),
        ("--size", PAYLOAD_LEN as u64),
        ("--window", load.window as u64),
    ]
    .into_iter()
    .chain(load.rate.map(|rate| ("--rate", rate)))
    {
        args.push(flag.into());
        args.push(value.to_string());
    }
    let output = common::dsys().args(&args).output().expect("run dsys bench");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "dsys {} printed no report: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
