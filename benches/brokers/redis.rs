//! Redis pub/sub as this bench speaks it: the few shapes of RESP2 a subscriber and a
//! pipelining publisher meet, parsed in place ([`Redis`], the [`Wire`] the driver runs).
//!
//! A subscriber sends `SUBSCRIBE bench` and waits for its confirmation; from then on
//! everything Redis sends it is a push of three elements, `message`, the channel and the
//! payload. The publisher writes `PUBLISH bench <payload>` without waiting, and Redis
//! answers each with an integer (how many subscribers it reached): that reply is the
//! acknowledgement that gives a credit back, so a window of 1,024 credits is 1,024
//! replies outstanding. Redis never asks a client anything, so nothing is owed.
//!
//! This file starts no thread: its functions run on the driver's threads. A connection
//! Redis closes ends the reader (what is missing is lost); bytes that are not RESP of
//! these shapes are a panic naming the connection ([`Input::malformed`]).

use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::ops::Range;

use crate::clients::Acks;
use crate::driver::{SUBJECT, Wire};
use crate::inbox::{Inbox, Input, connect, line_end, read_decimal};

/// Redis pub/sub, for the driver.
pub struct Redis;

/// What a subscriber's connection carries.
enum Push {
    /// A published message; its payload's place in the parsed bytes.
    Message(Range<usize>),
    /// The confirmation of `SUBSCRIBE`.
    Subscribed,
}

impl Wire for Redis {
    const NAME: &'static str = "redis";
    const MESSAGES_PER_ACK: u64 = 1;

    fn subscribe(addr: &str, label: &str) -> Input {
        let mut input = connect(addr, label);
        let command = command(&[b"SUBSCRIBE", SUBJECT.as_bytes()]);
        let mut stream = input.stream();
        stream
            .write_all(&command)
            .unwrap_or_else(|e| panic!("{label}: cannot send SUBSCRIBE: {e}"));
        let head = message_head();
        match input.next_frame("the SUBSCRIBE confirmation", |b| parse_push(b, &head)) {
            Push::Subscribed => input,
            Push::Message(_) => input.malformed("a message before the SUBSCRIBE confirmation"),
        }
    }

    fn read_deliveries(inbox: &mut Inbox) {
        let head = message_head();
        loop {
            match parse_push(inbox.input.unread(), &head) {
                Ok(Some((Push::Message(payload), len))) => {
                    inbox.deliver(payload);
                    inbox.input.consume(len);
                }
                Ok(Some((Push::Subscribed, len))) => inbox.input.consume(len),
                Ok(None) if inbox.refill() => {}
                Ok(None) => return,
                Err(why) => inbox.input.malformed(&why),
            }
        }
    }

    fn connect_publisher(addr: &str) -> Input {
        // A PING answered proves the connection is served before the clock matters.
        let mut input = connect(addr, "redis publisher");
        let mut stream = input.stream();
        stream
            .write_all(&command(&[b"PING"]))
            .unwrap_or_else(|e| panic!("redis publisher: cannot send PING: {e}"));
        input.next_frame("PONG", |bytes| match line_end(bytes, 0)? {
            None => Ok(None),
            Some(end) if bytes[..end] == *b"+PONG" => Ok(Some(((), end + 2))),
            Some(_) => Err("expected +PONG".into()),
        });
        input
    }

    fn read_acks(input: &mut Input, acks: &Acks) {
        loop {
            match line_end(input.unread(), 0) {
                Ok(Some(end)) => {
                    let reply = &input.unread()[..end];
                    if reply.first() != Some(&b':') || read_decimal(&reply[1..]).is_none() {
                        input.malformed("expected the integer reply to PUBLISH");
                    }
                    acks.ack();
                    input.consume(end + 2);
                }
                Ok(None) if input.refill() => {}
                Ok(None) => return,
                Err(why) => input.malformed(&why),
            }
        }
    }

    fn write_publish(out: &mut BufWriter<TcpStream>, payload: &[u8]) -> io::Result<()> {
        write!(
            out,
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{SUBJECT}\r\n${}\r\n",
            SUBJECT.len(),
            payload.len()
        )?;
        out.write_all(payload)?;
        out.write_all(b"\r\n")
    }

    fn write_ack_request(_: &mut BufWriter<TcpStream>, _owed: u64) -> io::Result<()> {
        Ok(()) // every PUBLISH is answered: nothing more to ask for
    }
}

/// A command as a RESP array of bulk strings.
fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        bytes.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// The bulk string at `at` (`$<len>\r\n<bytes>\r\n`): its bytes' place and where the next
/// element starts; `None` while incomplete.
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

/// How every message push on [`SUBJECT`] begins, up to its payload: the same bytes each
/// time.
fn message_head() -> Vec<u8> {
    format!("*3\r\n$7\r\nmessage\r\n${}\r\n{SUBJECT}\r\n", SUBJECT.len()).into_bytes()
}

/// The push at the front of `bytes` and its length; `None` while incomplete.
///
/// A message push is recognised by comparing its first bytes with `message_head` at once:
/// parsing the two bulk strings they hold was the largest part of a subscriber's own work.
/// Anything else is parsed element by element.
fn parse_push(bytes: &[u8], message_head: &[u8]) -> Result<Option<(Push, usize)>, String> {
    if bytes.starts_with(message_head) {
        let message = bulk(bytes, message_head.len())?;
        return Ok(message.map(|(payload, end)| (Push::Message(payload), end)));
    }
    let Some(header_end) = line_end(bytes, 0)? else {
        return Ok(None);
    };
    if &bytes[..header_end] != b"*3" {
        return Err("expected a push of three elements".into());
    }
    let Some((kind, at)) = bulk(bytes, header_end + 2)? else {
        return Ok(None);
    };
    let Some((_channel, at)) = bulk(bytes, at)? else {
        return Ok(None);
    };
    match &bytes[kind] {
        b"message" => Ok(bulk(bytes, at)?.map(|(payload, end)| (Push::Message(payload), end))),
        b"subscribe" => match line_end(bytes, at)? {
            None => Ok(None),
            Some(end) if bytes[at] == b':' => Ok(Some((Push::Subscribed, end + 2))),
            Some(_) => Err("expected the count of subscriptions".into()),
        },
        _ => Err("a push that is neither message nor subscribe".into()),
    }
}
