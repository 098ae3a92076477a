//! Benchmark: how many idle clients one server holds, and what each one costs. Run with
//! `cargo bench --bench c10k` (all sizes) or `cargo bench --bench c10k -- 10000` (one size).
//!
//! For each N (1,000, 5,000, 10,000) a fresh coordinator and two servers start with default
//! flags, then N clients register on the first server and stay idle, keeping their
//! connection alive the way `dsys client` does. (The burst comes from a client on the second
//! server: with N = 10,000 the first one is full, by its default `--max-clients`.) Reported for the server process, read from `/proc`:
//! - RSS per client: (RSS with N clients - RSS before any) / N;
//! - threads and open file descriptors with N clients;
//! - CPU while the N clients idle, over [`IDLE_WINDOW`], as a share of one core;
//! - time to register all N, and for a burst of [`BURST`] messages from a client on the other
//!   server to reach all N;
//! - RSS after every client left, against the RSS before any came;
//! - whether the coordinator declared the server dead at any point (it must not).
//!
//! Each size runs [`RUNS`] times on a fresh cluster and the report gives medians. Nothing
//! is asserted: capacity is measured here, never in a timed test.
//!
//! **A server that fails.** `cargo bench --bench c10k -- hang 10000` (SIGSTOP) and `-- crash
//! 10000` (SIGKILL) measure instead how fast the N idle clients of a failed server are
//! registered elsewhere, and what that costs (`failure.rs`).
//!
//! **The bench clients.** `dsys client` runs three threads per process, so ten thousand real
//! clients would need thirty thousand threads on this machine, beyond the usual `pid_max`.
//! The bench registers its clients from a few threads, then serves all of them from one
//! (`clients.rs`), speaking the protocol as `dsys client` does on an idle connection. The
//! bench process needs one file descriptor per client; it raises its own soft limit to the
//! hard limit first.

#[path = "../../tests/common/mod.rs"]
mod common;

mod clients;
mod failure;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clients::{BenchClient, IdleClients, Tally};
use common::{Proc, start_coordinator, start_server_with, wait_until_servers_alive};
use crossbeam_channel::unbounded;
use dsys::protocol::{Body, Message, Role};
use dsys::support::cpu::cpu_time;

/// Runs of each size; the report gives medians.
const RUNS: usize = 3;
/// The sizes measured when no size is given on the command line.
const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
/// How long the idle CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Messages in the burst that must reach every client.
const BURST: usize = 10;
/// Threads that open connections and register in parallel.
const REGISTER_THREADS: usize = 4;
/// The longest any one step may take before the run is reported as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Run {
    rss_per_client_kib: f64,
    threads: u64,
    fds: u64,
    idle_cpu_percent: f64,
    register_s: f64,
    burst_s: f64,
    rss_after_percent: f64,
    declared_dead: bool,
}

fn main() {
    raise_fd_limit();
    if std::env::args().any(|a| a == "hang") {
        return failure::hang_runs();
    }
    if std::env::args().any(|a| a == "crash") {
        return failure::crash_runs();
    }
    let sizes = sizes_given();
    let sizes = if sizes.is_empty() {
        SIZES.to_vec()
    } else {
        sizes
    };
    let mut table = Vec::new();
    for &n in &sizes {
        let runs = runs_of(n, one_run, |r| {
            format!(
                "{:.1} KiB/client, {} threads, {} fds, idle CPU {:.1} %, register {:.2} s, \
                 burst {:.2} s, RSS after leaving {:.0} % of before, declared dead: {}",
                r.rss_per_client_kib,
                r.threads,
                r.fds,
                r.idle_cpu_percent,
                r.register_s,
                r.burst_s,
                r.rss_after_percent,
                r.declared_dead
            )
        });
        if !runs.is_empty() {
            table.push((n, median_run(&runs), runs.len()));
        }
    }
    println!();
    println!(
        "| clients | RSS per client | threads | fds | idle CPU (one core) | register all | \
         burst of {BURST} reaches all | RSS after all left | declared dead |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, r, count) in table {
        println!(
            "| {n} | {:.1} KiB | {} | {} | {:.1} % | {:.2} s | {:.2} s | {:.0} % of before | {} |{}",
            r.rss_per_client_kib,
            r.threads,
            r.fds,
            r.idle_cpu_percent,
            r.register_s,
            r.burst_s,
            r.rss_after_percent,
            if r.declared_dead { "yes" } else { "no" },
            runs_note(count)
        );
    }
}

