//! The receiving side that every Redis and NATS connection of this bench shares: [`Input`],
//! one reused buffer that a reading thread refills from its socket and parses in place;
//! [`Inbox`], a subscriber's input with the check of every message; [`Tally`], what that
//! check counted; and the payload's layout ([`Payload`]).
//!
//! This file starts no thread. The protocol files (`redis.rs`, `nats.rs`) find frames in
//! [`Input::unread`], hand each message's payload to [`Inbox::deliver`] and call
//! [`Inbox::refill`] when the buffer holds no whole frame; the thread that calls them is
//! started by `driver.rs`. A subscriber's input is the load generator's hot path, written
//! as dsys bench's receivers are (`src/roles/bench/load.rs`): one read per refill of a
//! 64 KiB buffer, one clock reading per refill, one add to the shared progress count per
//! refill, no allocation per message. Leaner or heavier readers on one side would hand the
//! brokers a different share of the machine's two cores.
//!
//! **When the peer fails.** A connection that ends (end of stream, an error, or this bench
//! shutting the socket down) makes [`Input::refill`] return false, and the reader stops:
//! what it missed is counted as lost. Bytes that cannot be a reply of the protocol, or a
//! frame longer than the whole buffer, are a bug on one side or the other: a panic that
//! names the connection and shows the bytes, never a wait on data that cannot come.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// Bytes of every message's payload, as in every load of `docs/benchmarks.md`.
pub const PAYLOAD_LEN: usize = 128;
/// Bytes each connection buffers for reading and for writing, as dsys bench's clients do
/// (`IO_BUFFER` in `src/roles/bench/load.rs`): about a socket buffer's worth, so one
/// system call moves many messages. It is also the longest frame a reader accepts.
pub const IO_BUFFER: usize = 64 * 1024;
/// How long connecting, and each read of a handshake, may take. A broker on loopback
/// answers in microseconds; when this fires, the broker is stuck or gone, and the run
/// panics saying which connection was waiting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The `seq` of the warm-up message; the measured messages follow it.
pub const WARM_UP_SEQ: u64 = 1;

/// A message's payload: the publisher's `seq`, then when the message was sent (or due),
/// in nanoseconds since the bench's shared `epoch`, each as 8 bytes (little-endian), then
/// `x`s up to [`PAYLOAD_LEN`]. Binary, not text as in dsys bench's payload: reading two
/// numbers of 16 hexadecimal digits took about a fifth of a subscriber's time here, and these
/// readers should cost the machine no more than dsys bench's do.
pub struct Payload([u8; PAYLOAD_LEN]);

impl Payload {
    /// A payload of padding, to be stamped before each send.
    pub fn new() -> Payload {
        Payload([b'x'; PAYLOAD_LEN])
    }

    /// Writes `seq` and the time `at` into the payload, in place.
    pub fn stamp(&mut self, seq: u64, at: Instant, epoch: Instant) {
        let nanos = at.saturating_duration_since(epoch).as_nanos() as u64;
        self.0[..8].copy_from_slice(&seq.to_le_bytes());
        self.0[8..16].copy_from_slice(&nanos.to_le_bytes());
    }

    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `seq` and send time (nanoseconds since `epoch`) that `payload` carries, if it
    /// is a payload of this bench.
    fn read(payload: &[u8]) -> Option<(u64, u64)> {
        if payload.len() != PAYLOAD_LEN {
            return None;
        }
        let number = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Some((number(0), number(8)))
    }
}

/// The number that `digits` spell in decimal, if they do, in at most 9 digits: lengths
/// and counts in the protocols' text. By hand, not `str::parse`, which checks UTF-8 first:
/// it runs two to four times per delivery.
pub fn read_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
    })
}

