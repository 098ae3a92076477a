//! Every socket handler of the coordinator: what a `conn-<peer>` thread does with the one
//! connection it was given, by the role its `Hello` announces (`Heartbeat`, `Locate`,
//! `Status`, `Claim`).
//!
//! **Who calls it.** The accept loop that [`start_coordinator`](super::start_coordinator)
//! starts runs [`serve_connection`] on a fresh `conn-<peer>` thread per connection. Each
//! handler reads requests, asks the [`Coordinator`] handle (which locks the registry only to
//! decide) and writes the reply after the lock is gone.
//!
//! **When a peer fails.** A peer that sends the wrong frame is refused with a reason, and
//! a broken connection returns `Err`: either way it costs only this connection.
//!
//! **How it stops.** A heartbeat connection lives as long as its server, ending when the
//! server closes it or its idle timeout passes; locate, status and claim connections answer
//! one request and close. `docs/protocol.md` (section 6) has each conversation.

use std::net::TcpStream;
use std::time::Duration;

use super::{Coordinator, HeartbeatOutcome};
use crate::auth::Secret;
use crate::error::Result;
use crate::net;
use crate::protocol::{MAX_NAME_LEN_LIMIT, valid_name};
use crate::protocol::{Message, Role, read_message, report_frames, write_message};

/// How long one write to a peer may block: every reply is small.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one connection according to the role its first frame announces. The opening
/// frames, `Hello` and the role's first request, must be in by the handshake deadline.
pub(super) fn serve_connection(
    stream: TcpStream,
    challenge: net::Challenge,
    coordinator: &Coordinator,
    limits: net::ConnectionLimits,
    secret: Option<&Secret>,
) -> Result<()> {
    let deadline = limits.handshake_deadline();
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let first_request = |stream: &TcpStream| net::read_opening(stream, deadline);
    match net::expect_hello(&stream, challenge, deadline, secret)? {
        Some(Role::Heartbeat) => {
            let first = first_request(&stream)?;
            stream.set_read_timeout(Some(limits.idle_timeout))?;
            serve_heartbeats(stream, first, coordinator)
        }
        Some(Role::Locate) => {
            let first = first_request(&stream)?;
            serve_locate(stream, first, coordinator)
        }
        Some(Role::Status) => {
            let first = first_request(&stream)?;
            serve_status(stream, first, coordinator)
        }
        Some(Role::Claim) => {
            let first = first_request(&stream)?;
            serve_claim(stream, first, coordinator)
        }
        Some(other) => net::refuse(
            &stream,
            &format!("the coordinator does not serve {other:?}"),
        ),
        None => Ok(()),
    }
}

/// A server's heartbeat connection: one Heartbeat, one reply, for as long as it lives.
/// `first` is the frame read under the handshake deadline; later ones may each take up to
/// the idle timeout.
fn serve_heartbeats(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let mut next = first;
    while let Some(message) = next {
        let Message::Heartbeat {
            addr,
            epoch,
            clients,
            cut_off,
            departure,
        } = message
        else {
            return net::refuse(
                &stream,
                &format!("expected Heartbeat, got {}", message.kind()),
            );
        };
        // The address goes back out in every reply, status report and log line: one that
        // is not an address at all could make those too large to send (the frame cap), or
        // write control characters into the operator's terminal.
        if !net::is_plausible_addr(&addr) {
            return net::refuse(
                &stream,
                &format!(
                    "a server's address is HOST:PORT of at most {} bytes of printable ASCII; \
                     this one has {} bytes",
                    net::MAX_ADDR_LEN,
                    addr.len()
                ),
            );
        }
        let reply = match coordinator.heartbeat(&addr, epoch, clients, &cut_off, departure) {
            HeartbeatOutcome::Accepted {
                epoch,
                servers,
                moves,
            } => Message::HeartbeatReply {
                epoch,
                complete: coordinator.knows_whole_cluster(),
                servers,
                moves,
            },
            HeartbeatOutcome::Fenced => {
                log::info!("fenced a stale server incarnation addr={addr} epoch={epoch}");
                Message::Fenced {
                    reason: format!("epoch {epoch} of {addr} was declared dead; rejoin"),
                }
            }
        };
        write_message(&mut stream, &reply)?;
        next = read_message(&mut stream)?;
    }
    Ok(())
}

/// One `Locate` request, one `Assign` (or an `Error` saying why not), then the connection
/// closes. Blocks while the coordinator settles a suspect ([`Coordinator::locate`]).
fn serve_locate(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let Some(Message::Locate {
        name,
        suspect,
        unreachable,
    }) = first
    else {
        return net::refuse(&stream, "expected Locate");
    };
    // The name goes into the registry's plan and the log. A client checks its own name
    // before it asks (the servers would refuse any other), so anything else is not a dsys
    // client speaking; and the suspect, a server address, is looked up, never logged, until
    // the registry knows it.
    if let Err(why) = valid_name(&name, MAX_NAME_LEN_LIMIT) {
        return net::refuse(&stream, &why);
    }
    let reply = match coordinator.locate(&name, &suspect, unreachable) {
        Ok(server) => {
            log::debug!("assigned name={name} server={server}");
            Message::Assign { server }
        }
        Err(e) => Message::Error {
            code: e.refusal(),
            reason: e.to_string(),
        },
    };
    write_message(&mut stream, &reply)
}

/// `dsys status`: one `StatusQuery`, the report in as many frames as it needs, then the
/// connection closes.
fn serve_status(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let Some(Message::StatusQuery) = first else {
        return net::refuse(&stream, "expected StatusQuery");
    };
    // Ten thousand names on each of a few servers do not fit one frame: the report goes in
    // as many parts as it needs (`protocol::report_frames`).
    for part in report_frames(coordinator.status()) {
        write_message(&mut stream, &part)?;
    }
    Ok(())
}

/// A server's claim on a name for a client it is about to register: one request, one reply
/// ([`Coordinator::claim`]), then the connection closes.
fn serve_claim(
    mut stream: TcpStream,
    first: Option<Message>,
    coordinator: &Coordinator,
) -> Result<()> {
    let Some(Message::Claim { name, server }) = first else {
        return net::refuse(&stream, "expected Claim");
    };
    // Both go into the registry and the log: a server checked the name before it asked
    // (`valid_name`), so anything else is not a dsys server speaking.
    if valid_name(&name, MAX_NAME_LEN_LIMIT).is_err() || !net::is_plausible_addr(&server) {
        return net::refuse(&stream, "a claim names a valid client name and a HOST:PORT");
    }
    let holder = coordinator.claim(&name, &server).unwrap_or_default();
    if !holder.is_empty() {
        log::info!("name claim refused name={name} server={server} holder={holder}");
    }
    write_message(&mut stream, &Message::ClaimReply { holder })
}
