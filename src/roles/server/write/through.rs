//! Writing through: the pens a thread took while it called the hub ([`Pens`]), how it
//! writes for them without blocking ([`Pens::write_now`]), and the one send every write
//! through makes ([`send_through`]: one `net::send_now`, and what a full socket or a failed
//! send does with the pen).
//!
//! **Who calls it.** A publisher's connection thread, a peer link's, and an `acks-<addr>`
//! thread whose acks became due: each writes once it has taken in everything it has read,
//! before it could block (a read that would wait, a wait for room in the hub, a write to its
//! own socket), so no pen it holds waits on anything but its own work. Each [`Pen`] here is
//! written for and put down, or handed to exactly one writer; pens still held when a [`Pens`]
//! is dropped (the connection ended with an error) are handed to writers, so none is lost.
//! The `keepalives` thread sends its keepalives through [`send_through`] too.
//!
//! Why it exists, and what batching and writing sooner measured:
//! `docs/thread-per-connection.md` ("Who writes a client's socket") and
//! `docs/benchmarks.md` ("What was made cheaper").

use std::net::Shutdown;

use super::WRITE_BUFFER;
use super::pen::Pen;
use super::pool::Pool;

/// Sends one thread makes for a client, at most, before it hands the rest to a writer:
/// a client whose outbox refills as fast as it is written is a writer's work, not a
/// publisher's.
const SENDS_PER_CLIENT: usize = 4;

/// The pens one thread took while it called the hub, and what it needs to write for them.
pub struct Pens {
    /// At most one job per client: a pen is taken only while it is down, and this thread
    /// holds it until `write_now`.
    taken: Vec<Pen>,
    /// Where a pen goes when its client's socket is full.
    pool: Pool,
    /// One send's bytes, gathered from an outbox; reused from client to client. At most
    /// `WRITE_BUFFER` plus one frame (1 MiB at most); given back when it grew past the
    /// former.
    batch: Vec<u8>,
}

impl Pens {
    /// No pens yet, for a thread that hands the ones it cannot write to `pool`.
    pub fn new(pool: Pool) -> Pens {
        Pens {
            taken: Vec::new(),
            pool,
            batch: Vec::new(),
        }
    }

    /// Adds the pens the hub took for this thread as it took in one message
    /// (`Hub::publish`, `Hub::peer_acked`).
    pub fn add(&mut self, taken: impl IntoIterator<Item = Pen>) {
        self.taken.extend(taken);
    }

    /// Whether this thread holds no pen.
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }

    /// Writes what each client's outbox holds, as far as its socket takes it without
    /// waiting, and puts each pen down or hands it to a writer. Never blocks.
    pub fn write_now(&mut self) {
        // Drained, not taken: the list keeps its room for the next batch of pens.
        for pen in self.taken.drain(..) {
            write_for(pen, &mut self.batch, &self.pool);
        }
        if self.batch.capacity() > WRITE_BUFFER {
            // A file chunk passed through: give its room back.
            self.batch = Vec::new();
        }
    }
}

impl Drop for Pens {
    fn drop(&mut self) {
        for pen in self.taken.drain(..) {
            self.pool.hand_over(pen);
        }
    }
}

/// Writes for one client: gathers its queued frames into `batch` and sends them without
/// waiting, until the outbox is empty and the pen down. Hands the pen to a writer, with
/// what was not sent, when the socket is full, when the client is behind (catching up
/// takes the hub's lock: a writer's work), or after [`SENDS_PER_CLIENT`] sends.
fn write_for(mut pen: Pen, batch: &mut Vec<u8>, pool: &Pool) {
    for _ in 0..SENDS_PER_CLIENT {
        let outbox = pen.side().outbox();
        if outbox.is_behind() {
            break;
        }
        batch.clear();
        outbox.take_batch_into(batch, WRITE_BUFFER);
        if batch.is_empty() {
            // The pen holds no bytes here (a send that left some in it ended the loop), so
            // putting it down writes nothing and cannot fail.
            match pen.put_down() {
                Ok(Some(again)) => {
                    pen = again; // frames came as it went down, and the pen is ours again
                    continue;
                }
                Ok(None) | Err(_) => return,
            }
        }
        match send_through(pen, batch, pool) {
            Some(sent) => pen = sent,
            None => return, // handed to a writer, or the client is being removed
        }
    }
    pool.hand_over(pen);
}

