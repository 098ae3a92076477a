//! One client connection on the server, from registration to goodbye: the seed's "thread
//! per client" ([`serve_client`], [`register_client`]), the checks on what a client sends
//! ([`valid_name`], the payload bound); its rare keepalives are read and not answered.
//!
//! **Threads.** `conn-<peer>`, started by the accept loop through `serve_connection`, is the
//! client's one permanent thread: it registers the client, writes the registration's frames
//! with the pen, reads the client's publishes into the hub for as long as it stays, and
//! writes what they queued for others itself, without blocking ([`Pens`]). Frames a socket
//! cannot take at once go with the [`Pen`] to a writer (`write/`). Keepalives to a quiet
//! client come from `keepalive.rs`, so this thread does not wake for them.
//!
//! **When the client fails.** A broken or silent connection (nothing for `--idle-timeout`)
//! ends the read loop and the thread. Whatever ends it, even an error halfway through
//! registering, the client is deregistered and its name given back ([`Registered`]'s drop).
//! Who writes the socket: `docs/thread-per-connection.md`; keepalives:
//! `docs/heartbeats-and-failover.md`, "Client keepalives".

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use super::hub::{self, Hub, Origin};
use super::metrics::Metrics;
use super::write::{Pen, Pens};
use super::{READY_WAIT, Shared, claim};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{
    Body, MAX_PAYLOAD_LEN, Message, Refusal, holds_whole_frame, read_message, valid_name,
    write_message,
};

/// Bytes a client's connection thread reads ahead of the frame it is reading: enough for a
/// keepalive or a short publish to come in one read, few enough that ten thousand idle
/// clients hold under a megabyte for them.
const READ_AHEAD: usize = 64;

/// Bytes read ahead for a client that publishes: it sends frames back to back, up to its
/// window, and this many bytes bring hundreds of them in one read instead of two reads
/// each. The size matters beyond the reads: this thread takes in everything it read
/// before it writes for the clients (`write/through.rs`), so the read is also the batch each
/// recipient gets in one `send`. 64 KiB against 16 KiB made a fan-out to a hundred 0.8x
/// the CPU per delivery, with a quarter of the sends (`docs/benchmarks.md`). Only clients
/// that publish pay for it, and only while they do: a client that has gone quiet sends
/// keepalives, and the first one gives the buffer back.
const PUBLISHER_READ_AHEAD: usize = 64 * 1024;

/// Publishes taken into the hub at once, at most. The read-ahead bounds them already (a
/// buffer of 64 KiB holds about 2,500 of the smallest); this bounds the batch's own
/// bookkeeping whatever the frames.
const MAX_PUBLISHES_AT_ONCE: usize = 1024;

/// Why a client left when its connection closed without `Deregister`.
const CLOSED_WITHOUT_GOODBYE: &str =
    "connection closed without a goodbye: the client ended, or moved to another server";

/// How a registered client's session ended without an error.
enum SessionEnd {
    /// The client said goodbye (`Deregister`).
    Deregistered,
    /// The connection closed between two frames.
    ClosedWithoutGoodbye,
    /// The client resumed on a newer connection, which owns the name now.
    Replaced,
}

/// How a client's connection ended, for the line logged when it leaves: what happened, in
/// words, and at which level. What a client does to itself (it leaves, crashes, is killed
/// mid-message, moves, falls silent) is an INFO: the operator has nothing to fix. A client
/// that broke the protocol (a frame over the cap, garbage, a payload too large) is a WARN:
/// a bug or an attack, worth a look.
struct Ending {
    level: log::Level,
    reason: String,
}

impl Ending {
    fn info(reason: impl Into<String>) -> Ending {
        Ending {
            level: log::Level::Info,
            reason: reason.into(),
        }
    }

