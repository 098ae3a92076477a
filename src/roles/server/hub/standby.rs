//! Standby servers ([`Standbys`]): for each local client, the server it goes to on its own,
//! without asking the coordinator, should this server be gone. The other live servers that
//! take clients are dealt to the clients in turn, so that when a crowded server crashes its
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
//! spread stays within a factor of two of what it should be), and a client's `conn-<peer>` thread as it registers
//! (`Hub::register` adds the client's `Standby` to its initial frames). The frames are
//! queued under the hub's lock; the heartbeat thread writes them after it, itself.
//!
//! **When a standby is wrong** (it died too, it is full, it is stopping), the client learns
//! it when it registers there, and asks the coordinator as it would have. Why a client uses
//! its standby only when its server is gone, and what the deal leaves uneven:
//! `docs/heartbeats-and-failover.md`, "Standby servers".

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

/// The servers dealt to clients as standbys, and whose turn is next.
#[derive(Default)]
pub(super) struct Standbys {
    /// The other live servers that take clients (not leaving), in address order.
    servers: Vec<String>,
    /// Where the deal goes on: the index into `servers` of the next client's standby.
    next: usize,
    /// How many clients the server held when it last dealt to all of them.
    dealt_for: usize,
}

impl Standbys {
    /// The next client's `Standby` frame, for a server holding `clients`: the next server
    /// in turn, or an empty one when no other server takes clients (the client then
    /// forgets the one it had).
    pub(super) fn deal(&mut self, clients: usize) -> Frame {
        let server = if self.servers.is_empty() {
            String::new()
        } else {
            self.next = (self.next + 1) % self.servers.len();
            self.servers[self.next].clone()
        };
        let spread = SPREAD_PER_CLIENT.saturating_mul(u32::try_from(clients).unwrap_or(u32::MAX));
        let spread_ms = u32::try_from(spread.as_millis()).unwrap_or(u32::MAX);
        Frame::from(Message::Standby { server, spread_ms }.encode())
    }

    /// Takes the servers of a complete list that could stand in for `own`. Returns whether
    /// they differ from the ones dealt so far.
    fn replace(&mut self, listed: &[ServerInfo], own: &str) -> bool {
        let mut servers: Vec<String> = listed
            .iter()
            .filter(|s| s.alive && !s.leaving && s.addr != own)
            .map(|s| s.addr.clone())
            .collect();
        servers.sort();
        if servers == self.servers {
            return false;
        }
        self.servers = servers;
        true
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
    /// the standby it had, which is at worst a server that turns it away.
    fn deal_standbys_to_all(&mut self) {
        let count = self.clients.len();
        self.standbys.dealt_for = count;
        for client in self.clients.by_name.values_mut() {
            let _ = client.outbox_tx.try_push(self.standbys.deal(count));
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

    fn dealt_with_spread(standbys: &mut Standbys, clients: usize) -> (String, u32) {
        let frame = standbys.deal(clients);
        match Message::decode(&frame[4..]).unwrap() {
            Message::Standby { server, spread_ms } => (server, spread_ms),
            other => panic!("expected Standby, got {other:?}"),
        }
    }

    fn dealt(standbys: &mut Standbys) -> String {
        dealt_with_spread(standbys, 1).0
    }

    #[test]
    fn the_deal_goes_round_the_other_live_servers_that_take_clients() {
        let mut standbys = Standbys::default();
        let listed = [
            server("b:1", true, false),
            server("me:1", true, false),
            server("dead:1", false, false),
            server("leaving:1", true, true),
            server("a:1", true, false),
        ];
        assert!(standbys.replace(&listed, "me:1"));
        let deal: Vec<String> = (0..4).map(|_| dealt(&mut standbys)).collect();
        assert_eq!(deal, ["b:1", "a:1", "b:1", "a:1"]);
        assert!(!standbys.replace(&listed, "me:1"), "the same servers again");
    }

    #[test]
    fn with_no_other_server_the_standby_is_empty() {
        let mut standbys = Standbys::default();
        assert!(!standbys.replace(&[server("me:1", true, false)], "me:1"));
        assert_eq!(dealt(&mut standbys), "");
    }

    #[test]
    fn the_spread_grows_with_the_clients_the_server_holds() {
        let mut standbys = Standbys::default();
        assert_eq!(dealt_with_spread(&mut standbys, 0).1, 0);
        assert_eq!(dealt_with_spread(&mut standbys, 1_000).1, 300);
        assert_eq!(dealt_with_spread(&mut standbys, 10_000).1, 3_000);
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