/// Where the line that starts at `from` ends: the index of its `\r\n`, or `None` while
/// the line is incomplete.
///
/// # Errors
/// When a `\n` comes without a `\r` before it: neither protocol sends that.
pub fn line_end(bytes: &[u8], from: usize) -> Result<Option<usize>, String> {
    let Some(newline) = bytes
        .get(from..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    else {
        return Ok(None);
    };
    let at = from + newline;
    if at == from || bytes[at - 1] != b'\r' {
        return Err("a line that does not end with \\r\\n".into());
    }
    Ok(Some(at - 1))
}

/// Connects to a broker at `addr` with [`HANDSHAKE_TIMEOUT`] on the connect and on every
/// read until [`Input::handshake_done`]. Nagle is off, as on dsys bench's connections.
///
/// # Panics
/// When the broker cannot be reached: the run cannot go on without it.
pub fn connect(addr: &str, label: &str) -> Input {
    let socket: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("{label}: bad address {addr}: {e}"));
    let stream = TcpStream::connect_timeout(&socket, HANDSHAKE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{label}: cannot connect to {addr}: {e}"));
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .unwrap_or_else(|e| panic!("{label}: cannot set up the socket to {addr}: {e}"));
    Input {
        stream,
        buf: vec![0; IO_BUFFER].into_boxed_slice(),
        start: 0,
        end: 0,
        label: label.to_string(),
    }
}

/// One connection's input: bytes read from the socket and not yet parsed are
/// `buf[start..end]`. Frames are parsed where they lie; a refill first moves the unparsed
/// tail (part of one frame) to the front.
pub struct Input {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Who this is in panic messages ("nats subscriber 17").
    label: String,
}

impl Input {
    /// The socket, to write a handshake or an answer on, or to clone a handle from.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Ends the handshake: from now on a read waits as long as the broker is silent (a
    /// subscriber of S3 waits half a millisecond between messages, a cut-off one forever,
    /// until the driver shuts its socket down).
    pub fn handshake_done(&self) {
        self.stream
            .set_read_timeout(None)
            .unwrap_or_else(|e| panic!("{}: cannot clear the read timeout: {e}", self.label));
    }

    /// The bytes read and not yet parsed.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `len` unread bytes as parsed.
    pub fn consume(&mut self, len: usize) {
        self.start += len;
    }

    /// Blocks until the socket gives more bytes, and returns true; returns false when the
    /// connection has ended (end of stream, an error, a handshake read that timed out, or
    /// the driver shutting the socket down).
    ///
    /// # Panics
    /// When the buffer is full and holds no whole frame: no reply of these protocols, in
    /// this bench, comes near [`IO_BUFFER`] bytes.
    pub fn refill(&mut self) -> bool {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.malformed("a frame longer than the whole read buffer");
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return false,
                Ok(read) => {
                    self.end += read;
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Reads until `parse` finds a whole frame at the front, consumes it and returns what
    /// `parse` made of it. For handshakes: the hot paths parse in a loop of their own.
    ///
    /// # Panics
    /// When the connection ends first (`waiting_for` says what was awaited), or as
    /// [`Input::malformed`] when `parse` rejects the bytes.
    pub fn next_frame<T>(
        &mut self,
        waiting_for: &str,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, String>,
    ) -> T {
        loop {
            match parse(self.unread()) {
                Ok(Some((frame, len))) => {
                    self.consume(len);
                    return frame;
                }
                Ok(None) if self.refill() => {}
                Ok(None) => panic!(
                    "{}: the connection ended or timed out while waiting for {waiting_for}",
                    self.label
                ),
                Err(why) => self.malformed(&why),
            }
        }
    }

    /// Who this connection is, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Panics with `why`, this connection's name, and the first unread bytes.
    pub fn malformed(&self, why: &str) -> ! {
        let shown = &self.unread()[..self.unread().len().min(96)];
        panic!(
            "{}: malformed reply from the broker ({why}); it begins {:?}",
            self.label,
            String::from_utf8_lossy(shown)
        )
    }
}

/// What one subscriber's check counted.
pub struct Tally {
    /// Distinct measured messages received (the warm-up is not counted).
    pub delivered: u64,
    /// Messages received again.
    pub duplicated: u64,
    /// Messages received after one with a higher `seq`.
    pub reordered: u64,
    /// From each measured message's send (or due) time to the refill that brought it.
    pub latency: Histogram,
    /// When the last new measured message arrived.
    pub last_delivery: Option<Instant>,
    /// The `seq` expected next if nothing is lost or reordered.
    next_seq: u64,
    /// The run's last `seq`.
    last_seq: u64,
    /// One bit for each `seq` from 0 to the last one: set once it has arrived. 12.5 KiB
    /// for 100,000 messages; it tells a duplicate from a late message at the cost of one
    /// bit test.
    seen: Vec<u64>,
}

impl Tally {
    /// A tally for a run whose messages are numbered [`WARM_UP_SEQ`] to `last_seq`.
    pub fn new(last_seq: u64) -> Tally {
        Tally {
            delivered: 0,
            duplicated: 0,
            reordered: 0,
            latency: Histogram::default(),
            last_delivery: None,
            next_seq: WARM_UP_SEQ,
            last_seq,
            seen: vec![0; (last_seq / 64 + 1) as usize],
        }
    }

    /// Counts message `seq`, sent at `sent`, which arrived at `now`. Returns false when
    /// `seq` cannot be one of this run's messages.
    fn count(&mut self, seq: u64, sent: Instant, now: Instant) -> bool {
        if !(WARM_UP_SEQ..=self.last_seq).contains(&seq) {
            return false;
        }
        let word = &mut self.seen[(seq / 64) as usize];
        let bit = 1 << (seq % 64);
        if *word & bit != 0 {
            self.duplicated += 1;
            return true;
        }
        *word |= bit;
        if seq < self.next_seq {
            self.reordered += 1;
        } else {
            self.next_seq = seq + 1;
        }
        // The warm-up is not part of the load: it went out before the clock started, and
        // its latency includes the wait for every subscriber to connect.
        if seq > WARM_UP_SEQ {
            self.delivered += 1;
            self.last_delivery = Some(now);
            self.latency.record(now.saturating_duration_since(sent));
        }
        true
    }
}

/// A subscriber's input and the check of every message it brings.
pub struct Inbox {
    /// The connection; the protocol's reader parses [`Input::unread`].
    pub input: Input,
    tally: Tally,
    epoch: Instant,
    /// When the bytes now in the buffer arrived: read once per refill, not per message
    /// (reading the clock was a tenth of dsys bench's reader's time). Every message of
    /// one refill was in the socket by then.
    arrived: Instant,
    /// Messages not yet added to `progress`: added before each refill, so a hundred
    /// readers do not contend for the shared counter on every message, and the count is
    /// whole whenever they all wait.
    uncounted: u64,
    /// Messages received by every subscriber, read by the driver to know when the warm-up
    /// and the run are over. The driver holds the other handle.
    progress: Arc<AtomicU64>,
}

impl Inbox {
    /// An inbox for a subscriber whose handshake is done, for a run whose messages are
    /// numbered up to `last_seq` and stamped against `epoch`.
    pub fn new(input: Input, last_seq: u64, epoch: Instant, progress: Arc<AtomicU64>) -> Inbox {
        Inbox {
            input,
            tally: Tally::new(last_seq),
            epoch,
            arrived: Instant::now(),
            uncounted: 0,
            progress,
        }
    }

    /// Checks and times the message whose payload is at `payload` in [`Input::unread`].
    ///
    /// # Panics
    /// When the payload is not one of this run's (as [`Input::malformed`]).
    pub fn deliver(&mut self, payload: Range<usize>) {
        let Some((seq, sent)) = Payload::read(&self.input.unread()[payload]) else {
            self.input
                .malformed("a message that is not this bench's payload");
        };
        let sent = self.epoch + Duration::from_nanos(sent);
        if !self.tally.count(seq, sent, self.arrived) {
            self.input
                .malformed(&format!("seq {seq} is beyond this run"));
        }
        self.uncounted += 1;
    }

    /// Adds what this reader counted to the shared progress, then as [`Input::refill`].
    pub fn refill(&mut self) -> bool {
        self.progress.fetch_add(self.uncounted, Ordering::Relaxed);
        self.uncounted = 0;
        let more = self.input.refill();
        self.arrived = Instant::now();
        more
    }

    /// What the check counted.
    pub fn into_tally(self) -> Tally {
        self.tally
    }
}
