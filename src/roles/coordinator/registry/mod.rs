//! How the coordinator decides: the [`Registry`] of servers and what concerns all of it.
//! Which incarnation of a server counts ([`handle_heartbeat`]), which server a client is
//! sent to ([`Registry::assign`]), what follows when a server is declared dead
//! ([`declare_dead`]), and what one watchdog round decides, in order ([`Registry::tick`]).
//! Each child adds one decision to the same type: [`watchdog`] (the failure detector),
//! [`cuts`], [`rebalance`] (where clients go: failover, rebalancing, draining), [`claims`].
//!
//! **Who calls it.** The [`Coordinator`](super::Coordinator) handle, with the registry
//! locked: a `conn-<peer>` thread for a heartbeat, a locate or a claim, the `watchdog`
//! thread for a tick, a `probe-<addr>` thread for an answer. Nothing here touches a socket,
//! sleeps or reads the clock (but for the wall clock that seeds a fresh epoch): `now` is
//! passed in, so the unit tests drive every decision with made-up instants.
//!
//! **How it stops.** Nothing to stop: plain data, dropped with the last `Coordinator`
//! clone. `docs/heartbeats-and-failover.md` tells the decisions in the order they happen.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod claims;
mod cuts;
mod rebalance;
mod watchdog;

use super::metrics::Metrics;
use crate::protocol::{Departure, ServerInfo};
use claims::Claims;
use cuts::Cuts;

pub use claims::claim_name;
pub use rebalance::{
    DEFAULT_PACE, DRAIN_PACE, Move, Rebalance, Server, rebalance_clients, redistribute_clients,
};
pub use watchdog::{Checks, Probe, check_server_statuses, probe_deadline};

/// How long a planned assignment counts as load while its client has not shown up.
///
/// Long enough for any client to fail over (seconds), short enough that clients that died
/// with their server stop skewing the spread soon after.
const PLAN_TTL: Duration = Duration::from_secs(30);

/// What the registry knows of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// The server's current incarnation.
    pub epoch: u64,
    /// When its last heartbeat arrived.
    pub last_seen: Instant,
    /// False once the watchdog (or a failed check) declared it dead, or once it has left.
    pub alive: bool,
    /// True once it said it is leaving (a planned stop, `Departure::Leaving`): it gets no
    /// new client, is no target of rebalancing, and its clients are ordered away
    /// (`Registry::drain`). Stays true when it has left, which is how a left server is told
    /// from a dead one.
    pub leaving: bool,
    /// Its clients, as of its last heartbeat.
    pub clients: Vec<String>,
    /// Where the watchdog stands with it when its heartbeats are late.
    pub probe: Probe,
}

/// Everything the coordinator knows, rebuilt from heartbeats.
#[derive(Debug, Default)]
pub struct Registry {
    /// Servers by advertised address.
    pub(super) servers: HashMap<String, ServerEntry>,
    /// Incarnations declared dead: a heartbeat from one of them is fenced.
    pub(super) dead_epochs: HashSet<u64>,
    /// Where each client is to go (a dead server's clients, and clients just assigned),
    /// with when it was planned. An entry ends when the client shows up in any server's
    /// heartbeat, or after [`PLAN_TTL`] if it never does (the client died too).
    pub(super) plan: HashMap<String, (String, Instant)>,
    /// Names claimed by a server for a client it is registering ([`claim_name`]).
    pub(super) claims: Claims,
    /// The last epoch handed out; epochs only grow.
    pub(super) last_epoch: u64,
    /// When the last watchdog round ran, to notice that this process itself was late.
    pub(super) last_round: Option<Instant>,
    /// Moves ordered to even out the servers' clients (`rebalance.rs`).
    pub(super) rebalance: Rebalance,
    /// Servers that heartbeat but cannot reach each other (`cuts.rs`).
    pub(super) cuts: Cuts,
    /// The counters of `--metrics` (`metrics.rs`), shared with the scrape.
    pub(super) metrics: Arc<Metrics>,
}

