//! The frame codec of `src/protocol.rs`, tested through the public API only.
//!
//! What is covered:
//! - every [`Message`] variant and every [`Body`] kind survives `encode` → `decode` and
//!   `write_message` → `read_message` unchanged;
//! - every malformed input we could think of is refused with [`Error::Protocol`]: empty
//!   input, bad length prefixes, truncation at every byte, unknown type bytes, bad magic,
//!   unknown roles, unknown body kinds (including the retired single-frame file, kind 2),
//!   invalid UTF-8, forged counts and lengths, a cut file digest, trailing bytes, bad flags;
//! - absurd length prefixes and counts are refused *before* anything is allocated. A
//!   timing check cannot show this (a 4 GiB zeroed `Vec` is a lazy `mmap` and costs
//!   nothing), so this file installs a global allocator that records the largest single
//!   allocation made by the current thread;
//! - a seeded random mutation of valid frames never panics the decoder nor makes it allocate
//!   beyond what the input's bytes could fill, and whatever the decoder accepts re-encodes
//!   to the same bytes (the encoding is canonical);
//! - the worked examples in `docs/protocol.md` match the encoder byte for byte.
//!
//! Everything runs in memory (`std::io::Cursor` and small hand-written readers), with no
//! sockets, threads or sleeps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::panic;
use std::time::{Duration, Instant};

use dsys::Error;
use dsys::protocol::{
    Body, FILE_CHUNK_LEN, MAGIC, MAX_FRAME_LEN, Message, PROTOCOL_VERSION, RELAY_INDEX_BYTES,
    Resume, Role, ServerInfo, deliver_frame, read_frame, read_message, relay_frame, write_message,
};
use dsys::support::sha256;

// ---------------------------------------------------------------------------------------
// Allocation tracking
// ---------------------------------------------------------------------------------------

/// Forwards to the system allocator and records, per thread, the largest single request.
/// Per thread, because the test harness runs tests on parallel threads.
struct TrackingAllocator;

thread_local! {
    /// The largest allocation (or reallocation target) this thread asked for since the last
    /// reset. `const`-initialised and without a destructor, so reading it never allocates.
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with` fails only while the thread is being torn down; nothing to record then.
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller's guarantees about `layout` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, since every allocation
        // above is forwarded to it.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid for `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Anything this small is an error message or bookkeeping, not a buffer sized by the input.
const SMALL_ALLOCATION: usize = 4096;

/// Generous on purpose: the work is a few comparisons, but a loaded CI machine can pause a
/// test thread for tens of milliseconds.
const QUICKLY: Duration = Duration::from_millis(500);

/// Runs `f` and returns its result with the largest single allocation it made on this
/// thread.
fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST_ALLOCATION.with(Cell::get))
}