/// One size on a fresh cluster with default flags.
fn one_run(n: usize) -> Result<Run, String> {
    let [
        (coordinator, _),
        (server, server_addr),
        (_other, other_addr),
    ] = start_cluster();
    let baseline = server.rss_bytes();

    let tally = Arc::new(Tally::default());
    let (lost_tx, _lost_rx) = unbounded();
    let clients = IdleClients::start(BURST, tally.clone(), lost_tx)
        .map_err(|e| format!("cannot serve the idle clients: {e}"))?;
    let start = Instant::now();
    register_all(n, &server_addr, &clients)?;
    let register_s = start.elapsed().as_secs_f64();

    // Let the registrations' log lines and first keepalives settle before measuring.
    thread::sleep(Duration::from_secs(2));
    let rss = server.rss_bytes();
    let threads = proc_status_field(&server, "Threads");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let cpu_before = cpu_time(server.pid());
    thread::sleep(IDLE_WINDOW); // the idle period being measured
    let idle_cpu = cpu_time(server.pid()).saturating_sub(cpu_before);
    let idle_cpu_percent = idle_cpu.as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0;

    let burst_s = burst(&other_addr, n, &tally.complete).map_err(|why| {
        let warnings: Vec<String> = server
            .stderr_so_far()
            .into_iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(5)
            .collect();
        format!("{why}; the server's first warnings: {warnings:?}")
    })?;

    drop(clients); // every client leaves
    wait_until_all_left(&server);
    let after = settled_rss(&server);

    let deaths: Vec<String> = coordinator
        .stderr_so_far()
        .into_iter()
        .filter(|l| l.contains("declared dead") || l.contains("heartbeat missed"))
        .collect();
    for line in &deaths {
        println!("  coordinator: {line}");
    }
    if !deaths.is_empty() {
        // What both sides logged, to tell why.
        for line in coordinator
            .stderr_so_far()
            .iter()
            .filter(|l| !l.contains("DEBUG"))
            .take(40)
        {
            println!("  coordinator log: {line}");
        }
        for line in server
            .stderr_so_far()
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(40)
        {
            println!("  server: {line}");
        }
    }
    let declared_dead = !deaths.is_empty();
    Ok(Run {
        rss_per_client_kib: (rss.saturating_sub(baseline)) as f64 / n as f64 / 1024.0,
        threads,
        fds,
        idle_cpu_percent,
        register_s,
        burst_s,
        rss_after_percent: after as f64 / baseline as f64 * 100.0,
        declared_dead,
    })
}

