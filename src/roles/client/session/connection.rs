//! One live connection from a session to a server: registering on it ([`Connection::open`])
//! and the two threads that own its socket, so that the session thread never writes it (a
//! session blocked writing to a server that paces it would stop receiving too).
//!
//! **Threads.** `recv-<name>` ([`read_frames`]) reads frames into the bounded `received`
//! channel; `send-<name>` ([`drain_outbound`]) writes what the session queues on `outbound`,
//! whose bound the session chooses. Every failure (a broken socket, an end of stream, a
//! failed write, a server silent past the limit it announced) reaches the session as one
//! `Err` on `received`, and the session fails over.
//!
//! **Who calls it, how it stops.** Only the session (`session/mod.rs` and `register.rs`).
//! [`Connection::close_with`] queues a goodbye and lets `send` drain the rest; dropping a
//! [`Connection`] shuts the socket down and joins both threads, so no thread outlives its
//! socket. The rest: docs/architecture.md, "A client's threads"; keepalives and silence:
//! docs/heartbeats-and-failover.md, "Client keepalives".

use std::cell::Cell;
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never};

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Message, Resume, Role, read_message};

/// Frames read ahead of the session thread, per connection. A frame is at most 1 MiB (a
/// file chunk 256 KiB), so read-ahead stays under 32 MiB; when the queue is full the reader
/// waits and the rest stays in the kernel's socket buffer, then in the server's outbox.
const RECV_QUEUE: usize = 32;
/// Bytes the `recv` thread reads at once. A frame is a length and a body; read straight
/// from the socket that is two system calls per frame, while one read into this buffer
/// takes every frame that has arrived (a burst of deliveries, a replay after a failover).
/// A frame larger than the buffer is read past it, straight into the frame.
const READ_AHEAD: usize = 64 * 1024;

/// What the server told us when it accepted a registration.
pub(super) struct Registered {
    /// The session id: new on a first registration, ours again on a resume.
    pub session: u64,
    /// Proves ownership of `session` when resuming.
    pub token: u64,
    /// For each sender session the server holds history for, its latest `seq`.
    pub watermarks: Vec<(u64, u64)>,
}

/// One live connection to a server.
pub(super) struct Connection {
    /// The server's address, as the session dialled it.
    pub server: String,
    /// The highest `seq` of this session that the server already holds (0 on a first
    /// registration): recent messages above it are sent again after a failover.
    pub server_has: u64,
    /// The keepalive interval the server announced: how long the session may send
    /// nothing before it sends a keepalive (see the module doc).
    keepalive: Duration,
    /// When the session last queued a frame.
    last_sent: Cell<Instant>,
    /// Frames from the `recv` thread ([`RECV_QUEUE`]); an `Err` or a disconnect means the
    /// connection is gone.
    pub received_rx: Receiver<Result<Message>>,
    /// Kept to shut the socket down; the threads have their own handles.
    stream: TcpStream,
    reader: Option<JoinHandle<()>>,
    /// Encoded frames for the `send` thread, which holds `outbound_rx` (at most
    /// `send_queue`, see [`Connection::open`]); `None` once closed, which tells the writer
    /// to drain the queue and end.
    outbound_tx: Option<Sender<Vec<u8>>>,
    /// Disconnects when the `send` thread ends: the thread holds `writer_done_tx`, which
    /// carries nothing, and that is how [`Connection::close_with`] knows the last frame is
    /// out.
    writer_done_rx: Receiver<()>,
    writer: Option<JoinHandle<()>>,
}

