//! Plans: where clients go when they must move. A dead or left server's clients, spread over
//! the live servers ([`redistribute_clients`], [`Registry::plan_orphans`]); a live cluster
//! evened out whenever its counts drift apart, a few clients at a time, never against
//! failover and never back and forth ([`rebalance_clients`], guarantee 7); and a leaving
//! server emptied at [`DRAIN_PACE`] ([`Registry::drain`]).
//!
//! **Who calls it.** [`declare_dead`](super::declare_dead) plans the orphans; every
//! [`Registry::tick`] runs [`Registry::rebalance_round`]; a leaving server's heartbeats
//! drain it, and each heartbeat reply carries the moves ordered from that server
//! ([`Registry::take_moves`]). Time is passed in; no socket, no thread.
//!
//! **How it stops.** A failover plan ends when its client shows up in a heartbeat, or after
//! `PLAN_TTL`; a move when the new server lists its client, or after three timeouts.
//! `docs/heartbeats-and-failover.md` ("The redistribution plan", "Rebalancing") tells why.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Registry;
use crate::roles::coordinator::metrics::Metrics;

/// Default for `--rebalance-pace`: moves ordered a second, at most, handed out evenly over
/// the watchdog's rounds. Each move costs the new server a registration (a thread, a
/// handshake, the replay of what the client missed) and the client two connections: the
/// failover bench measured about 1 ms of this machine's CPU per moving client, so 100 moves
/// a second take a tenth of it, and a server returning to thousands of clients takes them
/// back over seconds, not all in one heartbeat.
pub const DEFAULT_PACE: u32 = 100;
/// Moves ordered a second, at most, to empty a server that is leaving (a planned stop,
/// [`Registry::drain`]); EMQX's node evacuation moves 500 connections a second by default.
/// Faster than rebalancing because someone is waiting for the server to stop: 10,000
/// clients take 20 s, inside the server's default `--drain-timeout` of 30 s. At about 1 ms
/// of CPU per move ([`DEFAULT_PACE`]), that is half a core spread over the cluster.
pub const DRAIN_PACE: u32 = 500;
/// How long a client that moved is not chosen to move again.
pub const MOVE_MEMORY: Duration = Duration::from_secs(60);

/// Plans where the clients of a dead server go: round-robin over the live servers, least
/// loaded first, so the moved clients differ by at most one between any two live servers
/// and the emptiest servers take the extra ones.
///
/// `live` holds each live server's address and current load. Returns `(client, server)`
/// pairs; empty when no server is alive.
pub fn redistribute_clients(clients: &[String], live: &[(String, usize)]) -> Vec<(String, String)> {
    if live.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<&(String, usize)> = live.iter().collect();
    order.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    clients
        .iter()
        .zip(order.iter().cycle())
        .map(|(client, (server, _))| (client.clone(), server.clone()))
        .collect()
}

/// Whether a client that a leaving server's heartbeat lists is really still on it, given
/// where and when it was last seen moved (`moved`) and when that server's previous
/// heartbeat came (`previous`). One that never moved, or moved here, is. One seen arriving
/// elsewhere may still be listed once: that heartbeat may have left before the client did.
/// But heartbeats wait for their reply, so a heartbeat after one that came after the move
/// was sent after it: if that one lists the client, the client is here. (Its new server
/// listed an old registration of it: a client that lost that server one way and failed
/// over here, whose registration there waits for its idle timeout. Without another order
/// the drain would wait for it until `--drain-timeout`.)
fn still_here(
    moved: Option<&(Option<String>, Instant)>,
    addr: &str,
    previous: Option<Instant>,
) -> bool {
    match moved {
        None | Some((None, _)) => true,
        Some((Some(to), when)) => to == addr || previous.is_some_and(|p| p > *when),
    }
}

