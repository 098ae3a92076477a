//! Where a round's processes run ([`Place`]): each in a network namespace of its own when
//! this test may make namespaces (root), so that links can be cut; else all on loopback,
//! and then the schedule has no network faults. Everything that depends on that choice is
//! here: starting the processes, asking for the status, resetting a client's connections,
//! and cutting and healing links.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::common::{
    Client, Lab, Node, Proc, TIMEOUT, dsys, poll_until, start_coordinator, start_server_on_port,
};
use super::schedule::Cut;
use super::{INTERVAL_MS, TIMEOUT_MS};

/// The namespaces of a round, or none.
pub struct Place {
    /// Declared first, dropped last: the processes in it are killed before it goes.
    net: Option<Net>,
}

struct Net {
    coordinator: Node,
    servers: Vec<Node>,
    clients: Node,
    lab: Lab,
}

impl Place {
    /// Namespaces when possible (the lab prints why not, otherwise).
    pub fn new(servers: usize) -> Place {
        let net = Lab::new().map(|mut lab| Net {
            coordinator: lab.node("coordinator"),
            servers: (0..servers).map(|i| lab.node(&format!("s{i}"))).collect(),
            clients: lab.node("clients"),
            lab,
        });
        Place { net }
    }

    /// Whether links can be cut here.
    pub fn partitions(&self) -> bool {
        self.net.is_some()
    }

    /// Starts the coordinator, on `addr` when given (a restart), else on a free port.
    pub fn coordinator(&self, addr: Option<&str>) -> (Proc, String) {
        let Some(net) = &self.net else {
            return match addr {
                None => start_coordinator(TIMEOUT_MS),
                Some(addr) => (coordinator_from(dsys(), addr), addr.to_string()),
            };
        };
        match addr {
            None => net.lab.coordinator(&net.coordinator, TIMEOUT_MS),
            Some(addr) => (
                coordinator_from(net.lab.dsys(&net.coordinator), addr),
                addr.to_string(),
            ),
        }
    }

    /// Starts server `i` (its own node when in namespaces).
    pub fn server(&self, i: usize, coordinator: &str) -> (Proc, String) {
        match &self.net {
            None => super::common::start_server(coordinator, INTERVAL_MS),
            Some(net) => net.lab.server(&net.servers[i], coordinator, INTERVAL_MS),
        }
    }

    /// Starts server `i` again where it listened, at `addr` (after a planned stop); returns
    /// once it listens there.
    pub fn restart_server(&self, i: usize, coordinator: &str, addr: &str) -> Proc {
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a server address ends in :PORT");
        let (proc, at) = match &self.net {
            None => start_server_on_port(coordinator, INTERVAL_MS, port, &[]),
            Some(net) => net
                .lab
                .server_on_port(&net.servers[i], coordinator, INTERVAL_MS, port),
        };
        assert_eq!(at, addr, "a restarted server listens where it did");
        proc
    }

    /// Starts a client that asks `coordinator` for a server.
    pub fn client(&self, name: &str, coordinator: &str) -> Client {
        match &self.net {
            None => Client::start(name, coordinator),
            Some(net) => {
                Client::start_from(net.lab.dsys(&net.clients), name, coordinator, None, &[])
            }
        }
    }

    /// Waits until `dsys status` lists `count` servers alive.
    pub fn wait_servers_alive(&self, coordinator: &str, count: usize) {
        poll_until(&format!("{count} servers alive"), TIMEOUT, || {
            let mut cmd = match &self.net {
                None => dsys(),
                Some(net) => net.lab.dsys(&net.coordinator),
            };
            let out = cmd
                .args(["status", "--coordinator", coordinator, "--output", "json"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            let status: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let alive = status["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["alive"] == true)
                .count();
            (alive == count)
                .then_some(())
                .ok_or(format!("{alive} alive: {status}"))
        });
    }

    /// Resets every established TCP connection of process `pid` with `ss -K` (iproute2),
    /// run in the clients' namespace when there is one: the kernel aborts the socket and
    /// the peer sees a reset, as when a middlebox drops it.
    pub fn reset_connections_of(&self, pid: u32) {
        let ss = |args: &[&str]| {
            let mut cmd = match &self.net {
                None => Command::new("ss"),
                Some(net) => {
                    let mut cmd = Command::new("ip");
                    cmd.args(["netns", "exec", &net.clients.ns, "ss"]);
                    cmd
                }
            };
            cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null());
            cmd
        };
        let listing = ss(&["-tnpH", "state", "established"])
            .output()
            .expect("ss (iproute2) is needed for this test; .ci/run installs it");
        let needle = format!("pid={pid},");
        for line in String::from_utf8_lossy(&listing.stdout).lines() {
            if !line.contains(&needle) {
                continue;
            }
            // Columns: Recv-Q Send-Q Local:Port Peer:Port Process
            let local = line.split_whitespace().nth(2).unwrap_or_default();
            let Some((_, port)) = local.rsplit_once(':') else {
                continue;
            };
            let status = ss(&["-K", "-tn", "sport", "=", &format!(":{port}")])
                .stdout(Stdio::null())
                .status()
                .expect("ss -K runs");
            assert!(status.success(), "ss -K failed for port {port}");
        }
    }

    /// Cuts (`heal` false) or heals the link of `cut`; `servers` maps a running server's
    /// index to its node's. Only called when [`Place::partitions`].
    pub fn cut(&self, cut: Cut, servers: &[usize], heal: bool) {
        let Some(net) = &self.net else {
            return;
        };
        let node = |i: usize| &net.servers[servers[i % servers.len()]];
        let both = |a: &Node, b: &Node| {
            if heal {
                net.lab.heal(a, b);
            } else {
                net.lab.cut(a, b);
            }
        };
        match cut {
            Cut::CoordinatorOnly(i) => both(&net.coordinator, node(i)),
            Cut::Peers(i, j) => both(node(i), node(j)),
            Cut::ClientsOneWay(i) if heal => net.lab.heal(&net.clients, node(i)),
            Cut::ClientsOneWay(i) => net.lab.cut_one_way(&net.clients, node(i)),
            Cut::Isolate(i) => {
                let others = [&net.coordinator, &net.clients]
                    .into_iter()
                    .chain(net.servers.iter().filter(|n| n.ns != node(i).ns));
                for other in others {
                    both(node(i), other);
                }
            }
            Cut::Flap(i) => both(&net.clients, node(i)),
        }
    }
}

/// Starts a coordinator from `cmd` on `addr` (a restart on the same address).
fn coordinator_from(mut cmd: Command, addr: &str) -> Proc {
    cmd.args(["coordinator", "--listen", addr, "--heartbeat-timeout"])
        .arg(TIMEOUT_MS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let proc = Proc::spawn("coordinator (restarted)", cmd);
    proc.wait_for_stderr("listening on", TIMEOUT);
    proc
}
