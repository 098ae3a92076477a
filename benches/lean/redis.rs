//! Redis pub/sub (RESP2) for the lean generator: a subscriber sends `SUBSCRIBE bench` and
//! waits for its confirmation; then every push it gets is `message`, the channel and the
//! payload. A publisher pipelines `PUBLISH bench <payload>` and Redis answers each with an
//! integer, in order: that reply is the acknowledgement that gives a credit back.
//!
//! A subscribed connection can only subscribe, so a chat client (S2w) has two: one that
//! publishes and reads the integers, one subscribed, which also gets the client's own
//! messages back (they are not counted; Redis does that 1/19th more work than the others).
//! For such a client, a message is acknowledged when its own subscription has it back,
//! not by the integer reply: Redis replies once the message is in the subscribers' output
//! buffers, so twenty windows of replies do not bound those buffers, and with its default
//! limits Redis closed every subscriber at 32 MiB of output within a second of S2w. Its
//! subscribers get each message in the same order, so the publisher's own subscription
//! having it back bounds what any of them has waiting to about a window per publisher.
//! The scanner recognises a message push by comparing its first bytes with the one
//! possible head at once, and reads the payload's length from the bytes after it.

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;

use crate::lean::check::PAYLOAD_LEN;
use crate::lean::receiver::Sink;
use crate::lean::text::{connect, done, line_end, read_decimal, read_until};
use crate::lean::{Opened, Reading, Role, Wire};

/// The channel every message is published on.
const CHANNEL: &str = "bench";
/// How every message push on [`CHANNEL`] begins, up to its payload's length.
const MESSAGE_HEAD: &[u8] = b"*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n";
/// A `PUBLISH` up to its payload (whose length is [`PAYLOAD_LEN`]).
const PUBLISH_HEAD: &[u8] = b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$128\r\n";

/// Redis pub/sub, for the generator.
pub struct Redis;

impl Wire for Redis {
    const NAME: &'static str = "redis";
    const KEEPALIVE: Option<&'static [u8]> = None;
    const PING_REPLY: &'static [u8] = &[];

    fn open(addr: &str, label: &str, role: Role) -> Opened {
        match role {
            Role::Subscriber => Opened {
                reads: vec![subscribe(addr, label, None)],
                write: None,
                keepalive: None,
            },
            Role::Publisher {
                index,
                hears_others,
            } => {
                let (stream, leftover) = connect_publisher(addr, label);
                let write = Some(stream.try_clone().expect("clone a socket"));
                let mut reads = vec![Reading {
                    stream,
                    leftover,
                    carries_acks: !hears_others,
                    own: None,
                }];
                if hears_others {
                    let mut own = subscribe(addr, label, Some(index));
                    own.carries_acks = true;
                    reads.push(own);
                }
                Opened {
                    reads,
                    write,
                    keepalive: None,
                }
            }
        }
    }

    fn scan(bytes: &[u8], sink: &mut Sink) -> Result<usize, String> {
        let mut at = 0;
        while at < bytes.len() {
            let Some(len) = item(&bytes[at..], sink)? else {
                break;
            };
            at += len;
        }
        Ok(at)
    }

    fn encode_publish(out: &mut Vec<u8>, _seq: u64, payload: &[u8; PAYLOAD_LEN]) {
        const { assert!(PAYLOAD_LEN == 128, "PUBLISH_HEAD spells the length") };
        out.extend_from_slice(PUBLISH_HEAD);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    fn end_batch(_: &mut Vec<u8>, _owed: u64) -> bool {
        false // every PUBLISH is answered: nothing more to ask for
    }
}

/// The item at the front of `bytes`, reported to `sink`; its length, `None` while it is
/// incomplete.
#[inline]
fn item(bytes: &[u8], sink: &mut Sink) -> Result<Option<usize>, String> {
    if let Some(rest) = bytes.strip_prefix(MESSAGE_HEAD) {
        return Ok(bulk(rest, 0)?.map(|(payload, end)| {
            sink.deliver(&rest[payload], None);
            MESSAGE_HEAD.len() + end
        }));
    }
    if MESSAGE_HEAD.starts_with(bytes) {
        return Ok(None); // a message push cut inside its head
    }
    let Some(end) = line_end(bytes, 0)? else {
        return Ok(None);
    };
    if bytes[0] == b':' {
        sink.acked_one();
        return Ok(Some(end + 2));
    }
    // The confirmation of the subscription, if it was still in the handshake's bytes.
    match subscribed(bytes)? {
        Some(len) => Ok(Some(len)),
        None => Ok(None),
    }
}

/// Connects a subscriber and waits for the confirmation of `SUBSCRIBE`.
fn subscribe(addr: &str, label: &str, own: Option<u32>) -> Reading {
    let mut stream = connect(addr, label);
    stream
        .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n")
        .unwrap_or_else(|e| panic!("{label}: cannot send SUBSCRIBE: {e}"));
    let mut leftover = Vec::new();
    read_until(
        &mut stream,
        &mut leftover,
        label,
        "the SUBSCRIBE confirmation",
        |b| Ok(subscribed(b)?.map(|len| ((), len))),
    );
    done(&stream, label);
    Reading {
        stream,
        leftover,
        carries_acks: false,
        own,
    }
}

/// Connects a publisher; a `PING` answered proves it is served.
fn connect_publisher(addr: &str, label: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = connect(addr, label);
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .unwrap_or_else(|e| panic!("{label}: cannot send PING: {e}"));
    let mut leftover = Vec::new();
    read_until(
        &mut stream,
        &mut leftover,
        label,
        "+PONG",
        |bytes| match line_end(bytes, 0)? {
            None => Ok(None),
            Some(end) if bytes[..end] == *b"+PONG" => Ok(Some(((), end + 2))),
            Some(_) => Err("expected +PONG".into()),
        },
    );
    done(&stream, label);
    (stream, leftover)
}

/// The length of the `subscribe` confirmation at the front of `bytes`; `None` while
/// incomplete.
fn subscribed(bytes: &[u8]) -> Result<Option<usize>, String> {
    const HEAD: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:";
    if !bytes.starts_with(HEAD) {
        return if HEAD.starts_with(bytes) {
            Ok(None) // the confirmation so far
        } else {
            Err(format!("expected a push on {CHANNEL}"))
        };
    }
    Ok(line_end(bytes, HEAD.len())?.map(|end| end + 2))
}

/// The bulk string at `at` (`$<len>\r\n<bytes>\r\n`): its bytes' place and where the next
/// item starts; `None` while incomplete.
fn bulk(bytes: &[u8], at: usize) -> Result<Option<(Range<usize>, usize)>, String> {
    let Some(header_end) = line_end(bytes, at)? else {
        return Ok(None);
    };
    if bytes[at] != b'$' {
        return Err("expected a bulk string".into());
    }
    let len = read_decimal(&bytes[at + 1..header_end]).ok_or("a bulk string's bad length")?;
    let start = header_end + 2;
    let end = start + len;
    match bytes.get(end..end + 2) {
        None => Ok(None),
        Some(b"\r\n") => Ok(Some((start..end, end + 2))),
        Some(_) => Err("a bulk string longer than its length".into()),
    }
}