/// Asserts that `f` fails with a protocol error, quickly and without allocating more than
/// [`SMALL_ALLOCATION`] bytes at once. Returns the error's reason.
#[track_caller]
fn assert_refused_cheaply<T: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> dsys::Result<T>,
) -> String {
    let start = Instant::now();
    let (result, largest) = largest_allocation_during(f);
    let elapsed = start.elapsed();
    let reason = assert_protocol_error(result, what);
    assert!(
        largest <= SMALL_ALLOCATION,
        "{what}: allocated {largest} bytes at once before refusing"
    );
    assert!(elapsed < QUICKLY, "{what}: took {elapsed:?} to refuse");
    reason
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Asserts an [`Error::Protocol`] and returns its text.
#[track_caller]
fn assert_protocol_error<T: std::fmt::Debug>(result: dsys::Result<T>, what: &str) -> String {
    match result {
        Err(Error::Protocol(reason)) => reason,
        other => panic!("{what}: expected a protocol error, got {other:?}"),
    }
}

/// A frame: the 4-byte big-endian length, then `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The body of `message`'s frame (its encoding without the length prefix).
fn body_of(message: &Message) -> Vec<u8> {
    message.encode()[4..].to_vec()
}

/// Big-endian helpers for hand-built bodies.
fn u16be(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
fn u32be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}
fn u64be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Parses "00 0a ff" into bytes.
fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).expect("two hex digits"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes that are not text: NULs, bytes that never occur in UTF-8, a lone continuation
/// byte and a truncated sequence.
const BINARY: [u8; 8] = [0x00, 0xff, 0x80, 0x0a, 0x00, 0xc3, 0xfe, 0x00];

/// Every body kind at least once, with edge values: empty and non-ASCII text, numbers 0,
/// 1 and `u64::MAX`, an empty name, sizes 0 and `u64::MAX`, empty, binary, all-256-values
/// and full-size ([`FILE_CHUNK_LEN`]) chunks, and a `FileEnd` with number 0 (abandoned).
fn sample_bodies() -> Vec<Body> {
    vec![
        Body::Text {
            number: 1,
            text: "hi".into(),
        },
        Body::Text {
            number: u64::MAX,
            text: String::new(),
        },
        Body::Text {
            number: 0,
            text: "héllo ✓".into(),
        },
        Body::FileStart {
            name: "notes.txt".into(),
            size: BINARY.len() as u64,
        },
        Body::FileStart {
            name: String::new(),
            size: 0,
        },
        Body::FileStart {
            name: "../ça.bin".into(),
            size: u64::MAX,
        },
        Body::FileChunk { data: vec![] },
        Body::FileChunk {
            data: BINARY.to_vec(),
        },
        Body::FileChunk {
            data: (0..=255).collect(),
        },
        Body::FileChunk {
            data: (0..FILE_CHUNK_LEN).map(|i| (i * 7 % 251) as u8).collect(),
        },
        Body::FileEnd {
            number: 2,
            sha256: sha256::digest(&BINARY),
        },
        Body::FileEnd {
            number: 0,
            sha256: [0; 32],
        },
        Body::FileEnd {
            number: u64::MAX,
            sha256: [0xff; 32],
        },
    ]
}

/// The position of `body`'s kind in the enum; no wildcard arm, as in [`variant_index`].
fn body_index(body: &Body) -> usize {
    match body {
        Body::Text { .. } => 0,
        Body::FileStart { .. } => 1,
        Body::FileChunk { .. } => 2,
        Body::FileEnd { .. } => 3,
    }
}
const BODY_KIND_COUNT: usize = 4;

/// Every variant at least once, with edge values: empty and non-ASCII strings, empty and
/// non-empty lists, both `alive` values, 0 and `u64::MAX`. Every sample body travels in a
/// `Publish`, a `Deliver` and a `Relay`.
fn sample_messages() -> Vec<Message> {
    let servers = vec![
        ServerInfo {
            addr: "127.0.0.1:8080".into(),
            epoch: 3,
            alive: true,
            clients: vec!["alice".into(), "bob".into()],
        },
        ServerInfo {
            addr: "[::1]:8081".into(),
            epoch: u64::MAX,
            alive: false,
            clients: vec![],
        },
    ];
    let mut messages = vec![
        Message::Challenge { nonce: [0xA5; 16] },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            proof: [0; 32],
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Peer,
            proof: [0x5a; 32],
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Heartbeat,
            proof: [0x5a; 32],
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Status,
            proof: [0x5a; 32],
        },
        Message::Hello {
            version: u16::MAX,
            role: Role::Locate,
            proof: [0xff; 32],
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Claim,
            proof: [0; 32],
        },
        Message::Error {
            reason: "name \"alice\" is taken".into(),
        },
        Message::Register {
            name: "zoë".into(),
            resume: None,
        },
        Message::Register {
            name: "alice".into(),
            resume: Some(Resume {
                session: 1,
                token: u64::MAX,
                seen: vec![(7, 3), (9, 0)],
            }),
        },
        Message::Register {
            name: String::new(),
            resume: Some(Resume {
                session: 0,
                token: 0,
                seen: vec![],
            }),
        },
        Message::Registered {
            session: 0x0102_0304_0506_0708,
            token: 42,
            keepalive_ms: 500,
            watermarks: vec![(1, 2), (u64::MAX, u64::MAX)],
        },
        Message::Registered {
            session: 1,
            token: 2,
            keepalive_ms: 0,
            watermarks: vec![],
        },
        Message::RegisterRefused {
            reason: "server full".into(),
        },
        Message::Ack { seq: 0 },
        Message::Ack { seq: 17 },
        Message::Keepalive,
        Message::KeepaliveEvery { ms: 6_000 },
        Message::Deregister,
        Message::Move {
            server: "127.0.0.1:8082".into(),
        },
        Message::PeerHello {
            addr: "127.0.0.1:8081".into(),
            epoch: 4,
        },
        Message::PeerWelcome {
            last_index: 0,
            history: true,
        },
        Message::PeerWelcome {
            last_index: 123_456,
            history: false,
        },
        Message::PeerAck { index: 2 },
        Message::PeerSynced,
        Message::Heartbeat {
            addr: "127.0.0.1:8080".into(),
            epoch: 0,
            clients: None,
            cut_off: Vec::new(),
        },
        Message::Heartbeat {
            addr: "127.0.0.1:8080".into(),
            epoch: 3,
            clients: Some(vec!["alice".into(), String::new(), "bob".into()]),
            cut_off: vec!["127.0.0.1:8081".into()],
        },
        Message::HeartbeatReply {
            epoch: 3,
            complete: true,
            servers: servers.clone(),
            moves: vec![("alice".into(), "127.0.0.1:8082".into())],
        },
        Message::HeartbeatReply {
            epoch: 1,
            complete: false,
            servers: vec![],
            moves: vec![],
        },
        Message::Fenced {
            reason: "epoch 3 was declared dead".into(),
        },
        Message::Locate {
            name: "alice".into(),
            suspect: String::new(),
            unreachable: false,
        },
        Message::Locate {
            name: "alice".into(),
            suspect: "127.0.0.1:8080".into(),
            unreachable: true,
        },
        Message::Assign {
            server: "127.0.0.1:8081".into(),
        },
        Message::Claim {
            name: "carol".into(),
            server: "127.0.0.1:8081".into(),
        },
        Message::ClaimReply {
            holder: String::new(),
        },
        Message::ClaimReply {
            holder: "127.0.0.1:8080".into(),
        },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Claim,
            proof: [1; 32],
        },
        Message::StatusQuery,
        Message::StatusReport {
            servers,
            more: true,
        },
        Message::StatusReport {
            servers: vec![],
            more: false,
        },
    ];
    for (i, body) in sample_bodies().into_iter().enumerate() {
        let seq = i as u64 + 1;
        messages.push(Message::Publish {
            seq,
            body: body.clone(),
        });
        messages.push(Message::Deliver {
            from: "alice".into(),
            session: 5,
            seq,
            body: body.clone(),
        });
        messages.push(Message::Relay {
            index: seq,
            from: "bob".into(),
            session: u64::MAX,
            seq,
            body,
        });
    }
    messages.push(Message::Publish {
        seq: u64::MAX,
        body: Body::Text {
            number: 1,
            text: "x".into(),
        },
    });
    messages
}