/// What [`handle_heartbeat`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// Accepted: the server is to use `epoch`; `servers` are the live servers.
    Accepted {
        /// The server's epoch (freshly assigned when it sent 0).
        epoch: u64,
        /// Every live server.
        servers: Vec<ServerInfo>,
        /// Its clients to move, and where (rebalancing, `rebalance.rs`).
        moves: Vec<(String, String)>,
    },
    /// That incarnation was declared dead; it must start again as a new one.
    Fenced,
}

/// Records a heartbeat from the server at `addr` and says what to answer. Called with the
/// registry locked; pure apart from the registry, so it is unit-tested directly.
///
/// - `epoch == 0`: a new server (or one that was fenced) gets a fresh epoch. An older
///   incarnation at the same address is gone (two processes cannot bind one address), so it
///   is declared dead and its clients are planned elsewhere.
/// - a known dead epoch: fenced, so a zombie that wakes up learns it was replaced.
/// - an epoch the registry does not know (the coordinator restarted): adopted as is.
///
/// `clients` is `None` when the server's clients are the ones it last listed: the list
/// recorded for this incarnation stands. (A server lists them in full on every new
/// connection and at least every `FULL_LIST_EVERY` heartbeats, so a list this registry
/// missed is learnt soon.)
pub fn handle_heartbeat(
    registry: &mut Registry,
    now: Instant,
    addr: &str,
    epoch: u64,
    clients: Option<Vec<String>>,
) -> HeartbeatOutcome {
    handle_departing_heartbeat(registry, now, addr, epoch, clients, Departure::Staying)
}

/// [`handle_heartbeat`] for a server that may be stopping (a planned stop,
/// `docs/shutdown.md`):
///
/// - `Departure::Leaving`: from its first such heartbeat on, the server is *leaving*: no new
///   client is placed on it, rebalancing leaves it out, and each of its heartbeats takes
///   the next of the moves that empty it ([`Registry::drain`]), to the least loaded other
///   live servers, in its reply.
/// - `Departure::Gone`: its last heartbeat. It has *left*: no longer alive, never declared
///   dead, its epoch fenced; the clients it still lists (a drain cut short) are planned
///   elsewhere as a dead server's are.
pub fn handle_departing_heartbeat(
    registry: &mut Registry,
    now: Instant,
    addr: &str,
    epoch: u64,
    clients: Option<Vec<String>>,
    departure: Departure,
) -> HeartbeatOutcome {
    if registry.dead_epochs.contains(&epoch) {
        return HeartbeatOutcome::Fenced;
    }
    let epoch = if epoch == 0 {
        registry.next_epoch()
    } else {
        registry.last_epoch = registry.last_epoch.max(epoch);
        epoch
    };
    if let Some(old) = registry.servers.get(addr)
        && old.epoch != epoch
        && old.alive
    {
        if old.epoch > epoch {
            // A newer incarnation already owns this address: this one is stale.
            registry.dead_epochs.insert(epoch);
            return HeartbeatOutcome::Fenced;
        }
        log::info!(
            "server replaced addr={addr} old_epoch={} new_epoch={epoch}",
            old.epoch
        );
        declare_dead(registry, addr, now);
    }
    let is_new = registry.servers.get(addr).is_none_or(|s| !s.alive);
    let was_leaving = registry
        .servers
        .get(addr)
        .is_some_and(|s| s.alive && s.epoch == epoch && s.leaving);
    let clients = match clients {
        Some(clients) => {
            for name in &clients {
                registry.plan.remove(name);
            }
            registry.claims.listed(addr, &clients);
            registry.rebalance.listed(addr, &clients, now);
            clients
        }
        None => registry
            .servers
            .get_mut(addr)
            .filter(|s| s.alive && s.epoch == epoch)
            .map(|s| std::mem::take(&mut s.clients))
            .unwrap_or_default(),
    };
    if is_new {
        log::info!("server up addr={addr} epoch={epoch}");
        registry.rebalance.joined(addr, now);
    }
    log::debug!(
        "heartbeat addr={addr} epoch={epoch} clients={}",
        clients.len()
    );
    // When this incarnation's previous heartbeat came: heartbeats wait for their reply, so
    // this one was sent after it was answered (`Registry::drain` relies on that).
    let previous = registry
        .servers
        .get(addr)
        .filter(|s| s.epoch == epoch)
        .map(|s| s.last_seen);
    let leaving = was_leaving || departure != Departure::Staying;
    if leaving && !was_leaving {
        log::info!(
            "server leaving addr={addr} epoch={epoch} clients={}: moving its clients to the \
             other servers before it stops",
            clients.len()
        );
        registry.rebalance.leaving(addr);
        registry.plan.retain(|_, (target, _)| target != addr);
    }
    registry.servers.insert(
        addr.to_string(),
        ServerEntry {
            epoch,
            last_seen: now,
            alive: true,
            leaving,
            clients,
            probe: Probe::Idle,
        },
    );
    if departure == Departure::Gone {
        retire(registry, addr, Retired::Left, now);
    } else if leaving {
        registry.drain(addr, previous, now);
    }
    HeartbeatOutcome::Accepted {
        epoch,
        servers: registry.live_peers(),
        moves: registry.take_moves(addr),
    }
}

