//! The pen as a type: [`Pen`], the right to write one client's socket, and [`WriteSide`],
//! where it is taken from. Who holds it when is told in `docs/thread-per-connection.md`
//! ("Who writes a client's socket"); this file is how the types keep the rules:
//!
//! - A `Pen` is made in one place only, [`WriteSide::take_pen`], and only when the pen was
//!   down: two `Pen`s for one client never exist at once.
//! - Whatever is written with a `Pen` waits in its own buffer, and the pen goes down only
//!   through [`Pen::put_down`], which flushes first: nothing one holder wrote can reach the
//!   socket after what the next holder writes.
//! - A `Pen` handed over ([`Pen::offer`] to a lingering writer, or through the pool) carries
//!   its unflushed bytes with it, and they go first for the next holder.
//! - A `Pen` dropped without being put down leaves the pen up: nobody writes that socket
//!   again. That is what a failed write wants: the socket is shut down, the client removed.

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::WRITE_BUFFER;
use super::outbox::OutboxReceiver;
use crate::net;
use crate::roles::server::metrics::Metrics;

/// What it takes to write one client's socket, and the only place its [`Pen`] comes from.
/// The hub holds one for each client (`LocalClient`), the client's connection thread
/// another (`Registered`), and each `Pen` and lingering writer a clone: all share one
/// allocation, so taking a pen costs one reference count.
#[derive(Clone)]
pub struct WriteSide(Arc<Side>);

struct Side {
    /// The client's name, for a writer's thread name and for catching up.
    name: Arc<str>,
    /// Its connection id, for catching up.
    conn: u64,
    /// Its socket, shared with its connection thread (one descriptor per client).
    stream: Arc<TcpStream>,
    /// The receiving end of its outbox, whose pen flag this side takes and puts down.
    outbox: OutboxReceiver,
    /// Where a lingering writer waits to be handed the pen ([`WriteSide::await_pen`]). A
    /// rendezvous (capacity 0): a hand-over succeeds only while a writer is waiting on the
    /// other side, so a pen is never left in a channel nobody reads.
    handoff_tx: Sender<Pen>,
    handoff_rx: Receiver<Pen>,
    /// The server's counters: every byte this side puts on the socket is counted here,
    /// one add per send.
    metrics: Arc<Metrics>,
    /// When this side was made: the zero of `sent_ms`.
    made: Instant,
    /// Milliseconds from `made` to the last send that put bytes on the socket: how long
    /// the client has heard nothing is what the `keepalives` thread asks
    /// ([`WriteSide::quiet_for`]). One store per send, by whoever holds the pen.
    sent_ms: AtomicU64,
}

impl WriteSide {
    /// The write side of client `name` on connection `conn`, over `stream` and `outbox`,
    /// counting what it writes in `metrics`.
    pub fn new(
        name: Arc<str>,
        conn: u64,
        stream: Arc<TcpStream>,
        outbox: OutboxReceiver,
        metrics: Arc<Metrics>,
    ) -> WriteSide {
        let (handoff_tx, handoff_rx) = bounded(0);
        WriteSide(Arc::new(Side {
            name,
            conn,
            stream,
            outbox,
            handoff_tx,
            handoff_rx,
            metrics,
            made: Instant::now(),
            sent_ms: AtomicU64::new(0),
        }))
    }

    /// How long this side had put nothing on the client's socket at `now` (since it was
    /// made, when it never has). A relaxed read: a send it misses by a moment makes a
    /// keepalive go that was not needed, never one that was needed stay.
    pub fn quiet_for(&self, now: Instant) -> Duration {
        let sent = Duration::from_millis(self.0.sent_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.0.made)
            .saturating_sub(sent)
    }

    /// The pen, if it was down: then the caller holds it, and must put it down or hand it
    /// over. `None` when someone else holds it (who then writes what is queued too).
    pub fn take_pen(&self) -> Option<Pen> {
        self.0.outbox.take_pen().then(|| Pen {
            side: self.clone(),
            buffer: Vec::new(),
        })
    }

