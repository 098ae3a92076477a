//! From a writer thread per client to writing through with a hand-over: who writes to a
//! client's socket in a dsys server. Read it after `broadcast.rs`.
//!
//! Run it with `cargo run --example write_through`. A publisher sends messages 1 to 8 (4
//! bytes each, in two bursts) to bob, carol and dave, whose sockets are simulated by bounded
//! channels of bytes. bob and carol read at once; dave reads 4 bytes every 30 ms, and his
//! socket's buffer holds 10. v1 gives every client a writer thread for good, as
//! `broadcast.rs` did. v2 is what dsys does: the publisher writes each message itself, with a
//! send that never waits, and only when a socket is full hands the *pen* (the right to write
//! to it), with the bytes not sent, to a writer thread, which may wait. The writer puts the
//! pen down once it has sent everything and nothing is queued, lingers to be handed it
//! again, then ends.
//!
//! What to look for in its output:
//! - in both versions every client got every message, once and in order;
//! - v1 started a writer per client and handed them 24 messages (a wake-up each, for a
//!   writer that waits); v2 started one, for dave, when message 3 did not fit: its last 2
//!   bytes, `"3\n"`, went with the pen and the writer sent them first, so it arrived whole;
//! - messages 5 and 6 were written by the publisher again, and message 7 found dave's socket
//!   full and went to the writer that lingered: no thread started.
//!
//! The grown-up version is the server's write path, `src/roles/server/write/` (its module
//! doc tells the whole of it): `Pens::write_now` in `through.rs` (writes with `send` and
//! `MSG_DONTWAIT`: `src/net/send_now.rs`), `Pool::hand_over` in `pool.rs` (to the lingering
//! writer, or to the `pool` thread, which starts one within a thread budget) and the pen,
//! a `Pen` value that flushes before it is put down, in `pen.rs`. A real socket buffer holds hundreds
//! of kilobytes, so a client that keeps up never costs a thread.
//! `docs/thread-per-connection.md` ("Writing to a client") tells the whole story.

use std::mem;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

/// Each client: its name, its socket's buffer in bytes, its pause before each 4 bytes read.
const CLIENTS: [(&str, usize, u64); 3] = [("bob", 64, 0), ("carol", 64, 0), ("dave", 10, 30)];
const BURSTS: [[u32; 4]; 2] = [[1, 2, 3, 4], [5, 6, 7, 8]];
/// How long a writer that put the pen down waits to be handed it again, before it ends.
const LINGER: Duration = Duration::from_millis(200);

fn main() {
    writer_per_client();
    write_through();
}

/// v1: every client has a writer thread for as long as it is connected, and every message
/// is handed to each of them.
fn writer_per_client() {
    println!("v1: a writer thread per client, for good");
    let clients = connect();
    let (outboxes, writers): (Vec<_>, Vec<_>) = (clients.iter())
        .map(|client| {
            let (outbox_tx, outbox_rx) = bounded::<Vec<u8>>(8); // big enough: see broadcast.rs
            let socket = client.socket.clone();
            let send_all = move || outbox_rx.iter().for_each(|bytes| send(&socket, &bytes));
            (outbox_tx, spawn(format!("send-{}", client.name), send_all))
        })
        .unzip();
    for n in BURSTS.concat() {
        for outbox_tx in &outboxes {
            outbox_tx.send(message(n)).expect("the writer runs");
        }
    }
    drop(outboxes); // each writer sends what is queued, then ends
    let (started, handed) = (join(writers), BURSTS.concat().len() * CLIENTS.len());
    hang_up(clients);
    println!("v1: writer threads started: {started}; messages handed to them: {handed}\n");
}