/// The position of `message`'s variant in the enum. The match has no wildcard arm, so a new
/// variant does not compile until it is added here, and then
/// `samples_cover_every_message_variant` fails until it has a sample.
fn variant_index(message: &Message) -> usize {
    match message {
        Message::Hello { .. } => 0,
        Message::Error { .. } => 1,
        Message::Register { .. } => 2,
        Message::Registered { .. } => 3,
        Message::RegisterRefused { .. } => 4,
        Message::Publish { .. } => 5,
        Message::Deliver { .. } => 6,
        Message::Ack { .. } => 7,
        Message::Keepalive => 8,
        Message::Deregister => 9,
        Message::PeerHello { .. } => 10,
        Message::PeerWelcome { .. } => 11,
        Message::Relay { .. } => 12,
        Message::PeerAck { .. } => 13,
        Message::PeerSynced => 14,
        Message::Heartbeat { .. } => 15,
        Message::HeartbeatReply { .. } => 16,
        Message::Fenced { .. } => 17,
        Message::Locate { .. } => 18,
        Message::Assign { .. } => 19,
        Message::StatusQuery => 20,
        Message::StatusReport { .. } => 21,
        Message::Challenge { .. } => 22,
        Message::KeepaliveEvery { .. } => 23,
        Message::Claim { .. } => 24,
        Message::ClaimReply { .. } => 25,
        Message::Move { .. } => 26,
    }
}
const VARIANT_COUNT: usize = 27;

/// Type bytes used in hand-built bodies (the table in `docs/protocol.md`).
const T_HELLO: u8 = 0x01;
const T_REGISTER: u8 = 0x10;
const T_REGISTERED: u8 = 0x11;
const T_PUBLISH: u8 = 0x13;
const T_DELIVER: u8 = 0x14;
const T_RELAY: u8 = 0x22;
const T_HEARTBEAT: u8 = 0x30;
const T_HEARTBEAT_REPLY: u8 = 0x31;
const T_STATUS_REPORT: u8 = 0x51;

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

#[test]
fn samples_cover_every_message_variant() {
    let mut seen = [false; VARIANT_COUNT];
    for message in sample_messages() {
        seen[variant_index(&message)] = true;
    }
    let missing: Vec<usize> = (0..VARIANT_COUNT).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants without a sample: {missing:?}");
}

#[test]
fn samples_cover_every_body_kind() {
    let mut seen = [false; BODY_KIND_COUNT];
    for body in sample_bodies() {
        seen[body_index(&body)] = true;
    }
    let missing: Vec<usize> = (0..BODY_KIND_COUNT).filter(|&i| !seen[i]).collect();
    assert!(
        missing.is_empty(),
        "body kinds without a sample: {missing:?}"
    );
    // The edge cases the file protocol depends on are among them.
    let bodies = sample_bodies();
    for (what, present) in [
        (
            "an empty chunk",
            bodies.contains(&Body::FileChunk { data: vec![] }),
        ),
        (
            "a full chunk",
            bodies
                .iter()
                .any(|b| matches!(b, Body::FileChunk { data } if data.len() == FILE_CHUNK_LEN)),
        ),
        (
            "a chunk that is not UTF-8",
            bodies.iter().any(
                |b| matches!(b, Body::FileChunk { data } if std::str::from_utf8(data).is_err()),
            ),
        ),
        (
            "an abandoned file",
            bodies
                .iter()
                .any(|b| matches!(b, Body::FileEnd { number: 0, .. })),
        ),
    ] {
        assert!(present, "no sample body is {what}");
    }
}

#[test]
fn every_message_round_trips_through_encode_and_decode() {
    for message in sample_messages() {
        let encoded = message.encode();
        let prefix = u32::from_be_bytes(encoded[..4].try_into().unwrap());
        assert_eq!(
            prefix as usize,
            encoded.len() - 4,
            "{message:?}: the prefix counts the body"
        );
        let decoded = Message::decode(&encoded[4..])
            .unwrap_or_else(|e| panic!("{message:?} does not decode: {e}"));
        assert_eq!(decoded, message);
    }
}

#[test]
fn back_to_back_frames_are_read_one_message_at_a_time() {
    let messages = sample_messages();
    let mut stream = Vec::new();
    for message in &messages {
        write_message(&mut stream, message).unwrap();
    }
    let mut reader = Cursor::new(stream);
    for message in &messages {
        assert_eq!(read_message(&mut reader).unwrap().as_ref(), Some(message));
    }
    // The stream ends cleanly between two frames: that is `Ok(None)`, not an error.
    assert!(read_message(&mut reader).unwrap().is_none());
}

#[test]
fn write_message_writes_exactly_the_encoded_frame() {
    for message in sample_messages() {
        let mut written = Vec::new();
        write_message(&mut written, &message).unwrap();
        assert_eq!(written, message.encode());
    }
}

/// A reader that hands out one byte per call and fails with `Interrupted` every other
/// call, like a slow socket hit by signals.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    interrupt_next: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt_next = !self.interrupt_next;
        if self.interrupt_next {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.pos == self.data.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.data[self.pos];
        self.pos += 1;
        Ok(1)
    }
}

#[test]
fn frame_split_into_single_bytes_and_interrupted_reads_is_reassembled() {
    let messages = sample_messages();
    let mut data = Vec::new();
    for message in &messages {
        data.extend(message.encode());
    }
    let mut reader = Trickle {
        data,
        pos: 0,
        interrupt_next: false,
    };
    for message in &messages {
        assert_eq!(read_message(&mut reader).unwrap().as_ref(), Some(message));
    }
    assert!(read_message(&mut reader).unwrap().is_none());
}

#[test]
fn message_of_exactly_max_frame_len_is_accepted() {
    // Publish = type (1) + seq (8) + body kind (1) + number (8) + text length (4) + text.
    let text = "x".repeat(MAX_FRAME_LEN as usize - 22);
    let message = Message::Publish {
        seq: 1,
        body: Body::Text { number: 1, text },
    };
    let encoded = message.encode();
    assert_eq!(encoded.len(), 4 + MAX_FRAME_LEN as usize);
    let (read, largest) = largest_allocation_during(|| read_message(&mut Cursor::new(&encoded)));
    assert_eq!(read.unwrap(), Some(message));
    // This also shows that the allocation tracker works: the frame buffer is seen.
    assert!(largest >= MAX_FRAME_LEN as usize);
}