/// Marks `addr` dead at `now`, fences its epoch and plans its clients onto the live servers
/// ([`Registry::plan_orphans`]). Returns nothing: the plan is stored in the registry and
/// logged, which is how a learner sees it.
///
/// It lives here, not with the failure detector, because every part of the registry has a
/// say in it: the watchdog declares a silent server dead, a heartbeat one that was replaced,
/// cuts one that gives up, and a client's report one that refuses connections.
pub(super) fn declare_dead(registry: &mut Registry, addr: &str, now: Instant) {
    retire(registry, addr, Retired::Dead, now);
}

/// How a server stopped being alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retired {
    /// Declared dead: it stopped answering, or crashed.
    Dead,
    /// It said so in its last heartbeat (a planned stop).
    Left,
}

/// What dead and left servers have in common: no longer alive, the epoch fenced, and the
/// clients it still had planned onto the live servers. Only the log line differs.
fn retire(registry: &mut Registry, addr: &str, how: Retired, now: Instant) {
    let Some(entry) = registry.servers.get_mut(addr) else {
        return;
    };
    if !entry.alive {
        return;
    }
    entry.alive = false;
    let epoch = entry.epoch;
    let listed = std::mem::take(&mut entry.clients);
    let (orphans, elsewhere) = registry.not_listed_elsewhere(listed);
    registry.dead_epochs.insert(epoch);
    registry.claims.forget_server(addr);
    registry.rebalance.server_gone(addr, now);
    registry.cuts.server_gone(addr);
    match how {
        Retired::Dead => {
            Metrics::one(&registry.metrics.declared_dead);
            log::info!(
                "server declared dead addr={addr} epoch={epoch} clients={}",
                orphans.len() + elsewhere
            )
        }
        Retired::Left => {
            Metrics::one(&registry.metrics.left);
            log::info!(
                "server left addr={addr} epoch={epoch} clients={} (a planned stop{})",
                orphans.len(),
                if orphans.is_empty() {
                    ": every client had moved"
                } else {
                    "; the clients still on it fail over"
                }
            )
        }
    }
    registry.plan_orphans(addr, &orphans, elsewhere, now);
}

impl Registry {
    /// Splits the clients a retired server last listed into those no live server lists
    /// (returned: they still need a plan) and how many a live server lists already: they
    /// went to their standby, or were placed elsewhere, before the server was retired, and
    /// planning them again would count them twice as load.
    fn not_listed_elsewhere(&self, listed: Vec<String>) -> (Vec<String>, usize) {
        let live: HashSet<&str> = self
            .servers
            .values()
            .filter(|s| s.alive)
            .flat_map(|s| s.clients.iter().map(String::as_str))
            .collect();
        let before = listed.len();
        let orphans: Vec<String> = listed
            .into_iter()
            .filter(|name| !live.contains(name.as_str()))
            .collect();
        let elsewhere = before - orphans.len();
        (orphans, elsewhere)
    }