/// What the publisher and a client's writer share: the bytes queued for the client and
/// whether somebody holds the pen (whoever takes it up writes what is queued), and a
/// rendezvous on which the client's writer, lingering, waits to be handed the pen.
struct Outbox {
    queue: Mutex<(Vec<u8>, bool)>,
    pen: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

/// v2: the publisher writes each message itself, and hands the pen to a writer thread only
/// for a client whose socket is full.
fn write_through() {
    println!("v2: the publisher writes through, and hands the pen over when a socket is full");
    let clients = connect();
    let outbox = |_| {
        Arc::new(Outbox {
            queue: Mutex::default(),
            pen: bounded(0),
        })
    };
    let outboxes: Vec<_> = clients.iter().map(outbox).collect();
    let (mut writers, mut handed) = (Vec::new(), 0);
    for burst in BURSTS {
        for n in burst {
            for (client, outbox) in clients.iter().zip(&outboxes) {
                if let Some(unsent) = write_now(client, outbox, n) {
                    writers.extend(hand_over(client, outbox, unsent));
                    handed += 1;
                }
            }
        }
        // Only so that the output is the same on every run: wait until everything is read.
        while (clients.iter().zip(&outboxes))
            .any(|(c, o)| o.queue.lock().unwrap().1 || !c.socket.is_empty())
        {
            thread::sleep(Duration::from_millis(1));
        }
        println!("  everyone has read messages {} to {}", burst[0], burst[3]);
    }
    let started = join(writers); // each ends once it has lingered without the pen
    hang_up(clients);
    println!("v2: writer threads started: {started}; pens handed over: {handed}");
}

/// The publisher queues message `n` and, if the pen is down, takes it up and writes what the
/// socket takes at once (`send` with `MSG_DONTWAIT`, in dsys). Returns what the socket did
/// not take, with the pen; otherwise the pen is down again, or a writer holds it.
fn write_now(client: &Client, outbox: &Outbox, n: u32) -> Option<Vec<u8>> {
    let mut bytes = {
        let (queued, pen_taken) = &mut *outbox.queue.lock().unwrap();
        queued.extend(message(n));
        if mem::replace(pen_taken, true) {
            return None; // a writer holds the pen, and sends this too
        }
        mem::take(queued)
    };
    loop {
        let sent = bytes
            .iter()
            .take_while(|&&b| client.socket.try_send(b).is_ok());
        let sent = sent.count();
        if sent < bytes.len() {
            return Some(bytes.split_off(sent));
        }
        bytes = put_down_or_take(outbox)?;
    }
}

/// Hands the pen, with the bytes the socket did not take, to the client's lingering writer,
/// or else to a new writer thread, which it returns. (dsys sends it to its `writers` thread,
/// which starts it: the publisher has other clients to write for.)
fn hand_over(client: &Client, outbox: &Arc<Outbox>, unsent: Vec<u8>) -> Option<JoinHandle<()>> {
    let (name, rest) = (client.name, String::from_utf8_lossy(&unsent).into_owned());
    let full = format!("  {name}'s socket is full: the pen goes with {rest:?} to");
    // `try_send` on a rendezvous succeeds only if a writer waits on it.
    let Err(nobody) = outbox.pen.0.try_send(unsent) else {
        println!("{full} send-{name}, which lingers: no thread started");
        return None;
    };
    println!("{full} a new writer thread, send-{name}");
    let (socket, outbox, unsent) = (client.socket.clone(), outbox.clone(), nobody.into_inner());
    Some(spawn(format!("send-{name}"), move || {
        writer(unsent, &socket, &outbox)
    }))
}

/// A client's writer, handed the pen with `unsent`: sends it, waiting on this one socket as
/// long as it takes, then whatever was queued meanwhile; puts the pen down, and lingers.
fn writer(mut unsent: Vec<u8>, socket: &Sender<u8>, outbox: &Outbox) {
    loop {
        send(socket, &unsent);
        unsent = match put_down_or_take(outbox) {
            Some(queued) => queued,
            None => match outbox.pen.1.recv_timeout(LINGER) {
                Ok(unsent) => unsent,
                Err(_) => return, // nobody handed it the pen: give the thread back
            },
        };
    }
}

/// Puts the pen down if nothing is queued, under the lock that queuing takes, so a message
/// is never left queued with nobody to write it. Else keeps it and returns what is queued.
fn put_down_or_take(outbox: &Outbox) -> Option<Vec<u8>> {
    let (queued, pen_taken) = &mut *outbox.queue.lock().unwrap();
    *pen_taken = !queued.is_empty();
    pen_taken.then(|| mem::take(queued))
}

/// A blocking write: waits for room in the socket's buffer as the client reads.
fn send(socket: &Sender<u8>, bytes: &[u8]) {
    (bytes.iter()).for_each(|&b| socket.send(b).expect("the client reads"));
}

/// A client: its socket's send buffer (a bounded channel of bytes) and the thread reading it.
struct Client {
    name: &'static str,
    socket: Sender<u8>,
    reader: JoinHandle<Vec<u8>>,
}

fn connect() -> Vec<Client> {
    let connect = |(name, buffer, pause): (&'static str, usize, u64)| {
        let (socket, socket_rx) = bounded(buffer);
        let pause = Duration::from_millis(pause);
        let reader = spawn(format!("recv-{name}"), move || {
            let mut got = Vec::new();
            thread::sleep(pause);
            for byte in socket_rx {
                got.push(byte);
                if got.len() % 4 == 0 {
                    thread::sleep(pause);
                }
            }
            got
        });
        Client {
            name,
            socket,
            reader,
        }
    };
    CLIENTS.into_iter().map(connect).collect()
}

/// Closes each socket (its writers have ended) and prints the messages its client read.
fn hang_up(clients: Vec<Client>) {
    for client in clients {
        drop(client.socket);
        let bytes = client.reader.join().expect("a reader does not panic");
        let text = String::from_utf8(bytes).expect("whole messages");
        let got: Vec<u32> = text.lines().map(|m| m[1..].parse().unwrap()).collect();
        println!("  {} got {got:?}", client.name);
    }
}

/// Message `n` as the client reads it: 4 bytes, `m01\n` for 1.
fn message(n: u32) -> Vec<u8> {
    format!("m{n:02}\n").into_bytes()
}

fn spawn<T: Send + 'static>(name: String, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("cannot start a thread")
}

/// Joins the writers, and says how many there were and for whom: `2 (bob, dave)`.
fn join(writers: Vec<JoinHandle<()>>) -> String {
    let name = |w: &JoinHandle<()>| w.thread().name().unwrap_or("?").replace("send-", "");
    let names: Vec<_> = writers.iter().map(name).collect();
    writers
        .into_iter()
        .for_each(|w| w.join().expect("a writer does not panic"));
    format!("{} ({})", names.len(), names.join(", "))
}
