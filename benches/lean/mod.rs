//! The lean load generator the cargo benches (`throughput`, `brokers`) drive every system
//! with: the limit relay, dsys, Redis pub/sub and NATS, on the loads of
//! `docs/benchmarks.md`. Both bench binaries include this folder with `#[path]`.
//!
//! It exists because `dsys bench` (a thread per client, about 300 ns of CPU per delivery
//! read) tops out near 3 million deliveries a second on the development machine, where a
//! bare relay can move several times that: a yardstick that stops short of the limit
//! cannot measure a distance to it. Here a few receiver threads read many sockets each
//! through epoll, a big buffer per read, and scan frames in place (`receiver.rs`);
//! publishers write many messages per system call (`publisher.rs`). Every delivery is
//! still checked, once and in order, and timed (`check.rs`).
//!
//! **Files.** `mod.rs` (this) runs one load: connects every client, starts the threads,
//! opens the gates, watches the progress count, measures the servers' CPU and its own,
//! stops everything. `receiver.rs` and `publisher.rs` are the two kinds of threads;
//! `check.rs` the payload and the check; `sys.rs` the epoll calls; `dsys_wire.rs`, `redis.rs`
//! and `nats.rs` each protocol's handshake, publish frame and scanner (a [`Wire`]), with
//! `text.rs` what the two text protocols share. Around the generator: `systems.rs` starts
//! the system a run measures (the limit relay of `relay.rs`, a dsys cluster, or a broker of
//! `brokers.rs`) and `figures.rs` turns outcomes into lines and tables.
//!
//! **The steps**, as `dsys bench` takes them: every client connects and registers (or
//! subscribes); every publisher sends one warm-up message and the clock starts once every
//! receiver has every warm-up message (peer links and subscriptions are up by then); the
//! publishers send the rest; the clock stops at the last delivery, or when none has come
//! for [`STALL`] (what is missing is then lost). A [`Generator`] is a guard: dropping it
//! stops and joins every thread and closes every socket, pass or fail.

pub mod brokers;
mod check;
mod dsys_wire;
pub mod figures;
mod nats;
mod publisher;
mod receiver;
mod redis;
pub mod relay;
mod sys;
pub mod systems;
mod text;

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use dsys::support::cpu::cpu_time;
use dsys::support::histogram::Histogram;

use check::{Check, PAYLOAD_LEN, Tally};
use publisher::{Credits, Job};
use receiver::{Conn, Sink};

/// Receiver threads: one per core of the development machine. More would only take turns.
const RECEIVERS: usize = 2;
/// How long the deliveries may stop before the run ends and what is missing is lost.
const STALL: Duration = Duration::from_secs(10);
/// How long the warm-up messages may take to reach every receiver.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the main thread looks at the progress count.
const POLL: Duration = Duration::from_millis(2);

/// The numbers of one load.
#[derive(Clone, Copy)]
pub struct Load {
    /// Its name in `docs/benchmarks.md`, lower case.
    pub name: &'static str,
    /// Clients that publish (and receive the other publishers' messages).
    pub publishers: usize,
    /// Clients that only receive.
    pub subscribers: usize,
    /// Servers the clients are spread over, in turn.
    pub servers: usize,
    /// Messages per publisher after its warm-up one.
    pub messages: u64,
    /// Messages a second per publisher; `None`: as fast as the window allows.
    pub rate: Option<u64>,
    /// Most unacknowledged messages per publisher.
    pub window: u64,
}

impl Load {
    /// Deliveries of one message from each publisher: every client but the sender.
    pub fn fan_out(&self) -> u64 {
        (self.publishers * (self.publishers + self.subscribers - 1)) as u64
    }

    /// Clients in all.
    fn clients(&self) -> usize {
        self.publishers + self.subscribers
    }
}

/// The loads of `docs/benchmarks.md`, with 128-byte messages and windows of 1,024.
pub const LOADS: [Load; 4] = [
    Load {
        name: "s1",
        publishers: 1,
        subscribers: 100,
        servers: 1,
        messages: 200_000,
        rate: None,
        window: 1024,
    },
    Load {
        name: "s2w",
        publishers: 20,
        subscribers: 0,
        servers: 1,
        messages: 20_000,
        rate: None,
        window: 1024,
    },
    Load {
        name: "s3",
        publishers: 1,
        subscribers: 100,
        servers: 1,
        messages: 10_000,
        rate: Some(2_000),
        window: 1024,
    },
    Load {
        name: "s4a",
        publishers: 1,
        subscribers: 99,
        servers: 3,
        messages: 200_000,
        rate: None,
        window: 1024,
    },
];

