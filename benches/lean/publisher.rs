//! The publishing side of the lean generator: a thread per publisher that encodes many
//! messages into one buffer and writes them with one system call ([`BATCH`] at
//! saturation; one at a time at a fixed rate, so each goes when due), taking credits from
//! a window of unacknowledged messages first ([`Credits`]).
//!
//! **Neighbours.** `mod.rs` starts these threads behind two gates (the warm-up message,
//! then the rest) and stops them; a receiver thread (`receiver.rs`) reads the
//! acknowledgements on the publisher's connection and gives credits back through
//! [`Credits::ack`], waking this thread. This thread is the only writer on its socket, so
//! replies the server asks of a publisher (a NATS `PING`) are counted by the receiver
//! ([`Credits::owe`]) and written here, after a batch.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use dsys::tools::bench::when_due;

use crate::lean::Wire;
use crate::lean::check::{PAYLOAD_LEN, Payload, WARM_UP_SEQ};

/// Messages written per system call at saturation. 64 messages of about 180 bytes fill a
/// few pages: enough that the call costs little per message, few enough that a window of
/// 1,024 holds 16 batches in flight.
pub const BATCH: u64 = 64;
/// How long a publisher waits for a credit with none coming before it gives up.
const STALL: Duration = Duration::from_secs(10);
/// How long a waiting publisher sleeps between looks at its credits, when no receiver
/// wakes it first.
const NAP: Duration = Duration::from_millis(5);

/// One publisher's window, shared with the receiver that reads its acknowledgements.
pub struct Credits {
    /// The highest `seq` acknowledged.
    acked: AtomicU64,
    /// Replies the server asked for and the publisher has not written yet.
    owed: AtomicU64,
    /// For acknowledgement requests (NATS `PING`s), the last `seq` each covers, by request
    /// number modulo the length: at most a window's worth are outstanding.
    request_ends: Box<[AtomicU64]>,
    /// The publishing thread, woken when credits come back.
    publisher: OnceLock<Thread>,
}

impl Credits {
    pub fn new(window: u64) -> Credits {
        Credits {
            acked: AtomicU64::new(0),
            owed: AtomicU64::new(0),
            request_ends: (0..=window).map(|_| AtomicU64::new(0)).collect(),
            publisher: OnceLock::new(),
        }
    }

    /// Every message up to `seq` is acknowledged; wakes the publisher when that is news.
    pub fn ack(&self, seq: u64) {
        if self.acked.fetch_max(seq, Ordering::Release) < seq
            && let Some(publisher) = self.publisher.get()
        {
            publisher.unpark();
        }
    }

    /// The server asked for `count` more replies.
    pub fn owe(&self, count: u64) {
        self.owed.fetch_add(count, Ordering::Relaxed);
    }

    /// The last `seq` that acknowledgement request number `n` (from 1) covers.
    pub fn request_end(&self, n: u64) -> u64 {
        let slot = (n - 1) as usize % self.request_ends.len();
        self.request_ends[slot].load(Ordering::Acquire)
    }

    /// Records that request number `n` (from 1) covers up to `seq`; called before the
    /// request is written, so before its answer can be read.
    fn record_request(&self, n: u64, seq: u64) {
        let slot = (n - 1) as usize % self.request_ends.len();
        self.request_ends[slot].store(seq, Ordering::Release);
    }
}

/// What a publishing thread needs besides its socket.
pub struct Job<'a> {
    pub index: u32,
    pub messages: u64,
    pub rate: Option<u64>,
    pub window: u64,
    pub epoch: Instant,
    pub credits: &'a Credits,
    pub stop: &'a AtomicBool,
    /// Closed when the publisher may send its warm-up message, then the rest.
    pub warm_up: Receiver<()>,
    pub start: Receiver<()>,
}

/// A publishing thread's body: the warm-up message once its gate opens, then `messages`
/// more once the start gate opens.
pub fn publish<W: Wire>(mut out: TcpStream, job: &Job) -> io::Result<()> {
    let _ = job.credits.publisher.set(thread::current());
    let mut payload = Payload::new(job.index);
    let mut batch = Batch::<W> {
        bytes: Vec::with_capacity(BATCH as usize * (PAYLOAD_LEN + 64)),
        requests: 0,
        credits: job.credits,
        wire: std::marker::PhantomData,
    };
    let _ = job.warm_up.recv(); // closed: go
    payload.stamp(WARM_UP_SEQ, Instant::now(), job.epoch);
    batch.push(WARM_UP_SEQ, &payload);
    batch.write(&mut out, WARM_UP_SEQ)?;
    let _ = job.start.recv();
    let began = Instant::now();
    let last = WARM_UP_SEQ + job.messages;
    let mut seq = WARM_UP_SEQ + 1;
    while seq <= last {
        let i = seq - WARM_UP_SEQ - 1;
        // At a rate each message goes alone, when due (its latency counts from then).
        let count = if job.rate.is_some() {
            1
        } else {
            BATCH.min(last - seq + 1)
        };
        let at = when_due(began, i, job.rate, &mut io::sink())?;
        wait_for_room(job, seq + count - 1)?;
        for s in seq..seq + count {
            payload.stamp(s, at, job.epoch);
            batch.push(s, &payload);
        }
        seq += count;
        batch.write(&mut out, seq - 1)?;
    }
    Ok(())
}

/// Waits until message `upto` fits in the window.
///
/// # Errors
/// When the run is stopped, or no credit came back for [`STALL`].
fn wait_for_room(job: &Job, upto: u64) -> io::Result<()> {
    let mut acked = job.credits.acked.load(Ordering::Acquire);
    let mut since = Instant::now();
    while upto.saturating_sub(acked) > job.window {
        if job.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the run ended"));
        }
        thread::park_timeout(NAP);
        let now = job.credits.acked.load(Ordering::Acquire);
        if now != acked {
            (acked, since) = (now, Instant::now());
        } else if since.elapsed() >= STALL {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no acknowledgement for {STALL:?} (acked up to {acked})"),
            ));
        }
    }
    Ok(())
}

/// The messages of one system call, encoded by the protocol.
struct Batch<'a, W> {
    bytes: Vec<u8>,
    /// Acknowledgement requests written so far (NATS).
    requests: u64,
    credits: &'a Credits,
    wire: std::marker::PhantomData<W>,
}

impl<W: Wire> Batch<'_, W> {
    fn push(&mut self, seq: u64, payload: &Payload) {
        W::encode_publish(&mut self.bytes, seq, payload.bytes());
    }

    /// Ends the batch (whose last message is `last_seq`) with what the protocol asks for
    /// after one, writes it, and empties it.
    fn write(&mut self, out: &mut TcpStream, last_seq: u64) -> io::Result<()> {
        let owed = self.credits.owed.swap(0, Ordering::Relaxed);
        if W::end_batch(&mut self.bytes, owed) {
            self.requests += 1;
            self.credits.record_request(self.requests, last_seq);
        }
        let result = out.write_all(&self.bytes);
        self.bytes.clear();
        result
    }
}