#[test]
#[should_panic(expected = "exceeds the cap")]
fn encoding_a_frame_over_the_cap_panics() {
    // One byte more than the previous test: `encode` treats this as a caller's bug.
    let text = "x".repeat(MAX_FRAME_LEN as usize - 21);
    Message::Publish {
        seq: 1,
        body: Body::Text { number: 1, text },
    }
    .encode();
}

#[test]
fn hello_decodes_any_version_so_the_receiver_can_say_which_it_speaks() {
    // The version is checked by the receiver (`net::expect_hello`), not by the codec.
    let body = [
        &[T_HELLO][..],
        &MAGIC,
        &u16be(1),
        &[Role::Client as u8],
        &[0; 32],
    ]
    .concat();
    assert_eq!(
        Message::decode(&body).unwrap(),
        Message::Hello {
            version: 1,
            role: Role::Client,
            proof: [0; 32],
        }
    );
}

#[test]
fn file_chunk_data_may_hold_any_bytes() {
    // Every byte value, NULs and sequences that are not UTF-8: chunk data is never checked.
    for data in [
        (0..=255).rev().collect::<Vec<u8>>(),
        BINARY.to_vec(),
        vec![0; 17],
    ] {
        let message = Message::Publish {
            seq: 3,
            body: Body::FileChunk { data },
        };
        assert_eq!(Message::decode(&body_of(&message)).unwrap(), message);
    }
}

#[test]
fn full_file_chunk_fits_in_a_relay_frame() {
    // A chunk of FILE_CHUNK_LEN bytes, re-wrapped by a server with a long sender name and
    // the largest numbers, is still far below the frame cap.
    let body = Body::FileChunk {
        data: vec![0xa5; FILE_CHUNK_LEN],
    };
    let name = "n".repeat(32);
    let frame = relay_frame(u64::MAX, &name, u64::MAX, u64::MAX, &body);
    assert!(frame.len() - 4 <= MAX_FRAME_LEN as usize);
    assert_eq!(
        Message::decode(&frame[4..]).unwrap(),
        Message::Relay {
            index: u64::MAX,
            from: name,
            session: u64::MAX,
            seq: u64::MAX,
            body,
        }
    );
}

#[test]
fn file_end_carries_the_digest_as_32_raw_bytes() {
    // kind 5, number, then the digest with no length prefix: 1 + 8 + 32 bytes of body.
    let sha256 = sha256::digest(b"hello\n");
    let message = Message::Publish {
        seq: 4,
        body: Body::FileEnd { number: 2, sha256 },
    };
    let expected = [&[T_PUBLISH][..], &u64be(4), &[5], &u64be(2), &sha256].concat();
    assert_eq!(body_of(&message), expected);
    assert_eq!(Message::decode(&expected).unwrap(), message);
}

#[test]
fn borrowed_frame_builders_match_message_encode() {
    // The hub builds Deliver and Relay frames from borrowed parts; they must be the very
    // frames `Message::encode` would give.
    for body in sample_bodies() {
        let deliver = Message::Deliver {
            from: "alice".into(),
            session: 7,
            seq: 3,
            body: body.clone(),
        };
        assert_eq!(deliver_frame("alice", 7, 3, &body), deliver.encode());
        let index = 0x0102_0304_0506_0708;
        let relay = Message::Relay {
            index,
            from: "alice".into(),
            session: 7,
            seq: 3,
            body: body.clone(),
        };
        assert_eq!(relay_frame(index, "alice", 7, 3, &body), relay.encode());
    }
}

#[test]
fn relay_index_bytes_locate_the_index_in_an_encoded_relay() {
    // The hub encodes a Relay with index 0 and writes the real index into these bytes.
    let body = Body::Text {
        number: 1,
        text: "hi".into(),
    };
    let mut frame = relay_frame(0, "alice", 7, 3, &body);
    let index: u64 = 0x1122_3344_5566_7788;
    frame[RELAY_INDEX_BYTES].copy_from_slice(&index.to_be_bytes());
    assert_eq!(
        Message::decode(&frame[4..]).unwrap(),
        Message::Relay {
            index,
            from: "alice".into(),
            session: 7,
            seq: 3,
            body,
        }
    );
}

// ---------------------------------------------------------------------------------------
// Framing errors (read_frame / read_message)
// ---------------------------------------------------------------------------------------

#[test]
fn clean_end_of_stream_before_any_byte_is_not_an_error() {
    assert!(read_frame(&mut Cursor::new(&[][..])).unwrap().is_none());
    assert!(read_message(&mut Cursor::new(&[][..])).unwrap().is_none());
}

#[test]
fn empty_body_is_refused_by_decode() {
    assert_protocol_error(Message::decode(&[]), "empty body");
}

#[test]
fn zero_length_prefix_is_refused() {
    assert_refused_cheaply("length 0", || {
        read_frame(&mut Cursor::new(&[0, 0, 0, 0][..]))
    });
    // Even when more bytes follow: a zero-length frame is never valid.
    let mut input = vec![0, 0, 0, 0];
    input.extend(Message::Keepalive.encode());
    assert_refused_cheaply("length 0 then a frame", || {
        read_message(&mut Cursor::new(&input))
    });
}

#[test]
fn oversized_length_prefix_is_refused_before_allocating() {
    // The peer claims 4 GiB and then sends a little: the reader must not size a buffer by
    // the claim.
    let mut input = u32be(u32::MAX).to_vec();
    input.extend_from_slice(b"some bytes");
    assert_refused_cheaply("length 0xFFFFFFFF", || read_frame(&mut Cursor::new(&input)));
    assert_refused_cheaply("length 0xFFFFFFFF", || {
        read_message(&mut Cursor::new(&input))
    });
}