/// What a client of a load is.
#[derive(Clone, Copy)]
pub enum Role {
    /// Only receives.
    Subscriber,
    /// Publishes as publisher `index`; `hears_others`: there are other publishers whose
    /// messages it must receive.
    Publisher { index: u32, hears_others: bool },
}

/// A client after its handshake.
pub struct Opened {
    /// The connections to read, each with the bytes that came after its handshake.
    pub reads: Vec<Reading>,
    /// The connection a publisher writes to (also one of `reads`, or a second one).
    pub write: Option<TcpStream>,
    /// How often a subscriber must show it lives (dsys); `None`: no need.
    pub keepalive: Option<Duration>,
}

/// One connection to read.
pub struct Reading {
    pub stream: TcpStream,
    pub leftover: Vec<u8>,
    /// Whether the publisher's acknowledgements arrive on it.
    pub carries_acks: bool,
    /// A publisher whose messages arrive on it but do not count (a Redis client's own).
    pub own: Option<u32>,
}

/// How one protocol does what the generator needs.
pub trait Wire {
    /// The system's name, in labels and messages.
    const NAME: &'static str;
    /// Bytes a receive-only connection writes every keepalive interval, if any.
    const KEEPALIVE: Option<&'static [u8]>;
    /// The reply to a server's request for one (NATS `PING`).
    const PING_REPLY: &'static [u8];

    /// Connects client `label` to `addr` as `role` and completes its handshake (register,
    /// subscribe), blocking; panics saying why when it cannot.
    fn open(addr: &str, label: &str, role: Role) -> Opened;
    /// Reads the whole frames at the front of `bytes`, reporting to `sink`; returns the
    /// bytes they took (the rest is an unfinished frame).
    ///
    /// # Errors
    /// Bytes that are not this protocol, or a reply the generator never asks for.
    fn scan(bytes: &[u8], sink: &mut Sink) -> Result<usize, String>;
    /// Appends one message with `payload` and sequence number `seq`.
    fn encode_publish(out: &mut Vec<u8>, seq: u64, payload: &[u8; PAYLOAD_LEN]);
    /// Appends what ends a batch, after `owed` replies the server asked for; returns
    /// whether that was an acknowledgement request (whose answer [`Sink::pong`] counts).
    fn end_batch(out: &mut Vec<u8>, owed: u64) -> bool;
}

/// What one run counted; warm-up messages left out.
pub struct Outcome {
    pub expected: u64,
    pub delivered: u64,
    pub duplicated: u64,
    pub jumps: u64,
    pub corrupt: u64,
    /// Connections a server closed before the run was over.
    pub cut_off: usize,
    pub elapsed: Duration,
    pub latency: Histogram,
    /// CPU time of the servers' processes over the measured window.
    pub server_cpu: Duration,
    /// CPU time of this process (the generator) over the same window.
    pub generator_cpu: Duration,
    /// Why a publisher stopped early, if one did.
    pub publish_error: Option<String>,
}

