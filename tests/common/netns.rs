//! [`Lab`]: network namespaces for partition tests. Every process the test starts runs in a
//! namespace of its own (a *node*), and every node is joined by a veth pair to one bridge in
//! another namespace (the *switch*), so the test can cut the link between any two nodes,
//! one way or both, and heal it, while each process keeps running.
//!
//! **How a link is cut.** Node A stops reaching node B when A's neighbour table gives B's
//! address a hardware address that no node has (`ip neigh replace ... nud permanent`):
//! A's packets to B leave A and are dropped at the switch, silently, as in a real partition
//! (no error comes back; the sender only sees silence). B's packets still reach A. A cut
//! both ways is that in both nodes; healing deletes the entry, and A asks for B's address
//! again. Nothing here needs more than `ip` from iproute2 (which `.ci/run` installs):
//! `tc netem` is not in this kernel, and no firewall tool is needed.
//!
//! **Addresses** are 10.77.0.N/24 and exist only inside the lab's namespaces, which no other
//! test sees; each lab's namespaces are named after the test process and a counter, so
//! parallel tests do not meet. The processes still bind to port 0 and report the port they
//! got (the rule for every test), so nothing depends on a fixed port.
//!
//! **Cleanup.** Dropping the [`Lab`] deletes every namespace it made, which removes the
//! veth pairs and the bridge with them. Declare the lab before the processes that run in
//! it, so that they (their [`Proc`] guards) are killed first.
//!
//! **Not root?** [`Lab::new`] returns `None` after printing why (only root may make
//! namespaces); the test then returns early and says so, rather than passing silently.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::client::Client;
use super::cluster::listening_addr;
use super::proc::Proc;

/// A hardware address that no node has: packets sent to it are dropped at the switch.
const NOWHERE: &str = "02:00:00:00:00:99";

/// Labs made by this test process so far, for unique namespace names.
static LABS: AtomicUsize = AtomicUsize::new(0);

/// One node: a namespace with one interface on the switch.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the test calls it (`"coordinator"`, `"s0"`, ...).
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its address on the switch.
    pub ip: String,
}

/// A switch and the nodes on it; dropping it removes them all.
pub struct Lab {
    prefix: String,
    switch: String,
    nodes: Vec<Node>,
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// A lab with its switch and no node yet; `None`, after printing why, when this
    /// process may not make network namespaces.
    pub fn new() -> Option<Lab> {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("dsys{}x{n}", std::process::id());
        let switch = format!("{prefix}-switch");
        let made = Command::new("ip")
            .args(["netns", "add", &switch])
            .stderr(Stdio::piped())
            .output();
        match made {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                println!(
                    "SKIPPED: no network namespaces here (they need root), so no link is cut: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                println!(
                    "SKIPPED: cannot run `ip` (iproute2) to make namespaces, so no link is cut: {e}"
                );
                return None;
            }
        }
        let lab = Lab {
            prefix,
            switch,
            nodes: Vec::new(),
        };
        ip(&["-n", &lab.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lab.switch, "link", "set", "br0", "up"]);
        Some(lab)
    }

    /// A new node named `name`, joined to the switch, with the next address.
    pub fn node(&mut self, name: &str) -> Node {
        let number = self.nodes.len() + 1;
        let node = Node {
            name: name.to_string(),
            ns: format!("{}-{name}", self.prefix),
            ip: format!("10.77.0.{number}"),
        };
        let port = format!("p{number}");
        ip(&["netns", "add", &node.ns]);
        self.nodes.push(node.clone()); // from here on, dropping the lab removes it
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &node.ns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "up"]);
        ip(&["-n", &node.ns, "link", "set", "lo", "up"]);
        ip(&["-n", &node.ns, "link", "set", "eth0", "up"]);
        let cidr = format!("{}/24", node.ip);
        ip(&["-n", &node.ns, "addr", "add", &cidr, "dev", "eth0"]);
        node
    }

    /// A [`Command`] for the `dsys` binary under test, to run inside `node`.
    pub fn dsys(&self, node: &Node) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.ns, env!("CARGO_BIN_EXE_dsys")]);
        super::test_environment(cmd)
    }

    /// Starts a coordinator in `node` (heartbeat timeout `timeout_ms`); returns it and its
    /// address.
    pub fn coordinator(&self, node: &Node, timeout_ms: u64) -> (Proc, String) {
        let mut cmd = self.dsys(node);
        cmd.args(["coordinator", "--listen", &format!("{}:0", node.ip)])
            .args(["--heartbeat-timeout", &timeout_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut proc = Proc::spawn(format!("coordinator in {}", node.name), cmd);
        let addr = listening_addr(&proc);
        proc.name = format!("coordinator {addr}");
        (proc, addr)
    }

    /// Starts a server in `node`, heartbeating every `interval_ms` to `coordinator`.
    pub fn server(&self, node: &Node, coordinator: &str, interval_ms: u64) -> (Proc, String) {
        self.server_on_port(node, coordinator, interval_ms, 0)
    }

    /// [`Lab::server`] on `port` (a server restarted where it was), not a free one.
    pub fn server_on_port(
        &self,
        node: &Node,
        coordinator: &str,
        interval_ms: u64,
        port: u16,
    ) -> (Proc, String) {
        let mut cmd = self.dsys(node);
        cmd.args(["server", "--host", &node.ip, "--port", &port.to_string()])
            .args(["--coordinator", coordinator])
            .args(["--heartbeat-interval", &interval_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut proc = Proc::spawn(format!("server in {}", node.name), cmd);
        let addr = listening_addr(&proc);
        proc.name = format!("server {addr}");
        (proc, addr)
    }

    /// Starts a client `name` in `node`, registering on `server`.
    pub fn client(&self, node: &Node, name: &str, coordinator: &str, server: &str) -> Client {
        Client::start_from(self.dsys(node), name, coordinator, Some(server), &[])
    }

    /// Drops every packet `from` sends to `to` (see the module doc).
    pub fn cut_one_way(&self, from: &Node, to: &Node) {
        ip(&[
            "-n",
            &from.ns,
            "neigh",
            "replace",
            &to.ip,
            "lladdr",
            NOWHERE,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }

    /// Cuts the link between `a` and `b` both ways.
    pub fn cut(&self, a: &Node, b: &Node) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Heals every cut between `a` and `b`, in both directions.
    pub fn heal(&self, a: &Node, b: &Node) {
        for (from, to) in [(a, b), (b, a)] {
            // Deleting an entry that is not there fails; that is fine here.
            let _ = Command::new("ip")
                .args(["-n", &from.ns, "neigh", "del", &to.ip, "dev", "eth0"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.nodes.iter().map(|n| &n.ns).chain([&self.switch]) {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
