//! One client connection on the server, from registration to goodbye: the seed's "thread
//! per client" ([`serve_client`], [`register_client`]), the writer threads it gets while it
//! has something to receive, and the checks on what a client sends ([`valid_name`], the
//! payload bound).
//!
//! **Threads.**
//! - `conn-<peer>` (started by the accept loop) is the client's one permanent thread. It
//!   registers the client, writes the registration's frames, then reads the client's
//!   publishes into the hub for as long as the client stays, and answers its keepalives.
//! - `send-<name>` is a writer, started only while the client has frames waiting: by the
//!   `writers` thread ([`writers_loop`]) when the hub asks for one (a [`WriterJob`]), or by
//!   the connection thread itself. It drains the client's outbox into the socket and ends
//!   once the outbox has stayed empty for [`WRITER_LINGER`]. So an idle client costs one
//!   thread, a busy one two, and a writer blocked on a slow client's full socket blocks
//!   only that client.
//! - `writers`, one per server, turns the hub's requests into writer threads, so the hub
//!   never starts a thread under its lock and a publisher never waits for a spawn.
//!
//! The connection thread and a writer share the client's one socket (an `Arc<TcpStream>`:
//! one descriptor per client). Only the holder of the client's *pen* writes to it
//! (`outbox.rs`), so frames never interleave.
//!
//! **Keepalives.** The client sends a keepalive when it has heard nothing for the
//! keepalive interval ([`keepalive_interval`], announced in `Registered`), and the connection
//! thread answers it with one, unless a writer is busy (then frames are flowing anyway). The
//! server keeps no timer per client: an idle client costs one wake-up per interval, and a
//! client that hears nothing for two intervals takes its server for dead or hung
//! (`docs/heartbeats-and-failover.md`).
//!
//! **When the client fails.** A broken or silent connection (nothing for `--idle-timeout`)
//! ends the read loop; the client is then deregistered, which ends its writer, and the
//! socket is shut down. Whatever ends the connection, even an error halfway through
//! registering, the name is given back ([`Registered`]'s drop). A protocol error costs only
//! this connection, with the reason logged.

use std::io::{BufWriter, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::hub::{self, CatchUp, Hub, Origin, WriterJob};
use super::outbox::{Flow, OutboxReceiver, WhenIdle, write_frames};
use super::{READY_WAIT, Shared, THREAD_STACK, WRITE_BUFFER, claim};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Body, MAX_PAYLOAD_LEN, Message, read_message, write_message};

/// How long a client's writer waits for more frames once its outbox is empty, before it
/// ends and gives its thread back. A client receiving a message every second or two keeps
/// one writer; after a burst, the writers of ten thousand clients are gone two seconds
/// later. Starting a writer costs a few tens of microseconds.
const WRITER_LINGER: Duration = Duration::from_secs(2);

/// Heartbeat intervals in one client keepalive interval (see [`keepalive_interval`]).
const KEEPALIVE_INTERVALS: u32 = 4;

/// The keepalive interval this server announces to its clients: four heartbeat intervals
/// (2 s by default), and at most a quarter of `--idle-timeout`, so that a live client is
/// never taken for a silent one.
///
/// Why not every heartbeat interval, as peers do: each keepalive costs the server a wake-up
/// and a write, and with ten thousand clients every 500 ms that is twenty thousand a second
/// doing nothing (`docs/thread-per-connection.md` has the measurements). The price is
/// paid in failure detection: a client of a hung server notices within two keepalive
/// intervals instead of three heartbeat intervals (`docs/heartbeats-and-failover.md`).
pub(super) fn keepalive_interval(heartbeat_interval: Duration, idle_timeout: Duration) -> Duration {
    (heartbeat_interval * KEEPALIVE_INTERVALS)
        .min(idle_timeout / 4)
        .max(Duration::from_millis(10))
}