impl Registry {
    /// Plans the clients that the dead or left server `from` still had (`orphans`) onto the
    /// live servers ([`redistribute_clients`]), logs the plan and keeps it in the registry's
    /// `plan`: each client is given its planned server when it asks
    /// ([`Registry::assign`]). `elsewhere` more had registered on another server already
    /// (most often their standby, `server/hub/standby.rs`): the log line counts them.
    pub(super) fn plan_orphans(
        &mut self,
        from: &str,
        orphans: &[String],
        elsewhere: usize,
        now: Instant,
    ) {
        // Earlier plans for these clients are void: they are about to be planned again, and
        // must not count as load where they were going.
        for name in orphans {
            self.plan.remove(name);
        }
        let plan = redistribute_clients(orphans, &self.loads());
        if !orphans.is_empty() || elsewhere > 0 {
            let m = &self.metrics;
            Metrics::plan(&m.redistribution_plans, &m.redistribution_moves, plan.len());
            log::info!(
                "redistribution plan from={from} moves=[{}] already_elsewhere={elsewhere}",
                plan_for_the_log(&plan)
            );
        }
        if plan.is_empty() && !orphans.is_empty() {
            log::warn!("no live server to take the clients of addr={from}");
        }
        self.plan.extend(
            plan.into_iter()
                .map(|(client, server)| (client, (server, now))),
        );
    }
}

/// Moves of a redistribution plan that its log line names one by one; the rest are
/// counted, so that a server that held ten thousand clients does not log a line of a
/// hundred kilobytes (`dsys status --clients` lists them all).
const PLAN_MOVES_LOGGED: usize = 32;

/// `alice->ADDR, dave->ADDR`, at most [`PLAN_MOVES_LOGGED`] of them, then `... N more`.
fn plan_for_the_log(plan: &[(String, String)]) -> String {
    let mut shown: Vec<String> = plan
        .iter()
        .take(PLAN_MOVES_LOGGED)
        .map(|(client, server)| format!("{client}->{server}"))
        .collect();
    if plan.len() > PLAN_MOVES_LOGGED {
        shown.push(format!("... {} more", plan.len() - PLAN_MOVES_LOGGED));
    }
    shown.join(", ")
}

/// One move the coordinator decided: `client` from server `from` to server `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The client to move.
    pub client: String,
    /// The server it is on.
    pub from: String,
    /// The server it is to move to.
    pub to: String,
}

/// A move ordered and not yet seen done.
#[derive(Debug, Clone)]
struct Ordered {
    from: String,
    to: String,
    when: Instant,
    /// Handed to the source server in a heartbeat reply.
    sent: bool,
}

/// What the coordinator remembers of rebalancing.
#[derive(Debug)]
pub struct Rebalance {
    /// Moves ordered a second, at most; `None`: rebalancing is off.
    pace: Option<u32>,
    /// Moves that may be ordered now: grows with time at `pace` a second, up to one
    /// round's worth more than a fifth of a second's.
    credit: f64,
    last_round: Option<Instant>,
    /// Moves ordered and not yet seen done, by client.
    ordered: HashMap<String, Ordered>,
    /// Clients whose move was seen done, with where to and when; where to is `None` for a
    /// client whose target died while it was on its way or had just arrived (see
    /// [`Rebalance::server_gone`]): it has moved once already, wherever it is now.
    moved: HashMap<String, (Option<String>, Instant)>,
    /// When each live server's incarnation was first heard from.
    joined: HashMap<String, Instant>,
    /// Since when the counts have been uneven (`Registry::uneven_for`).
    uneven_since: Option<Instant>,
    /// Each leaving server's drain: moves it may be ordered now ([`DRAIN_PACE`]) and
    /// when that was last counted.
    draining: HashMap<String, (f64, Instant)>,
}

impl Default for Rebalance {
    fn default() -> Rebalance {
        Rebalance::with_pace(Some(DEFAULT_PACE))
    }
}

impl Rebalance {
    /// Rebalancing at `pace` moves a second, or off (`None`).
    pub fn with_pace(pace: Option<u32>) -> Rebalance {
        Rebalance {
            pace,
            credit: 0.0,
            last_round: None,
            ordered: HashMap::new(),
            moved: HashMap::new(),
            joined: HashMap::new(),
            uneven_since: None,
            draining: HashMap::new(),
        }
    }

    /// A new incarnation of `addr` was heard from at `now`.
    pub(super) fn joined(&mut self, addr: &str, now: Instant) {
        self.joined.insert(addr.to_string(), now);
    }