impl Outcome {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// Runs `load` with protocol `W`: client `i` on `servers[i % len]` (publishers last, so
/// with 100 clients on 3 servers the publisher is on the first, as in `dsys bench`), the
/// CPU time of `server_pids` measured. `before_warm_up` runs once every client is
/// connected (a NATS cluster waits there until every node knows every subscription).
pub fn run<W: Wire>(
    load: &Load,
    servers: &[String],
    server_pids: &[u32],
    before_warm_up: impl FnOnce(),
) -> Outcome {
    check::self_check();
    let mut generator = Generator::start::<W>(load, servers);
    before_warm_up();
    generator.warm_up = None;
    let warm_up = load.fan_out();
    let got = wait_for(&generator.progress, warm_up, WARM_UP_TIMEOUT);
    assert!(
        got >= warm_up,
        "{}: the warm-up messages reached {got} of {warm_up} receivers in {WARM_UP_TIMEOUT:?}",
        W::NAME
    );
    let me = std::process::id();
    let (servers_before, me_before) = (cpu_of(server_pids), cpu_time(me));
    let started = Instant::now();
    generator.start = None;
    let expected = warm_up * (load.messages + 1);
    wait_for(&generator.progress, expected, STALL);
    let server_cpu = cpu_of(server_pids).saturating_sub(servers_before);
    let generator_cpu = cpu_time(me).saturating_sub(me_before);
    let (tallies, cut_off, publish_error) = generator.finish();
    let mut outcome = Outcome {
        expected: expected - warm_up,
        delivered: 0,
        duplicated: 0,
        jumps: 0,
        corrupt: 0,
        cut_off,
        elapsed: Duration::ZERO,
        latency: Histogram::default(),
        server_cpu,
        generator_cpu,
        publish_error,
    };
    let mut last = None;
    for tally in &tallies {
        outcome.delivered += tally.delivered;
        outcome.duplicated += tally.duplicated;
        outcome.jumps += tally.jumps;
        outcome.corrupt += tally.corrupt;
        outcome.latency.merge(&tally.latency);
        last = last.max(tally.last_delivery);
    }
    outcome.delivered = outcome.delivered.saturating_sub(warm_up);
    outcome.elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(started));
    outcome
}

/// The running threads of one run and the gates the main thread opens. Dropping it
/// stops, closes and joins everything.
struct Generator {
    progress: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Dropped (set to `None`) to let the publishers send their warm-up message...
    warm_up: Option<Sender<()>>,
    /// ... and then the rest.
    start: Option<Sender<()>>,
    /// Every socket, to shut down when the run ends.
    sockets: Vec<TcpStream>,
    receivers: Vec<JoinHandle<Vec<Conn>>>,
    publishers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Generator {
    /// Connects every client of `load` and starts the receivers and the publishers, which
    /// wait at their gates.
    fn start<W: Wire>(load: &Load, servers: &[String]) -> Generator {
        let epoch = Instant::now();
        let (warm_up_tx, warm_up_rx) = bounded::<()>(0);
        let (start_tx, start_rx) = bounded::<()>(0);
        let mut generator = Generator {
            progress: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            warm_up: Some(warm_up_tx),
            start: Some(start_tx),
            sockets: Vec::new(),
            receivers: Vec::new(),
            publishers: Vec::new(),
        };
        let gates = Gates {
            epoch,
            warm_up: warm_up_rx,
            start: start_rx,
        };
        let mut conns = Vec::new();
        let mut keepalive = Duration::from_secs(1);
        for i in 0..load.clients() {
            let role = role_of(load, i);
            let label = format!("{} client {i}", W::NAME);
            let opened = W::open(&servers[i % servers.len()], &label, role);
            keepalive = keepalive.min(opened.keepalive.unwrap_or(keepalive));
            let credits = opened
                .write
                .as_ref()
                .map(|_| Arc::new(Credits::new(load.window)));
            for reading in opened.reads {
                generator.sockets.push(clone(&reading.stream));
                let check = Check::new(load.publishers, reading.own, epoch);
                let credits = credits.clone().filter(|_| reading.carries_acks);
                conns.push(Conn {
                    stream: reading.stream,
                    label: label.clone(),
                    leftover: reading.leftover,
                    sink: Sink::new(check, credits),
                    closed: false,
                });
            }
            if let (Some(out), Some(credits), Role::Publisher { index, .. }) =
                (opened.write, credits, role)
            {
                generator.sockets.push(clone(&out));
                let publisher = generator.spawn_publisher::<W>(load, index, out, credits, &gates);
                generator.publishers.push(publisher);
            }
        }
        generator.spawn_receivers::<W>(conns, keepalive);
        generator
    }

    /// Starts publisher `index`'s thread, writing to `out`.
    fn spawn_publisher<W: Wire>(
        &self,
        load: &Load,
        index: u32,
        out: TcpStream,
        credits: Arc<Credits>,
        gates: &Gates,
    ) -> JoinHandle<std::io::Result<()>> {
        let (stop, gates, load) = (self.stop.clone(), gates.clone(), *load);
        thread::Builder::new()
            .name(format!("lean-pub-{index}"))
            .spawn(move || {
                let job = Job {
                    index,
                    messages: load.messages,
                    rate: load.rate,
                    window: load.window,
                    epoch: gates.epoch,
                    credits: &credits,
                    stop: &stop,
                    warm_up: gates.warm_up,
                    start: gates.start,
                };
                publisher::publish::<W>(out, &job)
            })
            .expect("start a publisher thread")
    }

    /// Deals `conns` out to [`RECEIVERS`] threads in turn and starts them.
    fn spawn_receivers<W: Wire>(&mut self, conns: Vec<Conn>, keepalive: Duration) {
        let mut shares: Vec<Vec<Conn>> = (0..RECEIVERS).map(|_| Vec::new()).collect();
        for (i, conn) in conns.into_iter().enumerate() {
            shares[i % RECEIVERS].push(conn);
        }
        for (n, share) in shares.into_iter().enumerate() {
            let (progress, stop) = (self.progress.clone(), self.stop.clone());
            let handle = thread::Builder::new()
                .name(format!("lean-recv-{n}"))
                .spawn(move || receiver::receive::<W>(share, &progress, &stop, keepalive))
                .expect("start a receiver thread");
            self.receivers.push(handle);
        }
    }

    /// Stops every thread and returns what the receivers counted, how many connections
    /// the servers closed early, and why a publisher stopped early, if one did.
    ///
    /// # Panics
    /// When a receiver panicked (a malformed frame; its message is printed above).
    fn finish(mut self) -> (Vec<Tally>, usize, Option<String>) {
        let receivers = self.stop_receivers();
        let (mut tallies, mut cut_off) = (Vec::new(), 0);
        for receiver in receivers {
            for conn in receiver.join().expect("a receiver thread panicked") {
                cut_off += usize::from(conn.closed);
                tallies.push(conn.sink.check.tally);
            }
        }
        let mut publish_error = None;
        for publisher in self.stop_publishers() {
            let why = match publisher.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "a publisher panicked".into(),
            };
            publish_error.get_or_insert(why);
        }
        (tallies, cut_off, publish_error)
    }