/// A client connection, from registration to goodbye, on its connection thread.
pub(super) fn serve_client(stream: TcpStream, shared: &Shared, deadline: Instant) -> Result<()> {
    let stream = Arc::new(stream);
    let Some(registered) = register_client(&stream, shared, deadline)? else {
        return Ok(()); // refused: the client was told why
    };
    let mut registered = registered;
    registered.write_initial(shared)?;
    let result = registered.read_publishes(shared);
    registered.ended = match &result {
        Ok(true) => "deregistered",
        // What a client that failed over does to the server it left; after a hang, this
        // is how a woken server learns of each client that moved meanwhile (its answer to
        // the client's last keepalive then finds the socket closed).
        Ok(false) => CLOSED_WITHOUT_GOODBYE,
        Err(Error::Io(e)) if closed_by_peer(e.kind()) => CLOSED_WITHOUT_GOODBYE,
        Err(e) if e.is_timeout() => "silent for longer than the idle timeout (--idle-timeout)",
        Err(_) => "the connection failed (the reason is logged as it closes)",
    };
    match result {
        // Said in the line above: no misbehaviour to log again as a closed connection.
        Err(Error::Io(e)) if closed_by_peer(e.kind()) => Ok(()),
        other => other.map(|_| ()),
    }
    // Dropping `registered` deregisters the client, whatever ended the connection.
}

/// How a client that left without saying goodbye is logged.
const CLOSED_WITHOUT_GOODBYE: &str =
    "connection closed without a goodbye: the client ended, or moved to another server";

/// Whether an I/O error means that the client closed its end (a read or write on a socket
/// the peer has closed).
fn closed_by_peer(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// A client the hub has registered, held by its connection thread. Dropping it gives the
/// name back and shuts the socket down: an error anywhere after the hub said yes (a write
/// that fails, a thread that cannot start) cannot leave the name taken.
pub(super) struct Registered<'a> {
    name: String,
    hub: &'a Hub,
    addr: &'a str,
    stream: Arc<TcpStream>,
    registration: hub::Registration,
    /// How the connection ended, for the line logged when the client leaves.
    ended: &'static str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // A replaced connection (the client resumed on a newer one) no longer owns the name,
        // nor does one whose client the hub dropped (fenced, stopping), which said so then:
        // nothing is removed and nothing is logged.
        if self.hub.deregister(&self.name, self.registration.conn) {
            log::info!(
                "client left name={} server={} reason=\"{}\"",
                self.name,
                self.addr,
                self.ended
            );
        }
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
) -> Result<Option<Registered<'a>>> {
    let first = net::read_opening(stream, deadline)?;
    let Some(Message::Register { name, resume }) = first else {
        return net::refuse(stream, "expected Register");
    };
    let mut writer: &TcpStream = stream;
    if let Err(why) = valid_name(&name, shared.max_name_len) {
        log::warn!("registration refused name={name:?} reason=\"{why}\"");
        write_message(&mut writer, &Message::RegisterRefused { reason: why })?;
        return Ok(None);
    }
    // A fresh name must be free across the cluster, not only here (`claim.rs`); a resume
    // proves with its token that it is the name's owner.
    if resume.is_none()
        && let Some(holder) = claim::claim_name(shared, &name)
    {
        let reason = format!("name {name:?} is already taken (on {holder})");
        log::warn!("registration refused name={name} reason=\"{reason}\"");
        write_message(&mut writer, &Message::RegisterRefused { reason })?;
        return Ok(None);
    }
    if !shared.hub.wait_ready(READY_WAIT) {
        log::warn!("registering name={name} before every peer has linked in");
    }
    let resuming = resume.is_some();
    let keepalive_ms = shared.client_keepalive.as_millis().min(u32::MAX as u128) as u32;
    match shared
        .hub
        .register(&name, resume, stream.clone(), keepalive_ms)
    {
        Ok(registration) => {
            let how = if resuming { "resumed" } else { "registered" };
            log::info!(
                "client {how} name={name} server={} replay={}",
                shared.addr,
                registration.initial.len() - 1
            );
            let registered = Registered {
                name,
                hub: &shared.hub,
                addr: &shared.addr,
                stream: stream.clone(),
                registration,
                ended: "writing to it failed before it was read",
            };
            stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
            Ok(Some(registered))
        }
        Err(reason) => {
            log::warn!("registration refused name={name} reason=\"{reason}\"");
            write_message(&mut writer, &Message::RegisterRefused { reason })?;
            Ok(None)
        }
    }
}