    /// How a writer without the pen lingers: waits up to `timeout` to be handed it
    /// ([`Pen::offer`]). `None` when nobody handed it over in time.
    pub fn await_pen(&self, timeout: Duration) -> Option<Pen> {
        self.0.handoff_rx.recv_timeout(timeout).ok()
    }

    /// The client's name.
    pub fn name(&self) -> &Arc<str> {
        &self.0.name
    }

    /// The client's connection id.
    pub fn conn(&self) -> u64 {
        self.0.conn
    }

    /// The client's socket: to shut it down, or to name its address.
    pub fn stream(&self) -> &Arc<TcpStream> {
        &self.0.stream
    }

    /// The client's outbox: what the holder of the pen writes.
    pub fn outbox(&self) -> &OutboxReceiver {
        &self.0.outbox
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Counts `n` bytes put on the socket, and notes when.
    fn sent(&self, n: usize) {
        Metrics::add(&self.0.metrics.client_bytes_out, n as u64);
        if n > 0 {
            let since_made = self.0.made.elapsed().as_millis() as u64;
            self.0.sent_ms.store(since_made, Ordering::Relaxed);
        }
    }
}

/// The right to write one client's socket, and the bytes written with it that are not on
/// the socket yet. Writing ([`Write`]) buffers up to [`WRITE_BUFFER`] bytes and blocks in
/// the socket write beyond that, for at most the socket's write timeout;
/// [`Pen::send_now`] never blocks. See the module doc for the rules the methods keep.
#[must_use = "a pen must be put down or handed over, or nobody writes this client again"]
pub struct Pen {
    side: WriteSide,
    /// Written and not yet on the socket: by this holder, or by the last one (the bytes a
    /// full socket did not take). They go first.
    buffer: Vec<u8>,
}

impl Pen {
    /// The client this pen writes for.
    pub fn side(&self) -> &WriteSide {
        &self.side
    }

