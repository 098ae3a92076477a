//! dsys's client protocol for the lean generator (`docs/protocol.md`): the handshake and
//! registration through the library's own `dsys::net`, `Publish` frames encoded by hand
//! into the batch and `Deliver`s read by hand in place (the layouts of section 5, both
//! checked against the library's `Message::encode` and `DeliverRef` once per publisher),
//! and `Ack`s.
//! The limit relay (`relay.rs`) speaks the same protocol, so this
//! [`Wire`] drives both.
//!
//! A receive-only client sends a `Keepalive` every interval its server asked for (the
//! receiver thread writes it); a publisher's own frames show it is alive.

use std::time::Duration;

use dsys::net;
use dsys::protocol::{Body, DeliverRef, MAX_FRAME_LEN, Message, deliver_frame};

use crate::lean::check::PAYLOAD_LEN;
use crate::lean::receiver::Sink;
use crate::lean::{Opened, Reading, Role, Wire};

/// How long connecting and registering may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const T_ERROR: u8 = 0x02;
const T_PUBLISH: u8 = 0x13;
const T_DELIVER: u8 = 0x14;
const T_ACK: u8 = 0x15;
const T_KEEPALIVE: u8 = 0x16;
const T_STANDBY: u8 = 0x1A;
const BODY_TEXT: u8 = 0x01;

/// dsys (or the limit relay), for the generator.
pub struct Dsys;

impl Wire for Dsys {
    const NAME: &'static str = "dsys";
    const KEEPALIVE: Option<&'static [u8]> = Some(&[0, 0, 0, 1, T_KEEPALIVE]);
    const PING_REPLY: &'static [u8] = &[];

    fn open(addr: &str, label: &str, role: Role) -> Opened {
        let name = label.replace(' ', "-");
        let mut stream =
            net::connect_as(addr, dsys::protocol::Role::Client, HANDSHAKE_TIMEOUT, None)
                .unwrap_or_else(|e| panic!("{label}: cannot connect to {addr}: {e}"));
        let register = Message::Register { name, resume: None };
        let keepalive_ms = match net::request(&mut stream, &register) {
            Ok(Message::Registered { keepalive_ms, .. }) => keepalive_ms,
            Ok(other) => panic!("{label}: {addr} answered Register with {}", other.kind()),
            Err(e) => panic!("{label}: {addr} did not register it: {e}"),
        };
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(None))
            .unwrap_or_else(|e| panic!("{label}: cannot set up its socket: {e}"));
        let publishes = matches!(role, Role::Publisher { .. });
        if publishes {
            check_encoding();
        }
        Opened {
            write: publishes.then(|| stream.try_clone().expect("clone a socket")),
            reads: vec![Reading {
                stream,
                leftover: Vec::new(),
                carries_acks: publishes,
                own: None,
            }],
            keepalive: Some(Duration::from_millis(u64::from(keepalive_ms))),
        }
    }

    fn scan(bytes: &[u8], sink: &mut Sink) -> Result<usize, String> {
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + 4) {
            let len = u32::from_be_bytes(header.try_into().expect("4 bytes"));
            if len == 0 || len > MAX_FRAME_LEN {
                return Err(format!("a frame length of {len}"));
            }
            let Some(body) = bytes.get(at + 4..at + 4 + len as usize) else {
                break;
            };
            frame(body, sink)?;
            at += 4 + len as usize;
        }
        Ok(at)
    }

    fn encode_publish(out: &mut Vec<u8>, seq: u64, payload: &[u8; PAYLOAD_LEN]) {
        // type, seq, then the body: kind, number, text length, text.
        let body_len = 1 + 8 + 1 + 8 + 4 + PAYLOAD_LEN;
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.push(T_PUBLISH);
        out.extend_from_slice(&seq.to_be_bytes());
        out.push(BODY_TEXT);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(PAYLOAD_LEN as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    fn end_batch(_: &mut Vec<u8>, _owed: u64) -> bool {
        false // every Publish is acknowledged by its own Ack
    }
}

/// One frame body from a server.
#[inline]
fn frame(body: &[u8], sink: &mut Sink) -> Result<(), String> {
    match body[0] {
        T_DELIVER => {
            let (seq, text) = deliver(body).ok_or("a Deliver that is not a whole text")?;
            sink.deliver(text, Some(seq));
        }
        T_ACK => {
            let seq = body.get(1..9).ok_or("a short Ack")?;
            sink.acked_upto(u64::from_be_bytes(seq.try_into().expect("8 bytes")));
        }
        // A generator's client never fails over, so where it would go does not matter.
        T_KEEPALIVE | T_STANDBY => {}
        T_ERROR => {
            let reason = Message::decode(body).map_or_else(|e| e.to_string(), |m| format!("{m:?}"));
            return Err(format!("the server sent an error: {reason}"));
        }
        other => return Err(format!("an unexpected frame of type {other:#04x}")),
    }
    Ok(())
}

/// A `Deliver` of a text: its `seq` and its text, or `None` when it is not one, whole.
///
/// Read by hand rather than with `DeliverRef::decode`, which checks the sender's name for
/// UTF-8: that check and the reader's bounds checks were a quarter of a receiver's own
/// time at 20 million deliveries a second, and the generator never looks at the name.
#[inline]
fn deliver(body: &[u8]) -> Option<(u64, &[u8])> {
    let u64_at = |at: usize| Some(u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?));
    let name_len = usize::from(u16::from_be_bytes(body.get(1..3)?.try_into().ok()?));
    let at = 3 + name_len + 8; // past the name and the session
    let seq = u64_at(at)?;
    if *body.get(at + 8)? != BODY_TEXT {
        return None;
    }
    let text_at = at + 8 + 1 + 8 + 4; // past the seq, the kind, the number, the length
    let text_len = u32::from_be_bytes(body.get(text_at - 4..text_at)?.try_into().ok()?);
    let text = body.get(text_at..)?;
    (text.len() == text_len as usize).then_some((seq, text))
}

/// The hand encoding and reading must be the library's, byte for byte.
fn check_encoding() {
    let payload = [b'x'; PAYLOAD_LEN];
    let mut mine = Vec::new();
    Dsys::encode_publish(&mut mine, 7, &payload);
    let text = String::from_utf8(payload.to_vec()).expect("ASCII");
    let theirs = Message::Publish {
        seq: 7,
        body: Body::Text { number: 7, text },
    }
    .encode();
    assert_eq!(
        mine, theirs,
        "the lean Publish encoding differs from dsys's"
    );
    let body = Body::Text {
        number: 7,
        text: String::from_utf8(payload.to_vec()).expect("ASCII"),
    };
    let frame = deliver_frame("name", 9, 7, &body);
    let read = DeliverRef::decode(&frame[4..]).expect("a Deliver");
    assert_eq!(
        deliver(&frame[4..]),
        read.and_then(|d| Some((d.seq, d.text?))),
        "the lean Deliver reading differs from dsys's"
    );
}
