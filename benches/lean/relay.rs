//! The limit relay: the least a thread-per-connection broadcast server can do, as the
//! baseline dsys is measured against. It speaks just enough of dsys's client protocol for
//! the lean generator to drive it (challenge, hello, register, publish, ack), and no more:
//! no history, no peers, no sessions, no coordinator, nothing stored, nothing resumed.
//!
//! A thread per connection reads a buffer of `Publish` frames at a time, turns them into
//! `Deliver` frames in one batch (the text's bytes copied as they came), writes that batch
//! to every other connection with one `write` each, under that connection's lock, then
//! acknowledges the last `seq` it read. A slow receiver makes the publisher's thread wait
//! in its write: backpressure, as dsys's bounded outboxes give. What dsys does beyond this
//! (acknowledging only what every live server stored, keeping a history for failover,
//! relaying between servers, a writer hand-over per client) is the price of its
//! guarantees, and the ratio to this relay is that price.
//!
//! It runs in a process of its own (the bench binary started again with [`RELAY_FLAG`]),
//! so that its CPU time is measured apart from the generator's, as a server's is.
//! [`LimitRelay`] is the guard that starts it and kills it when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use dsys::protocol::{Message, read_message};

use crate::common::{Proc, TIMEOUT};

/// The argument that makes a bench binary run the relay instead of the bench.
pub const RELAY_FLAG: &str = "--limit-relay";
/// Bytes read at a time: the batch every other connection gets in one write, as a dsys
/// server's read-ahead for a publisher (`PUBLISHER_READ_AHEAD`) is.
const READ_BUFFER: usize = 64 * 1024;
const T_PUBLISH: u8 = 0x13;
const T_DELIVER: u8 = 0x14;
const T_DEREGISTER: u8 = 0x17;

/// A relay process on a free loopback port, killed when dropped.
pub struct LimitRelay {
    pub addr: String,
    proc: Proc,
}

impl LimitRelay {
    /// Starts this bench binary again as a relay and waits until it listens.
    pub fn start() -> LimitRelay {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut cmd = Command::new(exe);
        cmd.arg(RELAY_FLAG)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let proc = Proc::spawn("limit relay", cmd);
        let line = proc.wait_for_stderr("listening on ", TIMEOUT);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the relay says where it listens")
            .to_string();
        LimitRelay { addr, proc }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// The relay process's body: accepts connections on a free loopback port until killed.
pub fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let addr = listener.local_addr().expect("the relay's address");
    eprintln!("limit relay listening on {addr}");
    let connections: Arc<Mutex<Vec<Peer>>> = Arc::default();
    let ids = AtomicU64::new(1);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let connections = connections.clone();
        thread::spawn(move || {
            let _ = serve_one(stream, id, &connections);
            connections.lock().unwrap().retain(|peer| peer.id != id);
        });
    }
}

/// Another connection, as a publisher's thread writes to it.
#[derive(Clone)]
struct Peer {
    id: u64,
    out: Arc<Mutex<TcpStream>>,
}

/// One connection: the handshake, then every batch of `Publish`es to every other one.
fn serve_one(mut stream: TcpStream, id: u64, connections: &Mutex<Vec<Peer>>) -> dsys::Result<()> {
    stream.set_nodelay(true)?;
    stream.write_all(&Message::Challenge { nonce: [0; 16] }.encode())?;
    let Some(Message::Hello { .. }) = read_message(&mut stream)? else {
        return Ok(());
    };
    let Some(Message::Register { name, .. }) = read_message(&mut stream)? else {
        return Ok(());
    };
    let registered = Message::Registered {
        session: id,
        token: 0,
        keepalive_ms: 10_000,
        silence_ms: 2_500,
        watermarks: Vec::new(),
    };
    stream.write_all(&registered.encode())?;
    let me = Peer {
        id,
        out: Arc::new(Mutex::new(stream.try_clone()?)),
    };
    connections.lock().unwrap().push(me.clone());
    let header = deliver_header(&name, id);
    let mut input = vec![0u8; READ_BUFFER];
    let (mut kept, mut batch) = (0, Vec::with_capacity(2 * READ_BUFFER));
    loop {
        let n = stream.read(&mut input[kept..])?;
        if n == 0 {
            return Ok(());
        }
        let (used, last_seq, goodbye) = deliveries(&input[..kept + n], &header, &mut batch)?;
        if !batch.is_empty() {
            // The list is copied out so that no lock on it is held while a write waits.
            let others: Vec<Peer> = connections.lock().unwrap().clone();
            for other in others.iter().filter(|p| p.id != id) {
                let _ = other.out.lock().unwrap().write_all(&batch);
            }
            batch.clear();
        }
        if let Some(seq) = last_seq {
            me.out
                .lock()
                .unwrap()
                .write_all(&Message::Ack { seq }.encode())?;
        }
        if goodbye {
            return Ok(());
        }
        input.copy_within(used..kept + n, 0);
        kept = kept + n - used;
    }
}

/// A `Deliver`'s bytes from its type to its `seq`, which depend only on the sender.
fn deliver_header(name: &str, session: u64) -> Vec<u8> {
    let mut header = vec![T_DELIVER];
    header.extend_from_slice(&(name.len() as u16).to_be_bytes());
    header.extend_from_slice(name.as_bytes());
    header.extend_from_slice(&session.to_be_bytes());
    header
}

/// Appends a `Deliver` for every whole `Publish` at the front of `bytes` to `batch`:
/// the sender's header, the `seq`, then the body's bytes as they came (a `Deliver` carries
/// the same `Body`). Returns the bytes used, the last `seq`, and whether the client said
/// goodbye. Keepalives are taken in and need no answer here.
fn deliveries(
    bytes: &[u8],
    header: &[u8],
    batch: &mut Vec<u8>,
) -> dsys::Result<(usize, Option<u64>, bool)> {
    let (mut at, mut last_seq) = (0, None);
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > READ_BUFFER - 4 {
            return Err(dsys::Error::Protocol(format!("a frame of {len} bytes")));
        }
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        at += 4 + len;
        match body[0] {
            T_PUBLISH if len > 9 => {
                let seq = &body[1..9];
                batch.extend_from_slice(&((header.len() + len - 1) as u32).to_be_bytes());
                batch.extend_from_slice(header);
                batch.extend_from_slice(seq);
                batch.extend_from_slice(&body[9..]);
                last_seq = Some(u64::from_be_bytes(seq.try_into().expect("8 bytes")));
            }
            T_DEREGISTER => return Ok((at, last_seq, true)),
            _ => {}
        }
    }
    Ok((at, last_seq, false))
}
