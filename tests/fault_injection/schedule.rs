//! The faults of a round, as a pure function of its seed ([`schedule`]): which fault, when
//! (in ticks from the first send), and for how long. Process faults (planned stops among
//! them) always; network faults (a cut, one way or both, between two parts of the cluster)
//! only when the round runs in network namespaces ([`super::place`]), so a seed gives the
//! same schedule on the same kind of machine.

use super::{CLIENTS, MESSAGES, TICK, TIMEOUT_MS};

/// A failure.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL server `i` (index among the servers still running).
    KillServer(usize),
    /// SIGSTOP server `i` for `ticks` ticks, then SIGCONT.
    HangServer(usize, u64),
    /// SIGKILL the coordinator, restart it on the same address after `ticks` ticks.
    RestartCoordinator(u64),
    /// SIGTERM server `i`: a planned stop, which moves its clients to the other servers
    /// before the server exits 0 on its own; then start it again on its address, so that
    /// the round keeps its number of servers.
    StopServer(usize),
    /// Break client `i`'s connection (both ends reset with `ss -K`); its server is fine.
    ResetClient(usize),
    /// Cut a link for `ticks` ticks, then heal it (server indices among those running).
    Cut(Cut, u64),
}

/// Which link a [`Fault::Cut`] cuts.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Between the coordinator and server `i`, both ways: the server's clients and peers
    /// still reach it.
    CoordinatorOnly(usize),
    /// Between servers `i` and `j`, both ways: both still heartbeat.
    Peers(usize, usize),
    /// From the clients to server `i` only: its packets to them still arrive.
    ClientsOneWay(usize),
    /// Between server `i` and everyone else.
    Isolate(usize),
    /// Between the clients and server `i`, cut and healed every [`FLAP_TICKS`] ticks.
    Flap(usize),
}

/// How many ticks a flapping link stays cut, and then healed.
pub const FLAP_TICKS: u64 = 5;

impl Fault {
    /// Its kind, as the report counts it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillServer(_) => "servers killed (SIGKILL)",
            Fault::HangServer(..) => "servers hung (SIGSTOP, then SIGCONT)",
            Fault::StopServer(_) => "planned stops (SIGTERM), then restarts",
            Fault::RestartCoordinator(_) => "coordinator restarts",
            Fault::ResetClient(_) => "client connections reset",
            Fault::Cut(Cut::CoordinatorOnly(_), _) => "servers cut off from the coordinator",
            Fault::Cut(Cut::Peers(..), _) => "servers cut off from each other",
            Fault::Cut(Cut::ClientsOneWay(_), _) => "one-way cuts, clients to server",
            Fault::Cut(Cut::Isolate(_), _) => "servers isolated",
            Fault::Cut(Cut::Flap(_), _) => "flapping links, clients to server",
        }
    }
}

/// xorshift64*: a tiny deterministic generator, so a schedule is a function of its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The faults of one round: two or three, spread over the sending period, never leaving the
/// cluster without a live server; with `partitions`, a cut may be among them.
pub fn schedule(seed: u64, partitions: bool) -> Vec<(u64, Fault)> {
    let mut rng = Rng(seed.max(1));
    let ticks = MESSAGES as u64;
    let count = 2 + rng.below(2);
    let mut faults = Vec::new();
    let mut running = 3usize;
    for k in 0..count {
        // One fault per slice of the sending period, at a random point in its slice.
        let slice = ticks / count;
        let at = k * slice + rng.below(slice / 2) + 5;
        let kinds = if partitions { 9 } else { 6 };
        let fault = match rng.below(kinds) {
            0 | 1 if running > 1 => {
                running -= 1;
                Fault::KillServer(rng.below(running as u64 + 1) as usize)
            }
            2 if running > 1 => {
                // Long enough to be declared dead (> timeout), or a short stall that is not.
                let long = rng.below(3) > 0;
                let hang_ms = if long { TIMEOUT_MS * 2 } else { TIMEOUT_MS / 3 };
                Fault::HangServer(
                    rng.below(running as u64) as usize,
                    hang_ms / TICK.as_millis() as u64,
                )
            }
            3 => Fault::RestartCoordinator(5 + rng.below(10)),
            // Its clients need another server to move to. It comes back, so `running`
            // stays: the round waits for the stop to end before it kills a server.
            5 if running > 1 => Fault::StopServer(rng.below(running as u64) as usize),
            6..=8 => cut(&mut rng, running),
            _ => Fault::ResetClient(rng.below(CLIENTS as u64) as usize),
        };
        faults.push((at, fault));
    }
    faults
}

/// A cut between random parts of a cluster of `running` servers, held for a third of a
/// timeout (a blip nothing should notice) up to four timeouts.
fn cut(rng: &mut Rng, running: usize) -> Fault {
    let server = rng.below(running as u64) as usize;
    let which = match rng.below(5) {
        0 => Cut::CoordinatorOnly(server),
        1 if running > 1 => {
            let other = (server + 1 + rng.below(running as u64 - 1) as usize) % running;
            Cut::Peers(server, other)
        }
        2 => Cut::ClientsOneWay(server),
        3 => Cut::Isolate(server),
        _ => Cut::Flap(server),
    };
    let timeout_ticks = TIMEOUT_MS / TICK.as_millis() as u64;
    let held = timeout_ticks / 3 + rng.below(timeout_ticks * 4);
    Fault::Cut(which, held)
}