    /// What `result`, the end of a registered client's session, tells.
    fn of(result: &Result<SessionEnd>) -> Ending {
        match result {
            Ok(SessionEnd::Deregistered) => Ending::info("deregistered"),
            Ok(SessionEnd::ClosedWithoutGoodbye) => Ending::info(CLOSED_WITHOUT_GOODBYE),
            Ok(SessionEnd::Replaced) => Ending {
                level: log::Level::Debug,
                reason: "replaced by a newer connection: the client resumed on it".into(),
            },
            // A reset is the same story told by the kernel: the client had gone when this
            // server wrote to it (say, a keepalive of its own, or a delivery), or it
            // was killed with bytes unread. The error says whether that was inside a frame.
            Err(e) if e.is_closed_by_peer() => {
                Ending::info(format!("{CLOSED_WITHOUT_GOODBYE} ({e})"))
            }
            // Killed while it wrote a message, or its host went down mid-frame: the bytes
            // that did arrive are dropped, and the client's own resend covers them.
            Err(Error::ClosedInsideFrame(why)) => Ending::info(format!(
                "{why}; the client stopped in the middle of a message"
            )),
            Err(e) if e.is_timeout() => {
                Ending::info("silent for longer than the idle timeout (--idle-timeout)")
            }
            Err(e) => Ending {
                level: log::Level::Warn,
                reason: e.to_string(),
            },
        }
    }
}

/// A client connection, from registration to goodbye, on its connection thread. Once the
/// client is registered, how the connection ends is logged once, in the `client left`
/// line with the client's name and address, and the thread returns `Ok`: the accept loop
/// has nothing to add. An error before that (a handshake that fails) goes up to the
/// accept loop, which logs it with the address.
pub(super) fn serve_client(stream: TcpStream, shared: &Shared, deadline: Instant) -> Result<()> {
    // Every line about this connection names it, so that an operator can match the lines
    // of one client, and a client with a stranger.
    let peer = net::peer_of(&stream);
    let stream = Arc::new(stream);
    let Some(registered) = register_client(&stream, shared, deadline, &peer)? else {
        return Ok(()); // refused: the client was told why
    };
    let mut registered = registered;
    let result = registered
        .write_initial(shared)
        .and_then(|()| registered.read_publishes(shared));
    registered.ended = Ending::of(&result);
    Ok(())
    // Dropping `registered` deregisters the client and logs why it left, whatever ended
    // the connection.
}

