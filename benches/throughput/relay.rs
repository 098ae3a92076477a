//! The limit relay: the least a thread-per-connection broadcast server can do, as the
//! baseline `dsys` is measured against. It speaks just enough of the client protocol for
//! `dsys bench --connect` to drive it (challenge, hello, register, publish, ack), and no
//! more: no history, no peers, no sessions, no coordinator, nothing stored, nothing resumed.
//!
//! Each connection gets a thread that reads and a thread that writes, fed by a bounded
//! channel (a full one makes the publisher wait: the same backpressure as dsys's outboxes).
//! A publish is encoded once and the same bytes go to every other connection; the
//! publisher gets an `Ack` at once. What dsys does beyond this (acknowledging only what
//! every live server stored, keeping a history for failover, relaying between servers) is
//! the price of its guarantees, and the ratio to this relay is that price.

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};
use dsys::protocol::{Message, read_message};

/// Frames queued for one connection's writer; a full queue makes the sender wait.
const OUTBOX: usize = 4096;
/// Bytes buffered by each reader and writer.
const IO_BUFFER: usize = 64 * 1024;

type Outbox = Sender<Arc<Vec<u8>>>;

/// A relay listening on a free loopback port. Dropping it closes every connection; its
/// threads end with them.
pub struct Relay {
    pub addr: String,
    connections: Arc<Mutex<Vec<(u64, Outbox, TcpStream)>>>,
    listener: TcpListener,
}

impl Relay {
    /// Starts the relay's accept thread.
    pub fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepting = listener.try_clone().expect("clone the listener");
        let shared = connections.clone();
        thread::spawn(move || {
            let ids = AtomicU64::new(1);
            for stream in accepting.incoming() {
                let Ok(stream) = stream else { break };
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                thread::spawn(move || {
                    let _ = serve(stream, id, &shared);
                });
            }
        });
        Relay {
            addr,
            connections,
            listener,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for (_, _, stream) in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the accept thread, which then fails to accept on a closed socket.
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// One connection: the handshake, then every `Publish` to every other connection.
fn serve(
    stream: TcpStream,
    id: u64,
    connections: &Mutex<Vec<(u64, Outbox, TcpStream)>>,
) -> dsys::Result<()> {
    stream.set_nodelay(true)?;
    let mut input = BufReader::with_capacity(IO_BUFFER, stream.try_clone()?);
    let mut out = stream.try_clone()?;
    out.write_all(&Message::Challenge { nonce: [0; 16] }.encode())?;
    let Some(Message::Hello { .. }) = read_message(&mut input)? else {
        return Ok(());
    };
    let Some(Message::Register { name, .. }) = read_message(&mut input)? else {
        return Ok(());
    };
    let registered = Message::Registered {
        session: id,
        token: 0,
        keepalive_ms: 10_000,
        watermarks: Vec::new(),
    };
    out.write_all(&registered.encode())?;
    let (outbox, queued) = bounded(OUTBOX);
    thread::spawn(move || write_all(out, &queued));
    connections
        .lock()
        .unwrap()
        .push((id, outbox.clone(), stream.try_clone()?));
    while let Some(message) = read_message(&mut input)? {
        if let Message::Publish { seq, body } = message {
            let frame = Arc::new(dsys::protocol::deliver_frame(&name, id, seq, &body));
            // The list is copied out so that no lock is held while a send may wait.
            let others: Vec<Outbox> = connections
                .lock()
                .unwrap()
                .iter()
                .filter(|(other, _, _)| *other != id)
                .map(|(_, outbox, _)| outbox.clone())
                .collect();
            for other in others {
                let _ = other.send(frame.clone());
            }
            let _ = outbox.send(Arc::new(Message::Ack { seq }.encode()));
        }
    }
    connections
        .lock()
        .unwrap()
        .retain(|(other, _, _)| *other != id);
    Ok(())
}

/// A connection's writer: writes what is queued, flushing when the queue runs dry.
fn write_all(stream: TcpStream, queued: &Receiver<Arc<Vec<u8>>>) {
    let mut out = BufWriter::with_capacity(IO_BUFFER, stream);
    while let Ok(frame) = queued.recv() {
        if out.write_all(&frame).is_err() {
            return;
        }
        if queued.is_empty() && out.flush().is_err() {
            return;
        }
    }
}