    /// `addr` was declared dead: moves to or from it will not happen (its clients fail
    /// over to their standbys or by the plan, and so do those on their way to it).
    pub(super) fn server_gone(&mut self, addr: &str, now: Instant) {
        self.joined.remove(addr);
        self.draining.remove(addr);
        // A client ordered to `addr`, or seen arriving there, may have moved already; now
        // it fails over from there, to its standby, wherever that is. Moving it again to
        // even the counts out would move it back and forth: it is remembered as moved,
        // counted where it turns up, and left alone for [`MOVE_MEMORY`].
        let mut moved_there: Vec<String> = self
            .ordered
            .iter()
            .filter(|(_, o)| o.to == addr)
            .map(|(client, _)| client.clone())
            .collect();
        moved_there.extend(
            self.moved
                .iter()
                .filter(|(_, (to, _))| to.as_deref() == Some(addr))
                .map(|(client, _)| client.clone()),
        );
        for client in moved_there {
            self.moved.insert(client, (None, now));
        }
        self.ordered.retain(|_, o| o.from != addr && o.to != addr);
    }

    /// `addr` is leaving: moves to it will not happen (those clients stay where they are),
    /// and moves from it are what it wants.
    pub(super) fn leaving(&mut self, addr: &str) {
        self.ordered.retain(|_, o| o.to != addr);
    }

