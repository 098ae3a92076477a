//! The bench's clients of a broker: [`Subscriber`], a connection and the `sub-<i>` thread
//! that reads and checks it, and [`Publisher`], a connection with a `pub-send` thread that
//! writes the messages and a `pub-acks` thread that reads the broker's acknowledgements.
//! `driver.rs` starts them and reads what they counted; what they say on the wire is the
//! [`Wire`] of `redis.rs` or `nats.rs`.
//!
//! **The window.** `pub-send` takes a credit from a bounded channel before each group of
//! [`Wire::MESSAGES_PER_ACK`] messages, and asks for an acknowledgement after the group;
//! `pub-acks` takes a credit out of the channel for each acknowledgement ([`Acks`]). With
//! the channel full, `pub-send` flushes what it has buffered and blocks. Only `pub-send`
//! writes on the publisher's socket: bytes from two writers could interleave mid-frame.
//!
//! **Stopping.** Both are guards: dropping one shuts its socket down, which ends its
//! threads (a blocked read returns, a write fails, the credit channel disconnects), then
//! joins them, pass or fail.

use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use dsys::roles::bench::when_due;

use crate::driver::{Load, POLL, Wire};
use crate::inbox::{IO_BUFFER, Inbox, Payload, Tally, WARM_UP_SEQ};

/// How long the publisher's sender may take to finish its last write once the run is
/// over; then its socket is shut down under it (see [`Publisher::finish`]).
const FINISH_GRACE: Duration = Duration::from_secs(1);

/// What `pub-acks` hands back to `pub-send`.
pub struct Acks {
    /// Taken credits: `pub-send` fills it (a full channel stops it), `pub-acks` takes one
    /// out per acknowledgement. Dropping this end makes `pub-send`'s wait fail.
    credits_rx: Receiver<()>,
    /// Replies the broker asked the publisher for (a NATS `PING`): only `pub-send`
    /// writes on the publisher's socket, so `pub-acks` counts them here and `pub-send`
    /// writes them with its next acknowledgement request.
    owed: Arc<AtomicU64>,
}

impl Acks {
    /// One acknowledgement came: a credit comes back.
    pub fn ack(&self) {
        let _ = self.credits_rx.try_recv();
    }

