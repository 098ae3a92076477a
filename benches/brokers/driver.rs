//! One run of one load against one broker, whatever its protocol: the subscribers, the
//! publisher, the warm-up, the measured window, and what it all counted ([`Outcome`]).
//! What differs between Redis and NATS is behind [`Wire`] (`redis.rs`, `nats.rs`); the
//! clients' threads are `clients.rs`'s, the broker processes `brokers.rs`'s, and `main.rs`
//! turns an [`Outcome`] into figures.
//!
//! **Threads.** Each subscriber gets a `sub-<i>` thread that reads and checks every
//! message ([`Wire::read_deliveries`] into an [`Inbox`]). The publisher gets a `pub-send`
//! thread that writes the messages and a `pub-acks` thread that reads the broker's replies
//! to them. These are the threads dsys bench's clients have (`src/roles/bench/load.rs`),
//! doing the same work per message, so the load generator takes about the same share of
//! the machine whichever system it drives. The main thread (this file) only watches a
//! shared count of deliveries, every [`POLL`], as dsys bench's does.
//!
//! **The window.** At most `window` messages are unacknowledged. Redis acknowledges every
//! `PUBLISH` (its integer reply) and NATS every `PING` (its `PONG`): 1,024 credits of one
//! message, or 2 of 512. Neither acknowledgement waits for the subscribers to have the
//! message: it says the broker has taken it.
//!
//! **The steps**, as `dsys bench` takes them: every subscriber subscribes and the broker
//! confirms it; the publisher sends one warm-up message; the clock starts once every
//! subscriber has it; the publisher sends the rest; the clock stops at the last delivery.
//! A run whose deliveries stop for [`STALL`] ends there, and what is missing is lost (a
//! broker that cut a slow subscriber off).
//!
//! **Stopping.** The clients are guards that shut their sockets down and join their
//! threads when dropped, so a panic here (a broker that never delivers the warm-up) stops
//! every thread it started as it unwinds.

use std::io::{self, BufWriter};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dsys::support::cpu::cpu_time;

use crate::clients::{Acks, Publisher, Subscriber};
use crate::histogram::Histogram;
use crate::inbox::{Inbox, Input, WARM_UP_SEQ};

/// The subject (NATS) or channel (Redis) every message is published on.
pub const SUBJECT: &str = "bench";
/// How long the deliveries may stop before the run is ended and what is missing counted
/// as lost: dsys bench's value, so a broker that drops a subscriber costs the same wait.
const STALL: Duration = Duration::from_secs(10);
/// How long the warm-up message may take to reach every subscriber. It panics beyond:
/// the broker is not delivering at all.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the main thread looks at the progress count, as dsys bench's does.
pub const POLL: Duration = Duration::from_millis(2);

/// The numbers of one load.
pub struct Load {
    /// Its name in `docs/benchmarks.md`, lower case as `dsys bench --load` takes it.
    pub name: &'static str,
    /// Clients that only receive.
    pub subscribers: usize,
    /// Brokers (or dsys servers) the subscribers are spread over, in turn.
    pub servers: usize,
    /// Messages published after the warm-up one.
    pub messages: u64,
    /// Messages a second; `None`: as fast as the window allows.
    pub rate: Option<u64>,
    /// Most messages unacknowledged at once.
    pub window: usize,
}

/// How one broker's protocol does what the driver needs. Each method is called on the
/// thread the module doc names.
pub trait Wire {
    /// The system's name in messages and thread names.
    const NAME: &'static str;
    /// Messages for which the publisher asks one acknowledgement.
    const MESSAGES_PER_ACK: u64;

    /// Connects a subscriber to `addr` and returns once the broker has confirmed the
    /// subscription to [`SUBJECT`] (main thread).
    fn subscribe(addr: &str, label: &str) -> Input;
    /// Reads, checks and times messages until the connection ends (`sub-<i>`).
    fn read_deliveries(inbox: &mut Inbox);
    /// Connects the publisher to `addr` and returns once the broker has accepted it
    /// (main thread).
    fn connect_publisher(addr: &str) -> Input;
    /// Reads the broker's replies until the connection ends, calling [`Acks::ack`] for
    /// each acknowledgement and [`Acks::owe_reply`] for each request the broker makes of
    /// the publisher (`pub-acks`).
    fn read_acks(input: &mut Input, acks: &Acks);
    /// Writes one message (`pub-send`).
    fn write_publish(out: &mut BufWriter<TcpStream>, payload: &[u8]) -> io::Result<()>;
    /// Asks for an acknowledgement of what was written since the last one, after writing
    /// `owed` replies the broker asked for (`pub-send`).
    fn write_ack_request(out: &mut BufWriter<TcpStream>, owed: u64) -> io::Result<()>;
}

