//! The bench's clients: connections that speak the client protocol as `dsys client` does,
//! without its terminal, files and failover, so that the load they make is the servers'
//! work and not their own.
//!
//! **Threads.** Each client is one connection with a `bench-read-<name>` thread, and a
//! publisher also a `bench-publish-<name>` thread, which takes a credit from its window
//! before each message; the reading thread gives credits back as `Ack`s arrive, and checks
//! every `Deliver` (from each sender, `seq` exactly one more than the last). Only one thread
//! writes to each socket. [`Client::finish`] (or a drop) shuts the socket down and joins both.
//! How a run goes: `docs/benchmarks.md`, "Running them".

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Body, DeliverRef, Message, Role, read_frame_into, write_message};
use crate::support::histogram::Histogram;

/// How long connecting and registering may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes buffered on each side of a bench connection: about a socket buffer's worth, so a
/// write or a read moves many small frames at once.
const IO_BUFFER: usize = 64 * 1024;
/// Frames a reading thread takes between two looks at the keepalive clock (it also looks
/// whenever its input runs out). A few milliseconds of frames at saturation, against a
/// keepalive interval of hundreds: reading the clock for every frame was a tenth of this
/// thread's time, and the brokers bench's readers do not read it at all.
const KEEPALIVE_CHECK_EVERY: u32 = 256;
/// The digits of the send time at the start of every text (nanoseconds, hexadecimal).
pub const STAMP_LEN: usize = 16;

/// What one client does.
pub struct Spec {
    pub name: String,
    pub server: String,
    /// Messages it publishes after the warm-up one (0: it only listens).
    pub messages: u64,
}

/// How publishers publish.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Bytes of text per message (at least [`STAMP_LEN`]).
    pub size: usize,
    /// Most messages unacknowledged at once.
    pub window: usize,
    /// Messages per second per publisher; `None`: as fast as the window allows.
    pub rate: Option<u64>,
}

/// What one client's reading thread counted.
#[derive(Default)]
pub struct Tally {
    pub delivered: u64,
    pub duplicated: u64,
    pub gaps: u64,
    pub latency: Histogram,
    pub last_delivery: Option<Instant>,
}

/// A running client. Dropping it closes its connection and joins its threads.
pub struct Client {
    stream: TcpStream,
    reader: Option<JoinHandle<Tally>>,
    publisher: Option<JoinHandle<Result<()>>>,
}

/// What publishers wait for: each phase begins when the main thread drops its sender.
#[derive(Clone)]
pub struct Gates {
    /// Closed once every client is registered: a message sent earlier would not reach
    /// the clients that register after it.
    pub warm_up: Receiver<()>,
    /// Closed once every client has every warm-up message.
    pub start: Receiver<()>,
}

/// Counters every reading thread adds to, read by the progress line and the main thread.
#[derive(Default)]
pub struct Progress {
    pub delivered: AtomicU64,
}

impl Client {
    /// Connects and registers `spec`, then starts its threads. A publisher sends its
    /// warm-up message (`seq` 1) when `gates.warm_up` is closed (dropped: every client is
    /// registered by then) and the rest when `gates.start` is. Latencies are measured
    /// against `epoch`.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the registration.
    pub fn start(
        spec: &Spec,
        pace: Pace,
        epoch: Instant,
        gates: &Gates,
        progress: &Arc<Progress>,
    ) -> Result<Client> {
        let (stream, keepalive) = register(&spec.server, &spec.name)?;
        let publishes = spec.messages > 0;
        let (credits_tx, credits_rx) = bounded(pace.window.max(1));
        let reader = {
            let stream = stream.try_clone()?;
            let progress = progress.clone();
            let keepalive = (!publishes).then_some(keepalive);
            thread::Builder::new()
                .name(format!("bench-read-{}", spec.name))
                .spawn(move || read_all(stream, epoch, keepalive, &credits_rx, &progress))?
        };
        let publisher = if publishes {
            let stream = stream.try_clone()?;
            let (messages, gates) = (spec.messages, gates.clone());
            Some(
                thread::Builder::new()
                    .name(format!("bench-publish-{}", spec.name))
                    .spawn(move || publish(stream, messages, pace, epoch, &gates, &credits_tx))?,
            )
        } else {
            None
        };
        Ok(Client {
            stream,
            reader: Some(reader),
            publisher,
        })
    }

