//! The faults of a round as they strike ([`FaultedCluster`]): the round's coordinator and
//! servers, one function per fault kind that injects it, and the functions that bring each
//! one back at its tick (a hung server woken, the coordinator restarted, a cut healed, a
//! stopped server started again). Which fault comes when is `schedule.rs`'s; where the
//! processes run, and how a link is cut, is `place.rs`'s.

use std::time::{Duration, Instant};

use super::SERVERS;
use super::common::{Client, Proc};
use super::place::Place;
use super::report::PlannedStop;
use super::schedule::{Cut, FLAP_TICKS, Fault};

/// How long a planned stop may take, from SIGTERM to exit: the server's default
/// `--drain-timeout` (30 s; a drain that cannot reach the coordinator waits that long),
/// and a margin.
const DRAIN: Duration = Duration::from_secs(40);

/// A server of the round: its process, its address, and its node (its index at the start,
/// which says where [`Place`] runs it and which links a cut names).
struct Server {
    proc: Proc,
    addr: String,
    node: usize,
}

/// A server hung with SIGSTOP, to be woken at tick `wake_at`.
struct Hung {
    server: Server,
    wake_at: u64,
}

/// A cut in force: the cut, the nodes of the servers running when it was made (its server
/// indices count among those), the tick it was made and the tick it heals.
struct CutInForce {
    cut: Cut,
    nodes: Vec<usize>,
    from: u64,
    until: u64,
}

/// A server in a planned stop: SIGTERMed at `since`, draining, to be started again on its
/// address once it has exited. `alongside` names the other faults that were in force when
/// it began or struck before it ended: a client may fail over, not move, only because of
/// one of those.
struct Stopping {
    server: Server,
    since: Instant,
    alongside: Vec<String>,
}

/// A round's coordinator and servers, and the faults in force on them. Dropping it kills
/// every process it holds, the running servers first; the [`Place`] it borrows outlives it,
/// so every process is gone before its namespace.
pub struct FaultedCluster<'p> {
    /// The running servers, hung and stopping ones left out: a fault's server index counts
    /// among these.
    servers: Vec<Server>,
    coordinator: Proc,
    coordinator_addr: String,
    /// When the coordinator is down, the tick it is restarted at.
    coordinator_back_at: Option<u64>,
    hung: Vec<Hung>,
    cuts: Vec<CutInForce>,
    stopping: Vec<Stopping>,
    /// The planned stops that have ended, for the report.
    stops: Vec<PlannedStop>,
    place: &'p Place,
    /// The round's seed, for the messages of a failed check.
    seed: u64,
}