/// What one run counted. Warm-up messages are not counted.
pub struct Outcome {
    /// Deliveries that should have happened.
    pub expected: u64,
    /// Distinct messages that reached a subscriber, summed over the subscribers.
    pub delivered: u64,
    /// Messages a subscriber received again.
    pub duplicated: u64,
    /// Messages a subscriber received after one with a higher `seq`.
    pub reordered: u64,
    /// Subscribers whose connection the broker closed before the run was over.
    pub cut_off: usize,
    /// From the start signal to the last delivery.
    pub elapsed: Duration,
    /// Every subscriber's latencies, merged.
    pub latency: Histogram,
    /// CPU time the broker processes used over the measured window.
    pub broker_cpu: Duration,
    /// Why the publisher stopped early, if it did.
    pub publish_error: Option<String>,
}

impl Outcome {
    /// Deliveries that did not happen.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Runs `load`: the publisher on `publish_to`, subscriber `i` on `subscribe_to[i % len]`,
/// the CPU time of `broker_pids` measured. `before_warm_up` runs once every subscription
/// is confirmed (a cluster waits there until its nodes know of them).
///
/// # Panics
/// When a broker cannot be reached, the warm-up does not reach every subscriber within
/// [`WARM_UP_TIMEOUT`], or a reply is malformed.
pub fn run<W: Wire>(
    load: &Load,
    publish_to: &str,
    subscribe_to: &[String],
    broker_pids: &[u32],
    before_warm_up: impl FnOnce(),
) -> Outcome {
    let epoch = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let last_seq = WARM_UP_SEQ + load.messages;
    let subscribers: Vec<Subscriber> = (0..load.subscribers)
        .map(|i| {
            let addr = &subscribe_to[i % subscribe_to.len()];
            Subscriber::start::<W>(addr, i, last_seq, epoch, &progress)
        })
        .collect();
    before_warm_up();
    let mut publisher = Publisher::start::<W>(publish_to, load, epoch);
    let warm_up = load.subscribers as u64;
    if let Err(got) = wait_for(&progress, warm_up, WARM_UP_TIMEOUT) {
        panic!(
            "{}: the warm-up message reached {got} of {warm_up} subscribers in {WARM_UP_TIMEOUT:?}",
            W::NAME
        );
    }
    let cpu_before = cpu_of(broker_pids);
    let started = Instant::now();
    publisher.go();
    let expected = warm_up * (load.messages + 1);
    wait_for_all(&progress, expected);
    let broker_cpu = cpu_of(broker_pids).saturating_sub(cpu_before);
    let mut outcome = Outcome {
        expected: expected - warm_up,
        delivered: 0,
        duplicated: 0,
        reordered: 0,
        cut_off: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::default(),
        broker_cpu,
        publish_error: publisher.finish().err(),
    };
    let mut last_delivery = None;
    for subscriber in subscribers {
        let (tally, cut_off) = subscriber.finish();
        outcome.delivered += tally.delivered;
        outcome.duplicated += tally.duplicated;
        outcome.reordered += tally.reordered;
        outcome.cut_off += usize::from(cut_off);
        outcome.latency.merge(&tally.latency);
        last_delivery = last_delivery.max(tally.last_delivery);
    }
    outcome.elapsed = last_delivery.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    outcome
}

/// Waits until `count` messages have arrived; on timeout returns how many had.
fn wait_for(progress: &AtomicU64, count: u64, timeout: Duration) -> Result<(), u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = progress.load(Ordering::Relaxed);
        if got >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(got);
        }
        thread::sleep(POLL);
    }
}

/// Waits until `expected` messages have arrived, or until none has for [`STALL`].
fn wait_for_all(progress: &AtomicU64, expected: u64) {
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let got = progress.load(Ordering::Relaxed);
        let now = Instant::now();
        if got >= expected {
            return;
        }
        if got != last {
            (last, last_change) = (got, now);
        } else if now - last_change >= STALL {
            return;
        }
        thread::sleep(POLL);
    }
}

/// The CPU time the processes `pids` have used so far, as dsys bench measures its servers'
/// (`dsys::support::cpu`: utime + stime of the whole process, every thread included).
fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|&pid| cpu_time(pid)).sum()
}