    /// How many moves the leaving server `addr` may be ordered at `now`: a second's worth
    /// of [`DRAIN_PACE`] at its first heartbeat, then as time passes, up to that again.
    fn drain_budget(&mut self, addr: &str, now: Instant) -> usize {
        let pace = f64::from(DRAIN_PACE);
        let (credit, last) = self.draining.entry(addr.to_string()).or_insert((pace, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *credit = (*credit + pace * elapsed).min(pace);
        *last = now;
        credit.floor() as usize
    }

    /// `used` of the budget [`Rebalance::drain_budget`] gave were ordered.
    fn drained(&mut self, addr: &str, used: usize) {
        if let Some((credit, _)) = self.draining.get_mut(addr) {
            *credit = (*credit - used as f64).max(0.0);
        }
    }

    /// `addr`'s heartbeat lists `clients`: a client ordered there has arrived.
    pub(super) fn listed(&mut self, addr: &str, clients: &[String], now: Instant) {
        for name in clients {
            if self.ordered.get(name).is_some_and(|o| o.to == addr) {
                self.ordered.remove(name);
                self.moved
                    .insert(name.clone(), (Some(addr.to_string()), now));
            }
        }
    }
}

impl Registry {
    /// One round of rebalancing at `now`: forgets moves older than a few `settle`s (the
    /// client did not move; it may be ordered again), then, unless failover is under way,
    /// orders the moves that bring the counts closer, as many as the pace allows.
    pub(super) fn rebalance_round(&mut self, now: Instant, settle: Duration) {
        // Orders expire even with rebalancing off: a leaving server's are ordered again.
        let r = &mut self.rebalance;
        let expired = |when: Instant, after: Duration| now.saturating_duration_since(when) > after;
        r.ordered.retain(|client, o| {
            let keep = !expired(o.when, settle * 3);
            if !keep {
                log::info!("move not done client={client} to={}", o.to);
            }
            keep
        });
        r.moved.retain(|_, (_, when)| !expired(*when, MOVE_MEMORY));
        let Some(pace) = r.pace else {
            return;
        };
        let elapsed = r.last_round.map_or(Duration::ZERO, |last| now - last);
        r.last_round = Some(now);
        let most = (f64::from(pace) / 5.0).max(1.0);
        r.credit = (r.credit + f64::from(pace) * elapsed.as_secs_f64()).min(most);
        if !self.plan.is_empty() {
            return;
        }
        let spread = self.spread(now, settle);
        if !self.uneven_for(&spread, now, settle) || self.rebalance.credit < 1.0 {
            return;
        }
        let moves = rebalance_clients(&spread, self.rebalance.credit as usize);
        if moves.is_empty() {
            return;
        }
        let logged: Vec<(String, String)> = moves
            .iter()
            .map(|m| (m.client.clone(), m.to.clone()))
            .collect();
        log::info!("rebalance plan moves=[{}]", plan_for_the_log(&logged));
        let m = &self.metrics;
        Metrics::plan(&m.rebalance_plans, &m.rebalance_moves, moves.len());
        let r = &mut self.rebalance;
        r.credit -= moves.len() as f64;
        for m in moves {
            let order = Ordered {
                from: m.from,
                to: m.to,
                when: now,
                sent: false,
            };
            r.ordered.insert(m.client, order);
        }
    }

    /// Whether the counts have been uneven (a move would narrow them, were every server a
    /// target) for `settle` at least, or moves are still under way. Heartbeats list new
    /// clients up to an interval late, so a cluster whose clients are just registering
    /// looks uneven for a moment: acting on that would move clients that are already
    /// where they should be.
    fn uneven_for(&mut self, spread: &[Server], now: Instant, settle: Duration) -> bool {
        let every_server_a_target: Vec<Server> = spread
            .iter()
            .map(|s| Server {
                target: true,
                ..s.clone()
            })
            .collect();
        let r = &mut self.rebalance;
        if rebalance_clients(&every_server_a_target, 1).is_empty() && r.ordered.is_empty() {
            r.uneven_since = None;
            return false;
        }
        let since = *r.uneven_since.get_or_insert(now);
        now - since >= settle
    }

    /// Orders the next moves that empty the leaving server `addr`, as many as
    /// [`DRAIN_PACE`] allows, each to the least loaded server that takes clients (ties go to
    /// the lower address), counting the clients already on their way there. Clients with
    /// an order under way are left alone, and so are those its heartbeat still lists just
    /// after they moved elsewhere (`previous` is when the server's heartbeat before this
    /// one came; see [`still_here`]); an order that is not done in time expires in
    /// [`Registry::rebalance_round`], and the client is ordered again. Nothing is ordered
    /// when no server takes clients: the server, seeing no other live server in its reply,
    /// stops with its clients, and they fail over when a server comes.
    pub(super) fn drain(&mut self, addr: &str, previous: Option<Instant>, now: Instant) {
        let Some(entry) = self.servers.get(addr).filter(|s| s.alive && s.leaving) else {
            return;
        };
        let r = &self.rebalance;
        let waiting: Vec<String> = entry
            .clients
            .iter()
            .filter(|c| !r.ordered.contains_key(*c))
            .filter(|c| still_here(r.moved.get(*c), addr, previous))
            .cloned()
            .collect();
        if waiting.is_empty() {
            return;
        }
        let mut loads = self.loads();
        if loads.is_empty() {
            return;
        }
        for (target, load) in &mut loads {
            let listed = |client: &String| {
                self.servers
                    .get(target.as_str())
                    .is_some_and(|s| s.clients.contains(client))
            };
            *load += r
                .ordered
                .iter()
                .filter(|(client, o)| o.to == *target && !listed(client))
                .count();
        }
        let budget = self.rebalance.drain_budget(addr, now);
        let mut plan = Vec::new();
        for client in waiting.into_iter().take(budget) {
            let (target, load) = loads
                .iter_mut()
                .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                .expect("loads is not empty");
            *load += 1;
            plan.push((client, target.clone()));
        }
        if plan.is_empty() {
            return;
        }
        log::info!("drain plan from={addr} moves=[{}]", plan_for_the_log(&plan));
        let m = &self.metrics;
        Metrics::plan(&m.drain_plans, &m.drain_moves, plan.len());
        self.rebalance.drained(addr, plan.len());
        for (client, to) in plan {
            let order = Ordered {
                from: addr.to_string(),
                to,
                when: now,
                sent: false,
            };
            self.rebalance.ordered.insert(client, order);
        }
    }

    /// The moves ordered from `addr` and not yet handed to it, for its heartbeat reply.
    pub(super) fn take_moves(&mut self, addr: &str) -> Vec<(String, String)> {
        let mut moves = Vec::new();
        for (client, o) in &mut self.rebalance.ordered {
            if o.from == addr && !o.sent {
                o.sent = true;
                moves.push((client.clone(), o.to.clone()));
            }
        }
        moves
    }

    /// Each live server as [`rebalance_clients`] sees it, every client counted once:
    /// where its heartbeat lists it, or where it was ordered to or has just moved to (its
    /// old server may list it for one more heartbeat). Called only when no failover plan
    /// is pending, so no client is on its way anywhere else.
    fn spread(&self, now: Instant, settle: Duration) -> Vec<Server> {
        let r = &self.rebalance;
        let mut servers: Vec<Server> = Vec::new();
        let mut index = HashMap::new();
        // A leaving server is neither: its clients are counted where they are ordered to.
        for (addr, entry) in self.servers.iter().filter(|(_, s)| s.takes_clients()) {
            // A server cut off from a peer is no target: it may be the one to give up.
            let settled =
                r.joined.get(addr).is_some_and(|j| now - *j >= settle) && !self.cut_off(addr);
            let mut server = Server {
                addr: addr.clone(),
                count: 0,
                movable: Vec::new(),
                target: settled,
            };
            for client in &entry.clients {
                let going = r.ordered.get(client).map(|o| &o.to);
                let gone = r.moved.get(client).and_then(|(to, _)| to.as_ref());
                if going.or(gone).is_some_and(|to| to != addr) {
                    continue; // counted where it is going
                }
                server.count += 1;
                if going.is_none() && !r.moved.contains_key(client) {
                    server.movable.push(client.clone());
                }
            }
            index.insert(addr.clone(), servers.len());
            servers.push(server);
        }
        for (client, o) in &r.ordered {
            let listed_there = self
                .servers
                .get(&o.to)
                .is_some_and(|s| s.clients.contains(client));
            if let Some(&i) = index.get(&o.to)
                && !listed_there
            {
                servers[i].count += 1;
            }
        }
        servers
    }
}

/// A live server as [`rebalance_clients`] sees it.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its address.
    pub addr: String,
    /// Its clients, each counted once (see `Registry::spread`).
    pub count: usize,
    /// Those that may be moved (not moving, and not moved lately).
    pub movable: Vec<String>,
    /// Whether it may receive clients (alive for one heartbeat timeout at least).
    pub target: bool,
}

/// The seed's `redistribute_clients` spreads a dead server's clients; this spreads a live
/// cluster's. Returns at most `budget` moves, each from the fullest server that has a
/// client to move to the emptiest server that may receive, while the two differ by two or
/// more: so each move narrows the spread, and the moves stop when the counts differ by at
/// most one. Ties go to the lower address, so the plan is the same every time.
pub fn rebalance_clients(servers: &[Server], budget: usize) -> Vec<Move> {
    let mut servers = servers.to_vec();
    for server in &mut servers {
        server.movable.sort_unstable_by(|a, b| b.cmp(a)); // popped in name order
    }
    let mut moves = Vec::new();
    while moves.len() < budget {
        let fullest = (0..servers.len())
            .filter(|&i| !servers[i].movable.is_empty())
            .min_by(|&a, &b| fuller_first(&servers[a], &servers[b]));
        let emptiest = (0..servers.len())
            .filter(|&i| servers[i].target)
            .max_by(|&a, &b| fuller_first(&servers[a], &servers[b]));
        let (Some(from), Some(to)) = (fullest, emptiest) else {
            break;
        };
        if servers[from].count < servers[to].count + 2 {
            break;
        }
        let client = servers[from].movable.pop().expect("filtered on movable");
        servers[from].count -= 1;
        servers[to].count += 1;
        moves.push(Move {
            client,
            from: servers[from].addr.clone(),
            to: servers[to].addr.clone(),
        });
    }
    moves
}

/// More clients first, then the lower address: the first server is the one to move from,
/// the last the one to move to.
fn fuller_first(a: &Server, b: &Server) -> std::cmp::Ordering {
    b.count.cmp(&a.count).then_with(|| a.addr.cmp(&b.addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Departure;
    use crate::roles::coordinator::registry::{
        HeartbeatOutcome, declare_dead, handle_departing_heartbeat, handle_heartbeat,
    };

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn server(addr: &str, clients: usize, target: bool) -> Server {
        Server {
            addr: addr.to_string(),
            count: clients,
            movable: names(addr, clients),
            target,
        }
    }

    fn moves_to(moves: &[Move], to: &str) -> usize {
        moves.iter().filter(|m| m.to == to).count()
    }

    #[test]
    fn the_logged_plan_names_the_first_moves_and_counts_the_rest() {
        let plan = |n: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| (format!("c{i}"), "s:1".to_string()))
                .collect()
        };
        assert_eq!(plan_for_the_log(&plan(2)), "c0->s:1, c1->s:1");
        let all = plan_for_the_log(&plan(PLAN_MOVES_LOGGED));
        assert_eq!(all.matches("->").count(), PLAN_MOVES_LOGGED);
        assert!(!all.contains("more"));
        let many = plan_for_the_log(&plan(10_000));
        assert_eq!(many.matches("->").count(), PLAN_MOVES_LOGGED);
        assert!(many.ends_with(&format!("... {} more", 10_000 - PLAN_MOVES_LOGGED)));
    }

    #[test]
    fn moved_clients_are_spread_evenly_least_loaded_first() {
        let clients = names("c", 5);
        let live = vec![
            ("b".to_string(), 3),
            ("a".to_string(), 3),
            ("c".to_string(), 1),
        ];
        let plan = redistribute_clients(&clients, &live);
        let count = |s: &str| plan.iter().filter(|(_, t)| t == s).count();
        // c is emptiest and gets the extra client; a and b (tied) take one more each in order.
        assert_eq!((count("a"), count("b"), count("c")), (2, 1, 2));
    }

    #[test]
    fn no_live_server_means_an_empty_plan() {
        assert!(redistribute_clients(&names("x", 1), &[]).is_empty());
    }

    #[test]
    fn a_returning_server_takes_from_the_fullest_until_the_counts_differ_by_one() {
        let servers = [
            server("a", 6, true),
            server("b", 6, true),
            server("c", 0, true),
        ];
        let moves = rebalance_clients(&servers, 100);
        assert_eq!(moves.len(), 4, "{moves:?}");
        assert_eq!(moves_to(&moves, "c"), 4);
        let from = |s: &str| moves.iter().filter(|m| m.from == s).count();
        assert_eq!((from("a"), from("b")), (2, 2));
        let moves = rebalance_clients(&[server("a", 7, true), server("b", 0, true)], 100);
        assert_eq!(moves.len(), 3, "7/0 becomes 4/3");
        assert!(rebalance_clients(&[server("a", 3, true), server("b", 2, true)], 100).is_empty());
    }

    #[test]
    fn moves_stop_at_the_budget_and_wait_for_a_settled_target() {
        let servers = [server("a", 8, true), server("b", 0, true)];
        assert_eq!(rebalance_clients(&servers, 2).len(), 2);
        let unsettled = [server("a", 8, true), server("b", 0, false)];
        assert!(rebalance_clients(&unsettled, 100).is_empty());
    }

    /// Heartbeats at `now`: `a` and `b` with six clients each, `c` with none.
    fn six_six_zero(now: Instant) -> Registry {
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, now, "a:1", 0, Some(names("a", 6)));
        handle_heartbeat(&mut registry, now, "b:1", 0, Some(names("b", 6)));
        handle_heartbeat(&mut registry, now, "c:1", 0, Some(Vec::new()));
        registry
    }

