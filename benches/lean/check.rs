//! What every message carries and how every delivery is checked, whatever the system:
//! the [`Payload`] a publisher stamps, and the [`Check`] of one receiving connection that
//! the protocol scanners (`dsys_wire.rs`, `redis.rs`, `nats.rs`) call for each delivery they
//! find. No thread, no socket: a receiver thread owns each connection's `Check`.
//!
//! **The payload** is 128 bytes of text (dsys checks that a text is UTF-8): the message's
//! `seq`, the time it was sent (or due) in nanoseconds since the run's epoch, and the
//! publisher's index, each in fixed-width hexadecimal, then padding. Redis and NATS carry
//! nothing else, so the payload is where their receivers find sender and `seq`; for dsys
//! the frame's own `seq` is the one checked.
//!
//! **The check**, per connection and publisher: each `seq` must be exactly one more than
//! the last. Anything lower is a duplicate, anything higher a jump (what it skipped shows
//! up as lost in the totals); a payload that does not parse is corrupt. No allocation and
//! no clock reading per delivery: the receiver reads the clock once per read.

use std::time::{Duration, Instant};

use dsys::support::histogram::Histogram;

/// Bytes of every payload, as in every load of `docs/benchmarks.md`.
pub const PAYLOAD_LEN: usize = 128;
/// The `seq` of a publisher's warm-up message; the measured ones follow it.
pub const WARM_UP_SEQ: u64 = 1;

const SEQ: std::ops::Range<usize> = 0..16;
const SENT: std::ops::Range<usize> = 16..32;
const PUBLISHER: std::ops::Range<usize> = 32..40;

/// One publisher's payload, stamped in place before each message.
pub struct Payload([u8; PAYLOAD_LEN]);

impl Payload {
    pub fn new(publisher: u32) -> Payload {
        let mut bytes = [b'x'; PAYLOAD_LEN];
        hex_into(&mut bytes[PUBLISHER], u64::from(publisher));
        Payload(bytes)
    }

    /// Writes `seq` and the send time `at` into the payload.
    pub fn stamp(&mut self, seq: u64, at: Instant, epoch: Instant) {
        let nanos = at.saturating_duration_since(epoch).as_nanos() as u64;
        hex_into(&mut self.0[SEQ], seq);
        hex_into(&mut self.0[SENT], nanos);
    }

    pub fn bytes(&self) -> &[u8; PAYLOAD_LEN] {
        &self.0
    }
}