    /// Raises the stop flag and opens the gates. Receivers look at the flag after every
    /// epoll round, so they end within one; they are joined before any socket is shut
    /// down, so an end of stream they saw was the server's doing.
    fn stop_receivers(&mut self) -> Vec<JoinHandle<Vec<Conn>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.warm_up = None;
        self.start = None;
        self.receivers.drain(..).collect()
    }

    /// Shuts every socket down, which ends a publisher blocked in a write (one waiting for
    /// credits sees the stop flag).
    fn stop_publishers(&mut self) -> Vec<JoinHandle<std::io::Result<()>>> {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.publishers.drain(..).collect()
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        for receiver in self.stop_receivers() {
            let _ = receiver.join();
        }
        for publisher in self.stop_publishers() {
            let _ = publisher.join();
        }
    }
}

/// What the publishers wait at, and the run's clock.
#[derive(Clone)]
struct Gates {
    epoch: Instant,
    warm_up: Receiver<()>,
    start: Receiver<()>,
}

/// Client `i` of `load`: subscribers first, then publishers (the last clients).
fn role_of(load: &Load, i: usize) -> Role {
    if i < load.subscribers {
        Role::Subscriber
    } else {
        Role::Publisher {
            index: (i - load.subscribers) as u32,
            hears_others: load.publishers > 1,
        }
    }
}

fn clone(stream: &TcpStream) -> TcpStream {
    stream.try_clone().expect("clone a socket")
}

/// Waits until `progress` reaches `count`, or until it has not moved for `stall`; returns
/// where it got.
fn wait_for(progress: &AtomicU64, count: u64, stall: Duration) -> u64 {
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let got = progress.load(Ordering::Relaxed);
        if got >= count {
            return got;
        }
        if got != last {
            (last, last_change) = (got, Instant::now());
        } else if last_change.elapsed() >= stall {
            return got;
        }
        thread::sleep(POLL);
    }
}

/// The CPU time the processes `pids` have used so far.
fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|&pid| cpu_time(pid)).sum()
}
