//! Names being registered, on the coordinator's side: the pending [`Claims`] that keep a
//! name from being given twice in the heartbeat interval before any heartbeat lists it.
//! Whether another server lists the name is the registry's to say
//! (`registry::claim_name`); the `Claim` request itself is served in `serve.rs`.
//!
//! **Threads.** None: [`Claims`] is plain data inside the [`Registry`](super::Registry),
//! with time passed in, so the tests below drive it with synthetic instants.
//!
//! **When a peer fails.** A claimant that never registers the name (its client left, or it
//! died) holds it for at most one heartbeat timeout; one declared dead, not at all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
