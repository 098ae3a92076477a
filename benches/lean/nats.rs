//! NATS core for the lean generator: the server greets with `INFO`; a client answers with
//! `CONNECT` (no `+OK` after each operation, none of its own messages back), a subscriber
//! or chat client also `SUB bench 1`, and `PING`, whose `PONG` confirms it all. Then a
//! subscriber gets `MSG bench 1 128\r\n<payload>\r\n` per message. A publisher pipelines
//! `PUB bench 128\r\n<payload>\r\n` and ends each batch with a `PING`: the server answers
//! in order, so each `PONG` acknowledges every message before its `PING`
//! (`Credits::request_end` knows which).
//!
//! The server also `PING`s its clients now and then; the receiver answers for a
//! subscriber, and counts it for a publisher, whose thread writes the `PONG` with its next
//! batch (one writer per socket).

use std::io::Write;

use crate::lean::check::PAYLOAD_LEN;
use crate::lean::receiver::Sink;
use crate::lean::text::{connect, done, line_end, read_decimal, read_until};
use crate::lean::{Opened, Reading, Role, Wire};

/// How every message on `bench` to subscription 1 begins, with a payload of
/// [`PAYLOAD_LEN`] bytes: recognised at once, without parsing the line.
const MSG_HEAD: &[u8] = b"MSG bench 1 128\r\n";
/// A `PUB` up to its payload.
const PUB_HEAD: &[u8] = b"PUB bench 128\r\n";

/// NATS core, for the generator.
pub struct Nats;

impl Wire for Nats {
    const NAME: &'static str = "nats";
    const KEEPALIVE: Option<&'static [u8]> = None;
    const PING_REPLY: &'static [u8] = b"PONG\r\n";

    fn open(addr: &str, label: &str, role: Role) -> Opened {
        let mut stream = connect(addr, label);
        let mut leftover = Vec::new();
        read_until(
            &mut stream,
            &mut leftover,
            label,
            "INFO",
            |b| match line_end(b, 0)? {
                Some(end) if b.starts_with(b"INFO ") => Ok(Some(((), end + 2))),
                Some(_) => Err("the server did not greet with INFO".into()),
                None => Ok(None),
            },
        );
        let (subscribes, publishes) = match role {
            Role::Subscriber => (true, false),
            Role::Publisher { hears_others, .. } => (hears_others, true),
        };
        let mut hello = connect_line(label);
        if subscribes {
            hello += "SUB bench 1\r\n";
        }
        hello += "PING\r\n";
        stream
            .write_all(hello.as_bytes())
            .unwrap_or_else(|e| panic!("{label}: cannot write to the server: {e}"));
        read_until(
            &mut stream,
            &mut leftover,
            label,
            "PONG",
            |b| match line_end(b, 0)? {
                Some(end) if &b[..end] == b"PONG" => Ok(Some(((), end + 2))),
                Some(end) if b.starts_with(b"-ERR") => {
                    Err(format!("refused: {}", String::from_utf8_lossy(&b[..end])))
                }
                Some(_) => Err("expected PONG".into()),
                None => Ok(None),
            },
        );
        done(&stream, label);
        Opened {
            write: publishes.then(|| stream.try_clone().expect("clone a socket")),
            reads: vec![Reading {
                stream,
                leftover,
                carries_acks: publishes,
                own: None,
            }],
            keepalive: None,
        }
    }

    fn scan(bytes: &[u8], sink: &mut Sink) -> Result<usize, String> {
        let mut at = 0;
        while at < bytes.len() {
            let Some(len) = op(&bytes[at..], sink)? else {
                break;
            };
            at += len;
        }
        Ok(at)
    }

    fn encode_publish(out: &mut Vec<u8>, _seq: u64, payload: &[u8; PAYLOAD_LEN]) {
        const { assert!(PAYLOAD_LEN == 128, "PUB_HEAD spells the length") };
        out.extend_from_slice(PUB_HEAD);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    fn end_batch(out: &mut Vec<u8>, owed: u64) -> bool {
        for _ in 0..owed {
            out.extend_from_slice(b"PONG\r\n");
        }
        out.extend_from_slice(b"PING\r\n");
        true
    }
}

/// The operation at the front of `bytes`, reported to `sink`; its length, `None` while it
/// is incomplete.
#[inline]
fn op(bytes: &[u8], sink: &mut Sink) -> Result<Option<usize>, String> {
    if let Some(rest) = bytes.strip_prefix(MSG_HEAD) {
        return payload(rest, PAYLOAD_LEN, sink).map(|o| o.map(|len| MSG_HEAD.len() + len));
    }
    let Some(end) = line_end(bytes, 0)? else {
        return Ok(None);
    };
    let line = &bytes[..end];
    if let Some(args) = line.strip_prefix(b"MSG ") {
        // MSG <subject> <sid> [reply-to] <length>: the length is the last argument.
        let length = args.rsplit(|&b| b == b' ').next().unwrap_or_default();
        let length = read_decimal(length).ok_or("a MSG without a length")?;
        return payload(&bytes[end + 2..], length, sink).map(|o| o.map(|len| end + 2 + len));
    }
    match line {
        b"PING" => sink.ping(),
        b"PONG" => sink.pong(),
        b"+OK" => {}
        _ if line.starts_with(b"INFO ") => {}
        _ if line.starts_with(b"-ERR") => {
            return Err(format!("the server sent {}", String::from_utf8_lossy(line)));
        }
        _ => return Err("not an operation of the NATS protocol".into()),
    }
    Ok(Some(end + 2))
}

/// A message's payload of `len` bytes and its `\r\n` at the front of `bytes`, delivered;
/// their length, `None` while incomplete.
#[inline]
fn payload(bytes: &[u8], len: usize, sink: &mut Sink) -> Result<Option<usize>, String> {
    match bytes.get(len..len + 2) {
        None => Ok(None),
        Some(b"\r\n") => {
            sink.deliver(&bytes[..len], None);
            Ok(Some(len + 2))
        }
        Some(_) => Err("a message longer than its length".into()),
    }
}

/// The `CONNECT` line: no `+OK` after every operation (`verbose`), and no copy of a
/// client's own messages (`echo`).
fn connect_line(name: &str) -> String {
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"{name}\",\
         \"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}}\r\n"
    )
}