#[test]
fn length_one_over_the_cap_is_refused_even_when_the_bytes_follow() {
    let len = MAX_FRAME_LEN + 1;
    let mut input = u32be(len).to_vec();
    input.resize(4 + len as usize, 0);
    let reason = {
        let start = Instant::now();
        let (result, largest) = largest_allocation_during(|| read_frame(&mut Cursor::new(&input)));
        assert!(start.elapsed() < QUICKLY);
        assert!(largest <= SMALL_ALLOCATION, "allocated {largest} bytes");
        assert_protocol_error(result, "length MAX_FRAME_LEN + 1")
    };
    assert!(reason.contains("cap"), "the reason names the cap: {reason}");
}

#[test]
fn http_and_tls_greetings_are_refused_as_oversized_frames() {
    // A browser or a TLS client talking to a dsys port: their first four bytes read as a
    // length far above the cap, so the connection is refused at once.
    for greeting in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..],
    ] {
        assert_refused_cheaply("foreign greeting", || {
            read_message(&mut Cursor::new(greeting))
        });
    }
}

/// Where to cut a frame of `len` bytes: everywhere in `1..len` when it is small. In a
/// large one (the full file chunk) every byte of the first and last KiB, where all the
/// fields and lengths are, and every 4,093rd byte of the payload in between; cutting a
/// 256 KiB frame at every byte would copy about 10^11 bytes.
fn cut_points(len: usize) -> Vec<usize> {
    const EDGE: usize = 1024;
    if len <= 4 * EDGE {
        return (1..len).collect();
    }
    (1..EDGE)
        .chain((EDGE..len - EDGE).step_by(4093))
        .chain(len - EDGE..len)
        .collect()
}

#[test]
fn truncation_anywhere_in_a_frame_is_refused() {
    for message in sample_messages() {
        let encoded = message.encode();
        // Zero bytes is a clean end of stream; 1 to len-1 bytes is a torn frame.
        assert!(
            read_message(&mut Cursor::new(&encoded[..0]))
                .unwrap()
                .is_none()
        );
        for cut in cut_points(encoded.len()) {
            assert_protocol_error(
                read_message(&mut Cursor::new(&encoded[..cut])),
                &format!(
                    "{} cut after {cut} of {} bytes",
                    message.kind(),
                    encoded.len()
                ),
            );
        }
        // A body cut short but framed correctly: the decoder finds the missing field.
        let body = &encoded[4..];
        for cut in [0].into_iter().chain(cut_points(body.len())) {
            let what = format!(
                "{} body cut to {cut} of {} bytes",
                message.kind(),
                body.len()
            );
            assert_protocol_error(Message::decode(&body[..cut]), &what);
            assert_protocol_error(read_message(&mut Cursor::new(frame(&body[..cut]))), &what);
        }
    }
}