impl Connection {
    /// Connects to `server` and registers as `name`, resuming when `resume` is given, then
    /// starts the connection's two threads. Blocks for at most about `timeout` per step
    /// (connect, challenge, reply). The answer is `Registered` (the session id, its token,
    /// the keepalive interval, the watermarks) or `RegisterRefused`; only then are the
    /// threads started, so a server that refuses or does not answer costs no thread.
    ///
    /// `send_queue` bounds the frames queued for the `send` thread. The session chooses it,
    /// since only the session knows how many frames it may queue at once (its windows of
    /// unacknowledged and recent messages); were it hit anyway, [`Connection::send`] fails
    /// and the session takes the connection for lost.
    ///
    /// # Errors
    /// As `net::connect_as` (nobody listens, the connection is refused); [`Error::Refused`]
    /// when the server refuses the name; [`Error::Protocol`] when it answers something
    /// else; [`Error::Io`] when it does not answer in time or the socket breaks.
    pub(super) fn open(
        server: &str,
        name: &str,
        secret: Option<&Secret>,
        resume: Option<Resume>,
        timeout: Duration,
        send_queue: usize,
    ) -> Result<(Connection, Registered)> {
        let mut stream = net::connect_as(server, Role::Client, timeout, secret)?;
        let resuming = resume.is_some();
        let request = Message::Register {
            name: name.to_string(),
            resume,
        };
        let (registered, timers, server_has) = match net::request(&mut stream, &request)? {
            Message::Registered {
                session,
                token,
                keepalive_ms,
                silence_ms,
                watermarks,
            } => {
                // On a resume the only mark is this session's own, if the server has it.
                let server_has = if resuming {
                    watermarks
                        .iter()
                        .find(|(s, _)| *s == session)
                        .map_or(0, |(_, seq)| *seq)
                } else {
                    0
                };
                let keepalive = Duration::from_millis(keepalive_ms.max(10) as u64);
                let silence = Duration::from_millis(silence_ms.max(10) as u64);
                let registered = Registered {
                    session,
                    token,
                    watermarks,
                };
                (registered, (keepalive, silence), server_has)
            }
            Message::RegisterRefused { code, reason } => return Err(Error::Refused(code, reason)),
            other => {
                return Err(Error::Protocol(format!(
                    "expected Registered, got {}",
                    other.kind()
                )));
            }
        };
        let (keepalive, silence) = timers;
        // The silence limit without a frame means the server is dead or hung: a live one
        // writes well within it.
        stream.set_read_timeout(Some(silence))?;
        let (received_tx, received_rx) = bounded(RECV_QUEUE);
        let read_half = stream.try_clone()?;
        let reader = thread::Builder::new()
            .name(format!("recv-{name}"))
            .spawn(move || read_frames(read_half, received_tx))?;
        let (outbound_tx, outbound_rx) = bounded(send_queue);
        let (writer_done_tx, writer_done_rx) = bounded(0);
        let write_half = stream.try_clone()?;
        let writer = thread::Builder::new()
            .name(format!("send-{name}"))
            .spawn(move || drain_outbound(write_half, outbound_rx, writer_done_tx))?;
        let connection = Connection {
            server: server.to_string(),
            server_has,
            keepalive,
            last_sent: Cell::new(Instant::now()),
            received_rx,
            stream,
            reader: Some(reader),
            outbound_tx: Some(outbound_tx),
            writer_done_rx,
            writer: Some(writer),
        };
        Ok((connection, registered))
    }

    /// Queues `message` for the `send` thread; never blocks (the queue's bound is the
    /// session's, given to [`Connection::open`]).
    ///
    /// # Errors
    /// When the writer has ended (the connection is broken) or the queue is full.
    pub(super) fn send(&self, message: &Message) -> Result<()> {
        // `None` only once `close_with` has begun, which sends nothing after its goodbye.
        let Some(outbound_tx) = self.outbound_tx.as_ref() else {
            return Err(Error::PeerGone("the connection is closed".into()));
        };
        outbound_tx
            .try_send(message.encode())
            .map_err(|e| Error::PeerGone(format!("cannot queue a frame for the server: {e}")))?;
        self.last_sent.set(Instant::now());
        Ok(())
    }