    /// The broker asked for a reply from the publisher.
    pub fn owe_reply(&self) {
        self.owed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A subscriber and its `sub-<i>` thread. Dropping it shuts the socket down and joins the
/// thread.
pub struct Subscriber {
    /// A handle on the socket, to shut it down: the thread's read then returns.
    stream: TcpStream,
    /// Gives what the check counted; `None` once joined.
    reader: Option<JoinHandle<Tally>>,
}

impl Subscriber {
    /// Subscribes (blocking until the broker confirms) and starts the reading thread.
    pub fn start<W: Wire>(
        addr: &str,
        index: usize,
        last_seq: u64,
        epoch: Instant,
        progress: &Arc<AtomicU64>,
    ) -> Subscriber {
        let label = format!("{} subscriber {index}", W::NAME);
        let input = W::subscribe(addr, &label);
        input.handshake_done();
        let stream = input
            .stream()
            .try_clone()
            .expect("clone a subscriber's socket");
        let mut inbox = Inbox::new(input, last_seq, epoch, progress.clone());
        let reader = thread::Builder::new()
            .name(format!("sub-{index}"))
            .spawn(move || {
                W::read_deliveries(&mut inbox);
                inbox.into_tally()
            })
            .expect("start a subscriber thread");
        Subscriber {
            stream,
            reader: Some(reader),
        }
    }

    /// Closes the connection and returns what was counted, and whether the broker had
    /// already closed it (the reader ended before this call).
    ///
    /// # Panics
    /// When the reader panicked (a malformed reply: its message is printed above).
    pub fn finish(mut self) -> (Tally, bool) {
        let reader = self.reader.take().expect("joined only here or on drop");
        let cut_off = reader.is_finished();
        let _ = self.stream.shutdown(Shutdown::Both);
        let tally = reader.join().expect("a subscriber's reader panicked");
        (tally, cut_off)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The publisher: its `pub-send` and `pub-acks` threads and the gate that starts the
/// measured messages. Dropping it opens the gate, shuts the socket down and joins both.
pub struct Publisher {
    /// Dropping it (in [`Publisher::go`]) lets `pub-send` go on past the warm-up.
    start_tx: Option<Sender<()>>,
    /// A handle on the socket, to shut it down: `pub-acks`'s read returns, and
    /// `pub-send`'s next write fails.
    stream: TcpStream,
    sender: Option<JoinHandle<io::Result<()>>>,
    acks: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Connects and starts both threads; `pub-send` writes the warm-up message at once.
    pub fn start<W: Wire>(addr: &str, load: &Load, epoch: Instant) -> Publisher {
        let mut input = W::connect_publisher(addr);
        input.handshake_done();
        let stream = input
            .stream()
            .try_clone()
            .expect("clone the publisher's socket");
        let writer = stream.try_clone().expect("clone the publisher's socket");
        let credits = (load.window as u64 / W::MESSAGES_PER_ACK).max(1) as usize;
        let (credits_tx, credits_rx) = bounded(credits);
        let owed = Arc::new(AtomicU64::new(0));
        let acks = Acks {
            credits_rx,
            owed: owed.clone(),
        };
        let acks = thread::Builder::new()
            .name("pub-acks".into())
            .spawn(move || W::read_acks(&mut input, &acks))
            .expect("start the publisher's reader");
        let (start_tx, start_rx) = bounded(0);
        let (messages, rate) = (load.messages, load.rate);
        let sender = thread::Builder::new()
            .name("pub-send".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(IO_BUFFER, writer);
                let window = Window {
                    credits_tx,
                    owed: &owed,
                };
                publish::<W>(&mut out, &window, messages, rate, epoch, &start_rx)
            })
            .expect("start the publisher's sender");
        Publisher {
            start_tx: Some(start_tx),
            stream,
            sender: Some(sender),
            acks: Some(acks),
        }
    }

    /// Lets the measured messages go.
    pub fn go(&mut self) {
        self.start_tx = None;
    }

    /// Waits for `pub-send` to have written everything, then closes the connection;
    /// returns why the sender stopped early, if it did.
    ///
    /// Only the reading half is shut down at first: `pub-acks` ends, which fails a wait for
    /// a credit that will not come, while a last flush still goes out. A sender stuck in a
    /// write to a broker that reads no more gets [`FINISH_GRACE`], then the whole socket
    /// is shut down under it.
    pub fn finish(mut self) -> Result<(), String> {
        self.go();
        let _ = self.stream.shutdown(Shutdown::Read);
        let sender = self.sender.take().expect("joined only here or on drop");
        let deadline = Instant::now() + FINISH_GRACE;
        while !sender.is_finished() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        self.close();
        match sender.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the publisher's sender panicked".into()),
        }
    }

    /// Shuts the socket down and joins whatever thread is still running.
    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(acks) = self.acks.take() {
            let _ = acks.join();
        }
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.go();
        self.close();
    }
}

/// `pub-send`'s side of the window.
struct Window<'a> {
    /// One `()` per acknowledgement awaited; `pub-acks` holds the receiving end.
    credits_tx: Sender<()>,
    /// Replies `pub-acks` saw the broker ask for.
    owed: &'a AtomicU64,
}

impl Window<'_> {
    /// Takes a credit for the group of messages about to be written. With none left it
    /// flushes first (or the acknowledgements that give credits back would never come),
    /// then blocks until one comes back.
    ///
    /// # Errors
    /// When `pub-acks` has ended (the connection closed), or the flush fails.
    fn take_credit(&self, out: &mut BufWriter<TcpStream>) -> io::Result<()> {
        if let Err(TrySendError::Full(())) = self.credits_tx.try_send(()) {
            out.flush()?;
            self.credits_tx.send(()).map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the publisher's reader ended")
            })?;
        }
        Ok(())
    }

    /// Asks the broker to acknowledge what was written since the last request, after the
    /// replies it asked for.
    fn ask_ack<W: Wire>(&self, out: &mut BufWriter<TcpStream>) -> io::Result<()> {
        W::write_ack_request(out, self.owed.swap(0, Ordering::Relaxed))
    }
}

/// The publishing thread: the warm-up message at once, then, once `start_rx` is closed,
/// `messages` more, as fast as the window allows or on the schedule `rate` sets.
fn publish<W: Wire>(
    out: &mut BufWriter<TcpStream>,
    window: &Window,
    messages: u64,
    rate: Option<u64>,
    epoch: Instant,
    start_rx: &Receiver<()>,
) -> io::Result<()> {
    let mut payload = Payload::new();
    window.take_credit(out)?;
    payload.stamp(WARM_UP_SEQ, Instant::now(), epoch);
    W::write_publish(out, payload.bytes())?;
    window.ask_ack::<W>(out)?;
    out.flush()?;
    let _ = start_rx.recv(); // disconnected: go
    let began = Instant::now();
    for i in 0..messages {
        // The same schedule as dsys bench's publishers (latency counts from when due).
        let at = when_due(began, i, rate, out)?;
        if i % W::MESSAGES_PER_ACK == 0 {
            window.take_credit(out)?;
        }
        payload.stamp(WARM_UP_SEQ + 1 + i, at, epoch);
        W::write_publish(out, payload.bytes())?;
        if (i + 1) % W::MESSAGES_PER_ACK == 0 {
            window.ask_ack::<W>(out)?;
        }
    }
    out.flush()
}