/// A reader that fails with a socket error after handing out `good` bytes.
struct Broken {
    data: Vec<u8>,
    good: usize,
}

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let n = buf.len().min(self.good).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn socket_errors_are_io_errors_not_protocol_errors() {
    let encoded = Message::Ack { seq: 1 }.encode();
    for good in [0, 2, 4, 6] {
        let mut reader = Broken {
            data: encoded.clone(),
            good,
        };
        match read_message(&mut reader) {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("after {good} bytes: expected an I/O error, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Body errors (Message::decode)
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_type_byte_is_refused() {
    let known: Vec<u8> = sample_messages().iter().map(|m| body_of(m)[0]).collect();
    for type_byte in 0..=u8::MAX {
        if known.contains(&type_byte) {
            continue;
        }
        let reason = assert_protocol_error(
            Message::decode(&[type_byte, 0, 0, 0, 0, 0, 0, 0, 0]),
            &format!("type 0x{type_byte:02x}"),
        );
        assert!(reason.contains("unknown frame type"), "{reason}");
        assert_protocol_error(
            read_message(&mut Cursor::new(frame(&[type_byte]))),
            "framed unknown type",
        );
    }
}

#[test]
fn hello_with_bad_magic_is_refused() {
    for magic in [*b"dsys", *b"GET ", [0; 4], *b"DSYT"] {
        let body = [&[T_HELLO][..], &magic, &u16be(PROTOCOL_VERSION), &[1]].concat();
        let reason = assert_protocol_error(Message::decode(&body), "bad magic");
        assert!(reason.contains("magic"), "{reason}");
    }
}

#[test]
fn hello_with_unknown_role_is_refused() {
    // 6 was the probe's role up to version 3.
    for role in [0, 6, 8, 0x80, 0xff] {
        let body = [&[T_HELLO][..], &MAGIC, &u16be(PROTOCOL_VERSION), &[role]].concat();
        let reason = assert_protocol_error(Message::decode(&body), "unknown role");
        assert!(reason.contains("role"), "{reason}");
    }
}

/// Byte sequences that are not UTF-8: a lone continuation byte, a truncated sequence, an
/// overlong encoding of '/', an encoded surrogate, and bytes that never occur in UTF-8.
const NOT_UTF8: [&[u8]; 5] = [
    &[0x80],
    &[b'a', 0xe2, 0x82],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[0xff, 0xfe],
];

#[test]
fn invalid_utf8_in_a_string_is_refused() {
    for bad in NOT_UTF8 {
        // Register { name: <bad>, resume: None }
        let body = [
            &[T_REGISTER][..],
            &u16be(bad.len() as u16),
            bad,
            &[0], // no resume
        ]
        .concat();
        let reason = assert_protocol_error(Message::decode(&body), "bad name");
        assert!(reason.contains("UTF-8"), "{reason}");
        // And so is a name inside a list.
        let body = [
            &[T_HEARTBEAT][..],
            &u16be(0),
            &u64be(0),
            &u32be(1),
            &u16be(bad.len() as u16),
            bad,
        ]
        .concat();
        assert_protocol_error(Message::decode(&body), "bad client name in a list");
    }
}

/// `body` wrapped in a Publish, a Deliver and a Relay, named, for tests that check all three.
fn in_every_carrier(body: &[u8]) -> [(&'static str, Vec<u8>); 3] {
    let publish = [&[T_PUBLISH][..], &u64be(1), body].concat();
    let deliver = [
        &[T_DELIVER][..],
        &u16be(1),
        b"a",
        &u64be(1),
        &u64be(1),
        body,
    ]
    .concat();
    let relay = [
        &[T_RELAY][..],
        &u64be(1),
        &u16be(1),
        b"a",
        &u64be(1),
        &u64be(1),
        body,
    ]
    .concat();
    [("Publish", publish), ("Deliver", deliver), ("Relay", relay)]
}

#[test]
fn invalid_utf8_in_a_text_body_is_refused() {
    for bad in NOT_UTF8 {
        // Text { number 1, text <bad> }
        let text = [&[1][..], &u64be(1), &u32be(bad.len() as u32), bad].concat();
        for (what, bytes) in in_every_carrier(&text) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("UTF-8"), "{what}: {reason}");
        }
    }
    // The same bytes are fine as file data.
    for bad in NOT_UTF8 {
        let chunk = [&[4][..], &u32be(bad.len() as u32), bad].concat();
        for (what, bytes) in in_every_carrier(&chunk) {
            assert!(Message::decode(&bytes).is_ok(), "{what}: chunk {bad:?}");
        }
    }
}

#[test]
fn file_start_with_invalid_utf8_name_is_refused() {
    for bad in NOT_UTF8 {
        // FileStart { name <bad>, size 0 }
        let start = [&[3][..], &u16be(bad.len() as u16), bad, &u64be(0)].concat();
        for (what, bytes) in in_every_carrier(&start) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("UTF-8"), "{what}: {reason}");
        }
    }
}

#[test]
fn file_end_cut_inside_its_digest_is_refused() {
    let digest = sha256::digest(b"hello\n");
    for cut in 0..digest.len() {
        // FileEnd { number 2, the first `cut` digest bytes }, framed correctly.
        let end = [&[5][..], &u64be(2), &digest[..cut]].concat();
        for (what, bytes) in in_every_carrier(&end) {
            let what = format!("{what} with {cut} of 32 digest bytes");
            let reason = assert_protocol_error(Message::decode(&bytes), &what);
            assert!(reason.contains("truncated"), "{what}: {reason}");
            assert_protocol_error(read_message(&mut Cursor::new(frame(&bytes))), &what);
        }
    }
    // A 33rd byte is not part of the digest: it is left over.
    let end = [&[5][..], &u64be(2), &digest, &[0]].concat();
    for (what, bytes) in in_every_carrier(&end) {
        let reason = assert_protocol_error(Message::decode(&bytes), what);
        assert!(reason.contains("unexpected bytes"), "{what}: {reason}");
    }
}

#[test]
fn string_length_beyond_the_frame_is_refused() {
    // Register { name: claims 65535 bytes, 3 present }
    let body = [&[T_REGISTER][..], &u16be(u16::MAX), b"abc"].concat();
    assert_refused_cheaply("long string", || Message::decode(&body));
}

#[test]
fn byte_string_length_beyond_the_frame_is_refused_before_allocating() {
    // Publish { seq 1, Text { number 1, text claims 4 GiB, 2 bytes present } }
    let text = [
        &[T_PUBLISH][..],
        &u64be(1),
        &[1],
        &u64be(1),
        &u32be(u32::MAX),
        b"hi",
    ]
    .concat();
    assert_refused_cheaply("huge text length", || Message::decode(&text));
    // Publish { seq 1, FileChunk { data claims 4 GiB, 2 bytes present } }
    let chunk = [&[T_PUBLISH][..], &u64be(1), &[4], &u32be(u32::MAX), b"hi"].concat();
    assert_refused_cheaply("huge chunk length", || Message::decode(&chunk));
}

/// Bodies that each announce `count` items in one list but carry none of them.
fn bodies_with_forged_count(count: u32) -> Vec<(&'static str, Vec<u8>)> {
    let count = u32be(count);
    vec![
        (
            "Registered.watermarks",
            [
                &[T_REGISTERED][..],
                &u64be(1),
                &u64be(2),
                &u32be(500),
                &count,
            ]
            .concat(),
        ),
        (
            "Register.resume.seen",
            [
                &[T_REGISTER][..],
                &u16be(1),
                b"a",
                &[1],
                &u64be(1),
                &u64be(2),
                &count,
            ]
            .concat(),
        ),
        (
            "Heartbeat.clients",
            [&[T_HEARTBEAT][..], &u16be(0), &u64be(0), &[1], &count].concat(),
        ),
        (
            "HeartbeatReply.servers",
            [&[T_HEARTBEAT_REPLY][..], &u64be(1), &[1], &count].concat(),
        ),
        (
            "StatusReport.servers",
            [&[T_STATUS_REPORT][..], &count].concat(),
        ),
        (
            "StatusReport.servers[0].clients",
            [
                &[T_STATUS_REPORT][..],
                &u32be(1),
                &u16be(0),
                &u64be(1),
                &[1],
                &count,
            ]
            .concat(),
        ),
    ]
}

#[test]
fn huge_list_count_is_refused_before_allocating() {
    // 0xFFFFFFFF is the absurd case. 2^20 comes first: a decoder that sized its `Vec` from
    // the count would get memory for it, so the tracker reports the mistake clearly, before
    // 0xFFFFFFFF could abort the whole test process on a failed 64 GiB allocation.
    for count in [1 << 20, u32::MAX] {
        for (what, body) in bodies_with_forged_count(count) {
            let what = format!("{what} with count {count}");
            // Some padding, so that the check has to compare the count with what is left.
            let mut padded = body.clone();
            padded.extend([0u8; 64]);
            for reason in [
                assert_refused_cheaply(&what, || Message::decode(&body)),
                assert_refused_cheaply(&what, || Message::decode(&padded)),
                assert_refused_cheaply(&what, || read_message(&mut Cursor::new(frame(&padded)))),
            ] {
                // Refused by the count check itself, before any item is read.
                assert!(reason.contains("count"), "{what}: {reason}");
            }
        }
    }
}

#[test]
fn list_count_one_more_than_the_items_present_is_refused() {
    // Registered with 2 watermarks announced and 1 present.
    let body = [
        &[T_REGISTERED][..],
        &u64be(1),
        &u64be(2),
        &u32be(500),
        &u32be(2),
        &u64be(7),
        &u64be(3),
    ]
    .concat();
    assert_protocol_error(Message::decode(&body), "short pair list");
    // Heartbeat with 3 clients announced and 2 present.
    let body = [
        &[T_HEARTBEAT][..],
        &u16be(0),
        &u64be(0),
        &u32be(3),
        &u16be(1),
        b"a",
        &u16be(1),
        b"b",
    ]
    .concat();
    assert_protocol_error(Message::decode(&body), "short string list");
}

#[test]
fn trailing_bytes_after_a_valid_message_are_refused() {
    for message in sample_messages() {
        for extra in [&[0u8][..], &[0xff], &[0; 9]] {
            let mut body = body_of(&message);
            body.extend_from_slice(extra);
            let reason = assert_protocol_error(
                Message::decode(&body),
                &format!("{} + {} bytes", message.kind(), extra.len()),
            );
            assert!(reason.contains("unexpected bytes"), "{reason}");
        }
    }
}

#[test]
fn bad_resume_flag_is_refused() {
    for flag in [2, 0x80, 0xff] {
        // Register { name "a", resume flag <bad>, then what a resume would carry }
        let body = [
            &[T_REGISTER][..],
            &u16be(1),
            b"a",
            &[flag],
            &u64be(1),
            &u64be(2),
            &u32be(0),
        ]
        .concat();
        let reason = assert_protocol_error(Message::decode(&body), "resume flag");
        assert!(reason.contains("resume"), "{reason}");
    }
}

#[test]
fn unknown_body_kind_is_refused() {
    for kind in [0, 2, 6, 0x80, 0xff] {
        let body = [&[kind][..], &u64be(1), &u32be(2), b"hi"].concat();
        for (what, bytes) in in_every_carrier(&body) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("body kind"), "{what}: {reason}");
        }
    }
}

