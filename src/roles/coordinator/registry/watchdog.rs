//! The failure detector: when a server whose heartbeats are late is asked whether it still
//! answers (a *probe*), when it is declared dead ([`check_server_statuses`], pure), and how
//! the watchdog keeps its own lateness from counting against anyone.
//!
//! **Who calls it.** [`Registry::tick`], every check interval on the `watchdog` thread, with
//! the registry locked: [`Registry::forgive_own_lateness`] first, then
//! [`Registry::detect_failures`]. `probe-<addr>` threads report through
//! [`Registry::probe_answered`]. The probe's socket is in `probe.rs`; time is passed in here.
//!
//! **Two kinds of mistake.** A failure detector can declare a live server dead, or notice a
//! dead one late. Declaring a busy server dead fences it and throws off every client it has,
//! which makes an overload worse, so this one trades a little detection time for never
//! doing so (HashiCorp's Lifeguard, and a direct probe before acting).
//! `docs/heartbeats-and-failover.md` ("The watchdog", "Late is not dead") tells the rest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Registry, ServerEntry, declare_dead};

/// Whether a server whose heartbeats are late still answers (see [`check_server_statuses`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Probe {
    /// Its heartbeats are on time, or it answered since they were late.
    #[default]
    Idle,
    /// It was asked; no answer yet.
    Asked,
    /// It did not answer within [`probe_deadline`]: it is hung, gone or cut off.
    Unanswered,
}

/// What the watchdog does this round: whom to ask whether it still answers, and whom to
/// declare dead.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Servers to probe (address and epoch, so that a late answer is not taken for a newer
    /// incarnation's).
    pub probe: Vec<(String, u64)>,
    /// Servers to declare dead.
    pub dead: Vec<String>,
}

/// How long before the heartbeat timeout a silent server is probed, which is also how long
/// the probe waits for its answer: a third of the timeout (500 ms by default, one heartbeat
/// interval). So an unanswered probe is known when the timeout expires.
pub fn probe_deadline(timeout: Duration) -> Duration {
    timeout / 3
}

/// The watchdog's decision at `now`, pure so tests drive it with synthetic instants. A
/// failure detector makes two kinds of mistake, declaring a live server dead and noticing a
/// dead one late; this one refuses the first at the price of a little of the second:
/// - a live server silent for longer than `timeout` less [`probe_deadline`] is *probed*:
///   asked, on its own port, whether it still answers (a server busy with ten thousand
///   clients may send its heartbeat late, but it answers);
/// - it is declared dead once it has been silent for longer than `timeout` *and* its probe
///   went unanswered, so a hung (stopped) server is declared dead at the timeout, give or
///   take one watchdog tick, and a slow one never;
/// - whatever its probe, a server silent for twice the timeout is declared dead: a probe
///   that never reported back must not keep a dead server alive.
pub fn check_server_statuses(
    now: Instant,
    servers: &HashMap<String, ServerEntry>,
    timeout: Duration,
) -> Checks {
    let mut checks = Checks::default();
    for (addr, server) in servers.iter().filter(|(_, s)| s.alive) {
        let silent = now.saturating_duration_since(server.last_seen);
        let unanswered = server.probe == Probe::Unanswered;
        if (silent > timeout && unanswered) || silent > timeout * 2 {
            checks.dead.push(addr.clone());
        } else if silent > timeout - probe_deadline(timeout) && server.probe == Probe::Idle {
            checks.probe.push((addr.clone(), server.epoch));
        }
    }
    checks.dead.sort();
    checks.probe.sort();
    checks
}

impl Registry {
    /// Takes the watchdog's own lateness off every server's silence. The round should come
    /// every `check_interval`; when it comes much later, this process was not running
    /// (stopped, or starved of CPU), and the heartbeats that arrived meanwhile were not read
    /// either: that time is not counted against the servers (the idea behind Lifeguard's
    /// local health awareness: a detector that is itself late accuses no one for it).
    pub(super) fn forgive_own_lateness(&mut self, now: Instant, check_interval: Duration) {
        if let Some(previous) = self.last_round {
            let late = now
                .saturating_duration_since(previous)
                .saturating_sub(check_interval);
            if late > check_interval {
                log::warn!(
                    "watchdog ran late late_ms={}: this process was not running; that time \
                     is not counted against the servers",
                    late.as_millis()
                );
                for server in self.servers.values_mut() {
                    // Never later than now: a heartbeat cannot come from the future.
                    server.last_seen = (server.last_seen + late).min(now);
                }
            }
        }
        self.last_round = Some(now);
    }

