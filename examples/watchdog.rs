//! A heartbeat sender and a watchdog that declares it dead once it falls silent: a `select!`
//! over `tick(check_interval)` and a stop channel, around a pure decision, `check`.
//!
//! Run it with `cargo run --example watchdog`. A `heartbeat` thread beats every 100 ms, five
//! times, then goes silent as a hung server would. The `watchdog` thread checks every 30 ms
//! whether the last beat is more than 300 ms old.
//!
//! What to look for in its output:
//! - `check` on made-up instants first: silent for exactly the timeout is still alive, one
//!   millisecond more is dead. A pure function needs no clock and no threads to be tested;
//! - five beats, then `declared dead` between 300 and 330 ms after the last one (the timeout,
//!   plus at most one check interval), never before;
//! - both threads stopped by dropping one `Sender` (their `select!`s wake with
//!   `Disconnected`), and joined.
//!
//! The grown-up version: `check_server_statuses` in `src/roles/coordinator/registry/watchdog.rs`
//! (the pure decision over every server, with a probe before a verdict), `Registry::tick` in
//! `src/roles/coordinator/registry/mod.rs` (the round that acts on it), `watchdog_loop` and
//! `Coordinator::check` in `src/roles/coordinator/mod.rs`; `heartbeat_loop`
//! in `src/roles/server/heartbeat.rs`, which sends each beat over TCP. The timeline is drawn
//! in `docs/heartbeats-and-failover.md` ("The watchdog").

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};

const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Silence longer than this is death. Three intervals: one late beat is not a failure.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the watchdog looks: a tenth of the timeout, so death is declared at most 10%
/// late. Checking costs a lock and a subtraction; waiting between checks costs nothing.
const CHECK_INTERVAL: Duration = Duration::from_millis(30);
const BEATS: u32 = 5;

/// The watchdog's decision: dead when silent for *more than* `timeout` at `now`. Pure: the
/// caller supplies the clock, so a test can pass any instants it likes.
fn check(now: Instant, last_seen: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(last_seen) > timeout
}

fn main() {
    let seen = Instant::now(); // any instant will do: `check` reads no clock
    for silent in [
        HEARTBEAT_TIMEOUT,
        HEARTBEAT_TIMEOUT + Duration::from_millis(1),
    ] {
        let dead = check(seen + silent, seen, HEARTBEAT_TIMEOUT);
        println!("check: silent for {} ms: dead={dead}", silent.as_millis());
    }

    // What the coordinator's registry holds for one server: when its last beat arrived.
    let last_seen = Arc::new(Mutex::new(Instant::now()));
    // Nothing is ever sent on this channel: dropping `stop_tx` is the stop signal, and every
    // `select!` on `stop_rx` wakes at once with `Disconnected`.
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let heartbeat = {
        let (last_seen, stop_rx) = (last_seen.clone(), stop_rx.clone());
        thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat_loop(&last_seen, &stop_rx))
            .expect("cannot start the heartbeat thread")
    };
    // The watchdog reports each server it declares dead, as the coordinator logs it.
    let (dead_tx, dead_rx) = bounded(1);
    let watchdog = thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watchdog_loop(&last_seen, &stop_rx, &dead_tx))
        .expect("cannot start the watchdog thread");

    let declared = dead_rx.recv_timeout(Duration::from_secs(5));
    declared.expect("the watchdog declares a silent sender dead within seconds");
    drop(stop_tx); // both loops wake with Disconnected and return
    let heartbeat = heartbeat.join().is_ok();
    let watchdog = watchdog.join().is_ok();
    println!("stopped: heartbeat joined={heartbeat}, watchdog joined={watchdog}");
}

/// Beats `BEATS` times, one interval apart, then stays silent until stopped. Here a beat sets
/// `last_seen` directly; in dsys it is a `Heartbeat` frame over TCP, and the coordinator's
/// connection thread records its arrival (`handle_heartbeat`).
fn heartbeat_loop(last_seen: &Mutex<Instant>, stop_rx: &Receiver<()>) {
    let ticker = tick(HEARTBEAT_INTERVAL);
    for beat in 1..=BEATS {
        *last_seen.lock().expect("no thread panics holding it") = Instant::now();
        println!("heartbeat {beat}");
        select! {
            recv(ticker) -> _ => {}
            recv(stop_rx) -> _ => return,
        }
    }
    println!("heartbeat: going silent (hung, as far as anyone can tell)");
    let _ = stop_rx.recv(); // Err(Disconnected) when stopped: a beat never comes again
}

/// On every tick, declares the sender dead (once) if `check` says so, and reports how many
/// milliseconds it had been silent on `dead_tx`. Returns when the stop channel disconnects.
fn watchdog_loop(last_seen: &Mutex<Instant>, stop_rx: &Receiver<()>, dead_tx: &Sender<u128>) {
    let ticker = tick(CHECK_INTERVAL);
    let mut alive = true; // a server is declared dead once, not on every tick after
    loop {
        select! {
            recv(ticker) -> _ => {
                let now = Instant::now();
                // Copy out and unlock at once: the lock is never held across a wait or a send.
                let seen = *last_seen.lock().expect("no thread panics holding it");
                if alive && check(now, seen, HEARTBEAT_TIMEOUT) {
                    alive = false;
                    let (silent, limit) = ((now - seen).as_millis(), HEARTBEAT_TIMEOUT.as_millis());
                    println!("watchdog: silent for {silent} ms > {limit} ms: declared dead");
                    let _ = dead_tx.send(silent);
                }
            }
            recv(stop_rx) -> _ => break,
        }
    }
}
