//! One client connection on the server, from registration to goodbye: the seed's "thread
//! per client" ([`serve_client`], [`register_client`]), the client's writer thread, and the
//! checks on what a client sends ([`valid_name`], the payload bound).
//!
//! **Threads.** The connection thread (`conn-<peer>`, started by the accept loop) registers
//! the client and then reads its publishes into the hub. The client's writer
//! (`send-<name>`) drains the client's outbox into the socket. Each holds a `try_clone` of
//! the stream, so a client that is slow to read never delays its own publishes.
//!
//! **When the client fails.** A broken or silent connection ends the read loop; the client
//! is then deregistered, which ends its writer, and the socket is shut down. A protocol
//! error costs only this connection, with the reason logged.

use std::io::{BufWriter, ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::hub::{self, CatchUp, Frame, Hub, Origin};
use super::outbox::OutboxReceiver;
use super::{MAX_BATCH, READY_WAIT, Shared, THREAD_STACK};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Body, MAX_PAYLOAD_LEN, Message, read_message, write_message};

/// A client connection, from registration to goodbye, on its own thread.
pub(super) fn serve_client(
    mut stream: TcpStream,
    shared: &Shared,
    deadline: Instant,
) -> Result<()> {
    let Some((name, registration)) = register_client(&mut stream, shared, deadline)? else {
        return Ok(()); // refused: the client was told why
    };
    let hub::Registration {
        conn,
        initial,
        session,
        outbox,
    } = registration;
    let writer = {
        let writer = ClientWriter {
            stream: stream.try_clone()?,
            hub: shared.hub.clone(),
            name: name.clone(),
            conn,
            outbox,
            keepalive: shared.heartbeat_interval,
        };
        thread::Builder::new()
            .name(format!("send-{name}"))
            .stack_size(THREAD_STACK)
            .spawn(move || writer.run(initial))?
    };
    let result = read_publishes(&mut stream, shared, &name, conn, session);
    // Whatever ended the read loop, this connection no longer speaks for `name`. Removing it
    // drops its outbox sender, which ends the writer; shutting the socket unblocks it.
    if shared.hub.deregister(&name, conn) {
        log::info!("client left name={name} server={}", shared.addr);
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    result
}

/// The seed's `register_client`: reads the `Register` frame, asks the hub, and answers
/// `RegisterRefused` with a reason, or hands back the registration and the client's outbox.
/// Returns `None` when the registration was refused (the client has been told why).
///
/// # Errors
/// [`Error::Protocol`] when the first frame is not a `Register`, [`Error::Io`] when it is
/// not in by the handshake `deadline`.
fn register_client(
    stream: &mut TcpStream,
    shared: &Shared,
    deadline: Instant,
) -> Result<Option<(String, hub::Registration)>> {
    let first = net::read_opening(stream, deadline)?;
    let Some(Message::Register { name, resume }) = first else {
        return net::refuse(stream, "expected Register");
    };
    if let Err(why) = valid_name(&name, shared.max_name_len) {
        log::warn!("registration refused name={name:?} reason=\"{why}\"");
        write_message(stream, &Message::RegisterRefused { reason: why })?;
        return Ok(None);
    }
    if !shared.hub.wait_ready(READY_WAIT) {
        log::warn!("registering name={name} before every peer has linked in");
    }
    let resuming = resume.is_some();
    let keepalive_ms = shared.heartbeat_interval.as_millis().min(u32::MAX as u128) as u32;
    match shared
        .hub
        .register(&name, resume, stream.try_clone()?, keepalive_ms)
    {
        Ok(registration) => {
            let how = if resuming { "resumed" } else { "registered" };
            log::info!(
                "client {how} name={name} server={} replay={}",
                shared.addr,
                registration.initial.len() - 1
            );
            stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
            Ok(Some((name, registration)))
        }
        Err(reason) => {
            log::warn!("registration refused name={name} reason=\"{reason}\"");
            write_message(stream, &Message::RegisterRefused { reason })?;
            Ok(None)
        }
    }
}

/// Reads a registered client's frames until it leaves. Each publish goes into the hub,
/// which stamps it with the registered `name` and `session`: nothing the client writes
/// can make it speak as someone else.
fn read_publishes(
    stream: &mut TcpStream,
    shared: &Shared,
    name: &str,
    conn: u64,
    session: u64,
) -> Result<()> {
    while let Some(message) = read_message(stream)? {
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
            Message::Keepalive => {}
            Message::Deregister => return Ok(()),
            other => {
                return net::refuse(
                    stream,
                    &format!("unexpected {} from a client", other.kind()),
                );
            }
        }
    }
    Ok(())
}

/// A client's writer thread (`send-<name>`): what it needs to write one client's socket.
struct ClientWriter {
    stream: TcpStream,
    hub: Hub,
    name: String,
    conn: u64,
    outbox: OutboxReceiver,
    keepalive: Duration,
}

impl ClientWriter {
    /// Writes the initial frames, then the outbox, batched, with a keepalive after each quiet
    /// `keepalive` interval. When the hub marks the outbox behind, it refills it from the
    /// history window (`Hub::catch_up`) before it waits for more. Ends when the outbox
    /// disconnects (the hub removed the client), the client fell behind the window (it is
    /// told why), or a write fails; each way it shuts the socket so the reader ends too.
    fn run(self, initial: Vec<Frame>) {
        let mut out = BufWriter::with_capacity(64 * 1024, &self.stream);
        match self.write_all(&mut out, &initial) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The client has let its socket buffer stay full for the whole write
                // timeout: it has stopped reading. It resumes from the history window.
                log::warn!(
                    "slow consumer cut off name={} reason=\"a write blocked for the write \
                     timeout; the client has stopped reading\"",
                    self.name
                );
            }
            Err(e) => log::debug!("client writer stopped name={}: {e}", self.name),
            Ok(()) => {}
        }
        drop(out);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn write_all(&self, out: &mut impl Write, initial: &[Frame]) -> std::io::Result<()> {
        let keepalive_frame = Message::Keepalive.encode();
        for frame in initial {
            out.write_all(frame)?;
        }
        out.flush()?;
        loop {
            if self.outbox.is_behind() {
                match self.hub.catch_up(&self.name, self.conn) {
                    CatchUp::Done | CatchUp::Behind => {}
                    CatchUp::Gone => return Ok(()),
                    CatchUp::FellBehind(reason) => {
                        out.write_all(&Message::Error { reason }.encode())?;
                        return out.flush();
                    }
                }
            }
            match self.outbox.recv_timeout(self.keepalive) {
                Ok(frame) => {
                    out.write_all(&frame)?;
                    // A backlog goes out in one write instead of one per frame.
                    for frame in self.outbox.try_iter().take(MAX_BATCH) {
                        out.write_all(&frame)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => out.write_all(&keepalive_frame)?,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            out.flush()?;
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
    use super::valid_name;
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
}