    /// The bytes written with this pen that are not on the socket yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Sends `bytes` without waiting (`net::send_now`). What the socket does not take at
    /// once stays in the pen, to go before anything else the next holder writes. Returns
    /// whether everything went; with bytes already buffered, nothing is sent (they go
    /// first, and that may take waiting).
    ///
    /// # Errors
    /// A failed send other than a full socket.
    pub fn send_now(&mut self, bytes: &[u8]) -> io::Result<bool> {
        if !self.buffer.is_empty() {
            self.buffer.extend_from_slice(bytes);
            return Ok(false);
        }
        let sent = net::send_now(&self.side.0.stream, bytes);
        if let Ok(n) = sent {
            self.side.sent(n);
        }
        match sent {
            Ok(sent) if sent == bytes.len() => Ok(true),
            Ok(sent) => {
                self.buffer.extend_from_slice(&bytes[sent..]);
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.buffer.extend_from_slice(bytes);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Flushes what this pen holds, then puts the pen down. Returns the pen again when the
    /// caller must go on writing after all: frames were queued (or the client was marked
    /// behind) while it held the pen, and it took the pen up again.
    ///
    /// Why the second look is needed: the hub queues a frame and then tries to take the pen;
    /// a holder puts the pen down and then looks at the queue. Whichever of the two comes
    /// second sees what the other did, so either the hub takes the pen or this holder goes
    /// on, and a frame is never stranded with nobody to write it
    /// (`OutboxReceiver::put_pen_down`).
    ///
    /// # Errors
    /// A failed or timed-out flush; the pen then stays up (see the module doc).
    pub fn put_down(mut self) -> io::Result<Option<Pen>> {
        self.flush()?;
        Ok(self.side.0.outbox.put_pen_down().then_some(self))
    }

    /// Hands the pen, with the bytes it holds, to a writer lingering on this client
    /// ([`WriteSide::await_pen`]). When no writer is waiting right now, gives it back.
    ///
    /// # Errors
    /// The pen, given back, when no writer is waiting.
    pub fn offer(self) -> Result<(), Pen> {
        let side = self.side.0.clone();
        side.handoff_tx.try_send(self).map_err(|e| e.into_inner())
    }
}

impl Write for Pen {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > WRITE_BUFFER {
            self.flush()?;
        }
        if bytes.len() >= WRITE_BUFFER {
            // A file chunk: straight to the socket, with nothing buffered before it.
            let written = (&*self.side.0.stream).write(bytes)?;
            self.side.sent(written);
            return Ok(written);
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            (&*self.side.0.stream).write_all(&self.buffer)?;
            self.side.sent(self.buffer.len());
            self.buffer.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::server::write::outbox::{Frame, OutboxSender, outbox};
    use std::io::Read;
    use std::net::TcpListener;

    /// A client connection (its write side on the server, the client's end) and its outbox.
    fn client() -> (WriteSide, OutboxSender, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (tx, rx) = outbox(10, 1000);
        (
            WriteSide::new("bob".into(), 1, Arc::new(server), rx, Arc::default()),
            tx,
            client,
        )
    }

    #[test]
    fn only_one_pen_exists_at_a_time() {
        let (side, _tx, _client) = client();
        let pen = side.take_pen().expect("the pen starts down");
        assert!(side.take_pen().is_none(), "it is held");
        assert!(
            pen.put_down().unwrap().is_none(),
            "nothing queued: the holder may go"
        );
        assert!(side.take_pen().is_some());
    }

    #[test]
    fn bytes_written_with_the_pen_reach_the_socket_before_it_goes_down() {
        let (side, _tx, mut client) = client();
        let mut pen = side.take_pen().unwrap();
        pen.write_all(b"unsent").unwrap();
        assert!(pen.put_down().unwrap().is_none());
        let mut got = [0u8; 6];
        client.read_exact(&mut got).unwrap();
        assert_eq!(
            &got, b"unsent",
            "nothing waits in a buffer once the pen is down"
        );
    }

    #[test]
    fn a_frame_queued_while_the_pen_is_held_keeps_its_holder_going() {
        let (side, tx, _client) = client();
        let pen = side.take_pen().unwrap();
        assert!(tx.try_push(Frame::from(vec![5])));
        assert!(
            side.take_pen().is_none(),
            "the holder has it: no second writer"
        );
        let pen = pen
            .put_down()
            .unwrap()
            .expect("a frame waits: the holder goes on");
        assert!(side.take_pen().is_none(), "and it holds the pen again");
        assert!(side.outbox().try_recv().is_some());
        assert!(pen.put_down().unwrap().is_none());
    }

    #[test]
    fn a_client_marked_behind_keeps_its_holder_going() {
        let (side, tx, _client) = client();
        let pen = side.take_pen().unwrap();
        tx.set_behind(true);
        assert!(
            pen.put_down().unwrap().is_some(),
            "catching up is work left"
        );
    }

    #[test]
    fn the_pen_is_handed_only_to_a_writer_that_waits_for_it() {
        let (side, _tx, _client) = client();
        let mut pen = side.take_pen().unwrap();
        pen.buffer = vec![1, 2];
        let pen = pen
            .offer()
            .expect_err("no writer waits: the pen comes back");
        assert_eq!(pen.buffered(), [1, 2]);
        let lingering = side.clone();
        let writer = std::thread::spawn(move || {
            let pen = lingering.await_pen(Duration::from_secs(60));
            pen.map(|pen| pen.buffered().to_vec())
        });
        // The offer succeeds once the writer is waiting; until then it comes back.
        let mut offered = pen;
        while let Err(back) = offered.offer() {
            offered = back;
            std::thread::yield_now();
        }
        assert_eq!(writer.join().unwrap(), Some(vec![1, 2]), "with its bytes");
        assert!(
            side.await_pen(Duration::ZERO).is_none(),
            "nobody offered it"
        );
    }
}