impl Registered<'_> {
    /// Writes `Registered` and the replay with the pen the registration gave this thread,
    /// then puts the pen down; frames queued meanwhile get a writer.
    fn write_initial(&mut self, shared: &Shared) -> Result<()> {
        // Taken, not borrowed: the replay's frames must not stay pinned for the connection's
        // whole life.
        let initial = std::mem::take(&mut self.registration.initial);
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, &*self.stream);
        for frame in &initial {
            out.write_all(frame)?;
        }
        out.flush()?;
        drop(out);
        if self.registration.outbox.put_pen_down() {
            start_writer(self.job(), shared)?;
        }
        Ok(())
    }

    /// Reads the client's frames until it leaves. Each publish goes into the hub, which
    /// stamps it with the registered `name` and `session`: nothing the client writes can
    /// make it speak as someone else. Returns whether the client said goodbye
    /// (`Deregister`) rather than just closing the connection.
    fn read_publishes(&self, shared: &Shared) -> Result<bool> {
        let name = &self.name;
        let hub::Registration { conn, session, .. } = self.registration;
        let mut reader: &TcpStream = &self.stream;
        while let Some(message) = read_message(&mut reader)? {
            match message {
                Message::Publish { seq, body } => {
                    check_body(&body)?;
                    log::debug!("publish name={name} seq={seq}");
                    if !shared
                        .hub
                        .publish(Origin::Local { conn }, name, session, seq, &body)
                    {
                        return Err(Error::Protocol("connection replaced by a newer one".into()));
                    }
                }
                Message::Keepalive => self.answer_keepalive(shared)?,
                Message::Deregister => return Ok(true),
                other => {
                    return net::refuse(
                        &self.stream,
                        &format!("unexpected {} from a client", other.kind()),
                    );
                }
            }
        }
        Ok(false)
    }

    /// Answers a keepalive with one, so a client that heard nothing for a while learns that
    /// its server lives. Only when the pen is free: a writer that holds it is writing to the
    /// client anyway, and two writers would interleave their bytes.
    fn answer_keepalive(&self, shared: &Shared) -> Result<()> {
        let outbox = &self.registration.outbox;
        if !outbox.take_pen() {
            return Ok(());
        }
        let written = (&*self.stream).write_all(&Message::Keepalive.encode());
        if outbox.put_pen_down() {
            start_writer(self.job(), shared)?;
        }
        Ok(written?)
    }

    /// What a writer for this client needs (the caller holds the pen, which goes with it).
    fn job(&self) -> WriterJob {
        WriterJob {
            name: self.name.clone(),
            conn: self.registration.conn,
            stream: self.stream.clone(),
            outbox: self.registration.outbox.clone(),
        }
    }
}

