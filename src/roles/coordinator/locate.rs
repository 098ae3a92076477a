//! A client's "which server?", answered by [`Coordinator::locate`]: the planned server, or,
//! when the client names a server it lost, first a check of that server.
//!
//! **Who calls it.** A locate connection's `conn-<peer>` thread (`serve.rs`), once per
//! `Locate` request. The check of a suspect server ([`probe::is_gone`]) runs on that thread,
//! outside the registry's lock; a suspect that may be hung makes the thread wait on the
//! coordinator's `Condvar` until the heartbeats decide ([`Coordinator::settle_suspect`]).
//! That wait ends within twice the heartbeat timeout, whatever happens.
//!
//! **When a peer fails.** A client that could not reach the server it was sent to says so
//! (`unreachable`), and is placed on another one: the coordinator may see that server fine
//! while this client cannot (a one-way cut). `docs/heartbeats-and-failover.md` ("Client
//! failover") tells the whole path.

use std::time::Instant;

use super::{Coordinator, Registry, probe, registry};
use crate::error::{Error, Result};

impl Coordinator {
    /// Answers a client's "which server?". Blocks while it settles a suspect.
    ///
    /// When the client names a `suspect` server it lost, that server is checked first
    /// (outside the lock): if it is gone (refuses, or resets before its first frame) it is
    /// declared dead at once, rather than after the heartbeat timeout. If it answers or
    /// stays silent, the server may be fine (only the client's connection broke) or hung
    /// (its kernel still accepts). The heartbeats tell which (see
    /// [`Coordinator::settle_suspect`]), unless the client says it could not reach the
    /// suspect after being sent there (`unreachable`): then the server may be fine for
    /// everyone else, but not for this client, which is placed on another server.
    ///
    /// # Errors
    /// [`Error::NoLiveServer`] when no server is alive.
    pub fn locate(&self, name: &str, suspect: &str, unreachable: bool) -> Result<String> {
        let (suspect_alive, suspect_leaving) = match self.lock().server(suspect) {
            Some(entry) if !suspect.is_empty() => (entry.alive, entry.leaving),
            _ => (false, false),
        };
        if suspect_alive && suspect_leaving {
            // It is stopping on purpose and takes no client back: no need to ask whether
            // it lives.
            return self
                .lock()
                .assign(name, Instant::now())
                .ok_or_else(no_live_server);
        }
        if suspect_alive {
            if !probe::is_gone(suspect) {
                if unreachable {
                    log::info!(
                        "client cannot reach server name={name} addr={suspect}; placing it \
                         elsewhere"
                    );
                    return self
                        .lock()
                        .assign_avoiding(name, suspect, Instant::now())
                        .ok_or_else(no_live_server);
                }
                return self.settle_suspect(name, suspect);
            }
            let mut registry = self.lock();
            if registry.server(suspect).is_some_and(|s| s.alive) {
                log::info!("server unreachable addr={suspect} reported_by={name}");
                registry::declare_dead(&mut registry, suspect, Instant::now());
            }
        }
        self.lock()
            .assign(name, Instant::now())
            .ok_or_else(no_live_server)
    }

    /// Waits until the `suspect` either heartbeats again (it is fine: the client is sent
    /// back to it) or is declared dead by the watchdog (the client gets its planned server).
    /// One of the two happens within the heartbeat timeout plus a watchdog tick; the wait is
    /// capped at twice the timeout in case the watchdog is stopping.
    ///
    /// Waiting here, rather than telling the client to stay and ask again, is what moves a
    /// hung server's clients the moment it is declared dead, and all by the same plan.
    fn settle_suspect(&self, name: &str, suspect: &str) -> Result<String> {
        let asked = Instant::now();
        let unsettled = |registry: &mut Registry| {
            registry
                .server(suspect)
                .is_some_and(|s| s.alive && s.last_seen <= asked)
        };
        let registry = self.lock();
        let (mut registry, _) = self
            .changed
            .wait_timeout_while(registry, self.heartbeat_timeout * 2, unsettled)
            .unwrap_or_else(|p| p.into_inner());
        if registry.server(suspect).is_some_and(|s| s.alive) {
            return Ok(suspect.to_string());
        }
        registry
            .assign(name, Instant::now())
            .ok_or_else(no_live_server)
    }
}

/// The answer to a client when no server can take it, with what to do about it.
fn no_live_server() -> Error {
    Error::NoLiveServer("the coordinator knows no live server; start one with `dsys server`".into())
}
