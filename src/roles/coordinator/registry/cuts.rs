//! Cuts between servers: two servers that both heartbeat, but cannot reach each other, and
//! which of the two gives up. Each lists in its heartbeats the peers it has not heard from
//! for longer than its link silence limit (`Heartbeat.cut_off`); nothing is lost meanwhile,
//! but nothing is acknowledged either, so someone has to give up. A cut reported for one
//! heartbeat timeout is settled by declaring one of its servers dead
//! ([`choose_server_to_give_up`]: the one cut off from the most peers, then the one with
//! fewer clients, then the higher address), and its clients move as after a crash.
//!
//! **Who calls it.** The handle records each accepted heartbeat's list
//! ([`Registry::record_cuts`]); [`Registry::tick`] settles the lasting cuts
//! ([`Registry::settle_cuts`]) every round. Time is passed in; no socket, no thread.
//!
//! **How it stops.** A cut ends when its reporter stops listing it, or when either server
//! is declared dead. `docs/heartbeats-and-failover.md` ("Partitions") tells the rest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Registry, declare_dead};

/// The cuts servers have reported: `(reporter, peer)` and since when.
#[derive(Debug, Default)]
pub struct Cuts {
    reported: HashMap<(String, String), Instant>,
}

impl Cuts {
    /// Records `reporter`'s list of the peers it cannot reach, at `now`: a cut it no longer
    /// lists is healed.
    fn record(&mut self, reporter: &str, cut_off: &[String], now: Instant) {
        self.reported
            .retain(|(from, to), _| from != reporter || cut_off.contains(to));
        for peer in cut_off.iter().filter(|p| *p != reporter) {
            self.reported
                .entry((reporter.to_string(), peer.clone()))
                .or_insert(now);
        }
    }

    /// `addr` was declared dead: its cuts no longer matter.
    pub(super) fn server_gone(&mut self, addr: &str) {
        self.reported
            .retain(|(from, to), _| from != addr && to != addr);
    }

    /// Whether `addr` has a cut to or from another server, reported now.
    pub(super) fn involve(&self, addr: &str) -> bool {
        self.reported
            .keys()
            .any(|(from, to)| from == addr || to == addr)
    }
}

impl Registry {
    /// Records the peers that `reporter`, whose heartbeat was just accepted, says it cannot
    /// reach at `now`. Only live servers this registry knows count, so a server cannot make
    /// it remember names without bound.
    pub(crate) fn record_cuts(&mut self, reporter: &str, cut_off: &[String], now: Instant) {
        let known: Vec<String> = cut_off
            .iter()
            .filter(|peer| self.server(peer).is_some_and(|s| s.alive))
            .cloned()
            .collect();
        self.cuts.record(reporter, &known, now);
    }

    /// Settles every cut between live servers reported for `timeout` or more, by declaring
    /// one of its two servers dead (see the module doc). Returns the servers declared dead.
    pub(super) fn settle_cuts(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let mut given_up = Vec::new();
        loop {
            let alive = |addr: &str| self.servers.get(addr).is_some_and(|s| s.alive);
            let lasting: Vec<(String, String)> = self
                .cuts
                .reported
                .iter()
                .filter(|((from, to), since)| {
                    alive(from) && alive(to) && now.saturating_duration_since(**since) >= timeout
                })
                .map(|(pair, _)| pair.clone())
                .collect();
            if lasting.is_empty() {
                return given_up;
            }
            let clients: HashMap<String, usize> = self
                .servers
                .iter()
                .map(|(addr, s)| (addr.clone(), s.clients.len()))
                .collect();
            let server = choose_server_to_give_up(&lasting, &clients);
            log::warn!(
                "servers cut off from each other cuts=[{}]: declaring {server} dead so that its \
                 clients move and the others' messages flow again",
                lasting
                    .iter()
                    .map(|(from, to)| format!("{from}-x->{to}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            declare_dead(self, &server, now);
            given_up.push(server);
        }
    }
}

/// Of the servers in `cuts` (each `(reporter, peer)`), the one to declare dead: the one with
/// cuts to or from the most other servers, then the one with fewer `clients`, then the
/// higher address. Every server in `cuts` must be in `clients`.
pub fn choose_server_to_give_up(
    cuts: &[(String, String)],
    clients: &HashMap<String, usize>,
) -> String {
    let mut partners: HashMap<&str, Vec<&str>> = HashMap::new();
    for (from, to) in cuts {
        for (server, other) in [(from, to), (to, from)] {
            let list = partners.entry(server.as_str()).or_default();
            if !list.contains(&other.as_str()) {
                list.push(other);
            }
        }
    }
    let key = |server: &str| {
        let cut_peers = partners[server].len();
        let their_clients = clients.get(server).copied().unwrap_or_default();
        (
            cut_peers,
            std::cmp::Reverse(their_clients),
            server.to_string(),
        )
    };
    partners
        .keys()
        .map(|s| (key(s), s))
        .max()
        .map(|(_, s)| s.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::coordinator::handle_heartbeat;

    fn pair(from: &str, to: &str) -> (String, String) {
        (from.to_string(), to.to_string())
    }

    fn counts(list: &[(&str, usize)]) -> HashMap<String, usize> {
        list.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn the_server_cut_off_from_the_most_peers_gives_up() {
        let cuts = [pair("a", "b"), pair("c", "a"), pair("b", "a")];
        let clients = counts(&[("a", 0), ("b", 9), ("c", 9)]);
        assert_eq!(choose_server_to_give_up(&cuts, &clients), "a");
    }

    #[test]
    fn between_two_the_one_with_fewer_clients_gives_up_then_the_higher_address() {
        let cuts = [pair("a", "b"), pair("b", "a")];
        assert_eq!(
            choose_server_to_give_up(&cuts, &counts(&[("a", 2), ("b", 5)])),
            "a"
        );
        assert_eq!(
            choose_server_to_give_up(&cuts, &counts(&[("a", 3), ("b", 3)])),
            "b"
        );
    }

    #[test]
    fn a_cut_is_settled_only_once_it_has_lasted_a_timeout() {
        let timeout = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = Registry::default();
        for server in ["a:1", "b:1", "c:1"] {
            handle_heartbeat(&mut registry, start, server, 0, Some(Vec::new()));
        }
        registry.cuts.record("a:1", &["b:1".to_string()], start);
        assert!(
            registry
                .settle_cuts(start + timeout / 2, timeout)
                .is_empty()
        );
        // Healed before it lasted: nothing to settle.
        registry.cuts.record("a:1", &[], start + timeout / 2);
        assert!(
            registry
                .settle_cuts(start + timeout * 2, timeout)
                .is_empty()
        );
        // Again, for good this time: one of the two is declared dead, and only one.
        registry
            .cuts
            .record("a:1", &["b:1".to_string()], start + timeout * 2);
        registry
            .cuts
            .record("b:1", &["a:1".to_string()], start + timeout * 2);
        let given_up = registry.settle_cuts(start + timeout * 3, timeout);
        assert_eq!(
            given_up,
            vec!["b:1".to_string()],
            "same clients: the higher address"
        );
        assert!(!registry.servers["b:1"].alive);
        assert!(registry.servers["c:1"].alive && registry.servers["a:1"].alive);
    }
}
