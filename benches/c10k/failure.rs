//! What happens to N idle clients when their server fails: `cargo bench --bench c10k --
//! hang N` (SIGSTOP) and `-- crash N` (SIGKILL). `main.rs` measures what the same clients
//! cost while their server is well; the clients themselves are `clients.rs`'s.
//!
//! **A hang.** After the idle window the server is SIGSTOPped; each bench client takes it
//! for hung after its own silence limit, asks the coordinator where to go and resumes its
//! session there, as `dsys client` does. Reported: the times from the SIGSTOP until the last
//! client noticed, and until the first, the median and the last client is registered
//! again; the server's idle CPU and its threads' context switches (a wake-up each), beside
//! the CPU of the other server, which holds no client, over the same window (the machine is
//! shared, and the empty server shows what the same window costs without any client); and
//! the share of that idle CPU spent by the server's `keepalives` thread (its own keepalives
//! to the clients), apart from the rest (mostly the clients' keepalives read).
//!
//! **A crash.** The storm of `dsys bench --load storm` with lean clients: a coordinator
//! (`--no-rebalance`, so that the doomed server keeps its clients) and three servers, the N
//! idle clients on the first, which deals each a standby; once each holds one, a calm
//! stretch is measured, then the server is SIGKILLed. Each client reads the end of its
//! connection, waits its random part of the standby's spread and resumes on its standby
//! after checking the old port is gone, or asks the coordinator when it cannot, as `dsys
//! client` does. Reported: when the first, the median and the last client is registered
//! again; how many had to ask the coordinator; the CPU per moved client of the coordinator,
//! the two survivors and the bench's clients, each less an equally long calm stretch; and
//! whether the coordinator declared any live server dead. What `dsys bench --load storm`
//! cannot show: its 10,000 real client sessions share the two cores with the servers, and
//! their own cost sets the storm's length; these clients cost the machine one thread and
//! `FAILOVER_THREADS` for the moves, so the figures are the servers' and the coordinator's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use dsys::protocol::{Message, Role};
use dsys::support::cpu::{cpu_time, thread_cpu_time};

use super::clients::{BenchClient, IdleClients, Lost, Tally};
use super::common::{start_coordinator_with, start_server_with, wait_until_servers_alive};
use super::{
    BURST, IDLE_WINDOW, STEP_TIMEOUT, context_switches, median, register_all, register_as,
    runs_note, runs_of, sizes_given, start_cluster, thread_named,
};

