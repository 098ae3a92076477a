//! Helpers for hand-built frames, and samples of every message variant and body kind.

use super::*;

/// Asserts an [`Error::Protocol`] and returns its text.
#[track_caller]
pub(crate) fn assert_protocol_error<T: std::fmt::Debug>(
    result: dsys::Result<T>,
    what: &str,
) -> String {
    match result {
        Err(Error::Protocol(reason)) => reason,
        other => panic!("{what}: expected a protocol error, got {other:?}"),
    }
}

/// Asserts that `result` is a frame the peer closed the connection inside of, and returns
/// its text.
pub(crate) fn assert_torn_frame<T: std::fmt::Debug>(result: dsys::Result<T>, what: &str) -> String {
    match result {
        Err(Error::ClosedInsideFrame(reason)) => reason,
        other => panic!("{what}: expected a frame closed inside, got {other:?}"),
    }
}

/// The code of `message` when it is a refusal (`Error` or `RegisterRefused`). Its code is
/// the one field that may be left out (for `Other`, `docs/protocol.md` 6.8), so the checks
/// of truncated bodies and trailing bytes make room for it.
pub(crate) fn refusal_code(message: &Message) -> Option<Refusal> {
    match message {
        Message::Error { code, .. } | Message::RegisterRefused { code, .. } => Some(*code),
        _ => None,
    }
}

/// A frame: the 4-byte big-endian length, then `body`.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The body of `message`'s frame (its encoding without the length prefix).
pub(crate) fn body_of(message: &Message) -> Vec<u8> {
    message.encode()[4..].to_vec()
}

/// Big-endian helpers for hand-built bodies.
pub(crate) fn u16be(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
pub(crate) fn u32be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}
pub(crate) fn u64be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Parses "00 0a ff" into bytes.
pub(crate) fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).expect("two hex digits"))
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes that are not text: NULs, bytes that never occur in UTF-8, a lone continuation
/// byte and a truncated sequence.
pub(crate) const BINARY: [u8; 8] = [0x00, 0xff, 0x80, 0x0a, 0x00, 0xc3, 0xfe, 0x00];

/// Every body kind at least once, with edge values: empty and non-ASCII text, numbers 0,
/// 1 and `u64::MAX`, an empty name, sizes 0 and `u64::MAX`, empty, binary, all-256-values
/// and full-size ([`FILE_CHUNK_LEN`]) chunks, and a `FileEnd` with number 0 (abandoned).
pub(crate) fn sample_bodies() -> Vec<Body> {
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
pub(crate) fn body_index(body: &Body) -> usize {
    match body {
        Body::Text { .. } => 0,
        Body::FileStart { .. } => 1,
        Body::FileChunk { .. } => 2,
        Body::FileEnd { .. } => 3,
    }
}
pub(crate) const BODY_KIND_COUNT: usize = 4;

/// Every variant at least once, with edge values: empty and non-ASCII strings, empty and
/// non-empty lists, both `alive` values, 0 and `u64::MAX`. Every sample body travels in a
/// `Publish`, a `Deliver` and a `Relay`.
pub(crate) fn sample_messages() -> Vec<Message> {
    let servers = vec![
        ServerInfo {
            addr: "127.0.0.1:8080".into(),
            epoch: 3,
            alive: true,
            leaving: false,
            clients: vec!["alice".into(), "bob".into()],
        },
        ServerInfo {
            addr: "127.0.0.1:8082".into(),
            epoch: 4,
            alive: true,
            leaving: true,
            clients: vec!["carol".into()],
        },
        ServerInfo {
            addr: "[::1]:8081".into(),
            epoch: u64::MAX,
            alive: false,
            leaving: true,
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
            code: Refusal::Other,
            reason: "name \"alice\" is taken".into(),
        },
        Message::Error {
            code: Refusal::NoLiveServer,
            reason: "no live server: start one".into(),
        },
        Message::Error {
            code: Refusal::DeclaredDead,
            reason: String::new(),
        },
        Message::Error {
            code: Refusal::NotListedYet,
            reason: "not yet".into(),
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
            keepalive_ms: 10_000,
            silence_ms: 2_500,
            watermarks: vec![(1, 2), (u64::MAX, u64::MAX)],
        },
        Message::Registered {
            session: 1,
            token: 2,
            keepalive_ms: 0,
            silence_ms: u32::MAX,
            watermarks: vec![],
        },
        Message::RegisterRefused {
            code: Refusal::ServerFull,
            reason: "server full".into(),
        },
        Message::RegisterRefused {
            code: Refusal::Other,
            reason: "name \"alice\" is already taken".into(),
        },
        Message::Ack { seq: 0 },
        Message::Ack { seq: 17 },
        Message::Keepalive,
        Message::Deregister,
        Message::Move {
            server: "127.0.0.1:8082".into(),
        },
        Message::Standby {
            server: "127.0.0.1:8083".into(),
            spread_ms: 3_000,
        },
        Message::Standby {
            server: String::new(),
            spread_ms: 0,
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
            departure: Departure::Staying,
        },
        Message::Heartbeat {
            addr: "127.0.0.1:8080".into(),
            epoch: 3,
            clients: Some(vec!["alice".into(), String::new(), "bob".into()]),
            cut_off: vec!["127.0.0.1:8081".into()],
            departure: Departure::Gone,
        },
        Message::Heartbeat {
            addr: "127.0.0.1:8082".into(),
            epoch: 4,
            clients: None,
            cut_off: Vec::new(),
            departure: Departure::Leaving,
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
pub(crate) fn variant_index(message: &Message) -> usize {
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
        Message::Claim { .. } => 23,
        Message::ClaimReply { .. } => 24,
        Message::Move { .. } => 25,
        Message::Standby { .. } => 26,
    }
}
pub(crate) const VARIANT_COUNT: usize = 27;

/// Type bytes used in hand-built bodies (the table in `docs/protocol.md`).
pub(crate) const T_HELLO: u8 = 0x01;
pub(crate) const T_REGISTER: u8 = 0x10;
pub(crate) const T_REGISTERED: u8 = 0x11;
pub(crate) const T_PUBLISH: u8 = 0x13;
pub(crate) const T_DELIVER: u8 = 0x14;
pub(crate) const T_RELAY: u8 = 0x22;
pub(crate) const T_HEARTBEAT: u8 = 0x30;
pub(crate) const T_HEARTBEAT_REPLY: u8 = 0x31;
pub(crate) const T_STATUS_REPORT: u8 = 0x51;