    #[test]
    fn a_joined_server_is_filled_after_it_settles_and_each_order_goes_out_once() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = six_six_zero(start);
        registry.rebalance_round(start + settle / 2, settle);
        assert!(
            registry.take_moves("a:1").is_empty(),
            "c has not settled yet"
        );
        registry.rebalance_round(start + settle * 2, settle);
        let from_a = registry.take_moves("a:1");
        let from_b = registry.take_moves("b:1");
        assert_eq!(
            (from_a.len(), from_b.len()),
            (2, 2),
            "{from_a:?} {from_b:?}"
        );
        assert!(from_a.iter().all(|(_, to)| to == "c:1"));
        assert!(
            registry.take_moves("a:1").is_empty(),
            "an order goes out once"
        );
    }

    #[test]
    fn clients_leaving_one_server_make_the_fuller_ones_give_some_up() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = Registry::default();
        for addr in ["a:1", "b:1", "c:1"] {
            handle_heartbeat(&mut registry, start, addr, 0, Some(names(addr, 4)));
        }
        registry.rebalance_round(start + settle * 2, settle);
        assert!(registry.take_moves("a:1").is_empty(), "4/4/4 is even");
        // Three of c's four clients deregister: 4/4/1, and no server came or went.
        let left = start + settle * 3;
        let c = registry.servers["c:1"].epoch;
        handle_heartbeat(&mut registry, left, "c:1", c, Some(names("c:1", 1)));
        for addr in ["a:1", "b:1"] {
            let epoch = registry.servers[addr].epoch;
            handle_heartbeat(&mut registry, left, addr, epoch, Some(names(addr, 4)));
        }
        registry.rebalance_round(left, settle);
        registry.rebalance_round(left + settle * 2, settle);
        let (from_a, from_b) = (registry.take_moves("a:1"), registry.take_moves("b:1"));
        assert_eq!(
            (from_a.len(), from_b.len()),
            (1, 1),
            "4/4/1 becomes 3/3/3: {from_a:?} {from_b:?}"
        );
        assert!(from_a.iter().chain(&from_b).all(|(_, to)| to == "c:1"));
    }

    #[test]
    fn moved_clients_are_not_moved_again_while_their_old_server_still_lists_them() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = six_six_zero(start);
        registry.rebalance_round(start, settle);
        let later = start + settle * 2;
        registry.rebalance_round(later, settle);
        let moved: Vec<String> = ["a:1", "b:1"]
            .into_iter()
            .flat_map(|s| registry.take_moves(s))
            .map(|(client, _)| client)
            .collect();
        // c lists the four; a and b still list all six (their heartbeats are behind).
        let epoch = registry.servers["c:1"].epoch;
        handle_heartbeat(&mut registry, later, "c:1", epoch, Some(moved));
        for round in 1..20 {
            registry.rebalance_round(later + settle * round, settle);
        }
        for server in ["a:1", "b:1", "c:1"] {
            assert!(
                registry.take_moves(server).is_empty(),
                "{server} asked to move more"
            );
        }
    }

    #[test]
    fn a_server_that_dies_takes_its_orders_with_it_and_failover_comes_first() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = six_six_zero(start);
        registry.rebalance_round(start, settle);
        registry.rebalance_round(start + settle * 2, settle);
        assert!(
            !registry.rebalance.ordered.is_empty(),
            "moves to c were ordered"
        );
        declare_dead(&mut registry, "c:1", start + settle * 2);
        assert!(
            registry.take_moves("a:1").is_empty(),
            "no move to a dead server"
        );
        // a dies too: while its clients are planned elsewhere, nothing is rebalanced.
        declare_dead(&mut registry, "a:1", start + settle * 3);
        assert!(!registry.plan.is_empty());
        registry.rebalance_round(start + settle * 4, settle);
        assert!(registry.take_moves("b:1").is_empty());
    }

    #[test]
    fn a_client_whose_target_died_on_its_way_is_not_moved_again_where_it_failed_over() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = six_six_zero(start);
        registry.rebalance_round(start + settle / 2, settle);
        registry.rebalance_round(start + settle * 2, settle);
        let orders = registry.take_moves("a:1");
        let (mover, to) = orders[0].clone();
        assert_eq!(to, "c:1");
        // c dies before a heartbeat lists its newcomer, which fails over (to the standby c
        // dealt it) onto b: 5 on a, 7 on b. The other orders were never carried out.
        declare_dead(&mut registry, "c:1", start + settle * 2);
        let later = start + settle * 3;
        let epoch = |r: &Registry, s: &str| r.servers[s].epoch;
        let on_a: Vec<String> = names("a", 6).into_iter().filter(|n| *n != mover).collect();
        let mut on_b = names("b", 6);
        on_b.push(mover.clone());
        let (a, b) = (epoch(&registry, "a:1"), epoch(&registry, "b:1"));
        handle_heartbeat(&mut registry, later, "a:1", a, Some(on_a));
        handle_heartbeat(&mut registry, later, "b:1", b, Some(on_b));
        registry.rebalance_round(later, settle);
        registry.rebalance_round(later + settle * 2, settle);
        // One client moves from b to a to even it out, and not the one that moved already.
        let moves = registry.take_moves("b:1");
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_ne!(moves[0].0, mover, "{mover} would move back and forth");
    }

    #[test]
    fn counts_that_look_uneven_for_less_than_a_timeout_move_nobody() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, start, "a:1", 0, Some(Vec::new()));
        handle_heartbeat(&mut registry, start, "b:1", 0, Some(Vec::new()));
        registry.rebalance_round(start, settle);
        // Later, two clients register on each server at once; b's heartbeat lists its two
        // half a timeout after a's: for that long the counts look like 2/0.
        let (a_lists, b_lists) = (start + settle * 5, start + settle * 5 + settle / 2);
        let epoch = |r: &Registry, s: &str| r.servers[s].epoch;
        let a = epoch(&registry, "a:1");
        handle_heartbeat(&mut registry, a_lists, "a:1", a, Some(names("a", 2)));
        registry.rebalance_round(a_lists, settle);
        let b = epoch(&registry, "b:1");
        handle_heartbeat(&mut registry, b_lists, "b:1", b, Some(names("b", 2)));
        registry.rebalance_round(b_lists, settle);
        registry.rebalance_round(start + settle * 8, settle);
        assert!(registry.take_moves("a:1").is_empty());
    }

    #[test]
    fn a_leaving_server_is_emptied_onto_the_least_loaded_takes_nobody_and_leaves() {
        let now = Instant::now();
        let mut registry = Registry::default();
        handle_heartbeat(&mut registry, now, "a:1", 0, Some(names("a", 4)));
        handle_heartbeat(&mut registry, now, "b:1", 0, Some(names("b", 1)));
        handle_heartbeat(&mut registry, now, "c:1", 0, Some(names("c", 3)));
        let a = registry.servers["a:1"].epoch;
        let leaving = Departure::Leaving;
        let HeartbeatOutcome::Accepted { moves, servers, .. } =
            handle_departing_heartbeat(&mut registry, now, "a:1", a, Some(names("a", 4)), leaving)
        else {
            panic!("a leaving server's heartbeat is accepted")
        };
        // b (1) takes two to reach c (3), then they take one each, ties to the lower address.
        let to = |s: &str| moves.iter().filter(|(_, t)| t == s).count();
        assert_eq!((moves.len(), to("b:1"), to("c:1")), (4, 3, 1), "{moves:?}");
        assert!(
            servers
                .iter()
                .any(|s| s.addr == "a:1" && s.alive && s.leaving)
        );
        assert_ne!(registry.assign("newcomer", now), Some("a:1".to_string()));
        // Every client moved: its next heartbeat lists none, and its last says it is gone.
        let gone = Departure::Gone;
        handle_departing_heartbeat(&mut registry, now, "a:1", a, Some(Vec::new()), leaving);
        handle_departing_heartbeat(&mut registry, now, "a:1", a, Some(Vec::new()), gone);
        let entry = &registry.servers["a:1"];
        assert!(!entry.alive && entry.leaving, "left, not dead: {entry:?}");
        let planned: Vec<&String> = registry.plan.keys().collect();
        assert_eq!(planned, ["newcomer"], "nobody to fail over");
    }

    #[test]
    fn a_client_whose_new_server_lists_an_old_registration_is_ordered_again() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut registry = Registry::default();
        // c0 lived on b, lost it one way (b still lists it), and failed over to a.
        handle_heartbeat(&mut registry, at(0), "a:1", 0, Some(vec!["c0".into()]));
        handle_heartbeat(&mut registry, at(0), "b:1", 0, Some(vec!["c0".into()]));
        let (a, b) = (registry.servers["a:1"].epoch, registry.servers["b:1"].epoch);
        let here = || Some(vec!["c0".to_string()]);
        let leaving_beat = |registry: &mut Registry, ms: u64| {
            let outcome =
                handle_departing_heartbeat(registry, at(ms), "a:1", a, here(), Departure::Leaving);
            let HeartbeatOutcome::Accepted { moves, .. } = outcome else {
                panic!("a leaving server's heartbeat is accepted");
            };
            moves
        };
        let order = vec![("c0".to_string(), "b:1".to_string())];
        assert_eq!(leaving_beat(&mut registry, 500), order);
        // b's heartbeat lists the old registration: the move looks done.
        handle_heartbeat(&mut registry, at(600), "b:1", b, here());
        // a's next heartbeat may have left before c0 did: no second order yet.
        assert!(leaving_beat(&mut registry, 1000).is_empty());
        // The one after it was sent once a heartbeat that came after the move had its
        // answer: c0 is still on a, and is ordered again.
        assert_eq!(leaving_beat(&mut registry, 1500), order);
    }

    #[test]
    fn rebalancing_can_be_off() {
        let settle = Duration::from_secs(1);
        let start = Instant::now();
        let mut registry = six_six_zero(start);
        registry.rebalance = Rebalance::with_pace(None);
        registry.rebalance_round(start, settle);
        registry.rebalance_round(start + settle * 2, settle);
        assert!(registry.take_moves("a:1").is_empty());
    }
}