/// A client the hub has registered, held by its connection thread. Dropping it gives the
/// name back and shuts the socket down: an error anywhere after the hub said yes (a write
/// that fails, a thread that cannot start) cannot leave the name taken.
pub(super) struct Registered<'a> {
    name: String,
    /// The client's address (`IP:PORT`), for the log lines.
    peer: String,
    hub: &'a Hub,
    addr: &'a str,
    stream: Arc<TcpStream>,
    registration: hub::Registration,
    /// How the connection ended, for the line logged when the client leaves.
    ended: Ending,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // A replaced connection (the client resumed on a newer one) no longer owns the name,
        // nor does one whose client the hub dropped (fenced, stopping), which said so then:
        // nothing is removed, and the end of the connection is only a detail.
        let level = if self.hub.deregister(&self.name, self.registration.conn) {
            self.ended.level
        } else {
            log::Level::Debug
        };
        // The reason can quote the client's bytes (a length it sent): written escaped.
        log::log!(
            level,
            "client left name={} peer={} server={} reason={:?}",
            self.name,
            self.peer,
            self.addr,
            self.ended.reason
        );
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The seed's `register_client`: reads the `Register` frame, asks the hub, and answers
/// `RegisterRefused` with a reason, or hands back the registered client. Returns `None`
/// when the registration was refused (the client has been told why).
///
/// # Errors
/// [`Error::Protocol`] when the first frame is not a `Register`, [`Error::Io`] when it is
/// not in by the handshake `deadline`.
pub(super) fn register_client<'a>(
    stream: &Arc<TcpStream>,
    shared: &'a Shared,
    deadline: Instant,
    peer: &str,
) -> Result<Option<Registered<'a>>> {
    let first = net::read_opening(stream, deadline)?;
    let Some(Message::Register { name, resume }) = first else {
        return net::refuse(stream, "expected Register");
    };
    // A refusal is the client's business (a name taken or mistyped), so an INFO, unless
    // the server is full: that is the operator's.
    let refuse = |name: &str, code: Refusal, reason: String| -> Result<Option<_>> {
        let level = match code {
            Refusal::ServerFull => log::Level::Warn,
            _ => log::Level::Info,
        };
        log::log!(
            level,
            "registration refused name={name:?} peer={peer} reason={reason:?}"
        );
        write_message(&mut &**stream, &Message::RegisterRefused { code, reason })?;
        Ok(None)
    };
    // The name is checked before anything echoes it: from here on it holds no character
    // that could do anything in a terminal or a file name.
    if let Err(why) = valid_name(&name, shared.max_name_len) {
        return refuse(&name, Refusal::Other, why);
    }
    // A planned stop (`leave.rs`): the clients here are moving away, and no new one comes.
    // The coordinator places nobody here once it knows; this covers the moment before.
    if shared.leave.is_leaving() {
        let reason = "this server is stopping; ask the coordinator for another".to_string();
        return refuse(&name, Refusal::Other, reason);
    }
    // A fresh name must be free across the cluster, not only here (`claim.rs`); a resume
    // proves with its token that it is the name's owner.
    if resume.is_none()
        && let Some(holder) = claim::ask_to_claim_name(shared, &name)
    {
        let reason = format!("name {name:?} is already taken (on {holder})");
        return refuse(&name, Refusal::Other, reason);
    }
    if !shared.hub.wait_ready(READY_WAIT) {
        log::warn!("registering name={name} peer={peer} before every peer has linked in");
    }
    let resuming = resume.is_some();
    match shared
        .hub
        .register(&name, resume, stream.clone(), shared.client_timers)
    {
        Ok(registration) => {
            let m = &*shared.metrics;
            if resuming {
                Metrics::add(&m.resumes, 1);
            } else {
                Metrics::add(&m.registrations, 1);
            }
            // Each replayed frame is one message delivered.
            Metrics::add(&m.deliveries_out, registration.replayed as u64);
            let how = if resuming { "resumed" } else { "registered" };
            log::info!(
                "client {how} name={name} peer={peer} server={} replay={}",
                shared.addr,
                registration.replayed
            );
            let registered = Registered {
                name,
                peer: peer.to_string(),
                hub: &shared.hub,
                addr: &shared.addr,
                stream: stream.clone(),
                registration,
                ended: Ending::info("the server stopped before the client was served"),
            };
            stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
            Ok(Some(registered))
        }
        Err((code, reason)) => refuse(&name, code, reason),
    }
}