    /// One watchdog round at `now`: everything the coordinator decides by the clock rather
    /// than on a request, in this order. Returns the servers to probe, `(addr, epoch)`, for
    /// the caller to ask outside the lock ([`Registry::probe_answered`] takes the answer).
    ///
    /// 1. Its own lateness first ([`Registry::forgive_own_lateness`]): time this process was
    ///    not running is nobody's silence, so it comes off before anyone is judged.
    /// 2. Plans older than [`PLAN_TTL`] and name claims older than `timeout` end: their
    ///    client never showed up, or its registration never happened.
    /// 3. The failure detector ([`Registry::detect_failures`]): whom to probe, whom to
    ///    declare dead.
    /// 4. Cuts between live servers that lasted `timeout` ([`Registry::settle_cuts`]),
    ///    after the dead are out, so a cut to a server that just died gives nobody up.
    /// 5. Rebalancing ([`Registry::rebalance_round`]) last: it sees this round's deaths, and
    ///    waits while their clients are planned elsewhere.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        timeout: Duration,
        check_interval: Duration,
    ) -> Vec<(String, u64)> {
        self.forgive_own_lateness(now, check_interval);
        self.plan
            .retain(|_, (_, planned)| now.duration_since(*planned) < PLAN_TTL);
        self.claims.expire(now, timeout);
        let probes = self.detect_failures(now, timeout);
        self.settle_cuts(now, timeout);
        self.rebalance_round(now, timeout);
        probes
    }

    /// What the registry knows of the server at `addr`, if anything.
    pub(super) fn server(&self, addr: &str) -> Option<&ServerEntry> {
        self.servers.get(addr)
    }

    fn next_epoch(&mut self) -> u64 {
        // Epochs start from the wall clock in microseconds, so that a restarted coordinator
        // never hands out an epoch that an earlier run already gave to someone else.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        self.last_epoch = clock.max(self.last_epoch + 1);
        self.last_epoch
    }

    /// Each live server that takes clients (not one that is leaving) and its load: its
    /// clients plus the clients planned to arrive there.
    pub(super) fn loads(&self) -> Vec<(String, usize)> {
        self.servers
            .iter()
            .filter(|(_, s)| s.takes_clients())
            .map(|(addr, s)| {
                let planned = self.plan.values().filter(|(t, _)| t == addr).count();
                (addr.clone(), s.clients.len() + planned)
            })
            .collect()
    }

    /// The live servers without their client lists: what a server needs to make its peer
    /// links, and small enough for a frame however many clients the cluster has.
    fn live_peers(&self) -> Vec<ServerInfo> {
        let mut live: Vec<ServerInfo> = self
            .servers
            .iter()
            .filter(|(_, s)| s.alive)
            .map(|(addr, s)| ServerInfo {
                clients: Vec::new(),
                ..info(addr, s)
            })
            .collect();
        live.sort_by(|a, b| a.addr.cmp(&b.addr));
        live
    }

    /// Every known server with all its clients, for `dsys status`. The report goes out in
    /// as many frames as the names need (`protocol::report_frames`).
    pub(super) fn all_servers(&self) -> Vec<ServerInfo> {
        let mut all: Vec<ServerInfo> = self.servers.iter().map(|(a, s)| info(a, s)).collect();
        all.sort_by(|a, b| a.addr.cmp(&b.addr));
        all
    }

    /// The server `name` should use: its planned server if it has one; else the live server
    /// that lists the name already; else the least loaded live server. The choice counts as
    /// load at once (as a plan entry made at `now`), so that clients asking together are
    /// spread rather than all sent to the same server.
    ///
    /// Sending a name back to the server that lists it makes the check where the truth is:
    /// that server refuses the name while its owner is there ("already taken"), and takes it
    /// when the owner has just left, which the lists here, a heartbeat old, may not show
    /// yet. A client that goes to another server (`--server`) is refused there by the
    /// server's claim ([`claim_name`]).
    pub(super) fn assign(&mut self, name: &str, now: Instant) -> Option<String> {
        if let Some((target, _)) = self.plan.get(name)
            && self
                .servers
                .get(target)
                .is_some_and(ServerEntry::takes_clients)
        {
            return Some(target.clone());
        }
        if let Some(holder) = self
            .servers
            .iter()
            .find(|(_, s)| s.takes_clients() && s.clients.iter().any(|c| c == name))
            .map(|(addr, _)| addr.clone())
        {
            return Some(holder);
        }
        self.plan_least_loaded(name, None, now)
    }

    /// [`Registry::assign`] for a client that cannot reach `avoid` although this
    /// coordinator can: the least loaded live server other than `avoid`, or `avoid` itself
    /// when it is the only one left (the client then tries it again, and the cut may have
    /// healed).
    pub(super) fn assign_avoiding(
        &mut self,
        name: &str,
        avoid: &str,
        now: Instant,
    ) -> Option<String> {
        self.plan_least_loaded(name, Some(avoid), now)
            .or_else(|| self.assign(name, now))
    }

    /// Whether `addr` has a cut to or from another server, reported now (`cuts.rs`). Such a
    /// server may be the one to give up, so rebalancing moves no client to it.
    fn cut_off(&self, addr: &str) -> bool {
        self.cuts.involve(addr)
    }

    /// Plans `name` onto the least loaded live server other than `except` (ties go to the
    /// lower address), recording the choice as a plan entry so that it counts as load at
    /// once; `None` when there is no such server.
    fn plan_least_loaded(
        &mut self,
        name: &str,
        except: Option<&str>,
        now: Instant,
    ) -> Option<String> {
        let (target, _) = self
            .loads()
            .into_iter()
            .filter(|(addr, _)| Some(addr.as_str()) != except)
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))?;
        self.plan.insert(name.to_string(), (target.clone(), now));
        Some(target)
    }
}