impl<'p> FaultedCluster<'p> {
    /// Starts a coordinator and three servers on `place`, and returns once the coordinator
    /// lists every server alive.
    pub fn start(place: &'p Place, seed: u64) -> FaultedCluster<'p> {
        let (coordinator, coordinator_addr) = place.coordinator(None);
        let servers = (0..SERVERS)
            .map(|node| {
                let (proc, addr) = place.server(node, &coordinator_addr);
                Server { proc, addr, node }
            })
            .collect();
        place.wait_servers_alive(&coordinator_addr, SERVERS);
        FaultedCluster {
            servers,
            coordinator,
            coordinator_addr,
            coordinator_back_at: None,
            hung: Vec::new(),
            cuts: Vec::new(),
            stopping: Vec::new(),
            stops: Vec::new(),
            place,
            seed,
        }
    }

    /// The coordinator's address, the same across its restarts.
    pub fn coordinator_addr(&self) -> &str {
        &self.coordinator_addr
    }

    /// Injects `fault` at `tick` (a client reset needs the round's `clients`).
    pub fn inject(&mut self, tick: u64, fault: Fault, clients: &[Client]) {
        for stop in &mut self.stopping {
            stop.alongside.push(format!("{fault:?} at tick {tick}"));
        }
        match fault {
            Fault::KillServer(i) => self.kill_server(tick, i),
            Fault::HangServer(i, ticks) => self.hang_server(tick, i, ticks),
            Fault::StopServer(i) => self.stop_server(tick, i),
            Fault::ResetClient(i) => self.reset_client(tick, &clients[i]),
            Fault::RestartCoordinator(ticks) => self.kill_coordinator(tick, ticks),
            Fault::Cut(cut, ticks) => self.cut(tick, cut, ticks),
        }
    }

    /// SIGKILLs running server `i`; it does not come back.
    fn kill_server(&mut self, tick: u64, i: usize) {
        // The schedule counts a stopped server as running (it comes back), so a kill waits
        // for it: never kill the last server that takes clients.
        if !self.stopping.is_empty() {
            println!("  tick {tick}: the kill waits for the planned stop to end");
        }
        self.end_planned_stops(true);
        let mut server = self.servers.remove(i % self.servers.len());
        println!("  tick {tick}: SIGKILL server {}", server.addr);
        server.proc.kill();
    }

    /// SIGSTOPs running server `i` for `ticks` ticks ([`FaultedCluster::wake_servers`]).
    fn hang_server(&mut self, tick: u64, i: usize, ticks: u64) {
        let server = self.servers.remove(i % self.servers.len());
        println!(
            "  tick {tick}: SIGSTOP server {} for {ticks} ticks",
            server.addr
        );
        server.proc.stop();
        self.hung.push(Hung {
            server,
            wake_at: tick + ticks,
        });
    }

    /// SIGTERMs running server `i`: a planned stop, which ends when it exits
    /// ([`FaultedCluster::end_planned_stops`]).
    fn stop_server(&mut self, tick: u64, i: usize) {
        let server = self.servers.remove(i % self.servers.len());
        println!(
            "  tick {tick}: SIGTERM server {} (a planned stop)",
            server.addr
        );
        server.proc.terminate();
        let alongside = self.in_force();
        self.stopping.push(Stopping {
            server,
            since: Instant::now(),
            alongside,
        });
    }

    /// The faults in force now, named for the report: cuts, hung servers, the coordinator
    /// down, other planned stops.
    fn in_force(&self) -> Vec<String> {
        let cuts = self
            .cuts
            .iter()
            .map(|c| format!("{:?} since tick {}", c.cut, c.from));
        let hung = self.hung.iter().map(|h| format!("{} hung", h.server.addr));
        let coordinator = self
            .coordinator_back_at
            .map(|tick| format!("coordinator down until tick {tick}"));
        let stopping = self
            .stopping
            .iter()
            .map(|s| format!("{} stopping", s.server.addr));
        cuts.chain(hung)
            .chain(coordinator)
            .chain(stopping)
            .collect()
    }

    /// Resets the connections of `client`; its server is fine.
    fn reset_client(&self, tick: u64, client: &Client) {
        println!("  tick {tick}: reset the connection of {}", client.name);
        self.place.reset_connections_of(client.proc.pid());
    }

    /// SIGKILLs the coordinator, to be restarted on its address after `ticks` ticks
    /// ([`FaultedCluster::restart_coordinator_when_due`]).
    fn kill_coordinator(&mut self, tick: u64, ticks: u64) {
        println!("  tick {tick}: SIGKILL coordinator for {ticks} ticks");
        self.coordinator.kill();
        self.coordinator_back_at = Some(tick + ticks);
    }

    /// Cuts `cut` for `ticks` ticks ([`FaultedCluster::heal_cuts`]).
    fn cut(&mut self, tick: u64, cut: Cut, ticks: u64) {
        let nodes: Vec<usize> = self.servers.iter().map(|s| s.node).collect();
        println!("  tick {tick}: cut {cut:?} (server nodes {nodes:?}) for {ticks} ticks");
        self.place.cut(cut, &nodes, false);
        self.cuts.push(CutInForce {
            cut,
            nodes,
            from: tick,
            until: tick + ticks,
        });
    }

    /// Brings back, at `tick`, what is due: cuts healed (and flapping links turned),
    /// the coordinator restarted, stopped servers that have exited started again, hung
    /// servers woken.
    pub fn recover(&mut self, tick: u64) {
        self.heal_cuts(tick);
        self.restart_coordinator_when_due(tick);
        // A stopped server that has exited comes back on its address, a new incarnation,
        // and can take later faults like any other.
        self.end_planned_stops(false);
        self.wake_servers(tick);
    }

    /// Heals the cuts that end at `tick`, and cuts or heals a flapping link at each of its
    /// steps.
    fn heal_cuts(&mut self, tick: u64) {
        for c in &self.cuts {
            if c.until == tick {
                println!("  tick {tick}: healed {:?}", c.cut);
                self.place.cut(c.cut, &c.nodes, true);
            } else if matches!(c.cut, Cut::Flap(_))
                && tick < c.until
                && (tick - c.from).is_multiple_of(FLAP_TICKS)
            {
                // Cut on even steps, healed on odd ones.
                let heal = (tick - c.from) / FLAP_TICKS % 2 == 1;
                self.place.cut(c.cut, &c.nodes, heal);
            }
        }
        self.cuts.retain(|c| c.until > tick);
    }

    /// Restarts the coordinator on its address when `tick` is the one it is due at.
    fn restart_coordinator_when_due(&mut self, tick: u64) {
        if self.coordinator_back_at == Some(tick) {
            println!(
                "  tick {tick}: coordinator restarted on {}",
                self.coordinator_addr
            );
            self.coordinator = self.place.coordinator(Some(&self.coordinator_addr)).0;
            self.coordinator_back_at = None;
        }
    }

    /// SIGCONTs the hung servers due at `tick`.
    fn wake_servers(&mut self, tick: u64) {
        let (due, later) = std::mem::take(&mut self.hung)
            .into_iter()
            .partition(|h| h.wake_at <= tick);
        self.hung = later;
        for Hung { server, .. } in due {
            println!("  tick {tick}: SIGCONT server {}", server.addr);
            server.proc.cont();
            // A woken server rejoins (as a new incarnation when it was declared dead) and
            // can take later faults like any other.
            self.servers.push(server);
        }
    }

    /// Ends every fault still in force once the sending is over: the coordinator back, hung
    /// servers woken (and then killed: they take no part in what is left of the round),
    /// cuts healed, planned stops waited for. Returns the round's planned stops.
    pub fn end_faults(&mut self) -> Vec<PlannedStop> {
        if self.coordinator_back_at.take().is_some() {
            self.coordinator = self.place.coordinator(Some(&self.coordinator_addr)).0;
        }
        for Hung { server, .. } in std::mem::take(&mut self.hung) {
            server.proc.cont();
        }
        for CutInForce { cut, nodes, .. } in std::mem::take(&mut self.cuts) {
            self.place.cut(cut, &nodes, true);
        }
        self.end_planned_stops(true);
        std::mem::take(&mut self.stops)
    }

    /// Ends the planned stops whose server has exited (all of them, waiting up to [`DRAIN`]
    /// for each, when `wait`): checks that each exited 0 by itself, starts it again on its
    /// address as a running server, and records the stop. A planned stop always ends in
    /// exit 0 (`docs/shutdown.md`), whether every client moved, the drain timed out or
    /// there was nowhere to move them, so that is checked whatever else the round did; how
    /// it ended is printed.
    fn end_planned_stops(&mut self, wait: bool) {
        let seed = self.seed;
        for mut stop in std::mem::take(&mut self.stopping) {
            let proc = &mut stop.server.proc;
            let status = if wait {
                Some(proc.wait_exit(DRAIN.saturating_sub(stop.since.elapsed())))
            } else {
                proc.try_exit()
            };
            let addr = &stop.server.addr;
            let Some(status) = status else {
                assert!(
                    stop.since.elapsed() < DRAIN,
                    "server {addr} still running {DRAIN:?} after SIGTERM (seed {seed}); its \
                     stderr:\n{}",
                    proc.stderr_report()
                );
                self.stopping.push(stop);
                continue;
            };
            let exited = Instant::now();
            assert!(
                status.success(),
                "server {addr} exited with {status} after SIGTERM (seed {seed}); its stderr:\n{}",
                proc.stderr_report()
            );
            let lines = proc.stderr_to_end(super::common::TIMEOUT);
            let how = [
                ("every client has moved", "every client moved"),
                ("longer than --drain-timeout", "the drain timed out"),
                (
                    "no other live server to take",
                    "nowhere to move its clients",
                ),
            ]
            .into_iter()
            .find(|(line, _)| lines.iter().any(|l| l.contains(line)))
            .map_or("no drain logged", |(_, how)| how);
            println!(
                "  server {addr} exited 0 {} ms after SIGTERM ({how}); started again",
                (exited - stop.since).as_millis()
            );
            let Server { addr, node, .. } = stop.server;
            let proc = self
                .place
                .restart_server(node, &self.coordinator_addr, &addr);
            self.stops.push(PlannedStop {
                addr: addr.clone(),
                since: stop.since,
                exited,
                alongside: stop.alongside,
            });
            self.servers.push(Server { proc, addr, node });
        }
    }
}
