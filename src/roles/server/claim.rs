//! Names unique across the cluster: before a server registers a client under a fresh name,
//! it asks the coordinator to claim the name for it ([`ask_to_claim_name`]); the coordinator
//! decides (`claim_name` in `coordinator/registry/claims.rs`) and refuses it when another
//! live server lists the name or claimed it first. That covers a client sent straight here
//! with `--server`, and two clients registering one name on two servers within one
//! heartbeat interval. Resumes are never claimed: a token proves them.
//!
//! **Who calls it.** The client's connection thread, while it registers the client
//! (`client.rs`). No thread of its own: one short `Claim` connection, asked once, closed;
//! it blocks for at most [`CLAIM_CONNECT_TIMEOUT`], then [`CLAIM_REPLY_TIMEOUT`].
//!
//! **When the coordinator cannot answer** in time, the name is registered after checking
//! only this server's clients, and logged: a coordinator outage must not stop clients from
//! joining. Where uniqueness stops, and why: `docs/security.md`, "Identity: nobody speaks as
//! someone else".

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
