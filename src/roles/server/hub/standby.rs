//! Standby servers ([`Standbys`]): for each local client, the server it goes to on its own,
//! without asking the coordinator, should this server be gone. The other live servers that
//! take clients are dealt to the clients so that each is held by as many of them as the
//! others, within one ([`Holding`] counts them), so that when a crowded server crashes its
//! clients arrive spread evenly over the rest, and the coordinator is not asked "which
//! server?" by all of them at once.
//!
//! Each `Standby` also says how long the client may wait before it goes there, at random:
//! [`SPREAD_PER_CLIENT`] for every client this server holds, so that ten thousand clients
//! arrive over three seconds instead of in one burst that starves every thread of the
//! machines that take them (a burst of 10,000 starved the survivors' peer links long
//! enough for the coordinator to take them for cut).
//!
//! **Who calls it.** The `heartbeat` thread, with each reply's list of servers
//! ([`Hub::set_standbys`], which deals again to every client when the list changed, and
//! when the clients have doubled or halved since the last deal, so that each client's
//! spread stays within a factor of two of what it should be), and a client's
//! `conn-<peer>` thread as it registers (`Hub::register` adds the client's `Standby` to
//! its initial frames). The frames are queued under the hub's lock; the heartbeat thread
//! writes them after it, itself.
//!
//! **When a standby is wrong** (it died too, it is full, it is stopping), the client learns
//! it when it registers there, and asks the coordinator as it would have. Why a client uses
//! its standby only when its server is gone, and what the deal leaves uneven:
//! `docs/heartbeats-and-failover.md`, "Standby servers".

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Frame, Hub, Pens, State};
use crate::protocol::{Message, ServerInfo};

/// How much later, at most, each client of this server may arrive at its standby: the
/// spread grows by this much for every client the server holds. 0.3 ms a client is about
/// what a 2-core machine spends to take one in (a connection, a thread, a resume), so the
/// clients arrive no faster than the standbys can take them: 10,000 clients over 3 s.
const SPREAD_PER_CLIENT: Duration = Duration::from_micros(300);

/// From this many clients on, every doubling or halving deals the standbys again with the
/// new spread. Below it the spread is under 20 ms, and a few clients more or less change
/// nothing.
const REDEAL_FROM: usize = 64;

/// The servers dealt to clients as standbys, each with how many local clients hold it.
#[derive(Default)]
pub(super) struct Standbys {
    /// The other live servers that take clients (not leaving), in address order.
    servers: Vec<Standby>,
    /// How many clients the server held when it last dealt to all of them.
    dealt_for: usize,
}

/// One server that stands by, and the count of the local clients that hold it.
struct Standby {
    addr: String,
    holders: Arc<AtomicUsize>,
}

/// A client's hold on its standby, kept in its `LocalClient`: counted while the client is
/// registered here, and let go when it leaves, however it leaves (the count drops with
/// the client). So the next client is dealt the server the fewest hold now, and a crash
/// sends this server's clients evenly over the others even after some have left.
pub(super) struct Holding(Arc<AtomicUsize>);