/// The `writers` thread: starts a writer for each client the hub says has frames and no
/// writer, until the server stops. A client whose writer cannot be started (the process is
/// out of threads) is cut off with the reason; it resumes elsewhere.
pub(super) fn writers_loop(writers_rx: Receiver<WriterJob>, shared: Shared) {
    loop {
        select! {
            recv(writers_rx) -> job => match job {
                Ok(job) => {
                    let (name, conn, stream) = (job.name.clone(), job.conn, job.stream.clone());
                    if let Err(e) = start_writer(job, &shared) {
                        log::warn!("client cut off name={name} reason=\"cannot start its writer: {e}\"");
                        shared.hub.deregister(&name, conn);
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
                Err(_) => break,
            },
            recv(shared.stop_rx) -> _ => break,
        }
    }
    log::debug!("writers thread stopped");
}

/// Starts a writer thread (`send-<name>`) for `job`'s client.
///
/// # Errors
/// When the thread cannot be started.
fn start_writer(job: WriterJob, shared: &Shared) -> std::io::Result<()> {
    let hub = shared.hub.clone();
    thread::Builder::new()
        .name(format!("send-{}", job.name))
        .stack_size(THREAD_STACK)
        .spawn(move || run_writer(job, &hub))?;
    Ok(())
}

/// A writer's life: the one writer loop over the client's outbox ([`write_frames`]),
/// catching up from the history window whenever the hub marked the client behind. Ends
/// when the outbox has stayed empty for [`WRITER_LINGER`] (the pen goes down), when the hub
/// removed the client, when the client fell behind the window (it is told why), or when a
/// write fails or times out; the last two shut the socket down, so the connection thread
/// ends too.
fn run_writer(job: WriterJob, hub: &Hub) {
    let WriterJob {
        name,
        conn,
        stream,
        outbox,
    } = job;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, &*stream);
    let catch_up =
        |out: &mut BufWriter<&TcpStream>| catch_up_if_behind(out, &outbox, hub, &name, conn);
    match write_frames(
        &mut out,
        &outbox,
        WRITER_LINGER,
        WhenIdle::PutPenDown,
        catch_up,
    ) {
        Ok(()) => {}
        Err(e) => {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                // The client has let its socket buffer stay full for the whole write
                // timeout: it has stopped reading. It resumes from the history window.
                log::warn!(
                    "slow consumer cut off name={name} reason=\"a write blocked for the write \
                     timeout; the client has stopped reading\""
                );
            } else {
                log::debug!("client writer stopped name={name}: {e}");
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// The writer's refill step: when the hub marked the client behind, refills the outbox from
/// the history window (`Hub::catch_up`). A client that fell behind the window is told why
/// and its connection closed.
fn catch_up_if_behind(
    out: &mut BufWriter<&TcpStream>,
    outbox: &OutboxReceiver,
    hub: &Hub,
    name: &str,
    conn: u64,
) -> std::io::Result<Flow> {
    if !outbox.is_behind() {
        return Ok(Flow::Continue);
    }
    match hub.catch_up(name, conn) {
        CatchUp::Done | CatchUp::Behind => Ok(Flow::Continue),
        CatchUp::Gone => Ok(Flow::Stop),
        CatchUp::FellBehind(reason) => {
            out.write_all(&Message::Error { reason }.encode())?;
            out.flush()?;
            let _ = out.get_ref().shutdown(Shutdown::Both);
            Ok(Flow::Stop)
        }
    }
}

/// Checks what a client asks to broadcast against the protocol's bounds.
fn check_body(body: &Body) -> Result<()> {
    let len = body.payload_len();
    if len > MAX_PAYLOAD_LEN {
        return Err(Error::Protocol(format!(
            "payload of {len} bytes is too large"
        )));
    }
    Ok(())
}

/// The name rule: 1 to `max_len` characters from `A-Z a-z 0-9 - _ .`, not starting with a
/// dot. Names appear in logs, file names and terminals, so the alphabet is small.
///
/// # Errors
/// The reason, as a sentence for the client.
pub fn valid_name(name: &str, max_len: usize) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > max_len {
        return Err(format!("name must be 1 to {max_len} characters"));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name {name:?} is invalid: use letters, digits, '-', '_' and '.' (not first)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::server::DEFAULT_MAX_NAME_LEN;

    #[test]
    fn names_outside_the_alphabet_or_too_long_are_refused() {
        let max = DEFAULT_MAX_NAME_LEN;
        assert!(valid_name("alice", max).is_ok());
        assert!(valid_name("bob-2_x.y", max).is_ok());
        assert!(valid_name(&"x".repeat(max), max).is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(max + 1)] {
            assert!(valid_name(bad, max).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_keepalive_is_four_heartbeats_and_at_most_a_quarter_of_the_idle_timeout() {
        let ms = Duration::from_millis;
        assert_eq!(keepalive_interval(ms(500), ms(30_000)), ms(2_000));
        assert_eq!(keepalive_interval(ms(500), ms(4_000)), ms(1_000));
    }
}