/// Writes `value` as `out.len()` lowercase hexadecimal digits, most significant first.
fn hex_into(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// The value of 8 lowercase hexadecimal digits, or `None` if one is not.
///
/// All 8 at once in one `u64` (SWAR): a digit-by-digit loop for the three numbers of every
/// payload was a visible share of a receiver's time at 20 million deliveries a second.
fn hex8(digits: &[u8]) -> Option<u64> {
    let x = u64::from_be_bytes(digits.try_into().ok()?);
    if !all_hex_digits(x) {
        return None;
    }
    // '0'..'9' are 0x30..0x39, 'a'..'f' 0x61..0x66: bit 6 tells letters from digits.
    let letters = (x >> 6) & 0x0101_0101_0101_0101;
    let nibbles = (x & 0x0f0f_0f0f_0f0f_0f0f) + 9 * letters;
    // Pack the eight nibbles, one byte each, into the low 32 bits.
    let v = ((nibbles >> 4) | nibbles) & 0x00ff_00ff_00ff_00ff;
    let v = ((v >> 8) | v) & 0x0000_ffff_0000_ffff;
    Some(((v >> 16) | v) & 0xffff_ffff)
}

/// Whether each of the 8 bytes of `x` is `0`..`9` or `a`..`f`, tested in all bytes at
/// once: with every byte below 0x80, adding `0x80 - bound` to each byte sets its top bit
/// exactly when the byte is at least `bound`, and no add carries into the next byte.
fn all_hex_digits(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let at_least = |bound: u64| (x + (0x80 - bound) * ONES) & TOPS;
    let digits = at_least(b'0' as u64) & !at_least(b'9' as u64 + 1);
    let letters = at_least(b'a' as u64) & !at_least(b'f' as u64 + 1);
    x & TOPS == 0 && digits | letters == TOPS
}

fn hex16(digits: &[u8]) -> Option<u64> {
    Some((hex8(&digits[..8])? << 32) | hex8(&digits[8..16])?)
}

/// What one connection's check counted.
#[derive(Default)]
pub struct Tally {
    /// Messages that arrived in order, the warm-up ones included.
    pub delivered: u64,
    pub duplicated: u64,
    /// Times a publisher's `seq` jumped ahead.
    pub jumps: u64,
    /// Payloads that did not parse, or named no publisher of the run.
    pub corrupt: u64,
    pub latency: Histogram,
    pub last_delivery: Option<Instant>,
}

/// One receiving connection's check.
pub struct Check {
    /// The next `seq` expected from each publisher, by index.
    next: Vec<u64>,
    /// A publisher whose messages this connection gets but does not count: a Redis chat
    /// client's own, which its subscription returns to it.
    own: Option<u64>,
    epoch: Instant,
    /// When the bytes being scanned were read, set by the receiver once per read.
    now: Instant,
    now_ns: u64,
    pub tally: Tally,
}

impl Check {
    pub fn new(publishers: usize, own: Option<u32>, epoch: Instant) -> Check {
        Check {
            next: vec![WARM_UP_SEQ; publishers],
            own: own.map(u64::from),
            epoch,
            now: epoch,
            now_ns: 0,
            tally: Tally::default(),
        }
    }

    /// The bytes about to be scanned were read at `now`.
    pub fn read_at(&mut self, now: Instant) {
        self.now = now;
        self.now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
    }

    /// One delivery of `payload`, whose frame said `frame_seq` when the protocol has one.
    /// Returns the `seq` of a message of this connection's own publisher, which is not
    /// counted (a Redis chat client takes it as the acknowledgement).
    #[inline]
    pub fn deliver(&mut self, payload: &[u8], frame_seq: Option<u64>) -> Option<u64> {
        // A frame's own `seq` is the one checked; the payload's is read only when the
        // protocol has none (Redis, NATS): a third number to parse per delivery costs.
        let Some((publisher, seq, sent)) = parse(payload, frame_seq) else {
            self.tally.corrupt += 1;
            return None;
        };
        if self.own == Some(publisher) {
            return Some(seq);
        }
        let Some(next) = self.next.get_mut(publisher as usize) else {
            self.tally.corrupt += 1;
            return None;
        };
        if seq < *next {
            self.tally.duplicated += 1;
            return None;
        }
        if seq > *next {
            self.tally.jumps += 1;
        }
        *next = seq + 1;
        self.tally.delivered += 1;
        self.tally.last_delivery = Some(self.now);
        let latency = self.now_ns.saturating_sub(sent);
        self.tally.latency.record(Duration::from_nanos(latency));
        None
    }
}

/// The publisher, `seq` (`frame_seq` when given) and send time a payload carries.
#[inline]
fn parse(payload: &[u8], frame_seq: Option<u64>) -> Option<(u64, u64, u64)> {
    if payload.len() != PAYLOAD_LEN {
        return None;
    }
    let seq = match frame_seq {
        Some(seq) => seq,
        None => hex16(&payload[SEQ])?,
    };
    Some((hex8(&payload[PUBLISHER])?, seq, hex16(&payload[SENT])?))
}

/// The stamped payload must read back as written; checked once per run (bench binaries
/// run no unit tests).
pub fn self_check() {
    let epoch = Instant::now();
    let mut payload = Payload::new(0x1f);
    let at = epoch + Duration::from_nanos(0xdead_beef_0123);
    payload.stamp(0x0abc_def0_1234_5678, at, epoch);
    assert_eq!(
        parse(payload.bytes(), None),
        Some((0x1f, 0x0abc_def0_1234_5678, 0xdead_beef_0123)),
        "the payload's hexadecimal does not read back"
    );
    assert_eq!(parse(&[b'g'; PAYLOAD_LEN], Some(1)), None);
}