impl Drop for Holding {
    fn drop(&mut self) {
        // Only ever changed under the hub's lock; atomic because a `LocalClient` is `Send`.
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Standbys {
    /// The next client's `Standby` frame, for a server holding `clients`, and its hold on
    /// it: the server the fewest clients hold (ties go to the lower address), or an empty
    /// frame and no hold when no other server takes clients (the client then forgets the
    /// one it had).
    pub(super) fn deal(&mut self, clients: usize) -> (Frame, Option<Holding>) {
        let fewest = self
            .servers
            .iter()
            .min_by_key(|s| s.holders.load(Ordering::Relaxed));
        let (server, holding) = match fewest {
            Some(standby) => {
                standby.holders.fetch_add(1, Ordering::Relaxed);
                let holding = Holding(standby.holders.clone());
                (standby.addr.clone(), Some(holding))
            }
            None => (String::new(), None),
        };
        let spread = SPREAD_PER_CLIENT.saturating_mul(u32::try_from(clients).unwrap_or(u32::MAX));
        let spread_ms = u32::try_from(spread.as_millis()).unwrap_or(u32::MAX);
        let frame = Frame::from(Message::Standby { server, spread_ms }.encode());
        (frame, holding)
    }

    /// Takes the servers of a complete list that could stand in for `own`. Returns whether
    /// they differ from the ones dealt so far.
    fn replace(&mut self, listed: &[ServerInfo], own: &str) -> bool {
        let mut servers: Vec<&str> = listed
            .iter()
            .filter(|s| s.alive && !s.leaving && s.addr != own)
            .map(|s| s.addr.as_str())
            .collect();
        servers.sort_unstable();
        if servers.iter().eq(self.servers.iter().map(|s| &s.addr)) {
            return false;
        }
        self.servers = servers.into_iter().map(Standby::new).collect();
        true
    }

    /// Starts every count again from zero, before a deal to every client: the holds it
    /// replaces are let go on the old counts, which nobody reads any more.
    fn count_afresh(&mut self) {
        for standby in &mut self.servers {
            *standby = Standby::new(&standby.addr);
        }
    }
}

impl Standby {
    fn new(addr: &str) -> Standby {
        Standby {
            addr: addr.to_string(),
            holders: Arc::default(),
        }
    }
}

impl Hub {
    /// Deals standbys again to every local client when the live servers that take clients
    /// changed (one joined, died, or began to leave), or the clients have doubled or
    /// halved since the last deal ([`spread_is_stale`]). Only a `complete` list counts: a
    /// coordinator that has just restarted lists only the servers heard from so far, and a
    /// deal made from it would send every client to the first one.
    ///
    /// Ten thousand clients get ten thousand small frames, queued in one hold of the lock;
    /// this happens when the cluster changes or the clients double or halve, not on every
    /// heartbeat.
    pub fn set_standbys(&self, servers: &[ServerInfo], complete: bool) {
        let mut pens = Pens::new(self.pool.clone());
        {
            let mut state = self.lock();
            let own = state.addr.clone();
            let changed = complete && state.standbys.replace(servers, &own);
            let count = state.clients.len();
            if changed || spread_is_stale(count, state.standbys.dealt_for) {
                state.deal_standbys_to_all();
            }
            pens.add(state.taken.drain(..));
        }
        // Written on this thread, a non-blocking send each, rather than handed to the pool:
        // ten thousand writer threads started for one small frame each would cost the
        // machine far more than these sends (`write/mod.rs`).
        pens.write_now();
    }
}

/// Whether the spreads dealt when the server held `dealt_for` clients are too far from
/// what `count` clients call for: they have doubled (from [`REDEAL_FROM`] on), or halved
/// (from that many down).
fn spread_is_stale(count: usize, dealt_for: usize) -> bool {
    let grew = count >= REDEAL_FROM && count >= 2 * dealt_for;
    let shrank = dealt_for >= REDEAL_FROM && 2 * count <= dealt_for;
    grew || shrank
}

impl State {
    /// Queues a new `Standby` for every local client. A client whose outbox is full keeps
    /// the standby it had (no longer counted), which is at worst a server that turns it
    /// away.
    fn deal_standbys_to_all(&mut self) {
        let count = self.clients.len();
        self.standbys.dealt_for = count;
        self.standbys.count_afresh();
        for client in self.clients.by_name.values_mut() {
            let (frame, holding) = self.standbys.deal(count);
            // A full outbox drops the frame, and with it the new hold.
            if client.outbox_tx.try_push(frame) {
                client.standby = holding;
            }
            client.see_written(&mut self.taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(addr: &str, alive: bool, leaving: bool) -> ServerInfo {
        ServerInfo {
            addr: addr.into(),
            epoch: 1,
            alive,
            leaving,
            clients: Vec::new(),
        }
    }

    /// Deals one standby for a server of `clients`: the server named, the spread, and the
    /// hold (kept as long as the test keeps it, as a client would).
    fn deal(standbys: &mut Standbys, clients: usize) -> (String, u32, Option<Holding>) {
        let (frame, holding) = standbys.deal(clients);
        match Message::decode(&frame[4..]).unwrap() {
            Message::Standby { server, spread_ms } => (server, spread_ms, holding),
            other => panic!("expected Standby, got {other:?}"),
        }
    }

    #[test]
    fn the_other_live_servers_that_take_clients_are_held_evenly() {
        let mut standbys = Standbys::default();
        let listed = [
            server("b:1", true, false),
            server("me:1", true, false),
            server("dead:1", false, false),
            server("leaving:1", true, true),
            server("a:1", true, false),
        ];
        assert!(standbys.replace(&listed, "me:1"));
        let held: Vec<_> = (0..4).map(|_| deal(&mut standbys, 1)).collect();
        let servers: Vec<&str> = held.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(servers, ["a:1", "b:1", "a:1", "b:1"]);
        assert!(!standbys.replace(&listed, "me:1"), "the same servers again");
    }

    #[test]
    fn clients_that_leave_let_go_of_their_standby_and_the_next_ones_fill_the_gap() {
        let mut standbys = Standbys::default();
        standbys.replace(
            &[server("a:1", true, false), server("b:1", true, false)],
            "me:1",
        );
        let mut held: Vec<_> = (0..4).map(|_| deal(&mut standbys, 1)).collect();
        // Both clients that hold b leave.
        held.retain(|(server, _, _)| server != "b:1");
        let next: Vec<String> = (0..2).map(|_| deal(&mut standbys, 1).0).collect();
        assert_eq!(next, ["b:1", "b:1"]);
    }

    #[test]
    fn with_no_other_server_the_standby_is_empty() {
        let mut standbys = Standbys::default();
        assert!(!standbys.replace(&[server("me:1", true, false)], "me:1"));
        let (server, _, holding) = deal(&mut standbys, 1);
        assert_eq!(server, "");
        assert!(holding.is_none());
    }

    #[test]
    fn the_spread_grows_with_the_clients_the_server_holds() {
        let mut standbys = Standbys::default();
        assert_eq!(deal(&mut standbys, 0).1, 0);
        assert_eq!(deal(&mut standbys, 1_000).1, 300);
        assert_eq!(deal(&mut standbys, 10_000).1, 3_000);
    }

    #[test]
    fn the_spreads_are_dealt_again_when_the_clients_double_or_halve() {
        assert!(!spread_is_stale(10, 0), "a few clients: no deal for them");
        assert!(spread_is_stale(64, 0));
        assert!(!spread_is_stale(127, 64));
        assert!(spread_is_stale(128, 64));
        assert!(!spread_is_stale(5_001, 10_000));
        assert!(spread_is_stale(5_000, 10_000));
        assert!(
            spread_is_stale(0, 64),
            "the last clients left: none to deal to, harmless"
        );
    }
}