#[test]
fn retired_single_frame_file_kind_2_is_refused() {
    // The old layout exactly: kind 2, name "a.txt", data "hi". Files now travel as
    // FileStart, FileChunk, FileEnd (kinds 3, 4, 5); kind 2 is unknown.
    let old_file = [&[2][..], &u16be(5), b"a.txt", &u32be(2), b"hi"].concat();
    for (what, bytes) in in_every_carrier(&old_file) {
        let reason = assert_protocol_error(Message::decode(&bytes), what);
        assert_eq!(reason, "unknown body kind 2", "{what}");
        assert_protocol_error(read_message(&mut Cursor::new(frame(&bytes))), what);
    }
}

#[test]
fn bad_alive_flag_is_refused() {
    for alive in [2, 0xff] {
        let server = [&u16be(3)[..], b"a:1", &u64be(1), &[alive], &u32be(0)].concat();
        let report = [&[T_STATUS_REPORT][..], &u32be(1), &server].concat();
        let reply = [
            &[T_HEARTBEAT_REPLY][..],
            &u64be(1),
            &[1],
            &u32be(1),
            &server,
        ]
        .concat();
        for (what, bytes) in [("StatusReport", report), ("HeartbeatReply", reply)] {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("alive"), "{what}: {reason}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random mutation
// ---------------------------------------------------------------------------------------

/// xorshift64* (Vigna, 2016): a tiny deterministic generator, so a failure replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n > 0`); the slight modulo bias does not matter here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Applies one random edit: flip a bit, overwrite a byte with an interesting or random
/// value, insert a byte, or delete a byte.
fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    const INTERESTING: [u8; 6] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff];
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
        2 if at < bytes.len() => bytes[at] = rng.byte(),
        3 if at < bytes.len() => {
            bytes.remove(at);
        }
        _ => bytes.insert(at, rng.byte()),
    }
}

/// The largest in-memory item a decoded list holds per input byte (a `ServerInfo` or a
/// watermark pair, with their `String`s and `Vec`s), rounded up.
const MAX_ITEM: usize = 128;

