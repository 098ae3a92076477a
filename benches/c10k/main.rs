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
//! **A hang.** `cargo bench --bench c10k -- hang 10000` measures instead how fast the N
//! idle clients of a hung server are registered elsewhere: after the idle window the
//! server is SIGSTOPped, each bench client takes it for hung after its own silence limit,
//! asks the coordinator where to go and registers there with its session (as `dsys client`
//! does on a failover); reported are the times from the SIGSTOP until the last client
//! noticed, and until the first, the median and the last client is registered again. Its
//! idle CPU and its threads' context switches (a wake-up each) are reported beside the CPU
//! of the other server, which holds no client, measured over the same window: the machine is
//! shared, and the empty server shows what the same window costs without any client. The
//! idle CPU is split too: the share of the server's `keepalives` thread (its own keepalives
//! to the clients) is reported apart from the rest (mostly the clients' keepalives read).
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

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clients::{BenchClient, IdleClients, Lost};
use common::{Proc, start_coordinator, start_server_with, wait_until_servers_alive};
use crossbeam_channel::{Receiver, unbounded};
use dsys::protocol::{Body, Message, Role};
use dsys::support::cpu::{cpu_time, thread_cpu_time};

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
        return hang_runs();
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

    let received = Arc::new(AtomicUsize::new(0));
    let (lost_tx, _lost_rx) = unbounded();
    let clients = IdleClients::start(BURST, received.clone(), lost_tx)
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

    let burst_s = burst(&other_addr, n, &received).map_err(|why| {
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

/// What one hang run measured.
#[derive(Clone, Copy, Default)]
struct HangRun {
    idle_cpu_percent: f64,
    /// The part of `idle_cpu_percent` spent by the server's `keepalives` thread, writing
    /// its own keepalives; the rest is mostly its connection threads reading the clients'.
    keepalives_cpu_percent: f64,
    empty_cpu_percent: f64,
    /// Context switches of the server's threads a second over the idle window: each is a
    /// thread put to sleep, so about one per wake-up.
    switches_per_second: f64,
    /// When the last client noticed the silence, from the SIGSTOP.
    last_noticed_s: f64,
    first_s: f64,
    median_s: f64,
    last_s: f64,
}

/// The hang mode: [`RUNS`] runs of each size given, then a table of medians.
fn hang_runs() {
    let sizes = sizes_given();
    let mut table = Vec::new();
    for &n in &sizes {
        let runs = runs_of(n, hang_run, |r| {
            format!(
                "idle CPU {:.1} % (of which the keepalives thread {:.1} %; empty server \
                 {:.1} %), {:.0} context switches/s, all noticed the hang {:.2} s after the \
                 SIGSTOP, registered elsewhere: first {:.2} s, median {:.2} s, last {:.2} s",
                r.idle_cpu_percent,
                r.keepalives_cpu_percent,
                r.empty_cpu_percent,
                r.switches_per_second,
                r.last_noticed_s,
                r.first_s,
                r.median_s,
                r.last_s
            )
        });
        if !runs.is_empty() {
            let median = |f: fn(&HangRun) -> f64| median(runs.iter().map(f).collect());
            table.push((
                n,
                runs.len(),
                HangRun {
                    idle_cpu_percent: median(|r| r.idle_cpu_percent),
                    keepalives_cpu_percent: median(|r| r.keepalives_cpu_percent),
                    empty_cpu_percent: median(|r| r.empty_cpu_percent),
                    switches_per_second: median(|r| r.switches_per_second),
                    last_noticed_s: median(|r| r.last_noticed_s),
                    first_s: median(|r| r.first_s),
                    median_s: median(|r| r.median_s),
                    last_s: median(|r| r.last_s),
                },
            ));
        }
    }
    println!();
    println!(
        "| clients | idle CPU (one core) | of which the keepalives thread | empty server, same \
         window | context switches a second | all noticed | registered elsewhere after the \
         SIGSTOP: first / median / last |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, count, r) in table {
        println!(
            "| {n} | {:.1} % | {:.1} % | {:.1} % | {:.0} | {:.2} s | {:.2} / {:.2} / {:.2} s |{}",
            r.idle_cpu_percent,
            r.keepalives_cpu_percent,
            r.empty_cpu_percent,
            r.switches_per_second,
            r.last_noticed_s,
            r.first_s,
            r.median_s,
            r.last_s,
            runs_note(count)
        );
    }
}

/// One hang run: N idle clients on a server with default flags, the idle window, then a
/// SIGSTOP; returns when every client is registered on the other server.
fn hang_run(n: usize) -> Result<HangRun, String> {
    let [
        (coordinator, coordinator_addr),
        (server, server_addr),
        (other, _),
    ] = start_cluster();
    let (lost_tx, lost_rx) = unbounded();
    let received = Arc::new(AtomicUsize::new(0));
    let clients = IdleClients::start(BURST, received, lost_tx)
        .map_err(|e| format!("cannot serve the idle clients: {e}"))?;
    register_all(n, &server_addr, &clients)?;
    thread::sleep(Duration::from_secs(2)); // let the registrations settle
    // For a profiler to attach over the same window (`perf stat -p PID`).
    println!(
        "N={n}: idle window of {IDLE_WINDOW:?} begins; server pid {}, empty server pid {}",
        server.pid(),
        other.pid()
    );
    let (busy_before, empty_before) = (cpu_time(server.pid()), cpu_time(other.pid()));
    let keepalives = thread_named(server.pid(), "keepalives");
    let keepalives_cpu =
        || keepalives.map_or(Duration::ZERO, |tid| thread_cpu_time(server.pid(), tid));
    let keepalives_before = keepalives_cpu();
    let switches_before = context_switches(server.pid());
    thread::sleep(IDLE_WINDOW); // the idle period being measured
    let percent = |d: Duration| d.as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0;
    let idle_cpu_percent = percent(cpu_time(server.pid()).saturating_sub(busy_before));
    let keepalives_cpu_percent = percent(keepalives_cpu().saturating_sub(keepalives_before));
    let empty_cpu_percent = percent(cpu_time(other.pid()).saturating_sub(empty_before));
    let switches_per_second = context_switches(server.pid()).saturating_sub(switches_before) as f64
        / IDLE_WINDOW.as_secs_f64();

    let early = lost_rx.try_iter().count();
    if early > 0 {
        return Err(format!(
            "{early} clients took their server for hung before it was (no keepalive in time)"
        ));
    }
    server.stop(); // SIGSTOP: the hang
    let hung = Instant::now();
    let both = fail_over_all(&coordinator_addr, &server_addr, &lost_rx, n, hung)?;
    server.cont(); // so that it can be killed and reaped on drop
    drop(clients);
    drop(coordinator);
    let mut noticed: Vec<f64> = both.iter().map(|(noticed, _)| *noticed).collect();
    noticed.sort_by(|a, b| a.total_cmp(b));
    let mut times: Vec<f64> = both.iter().map(|(_, registered)| *registered).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(HangRun {
        idle_cpu_percent,
        keepalives_cpu_percent,
        empty_cpu_percent,
        switches_per_second,
        last_noticed_s: noticed[noticed.len() - 1],
        first_s: times[0],
        median_s: times[times.len() / 2],
        last_s: times[times.len() - 1],
    })
}

/// Registers elsewhere every client that gives up on `hung`, from [`REGISTER_THREADS`]
/// threads, as `dsys client` does on a failover: asks the coordinator where to go, naming
/// the lost server, and resumes its session there. Returns, for each of the `n` clients,
/// the seconds from `since` until it noticed the silence, and until it was registered
/// again.
fn fail_over_all(
    coordinator: &str,
    hung: &str,
    lost_rx: &Receiver<Lost>,
    n: usize,
    since: Instant,
) -> Result<Vec<(f64, f64)>, String> {
    let times = Mutex::new(Vec::with_capacity(n));
    let moved = Mutex::new(Vec::with_capacity(n)); // kept registered until all are
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let deadline = since + STEP_TIMEOUT;
    thread::scope(|scope| {
        for _ in 0..REGISTER_THREADS {
            scope.spawn(|| {
                while times.lock().unwrap().len() < n && failed.lock().unwrap().is_none() {
                    let Ok(lost) = lost_rx.recv_timeout(Duration::from_millis(100)) else {
                        // Nobody lost just now: the others may be done, or still coming.
                        if Instant::now() > deadline {
                            let got = times.lock().unwrap().len();
                            *failed.lock().unwrap() =
                                Some(format!("only {got} of {n} clients registered elsewhere"));
                        }
                        continue;
                    };
                    match fail_over(coordinator, hung, &lost) {
                        Ok(client) => {
                            let noticed = lost.noticed.duration_since(since).as_secs_f64();
                            let registered = since.elapsed().as_secs_f64();
                            times.lock().unwrap().push((noticed, registered));
                            moved.lock().unwrap().push(client);
                        }
                        Err(why) => {
                            *failed.lock().unwrap() = Some(format!("{}: {why}", lost.name));
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(why) => Err(why),
        None => Ok(times.into_inner().unwrap()),
    }
}

/// One client's failover: where to go, then a resume there.
fn fail_over(coordinator: &str, hung: &str, lost: &Lost) -> Result<BenchClient, String> {
    let mut stream = dsys::net::connect_as(coordinator, Role::Locate, STEP_TIMEOUT, None)
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let locate = Message::Locate {
        name: lost.name.clone(),
        suspect: hung.to_string(),
        unreachable: false,
    };
    let server = match dsys::net::request(&mut stream, &locate).map_err(|e| e.to_string())? {
        Message::Assign { server } => server,
        other => return Err(format!("expected Assign, got {}", other.kind())),
    };
    let resume = dsys::protocol::Resume {
        session: lost.session,
        token: lost.token,
        seen: Vec::new(),
    };
    register_as(&server, &lost.name, Some(resume))
}