/// What one hang run measured.
#[derive(Clone, Copy, Default)]
pub struct HangRun {
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

impl HangRun {
    /// The figures as the cells of a table row, for a run's line and for the medians.
    fn cells(&self) -> String {
        format!(
            "{:.1} % | {:.1} % | {:.1} % | {:.0} | {:.2} s | {:.2} / {:.2} / {:.2} s",
            self.idle_cpu_percent,
            self.keepalives_cpu_percent,
            self.empty_cpu_percent,
            self.switches_per_second,
            self.last_noticed_s,
            self.first_s,
            self.median_s,
            self.last_s
        )
    }
}

/// The hang mode: [`super::RUNS`] runs of each size given, then a table of medians.
pub fn hang_runs() {
    let sizes = sizes_given();
    let mut table = Vec::new();
    for &n in &sizes {
        let runs = runs_of(n, hang_run, HangRun::cells);
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
        println!("| {n} | {} |{}", r.cells(), runs_note(count));
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
    let clients = IdleClients::start(BURST, Arc::default(), lost_tx)
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
    let both = fail_over_all(&lost_rx, n, hung, |lost| {
        fail_over(&coordinator_addr, &server_addr, lost)
    })?;
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

/// Registers elsewhere every client handed over on `lost_rx`, from [`FAILOVER_THREADS`]
/// threads, each with `fail_over_one` (as `dsys client` would: through the coordinator after
/// a hang, on its standby after a crash). Returns, for each of the `n` clients, the seconds
/// from `since` until it gave up on its server (after a crash: until its wait was over),
/// and until it was registered again.
fn fail_over_all(
    lost_rx: &Receiver<Lost>,
    n: usize,
    since: Instant,
    fail_over_one: impl Fn(&Lost) -> Result<BenchClient, String> + Sync,
) -> Result<Vec<(f64, f64)>, String> {
    let times = Mutex::new(Vec::with_capacity(n));
    let moved = Mutex::new(Vec::with_capacity(n)); // kept registered until all are
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let deadline = since + STEP_TIMEOUT;
    thread::scope(|scope| {
        for _ in 0..FAILOVER_THREADS {
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
                    match fail_over_one(&lost) {
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

/// Clients failing over at once. Each waits for its answers on its own thread; with a few,
/// clients that noticed a hang before the coordinator declared it dead would hold every
/// thread in a `Locate` the coordinator answers only then, and the others would queue
/// behind them, as no real client queues behind another.
const FAILOVER_THREADS: usize = 32;
/// How long a crashed server's client tries its old port before it trusts the end of its
/// connection: `dsys client`'s `GONE_CHECK_TIMEOUT`.
const GONE_CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// The calm stretch measured before the kill, for the CPU the processes spend anyway.
const CALM_WINDOW: Duration = Duration::from_secs(5);

/// What one crash run measured.
#[derive(Clone, Copy, Default)]
pub struct CrashRun {
    first_s: f64,
    median_s: f64,
    last_s: f64,
    /// Clients that asked the coordinator: no standby, or the standby did not take them.
    asked_coordinator: usize,
    /// Net CPU per moved client, in ms: the coordinator, the two survivors together, and
    /// the bench's clients.
    coordinator_ms: f64,
    survivors_ms: f64,
    clients_ms: f64,
    /// Live servers the coordinator declared dead during the storm.
    live_declared_dead: usize,
}

impl CrashRun {
    /// The figures as the cells of a table row, for a run's line and for the medians.
    fn cells(&self) -> String {
        let total_ms = self.coordinator_ms + self.survivors_ms + self.clients_ms;
        format!(
            "{:.2} / {:.2} / {:.2} s | {} | {:.3} + {:.3} + {:.3} = {total_ms:.3} ms | {}",
            self.first_s,
            self.median_s,
            self.last_s,
            self.asked_coordinator,
            self.coordinator_ms,
            self.survivors_ms,
            self.clients_ms,
            self.live_declared_dead
        )
    }
}

/// The crash mode: [`super::RUNS`] runs of each size given, then a table of medians.
pub fn crash_runs() {
    let sizes = sizes_given();
    let mut table = Vec::new();
    for &n in &sizes {
        let runs = runs_of(n, crash_run, CrashRun::cells);
        if !runs.is_empty() {
            let median = |f: fn(&CrashRun) -> f64| median(runs.iter().map(f).collect());
            let row = CrashRun {
                first_s: median(|r| r.first_s),
                median_s: median(|r| r.median_s),
                last_s: median(|r| r.last_s),
                asked_coordinator: median(|r| r.asked_coordinator as f64) as usize,
                coordinator_ms: median(|r| r.coordinator_ms),
                survivors_ms: median(|r| r.survivors_ms),
                clients_ms: median(|r| r.clients_ms),
                live_declared_dead: runs.iter().map(|r| r.live_declared_dead).sum(),
            };
            let lowest = runs.iter().map(|r| r.last_s).fold(f64::INFINITY, f64::min);
            let highest = runs.iter().map(|r| r.last_s).fold(0.0, f64::max);
            table.push((n, runs.len(), row, lowest, highest));
        }
    }
    println!();
    println!(
        "| N idle clients, SIGKILLed server | registered again: first / median / last | \
         asked the coordinator | net CPU per move: coordinator + survivors + clients = all | \
         live servers declared dead | last, lowest to highest |"
    );
    println!("|---|---|---|---|---|---|");
    for (n, count, r, lowest, highest) in table {
        println!(
            "| {n} | {} | {lowest:.2} to {highest:.2} s |{}",
            r.cells(),
            runs_note(count)
        );
    }
}

/// One crash run: N idle clients holding standbys, a calm stretch, then a SIGKILL of their
/// server; returns when every client is registered on a survivor.
fn crash_run(n: usize) -> Result<CrashRun, String> {
    let (coordinator, coordinator_addr) =
        start_coordinator_with("127.0.0.1:0", 1500, &["--no-rebalance"]);
    let (mut doomed, doomed_addr) = start_server_with(&coordinator_addr, 500, &[]);
    let survivors = [
        start_server_with(&coordinator_addr, 500, &[]).0,
        start_server_with(&coordinator_addr, 500, &[]).0,
    ];
    wait_until_servers_alive(&coordinator_addr, 3, STEP_TIMEOUT);
    let (lost_tx, lost_rx) = unbounded();
    let tally = Arc::new(Tally::default());
    let clients = IdleClients::start(BURST, tally.clone(), lost_tx)
        .map_err(|e| format!("cannot serve the idle clients: {e}"))?;
    register_all(n, &doomed_addr, &clients)?;
    wait_for("every client to hold a standby", || {
        tally.with_standby.load(Ordering::Acquire) >= n
    })?;

    let bench = std::process::id();
    let survivors_cpu = || {
        survivors
            .iter()
            .map(|s| cpu_time(s.pid()))
            .sum::<Duration>()
    };
    let cpu = || {
        [
            cpu_time(coordinator.pid()),
            survivors_cpu(),
            cpu_time(bench),
        ]
    };
    let calm_before = cpu();
    thread::sleep(CALM_WINDOW);
    let calm = spent(calm_before, cpu());

    doomed.kill();
    let killed = Instant::now();
    let before = cpu();
    let asked = AtomicUsize::new(0);
    let times = fail_over_all(&lost_rx, n, killed, |lost| {
        fail_over_to_standby(&coordinator_addr, &doomed_addr, lost, &asked)
    })?;
    let took = killed.elapsed();
    let during = spent(before, cpu());
    drop(clients);

    // Each process's CPU over the storm, less what it spends in as long a calm stretch.
    let scale = took.as_secs_f64() / CALM_WINDOW.as_secs_f64();
    let per_move_ms = |i: usize| {
        (during[i].as_secs_f64() - calm[i].as_secs_f64() * scale).max(0.0) * 1000.0 / n as f64
    };
    let live_declared_dead = coordinator
        .stderr_so_far()
        .iter()
        .filter(|l| l.contains("declared dead") && !l.contains(&doomed_addr))
        .inspect(|l| println!("  coordinator: {l}"))
        .count();
    let mut registered: Vec<f64> = times.iter().map(|(_, registered)| *registered).collect();
    registered.sort_by(f64::total_cmp);
    Ok(CrashRun {
        first_s: registered[0],
        median_s: registered[registered.len() / 2],
        last_s: registered[registered.len() - 1],
        asked_coordinator: asked.into_inner(),
        coordinator_ms: per_move_ms(0),
        survivors_ms: per_move_ms(1),
        clients_ms: per_move_ms(2),
        live_declared_dead,
    })
}

/// One crashed server's client, as `dsys client` fails over after its connection ended:
/// once its old port refuses connections, a resume on its standby; failing that, or
/// without a standby, through the coordinator (counted in `asked`).
fn fail_over_to_standby(
    coordinator: &str,
    doomed: &str,
    lost: &Lost,
    asked: &AtomicUsize,
) -> Result<BenchClient, String> {
    if let Some(standby) = &lost.standby
        && lost.ended
        && dsys::net::is_gone(doomed, GONE_CHECK_TIMEOUT)
    {
        let resume = dsys::protocol::Resume {
            session: lost.session,
            token: lost.token,
            seen: Vec::new(),
        };
        if let Ok(client) = register_as(standby, &lost.name, Some(resume)) {
            return Ok(client);
        }
    }
    asked.fetch_add(1, Ordering::AcqRel);
    fail_over(coordinator, doomed, lost)
}

/// The CPU each process spent between `before` and `after`.
fn spent(before: [Duration; 3], after: [Duration; 3]) -> [Duration; 3] {
    [0, 1, 2].map(|i| after[i].saturating_sub(before[i]))
}

/// Polls `done` until it holds, for at most [`STEP_TIMEOUT`].
fn wait_for(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
