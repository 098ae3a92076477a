//! [`Chatter`]: every client talking at a steady pace while a test changes the cluster under
//! it (kills, restarts, cuts a link), and the check at the end that every line of every
//! client reached every other client exactly once, in order
//! ([`finish_and_assert_everything_arrived`]).
//!
//! **Threads.** One writer thread per client, which owns the client's stdin while it
//! writes. [`Chatter::stop`] (or a drop, when a test fails first) stops and joins them all.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use super::TIMEOUT;
use super::checks::{assert_numbered_texts, assert_seqs_exactly, events_of, finish_all};
use super::client::Client;

/// How often each client sends a line while the cluster changes under it.
const CHATTER_EVERY: Duration = Duration::from_millis(25);

/// Every client writing numbered lines (`"{name} n{k}"`) to its stdin at a steady pace, one
/// thread each, until [`Chatter::stop`]; dropped early (a failed assertion), it stops too.
pub struct Chatter {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<(ChildStdin, u64)>>,
}

impl Chatter {
    /// Starts a writer for every client in `clients` (each gives up its stdin).
    pub fn start(clients: &mut [Client]) -> Chatter {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = clients
            .iter_mut()
            .map(|client| {
                let (name, mut stdin) = (client.name.clone(), client.take_stdin());
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut written = 0;
                    while !stop.load(Ordering::Relaxed) {
                        written += 1;
                        if writeln!(stdin, "{name} n{written}").is_err() {
                            break; // the client is gone: the test fails on its own
                        }
                        thread::sleep(CHATTER_EVERY); // pacing the load, not waiting for anything
                    }
                    (stdin, written)
                })
            })
            .collect();
        Chatter { stop, writers }
    }

    /// Stops every writer; returns their stdins, still open (a client whose stdin ends
    /// leaves once its own messages are acknowledged, maybe before it has everyone
    /// else's), and how many lines each wrote, in the clients' order.
    pub fn stop(mut self) -> (Vec<ChildStdin>, Vec<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        self.writers
            .drain(..)
            .map(|w| w.join().expect("a chatter thread panicked"))
            .unzip()
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers.drain(..) {
            let _ = writer.join();
        }
    }
}

/// The end of a test with a [`Chatter`]: stops it, waits until every client has every line
/// of every other one, ends them all, and asserts over whole outputs that each got from
/// each other one seqs 1..=written exactly once, in order, with the texts in the order they
/// were written, and no gap. Returns each client's events.
pub fn finish_and_assert_everything_arrived(
    clients: &mut [Client],
    chatter: Chatter,
) -> Vec<Vec<Value>> {
    let (stdins, written) = chatter.stop();
    for receiver in clients.iter() {
        for (sender, &count) in clients.iter().zip(&written) {
            if sender.name != receiver.name {
                receiver.wait_messages(&[sender.name.as_str()], count as usize, TIMEOUT);
            }
        }
    }
    drop(stdins);
    finish_all(clients);
    let all: Vec<Vec<Value>> = clients.iter().map(Client::events_so_far).collect();
    for (receiver, events) in clients.iter().zip(&all) {
        for (sender, &count) in clients.iter().zip(&written) {
            if sender.name == receiver.name {
                continue;
            }
            assert_seqs_exactly(events, &receiver.name, &sender.name, 1, count);
            assert_numbered_texts(events, &receiver.name, &sender.name, count);
        }
        assert!(
            events_of(events, "gap").is_empty(),
            "{} reported a gap: {:?}",
            receiver.name,
            events_of(events, "gap")
        );
    }
    all
}
