//! Asking the coordinator which server a client should use: at the start, and on a
//! failover that the client's standby does not cover (its server is silent rather than
//! gone, or still answers; it has no standby, or the standby turned it away), naming the
//! server just lost.
//!
//! **Who calls it.** The session's registration (`session/register.rs`), on the thread that
//! registers: [`locate`] opens a short `Locate` connection to the coordinator, asks once, and
//! closes it. No thread of its own.
//!
//! **When the coordinator fails** (unreachable, refusing, or silent), [`locate`] returns an
//! error that says which: a first registration then fails (exit status 1, with that
//! sentence), and a failover tries the old server again instead.
//!
//! **How it stops.** A call blocks for at most [`LOCATE_CONNECT_TIMEOUT`] to connect and
//! again for the coordinator's challenge, then [`LOCATE_REPLY_TIMEOUT`] for the answer. The
//! rest: docs/heartbeats-and-failover.md, "Client failover".

use std::time::Duration;

use crate::auth::Secret;
use crate::error::{Error, Refusal, Result};
use crate::net;
use crate::protocol::{Message, Role};

/// How long connecting to the coordinator may take.
const LOCATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the coordinator may take to answer "which server?". It holds the answer back
/// while it finds out whether a suspect server is hung (up to twice its heartbeat timeout),
/// so this is well above any sensible timeout.
const LOCATE_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the coordinator at `coordinator` (proving membership with `secret`, if the cluster
/// has one) which server the client `name` should use, naming a `suspect` it just lost, and
/// whether it found `suspect` `unreachable` itself after the coordinator sent it there.
///
/// # Errors
/// [`Error::NoLiveServer`] when the coordinator knows no live server;
/// [`Error::Unreachable`] when it cannot be reached or does not answer (the text says
/// which); [`Error::Refused`] when it refuses the connection (a wrong or missing secret).
pub fn locate(
    coordinator: &str,
    secret: Option<&Secret>,
    name: &str,
    suspect: &str,
    unreachable: bool,
) -> Result<String> {
    let cannot_reach = |e| net::unreachable("coordinator", coordinator, e);
    let mut stream = net::connect_as(coordinator, Role::Locate, LOCATE_CONNECT_TIMEOUT, secret)
        .map_err(cannot_reach)?;
    stream.set_read_timeout(Some(LOCATE_REPLY_TIMEOUT))?;
    let request = Message::Locate {
        name: name.to_string(),
        suspect: suspect.to_string(),
        unreachable,
    };
    match net::request(&mut stream, &request) {
        Ok(Message::Assign { server }) => Ok(server),
        Ok(other) => Err(Error::Protocol(format!(
            "expected Assign, got {}",
            other.kind()
        ))),
        // The coordinator says "no live server" with its code; anything else it refuses
        // is passed on in its own words.
        Err(Error::Refused(Refusal::NoLiveServer, _)) => Err(Error::NoLiveServer(format!(
            "the coordinator at {coordinator} has no server to offer; start one with \
             `dsys server`"
        ))),
        Err(e) => Err(cannot_reach(e)),
    }
}
