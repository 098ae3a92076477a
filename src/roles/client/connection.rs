//! One live connection from a client session to a server: how it is opened (registration),
//! and the two threads that move its frames, so that the session thread never touches the
//! socket.
//!
//! **Opening.** [`Connection::open`] connects as a client (the server's challenge and our
//! `Hello`, in `net::connect_as`), sends `Register` (with a `Resume` when the session has
//! registered before) and waits for one reply: `Registered` carries the session id, its
//! token, the keepalive interval and the watermarks; `RegisterRefused` becomes
//! [`Error::Refused`]. Only then are the threads started, so a server that refuses or does
//! not answer costs no thread.
//!
//! **Threads.** Each connection runs two, named after the client:
//! - `recv-<name>` ([`read_frames`]) reads frames, as many as have arrived in one read
//!   ([`READ_AHEAD`]), and hands each one to the session on the
//!   `received` channel (bounded, [`RECV_QUEUE`]). The thread holds `received_tx`, the
//!   session holds `received_rx` (in [`Connection`]) and `select!`s on it.
//! - `send-<name>` ([`write_frames`]) writes the encoded frames the session queues on the
//!   `outbound` channel (bounded, [`SEND_QUEUE`]). The session holds `outbound_tx` (in
//!   [`Connection`]), the thread `outbound_rx`. The thread also holds `writer_done_tx`,
//!   which carries nothing: it disconnects when the thread ends, and that is how
//!   [`Connection::close_with`] knows the last frame is out.
//!
//! The session never writes to the socket itself, because a server that has no room for
//! more (it is pacing its publishers, see `docs/architecture.md`) stops reading, and a
//! session blocked in that write would stop reading too. Two clients sending each other
//! files could then each wait for the other, until the server took one of them for a
//! reader that has stopped (and it lost messages). With its own writer the session always
//! goes on receiving.
//!
//! **Keepalives.** The server speaks first: it writes a keepalive to a client it has
//! written nothing to for a while, so a live server is heard from well within the silence
//! limit it announces in `Registered`, however many clients it holds. The session sends
//! a keepalive only when it has itself sent nothing for the keepalive interval, also
//! announced there ([`Connection::send_keepalive`]), so the server never takes a quiet
//! client for a gone one; nobody answers it.
//!
//! **When the server fails.** Every failure reaches the session the same way, as one `Err`
//! item on `received`, after which `recv` ends; the session takes it for a lost connection
//! and fails over. A broken socket and an end of stream are read errors. Silence is one
//! too: the socket's read timeout is the silence limit, and a live server writes well
//! within it, so a server that says nothing for that long is dead or hung. A failed
//! write ends `send` and shuts the socket down, which wakes `recv` with an end of stream.
//! A frame the session cannot queue (the writer has ended, or the queue is full) makes
//! [`Connection::send`] fail, which the session also treats as a lost connection.
//!
//! **Closing.** [`Connection::close_with`] queues a goodbye as the last frame, drops
//! `outbound_tx` so that `send` writes what is queued and ends, and waits a grace period
//! for it. Dropping a [`Connection`] (after `close_with`, or when the session fails over)
//! shuts the socket down, drops the session's channel ends and joins both threads, so no
//! thread outlives its socket.

use std::cell::Cell;
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never};

use super::session::{MAX_RECENT, MAX_UNACKED};
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
/// Frames queued for the `send` thread, per connection. The session queues a publish only
/// while the unacknowledged window has room, and after a failover it resends at most the
/// recent and unacknowledged messages, so the queue never holds more than those two windows
/// (at most 24 MiB of payload) plus a goodbye; a keepalive is queued only when it is empty.
/// Were the bound hit anyway, the connection would count as lost and failover would start
/// over on a fresh queue.
const SEND_QUEUE: usize = MAX_UNACKED + MAX_RECENT + 2;

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
    /// Encoded frames for the `send` thread ([`SEND_QUEUE`]); `None` once closed, which
    /// tells the writer to drain the queue and end.
    outbound_tx: Option<Sender<Vec<u8>>>,
    /// Disconnects when the `send` thread ends.
    writer_done_rx: Receiver<()>,
    writer: Option<JoinHandle<()>>,
}

impl Connection {
    /// Connects to `server` and registers as `name`, resuming when `resume` is given, then
    /// starts the connection's two threads. Blocks for at most about `timeout` per step
    /// (connect, challenge, reply).
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
            Message::RegisterRefused { reason } => return Err(Error::Refused(reason)),
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
        let (outbound_tx, outbound_rx) = bounded(SEND_QUEUE);
        let (writer_done_tx, writer_done_rx) = bounded(0);
        let write_half = stream.try_clone()?;
        let writer = thread::Builder::new()
            .name(format!("send-{name}"))
            .spawn(move || write_frames(write_half, outbound_rx, writer_done_tx))?;
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

    /// Queues `message` for the `send` thread; never blocks (see [`SEND_QUEUE`]).
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
fn write_frames(stream: TcpStream, outbound_rx: Receiver<Vec<u8>>, _writer_done_tx: Sender<()>) {
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