    /// Acts on [`check_server_statuses`] at `now`: marks the servers to probe as asked and
    /// returns them, `(addr, epoch)`, for the caller to ask outside the lock; declares dead
    /// those whose silence has lasted too long.
    pub(super) fn detect_failures(
        &mut self,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(String, u64)> {
        let checks = check_server_statuses(now, &self.servers, timeout);
        for (addr, _) in &checks.probe {
            if let Some(server) = self.servers.get_mut(addr) {
                log::info!(
                    "heartbeat late addr={addr} silent_ms={}; asking whether it still answers",
                    now.saturating_duration_since(server.last_seen).as_millis()
                );
                server.probe = Probe::Asked;
            }
        }
        for addr in checks.dead {
            log::info!(
                "heartbeat missed addr={addr} timeout_ms={}",
                timeout.as_millis()
            );
            declare_dead(self, &addr, now);
        }
        checks.probe
    }

    /// Records the answer to a probe of the incarnation `(addr, epoch)`. A server that
    /// answered counts as heard from now; one that did not is declared dead by the next
    /// round once its timeout has passed. An answer to an older question (the server has
    /// heartbeated since, or was replaced) changes nothing.
    pub(crate) fn probe_answered(&mut self, addr: &str, epoch: u64, answered: bool, now: Instant) {
        let Some(server) = self.servers.get_mut(addr) else {
            return;
        };
        if !server.alive || server.epoch != epoch || server.probe != Probe::Asked {
            return;
        }
        if answered {
            log::info!("server slow but answering addr={addr}: its heartbeat was late");
            server.last_seen = now;
            server.probe = Probe::Idle;
        } else {
            server.probe = Probe::Unanswered;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::coordinator::handle_heartbeat;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A check interval longer than any gap between the rounds of these tests: the watchdog
    /// is never late in them, unless a test says so.
    const ROUNDS: Duration = Duration::from_secs(10);

    #[test]
    fn silent_server_is_declared_dead_only_after_the_timeout() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "a:1", 0, None);
        // It did not answer its probe; still, the timeout must pass first.
        registry.servers.get_mut("a:1").unwrap().probe = Probe::Unanswered;
        let timeout = Duration::from_millis(300);
        let just_before = start + Duration::from_millis(300);
        let just_after = start + Duration::from_millis(301);
        assert!(
            check_server_statuses(just_before, &registry.servers, timeout)
                .dead
                .is_empty()
        );
        assert_eq!(
            check_server_statuses(just_after, &registry.servers, timeout).dead,
            names(&["a:1"])
        );
    }

    #[test]
    fn a_late_server_is_probed_a_third_of_the_timeout_early_and_only_once() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "a:1", 0, None);
        let epoch = registry.servers["a:1"].epoch;
        let timeout = Duration::from_millis(300);
        let ms = |n| start + Duration::from_millis(n);
        assert_eq!(registry.tick(ms(200), timeout, ROUNDS), vec![]);
        let asked = registry.tick(ms(201), timeout, ROUNDS);
        assert_eq!(asked, vec![("a:1".to_string(), epoch)]);
        assert_eq!(registry.tick(ms(202), timeout, ROUNDS), vec![]);
    }

    #[test]
    fn a_server_that_answers_its_probe_is_never_declared_dead() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "busy:1", 0, None);
        let epoch = registry.servers["busy:1"].epoch;
        let timeout = Duration::from_millis(300);
        let at = |n| start + Duration::from_millis(n);
        registry.tick(at(250), timeout, ROUNDS);
        registry.probe_answered("busy:1", epoch, true, at(290));
        // Its heartbeat is now 400 ms late, but it answered 110 ms ago.
        registry.tick(at(400), timeout, ROUNDS);
        assert!(registry.servers["busy:1"].alive);
    }

    #[test]
    fn an_unanswered_probe_means_dead_at_the_timeout_and_silence_means_dead_at_twice_it() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "hung:1", 0, None);
        handle_heartbeat(&mut registry, start, "lost:1", 0, None);
        let epoch = registry.servers["hung:1"].epoch;
        let timeout = Duration::from_millis(300);
        let at = |n| start + Duration::from_millis(n);
        registry.tick(at(250), timeout, ROUNDS);
        registry.probe_answered("hung:1", epoch, false, at(300));
        // The probe of lost:1 never reports back.
        registry.tick(at(301), timeout, ROUNDS);
        assert!(!registry.servers["hung:1"].alive);
        assert!(registry.servers["lost:1"].alive);
        registry.tick(at(601), timeout, ROUNDS);
        assert!(!registry.servers["lost:1"].alive);
    }

    #[test]
    fn a_watchdog_that_ran_late_does_not_count_its_own_delay_against_the_servers() {
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "a:1", 0, None);
        let epoch = registry.servers["a:1"].epoch;
        let timeout = Duration::from_millis(300);
        let check_interval = Duration::from_millis(30);
        let at = |n| start + Duration::from_millis(n);
        registry.tick(at(30), timeout, check_interval);
        // This process was stopped for a second: heartbeats were not read meanwhile.
        let asked = registry.tick(at(1_030), timeout, check_interval);
        assert!(
            asked.is_empty(),
            "a late watchdog must not even suspect: {asked:?}"
        );
        assert!(registry.servers["a:1"].alive);
        assert_eq!(registry.servers["a:1"].epoch, epoch);
    }

    #[test]
    fn forgiving_its_own_delay_never_moves_a_heartbeat_past_now() {
        let start = Instant::now();
        let mut registry = Registry::default();
        let timeout = Duration::from_millis(300);
        let check_interval = Duration::from_millis(30);
        let at = |n| start + Duration::from_millis(n);
        registry.tick(at(0), timeout, check_interval);
        // A heartbeat read just before the late round: adding the whole delay to it would
        // put it a second into the future, and a stop after that would go unnoticed for
        // a second longer.
        handle_heartbeat(&mut registry, at(990), "a:1", 0, None);
        registry.tick(at(1_000), timeout, check_interval);
        assert!(registry.servers["a:1"].last_seen <= at(1_000));
    }
}