/// Registers `n` clients from [`REGISTER_THREADS`] threads, and hands each to `clients`
/// as soon as it is registered.
fn register_all(n: usize, server: &str, clients: &IdleClients) -> Result<(), String> {
    let failed: Mutex<Option<String>> = Mutex::new(None);
    thread::scope(|scope| {
        for t in 0..REGISTER_THREADS {
            let failed = &failed;
            scope.spawn(move || {
                for i in (t..n).step_by(REGISTER_THREADS) {
                    match register(server, &format!("idle-{i}")) {
                        Ok(client) => clients.add(client),
                        Err(why) => {
                            *failed.lock().unwrap() = Some(format!("client {i}: {why}"));
                            return;
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Opens a client connection and registers `name`, resuming `resume` when given; returns
/// the client with what the server announced.
fn register_as(
    server: &str,
    name: &str,
    resume: Option<dsys::protocol::Resume>,
) -> Result<BenchClient, String> {
    let mut stream = dsys::net::connect_as(server, Role::Client, STEP_TIMEOUT, None)
        .map_err(|e| e.to_string())?;
    let register = Message::Register {
        name: name.to_string(),
        resume,
    };
    match dsys::net::request(&mut stream, &register).map_err(|e| e.to_string())? {
        Message::Registered {
            session,
            token,
            keepalive_ms,
            silence_ms,
            ..
        } => Ok(BenchClient {
            stream,
            name: name.to_string(),
            session,
            token,
            keepalive: Duration::from_millis(keepalive_ms.max(10) as u64),
            silence: Duration::from_millis(silence_ms.max(10) as u64),
        }),
        Message::RegisterRefused { reason, .. } => Err(format!("refused: {reason}")),
        other => Err(format!("expected Registered, got {}", other.kind())),
    }
}

/// Opens a client connection and registers `name` afresh.
fn register(server: &str, name: &str) -> Result<BenchClient, String> {
    register_as(server, name, None)
}

/// One more client publishes [`BURST`] messages; returns the time until every one of the
/// `n` idle clients has all of them.
fn burst(server: &str, n: usize, received: &AtomicUsize) -> Result<f64, String> {
    let mut sender = register(server, "burst-sender")?.stream;
    let start = Instant::now();
    for seq in 1..=BURST as u64 {
        let publish = Message::Publish {
            seq,
            body: Body::Text {
                number: seq,
                text: format!("burst message {seq}"),
            },
        };
        sender
            .write_all(&publish.encode())
            .map_err(|e| e.to_string())?;
    }
    let deadline = start + STEP_TIMEOUT;
    while received.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "the burst reached {} of {n} clients",
                received.load(Ordering::Acquire)
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Descriptors a server without clients holds: its listener, the heartbeat connection, the
/// peer links, the spare, standard streams, and a margin.
const EMPTY_SERVER_FDS: usize = 16;

/// Waits until every client has left: the server holds no more descriptors than an empty
/// one.
fn wait_until_all_left(server: &Proc) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while server.open_fds() > EMPTY_SERVER_FDS && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
}

/// The server's RSS once it has stopped falling: its `trim` thread gives freed memory back
/// once the departures pause, and once more `memory::SETTLE` later, when the departed
/// clients' threads have ended.
fn settled_rss(server: &Proc) -> u64 {
    let quiet = dsys::support::memory::SETTLE + Duration::from_secs(2);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut lowest = server.rss_bytes();
    let mut last_fall = Instant::now();
    while last_fall.elapsed() < quiet && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
        let rss = server.rss_bytes();
        if rss < lowest {
            lowest = rss;
            last_fall = Instant::now();
        }
    }
    lowest
}

/// The sizes named on the command line (numbers among the arguments), in order.
fn sizes_given() -> Vec<usize> {
    std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// A coordinator and two servers with default flags, both servers alive: the one the
/// clients go to, and the other (empty, or taking them over). Each as its process and
/// address; every process is killed when its `Proc` drops.
fn start_cluster() -> [(Proc, String); 3] {
    let (coordinator, coordinator_addr) = start_coordinator(1500);
    let server = start_server_with(&coordinator_addr, 500, &[]);
    let other = start_server_with(&coordinator_addr, 500, &[]);
    wait_until_servers_alive(&coordinator_addr, 2, STEP_TIMEOUT);
    [(coordinator, coordinator_addr), server, other]
}

/// The middle value of `values` (the upper one of the two middles for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// [`RUNS`] runs of size `n`, each printed as it ends (`describe` says what it measured, or
/// why it failed); returns those that did not fail.
fn runs_of<R>(
    n: usize,
    run: impl Fn(usize) -> Result<R, String>,
    describe: impl Fn(&R) -> String,
) -> Vec<R> {
    let mut runs = Vec::new();
    for i in 1..=RUNS {
        match run(n) {
            Ok(r) => {
                println!("N={n} run {i}: {}", describe(&r));
                runs.push(r);
            }
            Err(why) => println!("N={n} run {i}: FAILED: {why}"),
        }
    }
    runs
}

/// What a table row adds when some runs of its size failed.
fn runs_note(count: usize) -> String {
    if count < RUNS {
        format!(" ({count} of {RUNS} runs)")
    } else {
        String::new()
    }
}

/// The median of each figure over `runs`.
fn median_run(runs: &[Run]) -> Run {
    let of = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Run {
        rss_per_client_kib: of(|r| r.rss_per_client_kib),
        threads: of(|r| r.threads as f64) as u64,
        fds: of(|r| r.fds as f64) as u64,
        idle_cpu_percent: of(|r| r.idle_cpu_percent),
        register_s: of(|r| r.register_s),
        burst_s: of(|r| r.burst_s),
        rss_after_percent: of(|r| r.rss_after_percent),
        declared_dead: runs.iter().any(|r| r.declared_dead),
    }
}

/// Context switches, voluntary and not, of every thread of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The id of the thread of process `pid` named `name` (`/proc/PID/task/TID/comm`), if it
/// has one.
fn thread_named(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// A numeric field of `/proc/PID/status`, such as `Threads`.
fn proc_status_field(proc: &Proc, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", proc.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft open-file limit to its hard limit: the bench holds one
/// descriptor per client.
fn raise_fd_limit() {
    if let Err(e) = dsys::support::limits::raise_open_files_limit() {
        println!("cannot raise the open-file limit: {e}");
    }
}