#[test]
fn mutated_frames_never_panic_or_over_allocate_in_the_decoder() {
    const SEED: u64 = 0x5eed_d5e5_0000_0001;
    const ITERATIONS: usize = 5_000;
    let samples: Vec<Vec<u8>> = sample_messages().iter().map(Message::encode).collect();
    let mut rng = XorShift(SEED);
    let (mut accepted, mut refused) = (0, 0);
    for iteration in 0..ITERATIONS {
        let mut input = samples[rng.below(samples.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        // Half the time keep the length prefix consistent, so the edit reaches the decoder
        // instead of being caught by the framing.
        if rng.below(2) == 0 && input.len() >= 4 {
            let body_len = (input.len() - 4) as u32;
            input[..4].copy_from_slice(&body_len.to_be_bytes());
        }
        let outcome = panic::catch_unwind(|| {
            largest_allocation_during(|| {
                let framed = read_message(&mut Cursor::new(&input));
                let decoded = Message::decode(input.get(4..).unwrap_or(&[]));
                (framed, decoded)
            })
        });
        let Ok(((framed, decoded), largest)) = outcome else {
            panic!(
                "seed {SEED:#x}, iteration {iteration}: decoding panicked on {}",
                hex(&input)
            );
        };
        // Never over-allocates: no single buffer beyond what the input's bytes could fill.
        // An item of a list takes at least one input byte and at most `MAX_ITEM` bytes of
        // memory, so `MAX_ITEM` times the input bounds every honest allocation.
        assert!(
            largest <= SMALL_ALLOCATION.max(MAX_ITEM * input.len()),
            "seed {SEED:#x}, iteration {iteration}: decoding {} bytes allocated {largest} at once",
            input.len()
        );
        // Whatever is accepted re-encodes to the very bytes it came from: each message has
        // exactly one encoding. `read_message` took one frame from the front of `input`;
        // `decode` was given everything after the first four bytes.
        match framed {
            Ok(Some(message)) => {
                accepted += 1;
                assert!(
                    input.starts_with(&message.encode()),
                    "iteration {iteration}: frame {} was read as {message:?}",
                    hex(&input)
                );
            }
            Ok(None) => {}
            Err(Error::Protocol(_)) => refused += 1,
            Err(other) => panic!("iteration {iteration}: unexpected error {other:?}"),
        }
        match decoded {
            Ok(message) => {
                accepted += 1;
                assert_eq!(
                    message.encode()[4..],
                    input[4..],
                    "iteration {iteration}: body was decoded as {message:?}"
                );
            }
            Err(Error::Protocol(_)) => refused += 1,
            Err(other) => panic!("iteration {iteration}: unexpected error {other:?}"),
        }
    }
    // Both outcomes must occur, or the mutations are too weak (or too strong) to test much.
    assert!(
        accepted > 100 && refused > 100,
        "accepted {accepted}, refused {refused}"
    );
}

// ---------------------------------------------------------------------------------------
// The worked examples in docs/protocol.md
// ---------------------------------------------------------------------------------------

/// The document the examples live in, read at compile time.
const PROTOCOL_DOC: &str = include_str!("../docs/protocol.md");

#[test]
fn worked_examples_in_docs_match_encoder() {
    let session = 0x8f3a_1c5e_7b20_d4e1;
    let hi = Body::Text {
        number: 1,
        text: "hi".into(),
    };
    // Section 3.1 shows this body on its own: the Publish frame without length, type and seq.
    let hi_body = &body_of(&Message::Publish {
        seq: 1,
        body: hi.clone(),
    })[9..];
    assert_eq!(hex(hi_body), "01 00 00 00 00 00 00 00 01 00 00 00 02 68 69");
    assert!(
        PROTOCOL_DOC.contains(&format!("`{}`", hex(hi_body))),
        "docs/protocol.md 3.1 does not show the Text body {}",
        hex(hi_body)
    );
    let examples = [
        (
            Message::Challenge { nonce: [0x11; 16] },
            "00 00 00 15 03 44 53 59 53 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11",
        ),
        (
            Message::Hello {
                version: 2,
                role: Role::Client,
                proof: [0; 32],
            },
            "00 00 00 28 01 44 53 59 53 00 02 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
        ),
        (
            Message::Register {
                name: "alice".into(),
                resume: None,
            },
            "00 00 00 09 10 00 05 61 6c 69 63 65 00",
        ),
        (
            Message::Registered {
                session,
                token: 0x5d7c_9e01_a3b4_f268,
                keepalive_ms: 500,
                watermarks: vec![],
            },
            "00 00 00 19 11 8f 3a 1c 5e 7b 20 d4 e1 5d 7c 9e 01 a3 b4 f2 68 00 00 01 f4 \
             00 00 00 00",
        ),
        (
            Message::Publish {
                seq: 1,
                body: hi.clone(),
            },
            "00 00 00 18 13 00 00 00 00 00 00 00 01 01 00 00 00 00 00 00 00 01 00 00 \
             00 02 68 69",
        ),
        (
            Message::Deliver {
                from: "alice".into(),
                session,
                seq: 1,
                body: hi,
            },
            "00 00 00 27 14 00 05 61 6c 69 63 65 8f 3a 1c 5e 7b 20 d4 e1 00 00 00 00 \
             00 00 00 01 01 00 00 00 00 00 00 00 01 00 00 00 02 68 69",
        ),
        (
            Message::Ack { seq: 1 },
            "00 00 00 09 15 00 00 00 00 00 00 00 01",
        ),
        (
            Message::Publish {
                seq: 2,
                body: Body::FileStart {
                    name: "notes.txt".into(),
                    size: 6,
                },
            },
            "00 00 00 1d 13 00 00 00 00 00 00 00 02 03 00 09 6e 6f 74 65 73 2e 74 78 \
             74 00 00 00 00 00 00 00 06",
        ),
        (
            Message::Publish {
                seq: 3,
                body: Body::FileChunk {
                    data: b"hello\n".to_vec(),
                },
            },
            "00 00 00 14 13 00 00 00 00 00 00 00 03 04 00 00 00 06 68 65 6c 6c 6f 0a",
        ),
        (
            Message::Publish {
                seq: 4,
                body: Body::FileEnd {
                    number: 2,
                    sha256: sha256::digest(b"hello\n"),
                },
            },
            "00 00 00 32 13 00 00 00 00 00 00 00 04 05 00 00 00 00 00 00 00 02 58 91 \
             b5 b5 22 d5 df 08 6d 0f f0 b1 10 fb d9 d2 1b b4 fc 71 63 af 34 d0 82 86 \
             a2 e8 46 f6 be 03",
        ),
        (Message::Keepalive, "00 00 00 01 16"),
        (Message::Deregister, "00 00 00 01 17"),
        (
            Message::KeepaliveEvery { ms: 6000 },
            "00 00 00 05 18 00 00 17 70",
        ),
    ];
    // The doc may wrap a frame over several lines; compare with whitespace normalised.
    let doc_words: String = PROTOCOL_DOC
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (message, expected) in examples {
        let expected = unhex(expected);
        assert_eq!(
            hex(&message.encode()),
            hex(&expected),
            "{} encodes differently from the doc",
            message.kind()
        );
        assert_eq!(Message::decode(&expected[4..]).unwrap(), message);
        assert!(
            doc_words.contains(&hex(&expected)),
            "docs/protocol.md does not show the {} frame {}",
            message.kind(),
            hex(&expected)
        );
    }
}
