//! Names unique across the cluster: before a server registers a client under a fresh name,
//! it asks the coordinator to claim the name for it ([`ask_to_claim_name`]); the
//! coordinator decides (`claim_name` in `coordinator/registry.rs`) and refuses it when
//! another live server lists the name or claimed it first. That covers what the server
//! cannot see by itself: a client sent straight to it with `--server` under a name
//! registered elsewhere, and two clients registering one name on two servers within one
//! heartbeat interval, before any heartbeat lists it.
//!
//! **Threads and peers.** None of its own: the client's connection thread calls
//! [`ask_to_claim_name`] while it registers the client, which opens one short `Claim`
//! connection to the coordinator, asks once and closes it. It blocks for at most
//! [`CLAIM_CONNECT_TIMEOUT`] to connect and for the coordinator's challenge, then
//! [`CLAIM_REPLY_TIMEOUT`] for the answer.
//!
//! **Where uniqueness stops.** When the coordinator cannot answer in time (it is down, hung,
//! refusing connections at its limit, or still in its first heartbeat timeout after a
//! restart when that timeout is longer than [`CLAIM_REPLY_TIMEOUT`]), the server registers
//! the name after checking only its own clients, and logs that it did: a coordinator
//! outage must not stop clients from joining (the coordinator is never on the data path).
//! A name given twice that way stays twice: each server keeps its client, and receivers see
//! two senders under one name, told apart only by their session. Resumes are never claimed:
//! a resuming client proves with its token that it is the same client, not a second one. The
//! other way round, a name is refused for up to one heartbeat interval after its owner left
//! another server, since the coordinator's lists are a heartbeat old: a false "taken",
//! never a duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Shared;
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Message, Role};

/// How long connecting to the coordinator for a claim may take, and its challenge.
const CLAIM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the coordinator may take to answer a claim. It answers at once, except in the
/// first heartbeat timeout after it started (1.5 s by default), which it waits out; the
/// client waits for its registration for longer than this.
const CLAIM_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Registrations made without the coordinator's check since this process started, to log
/// the first and then every power of two: a coordinator outage during a burst of ten
/// thousand registrations should not write ten thousand lines.
static UNCHECKED: AtomicU64 = AtomicU64::new(0);

/// Asks the coordinator to claim `name` for a client about to register on this server.
/// Returns the server that has the name when it is taken elsewhere; `None` when it is this
/// server's to give, and also when the coordinator could not answer (logged, see the module
/// doc).
pub(super) fn ask_to_claim_name(shared: &Shared, name: &str) -> Option<String> {
    match ask(shared, name) {
        Ok(holder) if holder.is_empty() => None,
        Ok(holder) => Some(holder),
        Err(e) => {
            let unchecked = UNCHECKED.fetch_add(1, Ordering::Relaxed) + 1;
            if unchecked.is_power_of_two() {
                log::warn!(
                    "name not checked across the cluster name={name} reason=\"the \
                     coordinator at {} did not answer the claim: {e}\" unchecked_so_far=\
                     {unchecked}; registering it, unique only on this server",
                    shared.coordinator
                );
            }
            None
        }
    }
}

/// One `Claim` request: the holder the coordinator names, empty when the name is ours.
fn ask(shared: &Shared, name: &str) -> Result<String> {
    let mut stream = net::connect_as(
        &shared.coordinator,
        Role::Claim,
        CLAIM_CONNECT_TIMEOUT,
        shared.secret.as_ref(),
    )?;
    stream.set_read_timeout(Some(CLAIM_REPLY_TIMEOUT))?;
    let claim = Message::Claim {
        name: name.to_string(),
        server: shared.addr.clone(),
    };
    match net::request(&mut stream, &claim)? {
        Message::ClaimReply { holder } => Ok(holder),
        other => Err(Error::Protocol(format!(
            "expected ClaimReply, got {}",
            other.kind()
        ))),
    }
}