/// Sends `bytes` to `pen`'s client without waiting, the one way the write path writes
/// through ([`Pens::write_now`] for each batch, the `keepalives` thread for a keepalive).
/// Returns the pen when the socket took every byte: the caller writes more with it, or
/// puts it down. Otherwise the pen is gone, one of two ways:
///
/// - the socket is full: the pen goes to a writer ([`Pool::hand_over`]), with what the
///   socket did not take, to go first;
/// - the send failed: the socket is shut down and the pen dropped, so it stays up and
///   nobody writes this socket again. As when a writer's write fails, the shutdown wakes
///   the client's connection thread, which ends and removes the client.
///
/// Never blocks.
#[must_use = "a pen given back must be put down or handed over"]
pub fn send_through(mut pen: Pen, bytes: &[u8], pool: &Pool) -> Option<Pen> {
    match pen.send_now(bytes) {
        Ok(true) => Some(pen),
        // What the socket did not take is in the pen.
        Ok(false) => {
            pool.hand_over(pen);
            None
        }
        Err(e) => {
            log::debug!("writing to a client failed name={}: {e}", pen.side().name());
            let _ = pen.side().stream().shutdown(Shutdown::Both);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::server::write::WriteSide;
    use crate::roles::server::write::outbox::{Frame, OutboxSender, outbox};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    /// A client connection (its write side on the server, the client's end), and its pen,
    /// taken, as the hub hands it over.
    fn client_with_pen() -> (Pen, WriteSide, OutboxSender, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (tx, rx) = outbox(1_000, 64 * 1024 * 1024);
        let side = WriteSide::new("bob".into(), 1, Arc::new(server), rx, Arc::default());
        let pen = side.take_pen().expect("a new outbox's pen is down");
        (pen, side, tx, client)
    }

    #[test]
    fn a_client_that_keeps_up_is_written_to_at_once_and_its_pen_put_down() {
        let (pen, side, tx, mut client) = client_with_pen();
        assert!(tx.try_push(Frame::from(b"hello ".to_vec())));
        assert!(tx.try_push(Frame::from(b"bob".to_vec())));
        let (pool, jobs_rx) = Pool::channel();
        let mut pens = Pens::new(pool);
        pens.add([pen]);
        pens.write_now();
        let mut got = [0u8; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello bob");
        assert!(jobs_rx.try_recv().is_err(), "no writer was needed");
        assert!(side.take_pen().is_some(), "the pen is down again");
    }

    #[test]
    fn a_full_socket_hands_the_pen_to_a_writer_with_the_bytes_in_order() {
        let (pen, side, tx, mut client) = client_with_pen();
        // Far more than a loopback socket's buffers hold, while the client reads nothing.
        let frames: Vec<Vec<u8>> = (0..32u8).map(|i| vec![i; 256 * 1024]).collect();
        for frame in &frames {
            assert!(tx.try_push(Frame::from(frame.clone())));
        }
        let (pool, jobs_rx) = Pool::channel();
        let mut pens = Pens::new(pool);
        pens.add([pen]);
        pens.write_now();
        let pen = jobs_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the pen went to a writer");
        assert!(
            side.take_pen().is_none(),
            "the writer's job carries the pen"
        );
        // What the client reads, then the unsent bytes, then what is still queued, is
        // every frame, once, in order.
        let expected: Vec<u8> = frames.concat();
        let queued: Vec<u8> = side.outbox().try_iter().flat_map(|f| f.to_vec()).collect();
        let inline_len = expected.len() - pen.buffered().len() - queued.len();
        let mut got = vec![0u8; inline_len];
        client.read_exact(&mut got).unwrap();
        got.extend_from_slice(pen.buffered());
        got.extend_from_slice(&queued);
        assert!(got == expected, "the bytes arrive once and in order");
    }

    #[test]
    fn a_failed_send_shuts_the_socket_down_and_leaves_the_pen_up() {
        let (pen, side, _tx, _client) = client_with_pen();
        // This side can no longer send: the next send fails (EPIPE), as to a client gone.
        side.stream().shutdown(Shutdown::Write).unwrap();
        let (pool, jobs_rx) = Pool::channel();
        assert!(send_through(pen, b"hello", &pool).is_none());
        assert!(jobs_rx.try_recv().is_err(), "no writer was handed the pen");
        assert!(side.take_pen().is_none(), "nobody writes this socket again");
        // Shut down for reading too, which is what wakes the client's connection thread:
        // its read returns the end of the stream while the client is still connected.
        let mut buf = [0u8; 8];
        assert_eq!((&**side.stream()).read(&mut buf).unwrap(), 0);
    }
}