    /// Closes the connection and returns what its reader counted, and whether its
    /// publisher ended well.
    pub fn finish(mut self) -> (Tally, Result<()>) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let published = match self.publisher.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Failed("a bench publisher panicked".into())),
            None => Ok(()),
        };
        let tally = self
            .reader
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        (tally, published)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(publisher) = self.publisher.take() {
            let _ = publisher.join();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Connects to `server` as a client and registers `name`; returns the stream and the
/// keepalive interval the server asked for.
fn register(server: &str, name: &str) -> Result<(TcpStream, Duration)> {
    let mut stream = net::connect_as(server, Role::Client, CONNECT_TIMEOUT, None)
        .map_err(|e| net::unreachable("server", server, e))?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    let request = Message::Register {
        name: name.to_string(),
        resume: None,
    };
    match net::request(&mut stream, &request)? {
        Message::Registered { keepalive_ms, .. } => {
            stream.set_read_timeout(None)?;
            stream.set_nodelay(true)?;
            Ok((stream, Duration::from_millis(u64::from(keepalive_ms))))
        }
        Message::RegisterRefused { code, reason } => Err(Error::Refused(code, reason)),
        other => Err(Error::Protocol(format!(
            "expected Registered from {server}, got {}",
            other.kind()
        ))),
    }
}

/// The time message `i` of a run that `began` then is stamped with. At a `rate` (messages a
/// second), it is when the message is due, and this waits until then, flushing `out` first
/// so that nothing sent waits in a buffer meanwhile: the latency counts from when the
/// message was due, not from when it went, since a late send is latency a user would see.
/// As fast as possible (no rate), it is now. The brokers bench paces its publishers with
/// it too, so every system gets the same schedule.
///
/// # Errors
/// The flush's.
pub fn when_due(
    began: Instant,
    i: u64,
    rate: Option<u64>,
    out: &mut impl Write,
) -> std::io::Result<Instant> {
    let Some(rate) = rate else {
        return Ok(Instant::now());
    };
    let due = began + Duration::from_secs_f64(i as f64 / rate as f64);
    let now = Instant::now();
    if due > now {
        out.flush()?;
        thread::sleep(due - now);
    }
    Ok(due)
}

/// The publishing thread: message 1 (the warm-up) once `gates.warm_up` closes, then
/// `messages` more once `gates.start` closes, each after taking a credit.
fn publish(
    stream: TcpStream,
    messages: u64,
    pace: Pace,
    epoch: Instant,
    gates: &Gates,
    credits: &Sender<u64>,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(IO_BUFFER, stream);
    let padding = "x".repeat(pace.size.saturating_sub(STAMP_LEN));
    let send = |seq: u64, at: Instant, out: &mut BufWriter<TcpStream>| -> Result<()> {
        // Take a credit; when none is left, flush what is buffered before waiting, or the
        // acknowledgements that give credits back would never come.
        if let Err(crossbeam_channel::TrySendError::Full(seq)) = credits.try_send(seq) {
            out.flush()?;
            credits
                .send(seq)
                .map_err(|_| Error::Failed("the bench reader ended".into()))?;
        }
        let stamp = at.duration_since(epoch).as_nanos() as u64;
        let text = format!("{stamp:0width$x}{padding}", width = STAMP_LEN);
        let body = Body::Text { number: seq, text };
        write_message(out, &Message::Publish { seq, body })
    };
    let _ = gates.warm_up.recv();
    send(1, Instant::now(), &mut out)?;
    out.flush()?;
    let _ = gates.start.recv();
    let began = Instant::now();
    for i in 0..messages {
        let at = when_due(began, i, pace.rate, &mut out)?;
        send(i + 2, at, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The reading thread: checks and times every `Deliver`, gives a credit back for each
/// acknowledged `seq`, and (for a client that does not publish) sends a keepalive whenever
/// `keepalive` has passed since the last one. Ends when the connection does.
///
/// Deliveries are read in place ([`DeliverRef`]) into one reused buffer: this thread is
/// the load generator's hot path, and copying every frame into a `Message` made it, not the
/// servers, the limit of a run.
fn read_all(
    stream: TcpStream,
    epoch: Instant,
    keepalive: Option<Duration>,
    credits: &Receiver<u64>,
    progress: &Progress,
) -> Tally {
    let mut writer = stream.try_clone().ok();
    let mut input = BufReader::with_capacity(IO_BUFFER, stream);
    let mut tally = Tally::default();
    let mut next_seq = Senders::default();
    let mut last_keepalive = Instant::now();
    let mut acked = 0;
    let mut frame = Vec::new();
    // When the frames now in the input buffer arrived: read once per refill of the buffer,
    // not once per frame (the clock was a tenth of this thread's time). Every frame of one
    // refill was in the socket by then.
    let mut arrived: Option<Instant> = None;
    // Deliveries not yet added to `progress`: added when the buffered input runs out,
    // before the thread may block, so a hundred readers do not contend for the shared
    // counter on every delivery, and the count is whole whenever they all wait.
    let mut uncounted = 0;
    let mut since_keepalive_check = 0;
    while let Ok(true) = read_frame_into(&mut input, &mut frame) {
        match DeliverRef::decode(&frame) {
            Ok(Some(deliver)) => {
                let now = *arrived.get_or_insert_with(Instant::now);
                if count(&deliver, now, epoch, &mut next_seq, &mut tally) {
                    uncounted += 1;
                }
            }
            Ok(None) => {
                if let Ok(Message::Ack { seq }) = Message::decode(&frame) {
                    // Acknowledgements are cumulative: every credit up to `seq` comes back.
                    for _ in acked..seq {
                        let _ = credits.try_recv();
                    }
                    acked = acked.max(seq);
                }
            }
            Err(_) => break,
        }
        let ran_out = input.buffer().is_empty();
        if ran_out {
            progress.delivered.fetch_add(uncounted, Ordering::Relaxed);
            uncounted = 0;
            arrived = None;
        }
        since_keepalive_check += 1;
        if ran_out || since_keepalive_check == KEEPALIVE_CHECK_EVERY {
            since_keepalive_check = 0;
            if let (Some(every), Some(out)) = (keepalive, writer.as_mut())
                && last_keepalive.elapsed() >= every
            {
                last_keepalive = Instant::now();
                if write_message(out, &Message::Keepalive).is_err() {
                    writer = None;
                }
            }
        }
    }
    tally
}

/// Each sender's next expected `seq`, by name. A list, not a map: a bench has a few
/// publishers, and comparing a short name to each costs less than hashing it.
#[derive(Default)]
struct Senders(Vec<(String, u64)>);

impl Senders {
    /// The next `seq` expected from `name` (1 for a sender not seen yet).
    fn next(&mut self, name: &str) -> &mut u64 {
        let at = match self.0.iter().position(|(known, _)| known == name) {
            Some(at) => at,
            None => {
                self.0.push((name.to_string(), 1));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

/// Checks one delivery, which arrived at `now`, against the sender's last `seq` and times
/// it; returns whether it counts as delivered (a duplicate does not).
fn count(
    deliver: &DeliverRef,
    now: Instant,
    epoch: Instant,
    next_seq: &mut Senders,
    tally: &mut Tally,
) -> bool {
    let expected = next_seq.next(deliver.from);
    if deliver.seq < *expected {
        tally.duplicated += 1;
        return false;
    }
    if deliver.seq > *expected {
        tally.gaps += 1;
    }
    *expected = deliver.seq + 1;
    tally.delivered += 1;
    tally.last_delivery = Some(now);
    if let Some(sent) = deliver.text.and_then(|text| sent_at(text, epoch)) {
        tally.latency.record(now.saturating_duration_since(sent));
    }
    true
}

/// The send time a bench text starts with.
fn sent_at(text: &[u8], epoch: Instant) -> Option<Instant> {
    let digits = std::str::from_utf8(text.get(..STAMP_LEN)?).ok()?;
    let nanos = u64::from_str_radix(digits, 16).ok()?;
    Some(epoch + Duration::from_nanos(nanos))
}
