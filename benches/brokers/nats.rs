//! NATS core as this bench speaks it: the text protocol's few operations a subscriber and
//! a publisher meet, parsed in place ([`Nats`], the [`Wire`] the driver runs).
//!
//! The server greets every connection with `INFO`. A subscriber answers with `CONNECT`,
//! `SUB bench 1` and `PING`; the `PONG` confirms the subscription, since the server
//! handles a connection's operations in order. Then it gets `MSG bench 1 128\r\n<payload>`
//! for every message. The publisher writes `PUB bench 128\r\n<payload>` without waiting,
//! and a `PING` after every [`Nats::MESSAGES_PER_ACK`] messages: the server answers
//! `PING`s in order, so each `PONG` acknowledges every `PUB` before it. Two `PING`s
//! outstanding make a window of 1,024 messages.
//!
//! The server also `PING`s its clients (every 2 minutes, by default), and closes a
//! connection that leaves two unanswered. A subscriber's reader answers at once, being the
//! only writer on its socket; the publisher's reader leaves the answer to the sending
//! thread ([`Acks::owe_reply`]), which writes it before its next `PING`.
//!
//! This file starts no thread: its functions run on the driver's threads. A connection
//! the server closes (a slow consumer, say) ends the reader, and what is missing is lost;
//! an `-ERR` the server sends first is printed. Bytes that are not this protocol are a
//! panic naming the connection ([`Input::malformed`]).

use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::ops::Range;

use crate::clients::Acks;
use crate::driver::{SUBJECT, Wire};
use crate::inbox::{Inbox, Input, connect, line_end, read_decimal};

/// NATS core, for the driver.
pub struct Nats;

/// One operation from the server.
enum Op {
    /// A message; its payload's place in the parsed bytes.
    Msg(Range<usize>),
    Ping,
    Pong,
    /// `INFO` and `+OK`: nothing to do.
    Info,
    /// `-ERR '...'`: the text's place.
    Err(Range<usize>),
}

impl Wire for Nats {
    const NAME: &'static str = "nats";
    const MESSAGES_PER_ACK: u64 = 512;

    fn subscribe(addr: &str, label: &str) -> Input {
        let mut input = connect(addr, label);
        greet(&mut input);
        let sub = format!("{}SUB {SUBJECT} 1\r\nPING\r\n", connect_line(label));
        send(&input, sub.as_bytes());
        await_pong(&mut input);
        input
    }

    fn read_deliveries(inbox: &mut Inbox) {
        loop {
            match parse_op(inbox.input.unread()) {
                Ok(Some((Op::Msg(payload), len))) => {
                    inbox.deliver(payload);
                    inbox.input.consume(len);
                }
                Ok(Some((Op::Ping, len))) => {
                    // This thread is the only writer on a subscriber's socket. A failed
                    // write means the connection is ending: the next read says so.
                    let mut stream = inbox.input.stream();
                    let _ = stream.write_all(b"PONG\r\n");
                    inbox.input.consume(len);
                }
                Ok(Some((op, len))) => {
                    report_error(&inbox.input, &op);
                    inbox.input.consume(len);
                }
                Ok(None) if inbox.refill() => {}
                Ok(None) => return,
                Err(why) => inbox.input.malformed(&why),
            }
        }
    }

    fn connect_publisher(addr: &str) -> Input {
        let label = "nats publisher";
        let mut input = connect(addr, label);
        greet(&mut input);
        send(
            &input,
            format!("{}PING\r\n", connect_line(label)).as_bytes(),
        );
        await_pong(&mut input);
        input
    }

    fn read_acks(input: &mut Input, acks: &Acks) {
        loop {
            match parse_op(input.unread()) {
                Ok(Some((op, len))) => {
                    match op {
                        Op::Pong => acks.ack(),
                        Op::Ping => acks.owe_reply(),
                        Op::Msg(_) => input.malformed("a message to the publisher"),
                        Op::Info | Op::Err(_) => report_error(input, &op),
                    }
                    input.consume(len);
                }
                Ok(None) if input.refill() => {}
                Ok(None) => return,
                Err(why) => input.malformed(&why),
            }
        }
    }

    fn write_publish(out: &mut BufWriter<TcpStream>, payload: &[u8]) -> io::Result<()> {
        write!(out, "PUB {SUBJECT} {}\r\n", payload.len())?;
        out.write_all(payload)?;
        out.write_all(b"\r\n")
    }

    fn write_ack_request(out: &mut BufWriter<TcpStream>, owed: u64) -> io::Result<()> {
        for _ in 0..owed {
            out.write_all(b"PONG\r\n")?;
        }
        out.write_all(b"PING\r\n")
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

/// Writes a handshake's bytes.
fn send(input: &Input, bytes: &[u8]) {
    let mut stream = input.stream();
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("{}: cannot write to the server: {e}", input.label()));
}

/// Reads the server's greeting (`INFO`).
fn greet(input: &mut Input) {
    if !matches!(input.next_frame("INFO", parse_op), Op::Info) {
        panic!("{}: the server did not greet with INFO", input.label());
    }
}

/// Reads until the `PONG` that answers the handshake's `PING`.
fn await_pong(input: &mut Input) {
    loop {
        match input.next_frame("PONG", parse_op) {
            Op::Pong => return,
            Op::Err(_) => input.malformed("the server refused the handshake"),
            _ => {}
        }
    }
}

/// Prints an `-ERR` the server sent (it closes the connection after most of them).
fn report_error(input: &Input, op: &Op) {
    if let Op::Err(text) = op {
        let text = String::from_utf8_lossy(&input.unread()[text.clone()]);
        eprintln!("{}: the server sent -ERR {text}", input.label());
    }
}

/// The operation at the front of `bytes` and its length; `None` while incomplete.
fn parse_op(bytes: &[u8]) -> Result<Option<(Op, usize)>, String> {
    let Some(end) = line_end(bytes, 0)? else {
        return Ok(None);
    };
    let line = &bytes[..end];
    let after = end + 2;
    let op = if let Some(args) = line.strip_prefix(b"MSG ") {
        // MSG <subject> <sid> [reply-to] <length>: the length is the last argument.
        let length = args.rsplit(|&b| b == b' ').next().unwrap_or_default();
        let stop = after + read_decimal(length).ok_or("a MSG without a length")?;
        return match bytes.get(stop..stop + 2) {
            None => Ok(None),
            Some(b"\r\n") => Ok(Some((Op::Msg(after..stop), stop + 2))),
            Some(_) => Err("a message longer than its length".into()),
        };
    } else if line == b"PING" {
        Op::Ping
    } else if line == b"PONG" {
        Op::Pong
    } else if line.starts_with(b"INFO ") || line == b"+OK" {
        Op::Info
    } else if line.starts_with(b"-ERR") {
        Op::Err(4..line.len())
    } else {
        return Err("not an operation of the NATS protocol".into());
    };
    Ok(Some((op, after)))
}