    /// How often the session should call [`Connection::send_keepalive`]: a quarter of the
    /// interval, so a keepalive goes out at most a quarter interval late.
    pub(super) fn keepalive_check(&self) -> Duration {
        self.keepalive / 4
    }

    /// Queues a keepalive when one is due (see the module doc): the session has sent
    /// nothing for a keepalive interval. Not when frames are queued already: those show
    /// the server we live.
    pub(super) fn send_keepalive(&self) {
        if self.last_sent.get().elapsed() >= self.keepalive
            && self.outbound_tx.as_ref().is_some_and(Sender::is_empty)
        {
            // A frame that cannot be queued means a lost connection, which the session
            // learns from `received` and its next `send`.
            let _ = self.send(&Message::Keepalive);
        }
    }

    /// Sends `goodbye` as the last frame and waits up to `grace` for the writer to get it
    /// out, then drops the connection.
    pub(super) fn close_with(mut self, goodbye: &Message, grace: Duration) {
        let _ = self.send(goodbye);
        self.outbound_tx = None; // the writer drains the queue, then ends
        let _ = self.writer_done_rx.recv_timeout(grace);
    }
}

impl Connection {
    /// Stops using the connection: shuts the socket down and lets go of the session's
    /// channel ends, which wakes both threads to end. They are joined on drop; a session
    /// failing over abandons its lost connection first and drops it once it is registered
    /// elsewhere, so the threads end while it is busy moving, not on its way.
    pub fn abandon(&mut self) {
        // The reader may be blocked in a read (the shutdown wakes it) or in a send to a
        // full `received` channel (dropping our end makes that send fail); the writer in a
        // write (the shutdown) or waiting for frames (dropping `outbound_tx`): wake all of
        // them, or a join could wait for ever.
        let _ = self.stream.shutdown(Shutdown::Both);
        drop(std::mem::replace(&mut self.received_rx, never()));
        self.outbound_tx = None;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wakes both threads, then waits for them, so no thread outlives its socket.
        self.abandon();
        for thread in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

/// The `recv` thread: reads frames into `received_tx` until one fails, then sends that
/// failure as the last item and ends. A read that waits longer than the silence limit is
/// such a failure (the server is dead or hung). Also ends, quietly, when the session has
/// dropped `received_rx` (the connection is being closed).
fn read_frames(stream: TcpStream, received_tx: Sender<Result<Message>>) {
    let mut stream = BufReader::with_capacity(READ_AHEAD, stream);
    loop {
        let frame = match read_message(&mut stream) {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::PeerGone("server closed the connection".into())),
            Err(e) if e.is_timeout() => {
                let silence = stream
                    .get_ref()
                    .read_timeout()
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Err(Error::PeerGone(format!(
                    "server silent for {} ms",
                    silence.as_millis()
                )))
            }
            Err(e) => Err(e),
        };
        let failed = frame.is_err();
        if received_tx.send(frame).is_err() || failed {
            return;
        }
    }
}

/// The `send` thread: writes queued frames, a backlog in one batch, until the queue
/// disconnects or a write fails. A failed write shuts the socket down, so the `recv` thread
/// (and through it the session) learns the connection is lost. Ending drops
/// `_writer_done_tx`, which is what [`Connection::close_with`] waits for.
fn drain_outbound(stream: TcpStream, outbound_rx: Receiver<Vec<u8>>, _writer_done_tx: Sender<()>) {
    let mut out = BufWriter::with_capacity(64 * 1024, &stream);
    let mut write_queued = || -> std::io::Result<()> {
        for frame in &outbound_rx {
            out.write_all(&frame)?;
            for frame in outbound_rx.try_iter() {
                out.write_all(&frame)?;
            }
            out.flush()?;
        }
        Ok(())
    };
    if let Err(e) = write_queued() {
        log::debug!("writing to the server failed: {e}");
        let _ = stream.shutdown(Shutdown::Both);
    }
}
