//! Standby servers ([`Standbys`]): for each local client, the server it goes to on its own,
//! without asking the coordinator, should this server be gone. The other live servers that
//! take clients are dealt to the clients in turn, so that when a crowded server crashes its
//! clients arrive spread evenly over the rest, and the coordinator is not asked "which
//! server?" by all of them at once.
//!
//! **Who calls it.** The `heartbeat` thread, with each reply's list of servers
//! ([`Hub::set_standbys`], which deals again to every client when the list changed), and a
//! client's `conn-<peer>` thread as it registers (`Hub::register` adds the client's
//! `Standby` to its initial frames). Both under the hub's lock; the frames are queued like
//! any other, never written here.
//!
//! **When a standby is wrong** (it died too, it is full, it is stopping), the client learns
//! it when it registers there, and asks the coordinator as it would have. Why a client uses
//! its standby only when its server is gone, and what the deal leaves uneven:
//! `docs/heartbeats-and-failover.md`, "Standby servers".

use super::{Frame, Hub};
use crate::protocol::{Message, ServerInfo};

/// The servers dealt to clients as standbys, and whose turn is next.
#[derive(Default)]
pub(super) struct Standbys {
    /// The other live servers that take clients (not leaving), in address order.
    servers: Vec<String>,
    /// Where the deal goes on: the index into `servers` of the next client's standby.
    next: usize,
}

impl Standbys {
    /// The next client's `Standby` frame: the next server in turn, or an empty one when no
    /// other server takes clients (the client then forgets the one it had).
    pub(super) fn deal(&mut self) -> Frame {
        let server = if self.servers.is_empty() {
            String::new()
        } else {
            self.next = (self.next + 1) % self.servers.len();
            self.servers[self.next].clone()
        };
        Frame::from(Message::Standby { server }.encode())
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
    /// changed (one joined, died, or began to leave). Only a `complete` list counts: a
    /// coordinator that has just restarted lists only the servers heard from so far, and a
    /// deal made from it would send every client to the first one.
    ///
    /// Ten thousand clients get ten thousand small frames, queued in one hold of the lock;
    /// this happens when the cluster changes, not on every heartbeat. A client whose outbox
    /// is full keeps the standby it had, which is at worst a server that turns it away.
    pub fn set_standbys(&self, servers: &[ServerInfo], complete: bool) {
        if !complete {
            return;
        }
        self.with_state(|state, _, _| {
            if !state.standbys.replace(servers, &state.addr) {
                return;
            }
            for client in state.clients.by_name.values_mut() {
                let _ = client.outbox_tx.try_push(state.standbys.deal());
                client.see_written(&mut state.taken);
            }
        });
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

    fn dealt(standbys: &mut Standbys) -> String {
        let frame = standbys.deal();
        match Message::decode(&frame[4..]).unwrap() {
            Message::Standby { server } => server,
            other => panic!("expected Standby, got {other:?}"),
        }
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
}
