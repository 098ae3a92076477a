//! Broadcast through one bounded channel per client, with `try_send` and a policy for a full
//! one, beside the tempting wrong version: one channel whose `Receiver` every client clones.
//!
//! Run it with `cargo run --example broadcast`. Both versions send messages 1 to 8 and print
//! what each client's writer thread (`send-<name>`) took. Here every client has a writer
//! thread for as long as it is connected, to keep the example about the channels. A dsys
//! server does not keep a permanent writer per client: a client gets one only while frames
//! wait that its socket did not take at once, and the rest of the time the thread that took
//! the message in writes it. The next example, `write_through.rs`, takes that step.
//!
//! What to look for in its output:
//! - wrong: bob and carol split the messages between them (who gets which varies from run to
//!   run), and the deliveries add up to 8, not 16: a crossbeam channel is a queue, and each
//!   message is taken by exactly one receiver, whichever asks first;
//! - right: bob and carol each get all 8. dave has stopped reading, so his outbox fills at 4
//!   and message 5 finds it full: dave is dropped, and nobody ever waits for him.
//!
//! The grown-up version: `outbox` and `OutboxSender::try_push` in `src/roles/server/write/outbox.rs`
//! (bounded in frames and bytes), and `Clients::fan_out` in
//! `src/roles/server/hub/delivery.rs`, whose policy for a full outbox is gentler: the client is
//! marked *behind* and catches up from the history window (`Hub::catch_up`).
//! `docs/thread-per-connection.md` tells both stories.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

const MESSAGES: u32 = 8;
/// Messages one client's outbox holds. Bounded, so a client that stops reading pins at most
/// this much memory; at the bound `broadcast` applies its policy, and nobody blocks.
const OUTBOX: usize = 4;

fn main() {
    wrong_cloned_receiver();
    right_outbox_per_client();
}

/// WRONG: one channel, and each client's writer holds a clone of its `Receiver`.
fn wrong_cloned_receiver() {
    println!("WRONG: one channel; each client's writer holds a clone of its Receiver");
    let (tx, rx) = bounded(MESSAGES as usize);
    let writers = vec![writer("bob", rx.clone(), None), writer("carol", rx, None)];
    for n in 1..=MESSAGES {
        tx.send(n).expect("the writers hold the receivers");
    }
    drop(tx); // the writers see Disconnected once the queue is empty
    let (deliveries, wanted) = (report(writers), 2 * MESSAGES);
    println!("WRONG: {MESSAGES} messages made {deliveries} deliveries, not {wanted}\n");
}

/// Right: one bounded outbox per client, and `broadcast` offers each message to every one.
fn right_outbox_per_client() {
    println!("right: one outbox per client, bounded at {OUTBOX}, filled with try_send");
    // Each running writer says when it took a message (many senders, one receiver: the right
    // use of a clone). Main waits for that only so that the output is the same on every run.
    let (taken_tx, taken_rx) = bounded(0);
    let (mut clients, mut writers) = (Vec::new(), Vec::new());
    // dave's writer has hung (a stopped process, a full socket): nobody reads his outbox.
    let mut unread = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let (outbox_tx, outbox_rx) = bounded(OUTBOX);
        clients.push(Client { name, outbox_tx });
        match name {
            "dave" => unread.push(outbox_rx),
            _ => writers.push(writer(name, outbox_rx, Some(taken_tx.clone()))),
        }
    }
    drop(taken_tx); // the writers hold the only senders: if they died, `recv` would say so
    for n in 1..=MESSAGES {
        broadcast(&mut clients, n);
        for _ in 0..writers.len() {
            taken_rx.recv().expect("the writers run");
        }
    }
    drop(clients); // closes every outbox: the writers drain what is queued and end
    report(writers);
    for outbox_rx in unread {
        let held: Vec<u32> = outbox_rx.try_iter().collect();
        println!("  dave took nothing; his outbox held {held:?} and then closed");
    }
}

/// A client as the broadcaster sees it: the sending end of the client's own outbox.
struct Client {
    name: &'static str,
    outbox_tx: Sender<u32>,
}

/// Sends `n` to every client, and never blocks: `try_send` fails at once on a full outbox.
/// The policy is to drop that client (its outbox closes, its writer ends) rather than make
/// everyone wait for the slowest reader. With `send`, message 5 would wait for dave forever,
/// and bob and carol would get nothing more.
fn broadcast(clients: &mut Vec<Client>, n: u32) {
    clients.retain(|client| match client.outbox_tx.try_send(n) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            println!("  message {n}: {}'s outbox is full: dropped", client.name);
            false
        }
        Err(TrySendError::Disconnected(_)) => false, // its writer is gone already
    });
}

/// Starts the writer thread `send-<name>`, which takes messages until its channel is empty
/// and disconnected, and returns them. Each one takes it a moment (a socket write, in dsys),
/// and it says so on `taken_tx` if it has one.
fn writer(name: &str, rx: Receiver<u32>, taken_tx: Option<Sender<()>>) -> JoinHandle<Vec<u32>> {
    thread::Builder::new()
        .name(format!("send-{name}"))
        .spawn(move || {
            let mut got = Vec::new();
            for n in rx.iter() {
                got.push(n);
                thread::sleep(Duration::from_millis(1));
                if let Some(taken_tx) = &taken_tx {
                    taken_tx.send(()).expect("main waits for it");
                }
            }
            got
        })
        .expect("cannot start a writer thread")
}

/// Joins the writers, prints what each got, and returns the number of deliveries.
fn report(writers: Vec<JoinHandle<Vec<u32>>>) -> usize {
    let mut deliveries = 0;
    for writer in writers {
        let name = writer.thread().name().unwrap_or("?").replace("send-", "");
        let got = writer.join().expect("a writer does not panic");
        println!("  {name} got {got:?}");
        deliveries += got.len();
    }
    deliveries
}