impl ServerEntry {
    /// Whether new clients may be placed on it: alive, and not leaving.
    pub(super) fn takes_clients(&self) -> bool {
        self.alive && !self.leaving
    }
}

fn info(addr: &str, entry: &ServerEntry) -> ServerInfo {
    ServerInfo {
        addr: addr.to_string(),
        epoch: entry.epoch,
        alive: entry.alive,
        leaving: entry.leaving,
        clients: entry.clients.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dead_server_is_fenced_and_its_clients_planned() {
        let now = Instant::now();
        let mut registry = Registry::default();
        let HeartbeatOutcome::Accepted { epoch, .. } =
            handle_heartbeat(&mut registry, now, "a:1", 0, Some(names(&["x", "y"])))
        else {
            panic!("first heartbeat must be accepted")
        };
        handle_heartbeat(&mut registry, now, "b:1", 0, None);
        handle_heartbeat(&mut registry, now, "c:1", 0, None);
        declare_dead(&mut registry, "a:1", now);
        // The zombie's next heartbeat is refused ...
        assert_eq!(
            handle_heartbeat(&mut registry, now, "a:1", epoch, None),
            HeartbeatOutcome::Fenced
        );
        // ... and its two clients go one to each live server.
        assert_ne!(registry.plan["x"].0, registry.plan["y"].0);
        assert_eq!(
            registry.assign("x", now),
            Some(registry.plan["x"].0.clone())
        );
    }

    #[test]
    fn restarted_coordinator_adopts_known_epochs() {
        let mut registry = Registry::default();
        let outcome = handle_heartbeat(&mut registry, Instant::now(), "a:1", 42, None);
        assert!(matches!(
            outcome,
            HeartbeatOutcome::Accepted { epoch: 42, .. }
        ));
    }

    #[test]
    fn fresh_clients_are_spread_over_servers() {
        let now = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, now, "a:1", 0, None);
        handle_heartbeat(&mut registry, now, "b:1", 0, None);
        let first = registry.assign("x", now).unwrap();
        let second = registry.assign("y", now).unwrap();
        assert_ne!(first, second);
    }
}
