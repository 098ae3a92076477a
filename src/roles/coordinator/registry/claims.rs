//! Name claims: whether a name is free across the cluster ([`claim_name`]), one decision,
//! and the pending [`Claims`] it keeps. A server claims a fresh name here before it
//! registers a client under it; a claim holds the name for the heartbeat interval before any
//! heartbeat lists it, so neither `--server` nor two registrations at once give a name
//! twice.
//!
//! **Who calls it.** [`Coordinator::claim`](crate::roles::coordinator::Coordinator::claim),
//! on a claim connection's `conn-<peer>` thread, with the registry locked; the heartbeats
//! and the watchdog's tick end claims (listed, dead, or expired). Time is passed in.
//!
//! **When a peer fails.** A claimant that never registers the name (its client left, or it
//! died) holds it for at most one heartbeat timeout; one declared dead, not at all.
//! `docs/protocol.md` ("Server → coordinator name claim") has the conversation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Registry;

/// Claims `name` for a client about to register on `server`, at `now`. Returns the server
/// that has the name, if another one does: a live server that lists it in its last
/// heartbeat, or one that claimed it less than `ttl` ago. Otherwise the claim is recorded
/// and `None` returned: the name is `server`'s to give. Called with the registry locked, so
/// of two servers claiming one name at once, the second is refused.
///
/// The claimant's own list does not count against it: its hub checks its own clients (and
/// takes a name whose owner has just left, which its last heartbeat may still show).
pub fn claim_name(
    registry: &mut Registry,
    now: Instant,
    name: &str,
    server: &str,
    ttl: Duration,
) -> Option<String> {
    let listed_elsewhere = registry
        .servers
        .iter()
        .find(|(addr, s)| s.alive && *addr != server && s.clients.iter().any(|c| c == name));
    if let Some((holder, _)) = listed_elsewhere {
        return Some(holder.clone());
    }
    registry.claims.claim(now, name, server, ttl)
}

/// Names claimed by a server for a client it is registering, with when. A claim ends when
/// the claimant's heartbeat lists the name (the list speaks from then on), when the
/// claimant is declared dead, or when it is older than the claim lifetime: the
/// registration failed, or the client left at once.
#[derive(Debug, Default)]
pub struct Claims(HashMap<String, (String, Instant)>);

impl Claims {
    /// Claims `name` for `server` at `now`: the other server whose claim, younger than
    /// `ttl`, holds it; otherwise `None`, and the claim is recorded (or renewed).
    pub fn claim(
        &mut self,
        now: Instant,
        name: &str,
        server: &str,
        ttl: Duration,
    ) -> Option<String> {
        if let Some((claimant, at)) = self.0.get(name)
            && claimant != server
            && now.saturating_duration_since(*at) < ttl
        {
            return Some(claimant.clone());
        }
        self.0.insert(name.to_string(), (server.to_string(), now));
        None
    }

    /// A heartbeat from `server` lists `names`: their claims by `server` are done.
    pub fn listed(&mut self, server: &str, names: &[String]) {
        for name in names {
            if self
                .0
                .get(name)
                .is_some_and(|(claimant, _)| claimant == server)
            {
                self.0.remove(name);
            }
        }
    }

    /// `server` was declared dead: its claims go with it.
    pub fn forget_server(&mut self, server: &str) {
        self.0.retain(|_, (claimant, _)| claimant != server);
    }

    /// Forgets the claims made `ttl` or longer before `now`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.0
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::coordinator::registry::{declare_dead, handle_heartbeat};

    #[test]
    fn a_name_listed_by_another_live_server_is_not_given() {
        let now = Instant::now();
        let ttl = Duration::from_millis(100);
        let mut registry = Registry::default();
        let alice = vec!["alice".to_string()];
        handle_heartbeat(&mut registry, now, "a:1", 0, Some(alice));
        handle_heartbeat(&mut registry, now, "b:1", 0, None);
        let claim = |r: &mut Registry, server| claim_name(r, now, "alice", server, ttl);
        assert_eq!(claim(&mut registry, "b:1"), Some("a:1".to_string()));
        // Its own list does not count against the claimant (its owner may have just left).
        assert_eq!(claim(&mut registry, "a:1"), None);
        // A dead server's names are free.
        declare_dead(&mut registry, "a:1", now);
        assert_eq!(claim(&mut registry, "b:1"), None);
    }

    #[test]
    fn the_first_claim_holds_until_listed_expired_or_its_server_is_dead() {
        let now = Instant::now();
        let ttl = Duration::from_millis(100);
        let mut claims = Claims::default();
        // Two servers claiming one name: the first wins, and may ask again.
        assert_eq!(claims.claim(now, "carol", "a:1", ttl), None);
        assert_eq!(claims.claim(now, "carol", "b:1", ttl), Some("a:1".into()));
        assert_eq!(claims.claim(now, "carol", "a:1", ttl), None);
        // Once the claimant's heartbeat lists the name, the claim is done.
        claims.listed("a:1", &["carol".to_string()]);
        assert_eq!(claims.claim(now, "carol", "b:1", ttl), None);
        // A claim lasts `ttl`, should the registration not happen.
        let later = now + ttl;
        assert_eq!(claims.claim(later, "carol", "a:1", ttl), None);
        // A dead server's claims are free at once.
        assert_eq!(claims.claim(now, "dave", "a:1", ttl), None);
        claims.forget_server("a:1");
        assert_eq!(claims.claim(now, "dave", "b:1", ttl), None);
        claims.expire(now + ttl, ttl);
        assert!(claims.0.is_empty());
    }
}