impl Registered<'_> {
    /// Writes `Registered` and the replay with the pen the registration gave this thread,
    /// then puts the pen down; frames queued meanwhile get a writer.
    fn write_initial(&mut self, shared: &Shared) -> Result<()> {
        // Taken, not borrowed: the replay's frames must not stay pinned for the connection's
        // whole life.
        let initial = std::mem::take(&mut self.registration.initial);
        let Some(mut pen) = self.registration.pen.take() else {
            return Ok(()); // written already
        };
        for frame in &initial {
            pen.write_all(frame)?;
        }
        self.put_down(pen, shared)
    }

    /// Reads the client's frames until it leaves. Each publish goes into the hub, which
    /// stamps it with the registered `name` and `session`: nothing the client writes can
    /// make it speak as someone else. Returns how the session ended, when it ended without
    /// an error.
    fn read_publishes(&self, shared: &Shared) -> Result<SessionEnd> {
        let name = &self.name;
        // A frame is read as its length, then its body: two reads of the socket, unless
        // the length's read brings the rest along. READ_AHEAD bytes do that for the small
        // frames an idle client sends (a keepalive is 5 bytes), which halves the system
        // calls of a keepalive; a larger body is read straight into place, past the buffer.
        // A client that publishes gets PUBLISHER_READ_AHEAD instead, once nothing is left
        // in the small buffer (so no byte read ahead is lost in the swap).
        let counted = |stream| Counted(stream, &shared.metrics);
        let mut reader = BufReader::with_capacity(READ_AHEAD, counted(&*self.stream));
        // The pens of the clients each publish reaches (and of this client, for its acks):
        // this thread writes for them once it has taken in every whole frame it has read,
        // before it could wait in a read or write to its own socket (`write/through.rs`).
        let mut pens = Pens::new(shared.pool.clone());
        // The publishes read but not yet taken into the hub: every whole frame the buffer
        // holds goes into one `Hub::publish` (one hold of the hub's lock, one run per
        // recipient), taken in before this thread could block in a read, and before
        // anything else the client sent.
        let mut publishes: Vec<(u64, Body)> = Vec::new();
        loop {
            let message = match read_message(&mut reader) {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => {
                    // What came before the bad frame is taken in, as it would have been
                    // had it been read alone.
                    if !self.publish(&mut publishes, shared, &mut pens) {
                        return Ok(SessionEnd::Replaced);
                    }
                    pens.write_now();
                    return Err(e);
                }
            };
            if !matches!(message, Message::Publish { .. }) {
                if !self.publish(&mut publishes, shared, &mut pens) {
                    return Ok(SessionEnd::Replaced);
                }
                pens.write_now();
            }
            match message {
                Message::Publish { seq, body } => {
                    if let Err(reason) = check_body(&body) {
                        Metrics::add(&shared.metrics.publishes_refused, 1);
                        if !self.publish(&mut publishes, shared, &mut pens) {
                            return Ok(SessionEnd::Replaced);
                        }
                        pens.write_now();
                        return net::refuse(&self.stream, &reason);
                    }
                    log::debug!("publish name={name} seq={seq}");
                    publishes.push((seq, body));
                    if reader.capacity() < PUBLISHER_READ_AHEAD && reader.buffer().is_empty() {
                        reader =
                            BufReader::with_capacity(PUBLISHER_READ_AHEAD, counted(&*self.stream));
                    }
                }
                Message::Keepalive => {
                    // Nothing to answer: the server writes its own keepalives. A client
                    // sends one only when it has sent nothing else for a while: a publisher
                    // that went quiet gives its read-ahead back.
                    if reader.capacity() > READ_AHEAD && reader.buffer().is_empty() {
                        reader = BufReader::with_capacity(READ_AHEAD, counted(&*self.stream));
                    }
                }
                Message::Deregister => return Ok(SessionEnd::Deregistered),
                other => {
                    return net::refuse(
                        &self.stream,
                        &format!("unexpected {} from a client", other.kind()),
                    );
                }
            }
            let more = holds_whole_frame(reader.buffer());
            if (!more || publishes.len() >= MAX_PUBLISHES_AT_ONCE)
                && !self.publish(&mut publishes, shared, &mut pens)
            {
                return Ok(SessionEnd::Replaced);
            }
            if !more {
                pens.write_now();
            }
        }
        Ok(SessionEnd::ClosedWithoutGoodbye)
    }

    /// Takes `publishes` into the hub, in the order read, and empties it. Returns `false`
    /// when the hub refused them: this connection was replaced by a newer one.
    fn publish(&self, publishes: &mut Vec<(u64, Body)>, shared: &Shared, pens: &mut Pens) -> bool {
        if publishes.is_empty() {
            return true;
        }
        let hub::Registration { conn, session, .. } = self.registration;
        let origin = Origin::Local { conn };
        let current = shared
            .hub
            .publish(origin, &self.name, session, publishes, pens);
        publishes.clear();
        current
    }

    /// Puts down `pen`, which this thread wrote with, once what it holds is on the socket;
    /// when frames came meanwhile, hands it to a writer instead: the client's lingering
    /// one, or one started by the pool.
    fn put_down(&self, pen: Pen, shared: &Shared) -> Result<()> {
        if let Some(pen) = pen.put_down()? {
            shared.pool.hand_over(pen);
        }
        Ok(())
    }
}

/// A client's socket as its read loop reads it, counting the bytes read for the metrics:
/// one add per read, which brings a whole batch of frames.
struct Counted<'a>(&'a TcpStream, &'a Metrics);

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut stream = self.0;
        let n = stream.read(buf)?;
        Metrics::add(&self.1.client_bytes_in, n as u64);
        Ok(n)
    }
}

/// Checks what a client asks to broadcast against the protocol's bounds; the reason, for
/// the client, when it is over them.
fn check_body(body: &Body) -> std::result::Result<(), String> {
    let len = body.payload_len();
    if len > MAX_PAYLOAD_LEN {
        return Err(format!(
            "payload of {len} bytes is too large: at most {MAX_PAYLOAD_LEN} bytes per message"
        ));
    }
    Ok(())
}
