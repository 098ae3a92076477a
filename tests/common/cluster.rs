//! Starting a cluster: a coordinator or a server as a child, ready once it logs the address
//! it bound ([`start_coordinator`], [`start_server`] and their variants), and [`Cluster`],
//! a coordinator and its servers started together and ready to use, with the named verbs
//! through which tests inject failures (kill, hang, wake, restart).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::proc::Proc;
use super::status::{entry_clients, status_entry, try_status_json_as, wait_until_servers_alive_as};
use super::wait::{poll_until, wait_until};
use super::{HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, TIMEOUT, dsys, dsys_with_open_files};

/// The address in a log line `... listening on ADDR ...`: the text after "listening on " up
/// to whitespace or the end of the line.
pub(super) fn listening_addr(proc: &Proc) -> String {
    let line = proc.wait_for_stderr("listening on ", TIMEOUT);
    let after = line
        .split_once("listening on ")
        .map(|(_, after)| after)
        .expect("the line contains the pattern we waited for");
    let addr = after.split_whitespace().next().unwrap_or_default();
    assert!(
        addr.parse::<std::net::SocketAddr>().is_ok(),
        "{} logged {line:?}, but {addr:?} is not a socket address",
        proc.name()
    );
    addr.to_string()
}

/// Starts `dsys coordinator --listen 127.0.0.1:0 --heartbeat-timeout MS` and returns it with
/// the address it bound (read from its "listening on" log line, so it is ready).
pub fn start_coordinator(heartbeat_timeout_ms: u64) -> (Proc, String) {
    start_coordinator_at("127.0.0.1:0", heartbeat_timeout_ms)
}

/// Starts `dsys coordinator --listen LISTEN --heartbeat-timeout MS` and returns it with the
/// address it bound. With a fixed `listen` this restarts a coordinator on the address an
/// earlier one had (the servers and clients still know that address).
pub fn start_coordinator_at(listen: &str, heartbeat_timeout_ms: u64) -> (Proc, String) {
    start_coordinator_with(listen, heartbeat_timeout_ms, &[])
}

/// [`start_coordinator_at`] with `extra` flags.
pub fn start_coordinator_with(
    listen: &str,
    heartbeat_timeout_ms: u64,
    extra: &[&str],
) -> (Proc, String) {
    let mut cmd = dsys();
    cmd.args(["coordinator", "--listen", listen, "--heartbeat-timeout"])
        .arg(heartbeat_timeout_ms.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let proc = Proc::spawn("coordinator", cmd);
    let addr = listening_addr(&proc);
    (proc, addr)
}

/// Starts `dsys server --host 127.0.0.1 --port 0 --coordinator ADDR --heartbeat-interval MS`
/// and returns it with the address it bound (from its "listening on" log line).
///
/// The server is listening then, but the coordinator may not have its first heartbeat yet:
/// use [`wait_until_servers_alive`] before starting clients that ask the coordinator.
pub fn start_server(coordinator: &str, heartbeat_interval_ms: u64) -> (Proc, String) {
    start_server_with(coordinator, heartbeat_interval_ms, &[])
}

/// [`start_server`] with `extra` flags.
pub fn start_server_with(
    coordinator: &str,
    heartbeat_interval_ms: u64,
    extra: &[&str],
) -> (Proc, String) {
    start_server_from(dsys(), coordinator, heartbeat_interval_ms, extra)
}

/// [`start_server_with`] under an open-file limit of `open_files` that the server cannot
/// raise ([`dsys_with_open_files`]).
pub fn start_server_with_open_files(
    coordinator: &str,
    heartbeat_interval_ms: u64,
    open_files: u64,
    extra: &[&str],
) -> (Proc, String) {
    let cmd = dsys_with_open_files(open_files);
    start_server_from(cmd, coordinator, heartbeat_interval_ms, extra)
}

/// [`start_server_with`] on `port` (a server restarted where it was), not a free one.
pub fn start_server_on_port(
    coordinator: &str,
    heartbeat_interval_ms: u64,
    port: u16,
    extra: &[&str],
) -> (Proc, String) {
    start_server_from_port(dsys(), coordinator, heartbeat_interval_ms, port, extra)
}

fn start_server_from(
    cmd: Command,
    coordinator: &str,
    heartbeat_interval_ms: u64,
    extra: &[&str],
) -> (Proc, String) {
    start_server_from_port(cmd, coordinator, heartbeat_interval_ms, 0, extra)
}

fn start_server_from_port(
    mut cmd: Command,
    coordinator: &str,
    heartbeat_interval_ms: u64,
    port: u16,
    extra: &[&str],
) -> (Proc, String) {
    cmd.args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--coordinator", coordinator])
        .arg("--heartbeat-interval")
        .arg(heartbeat_interval_ms.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut proc = Proc::spawn("server", cmd);
    let addr = listening_addr(&proc);
    proc.name = format!("server {addr}");
    (proc, addr)
}

/// A coordinator and `n` servers, all children of the test, with the named verbs through
/// which tests inject failures (STYLE S5): [`Cluster::kill_server`], [`Cluster::hang_server`],
/// [`Cluster::terminate_server`],
/// [`Cluster::wake_server`], [`Cluster::restart_server`], [`Cluster::hang_coordinator`],
/// [`Cluster::wake_coordinator`], [`Cluster::kill_coordinator`],
/// [`Cluster::restart_coordinator`].
///
/// Servers run with [`HEARTBEAT_INTERVAL_MS`], the coordinator with [`HEARTBEAT_TIMEOUT_MS`].
/// Dropping the cluster kills everything in it (each member is a [`Proc`]).
pub struct Cluster {
    /// The coordinator process (replaced by [`Cluster::restart_coordinator`]).
    pub coordinator: Proc,
    /// The coordinator's address; stays the same across a restart.
    pub coordinator_addr: String,
    servers: Vec<Proc>,
    addrs: Vec<String>,
    /// The flags every server was started with, for [`Cluster::restart_server`].
    server_flags: Vec<String>,
    /// The cluster secret, for the status queries the cluster makes itself.
    secret: Option<String>,
}

impl Cluster {
    /// Starts a coordinator and `n` servers and returns when the cluster is ready: the
    /// coordinator lists all `n` alive, and every server has a peer link up to every other
    /// one, so that a message published anywhere from now on reaches every server.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[], &[])
    }

    /// [`Cluster::start`] with extra flags for the coordinator and for every server.
    pub fn start_with(n: usize, coordinator_flags: &[&str], server_flags: &[&str]) -> Cluster {
        Cluster::start_members(n, coordinator_flags, server_flags, None)
    }

    /// [`Cluster::start`] with the cluster secret `secret`, which `secret_file` holds.
    pub fn start_with_secret(n: usize, secret_file: &str, secret: &str) -> Cluster {
        let flags = ["--secret-file", secret_file];
        Cluster::start_members(n, &flags, &flags, Some(secret))
    }

    fn start_members(
        n: usize,
        coordinator_flags: &[&str],
        server_flags: &[&str],
        secret: Option<&str>,
    ) -> Cluster {
        let (coordinator, coordinator_addr) =
            start_coordinator_with("127.0.0.1:0", HEARTBEAT_TIMEOUT_MS, coordinator_flags);
        let (servers, addrs) = (0..n)
            .map(|_| start_server_with(&coordinator_addr, HEARTBEAT_INTERVAL_MS, server_flags))
            .unzip();
        let cluster = Cluster {
            coordinator,
            coordinator_addr,
            servers,
            addrs,
            server_flags: server_flags.iter().map(|f| f.to_string()).collect(),
            secret: secret.map(str::to_string),
        };
        wait_until_servers_alive_as(&cluster.coordinator_addr, secret, n, TIMEOUT);
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                cluster.wait_peer_links(i, j, 1);
            }
        }
        cluster
    }

    /// The coordinator's address.
    pub fn coordinator(&self) -> &str {
        &self.coordinator_addr
    }

    /// The address of server `i` (what clients connect to and status reports).
    pub fn addr(&self, i: usize) -> &str {
        &self.addrs[i]
    }

    /// Every server's address, in start order.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The process of server `i`.
    pub fn server(&self, i: usize) -> &Proc {
        &self.servers[i]
    }

    /// How many times server `i` has logged that its link to server `j` came up.
    pub fn peer_links_up(&self, i: usize, j: usize) -> usize {
        let pattern = format!("peer link up addr={} ", self.addrs[j]);
        self.servers[i]
            .stderr_so_far()
            .iter()
            .filter(|line| line.contains(&pattern))
            .count()
    }

    /// Waits until server `i` has logged its link to server `j` coming up `count` times in
    /// all (pass one more than [`Cluster::peer_links_up`] returned to await a new link).
    pub fn wait_peer_links(&self, i: usize, j: usize, count: usize) {
        wait_until(
            &format!(
                "server {} to log `peer link up addr={}` {count} time(s)",
                self.addrs[i], self.addrs[j]
            ),
            TIMEOUT,
            || self.peer_links_up(i, j) >= count,
        );
    }

    /// Asks server `i` to stop with SIGTERM, as systemd or Kubernetes would: a planned
    /// stop, which moves its clients away first. Does not wait (see
    /// [`Cluster::wait_server_exit`]).
    pub fn terminate_server(&self, i: usize) {
        self.servers[i].terminate();
    }

    /// Waits until server `i` has exited, and returns its exit status.
    pub fn wait_server_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        self.servers[i].wait_exit(timeout)
    }

    /// Crashes server `i` with SIGKILL: its sockets close, its peers and clients see the
    /// connections break at once.
    pub fn kill_server(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Hangs server `i` with SIGSTOP: its sockets stay open (its kernel still accepts
    /// connections) but nothing answers.
    pub fn hang_server(&self, i: usize) {
        self.servers[i].stop();
    }

    /// Wakes a hung server `i` with SIGCONT: it carries on where it stopped.
    pub fn wake_server(&self, i: usize) {
        self.servers[i].cont();
    }

    /// Starts a new server on the address of server `i` (which the test killed): the same
    /// server coming back, as a new incarnation. Returns once it listens.
    pub fn restart_server(&mut self, i: usize) {
        let port = self.addrs[i]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a server address ends in :PORT");
        let flags: Vec<&str> = self.server_flags.iter().map(String::as_str).collect();
        let (server, addr) =
            start_server_on_port(&self.coordinator_addr, HEARTBEAT_INTERVAL_MS, port, &flags);
        assert_eq!(
            addr, self.addrs[i],
            "the restarted server must listen where the first one did"
        );
        self.servers[i] = server;
    }

    /// Hangs the coordinator with SIGSTOP: every one of its threads stops, the watchdog
    /// included, and what servers send it waits in its sockets.
    pub fn hang_coordinator(&self) {
        self.coordinator.stop();
    }

    /// Wakes a hung coordinator with SIGCONT.
    pub fn wake_coordinator(&self) {
        self.coordinator.cont();
    }

    /// Crashes the coordinator with SIGKILL.
    pub fn kill_coordinator(&mut self) {
        self.coordinator.kill();
    }

    /// Starts a new coordinator on the address of the first one.
    pub fn restart_coordinator(&mut self) {
        let (coordinator, addr) =
            start_coordinator_at(&self.coordinator_addr, HEARTBEAT_TIMEOUT_MS);
        assert_eq!(
            addr, self.coordinator_addr,
            "the restarted coordinator must listen where the first one did"
        );
        self.coordinator = coordinator;
    }

    /// Starts four clients pinned to each server, named `s<i>c<k>`, and returns once `dsys
    /// status` lists them all under their servers.
    pub fn start_four_per_server(&self) -> Vec<Client> {
        let servers = self.addrs().len();
        let clients: Vec<Client> = (0..servers)
            .flat_map(|i| (0..4).map(move |k| (i, k)))
            .map(|(i, k)| Client::start_on(&format!("s{i}c{k}"), self.coordinator(), self.addr(i)))
            .collect();
        for client in &clients {
            client.wait_registered();
        }
        self.wait_status("every client listed", TIMEOUT, |st| {
            (0..servers).all(|i| entry_clients(&status_entry(st, self.addr(i))).len() == 4)
        });
        clients
    }

    /// Polls `dsys status` until `check` accepts it, and returns that status.
    ///
    /// # Panics
    /// After `timeout`, with what was awaited and the last status or its error.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        poll_until(what, timeout, || {
            let status = try_status_json_as(&self.coordinator_addr, self.secret.as_deref())?;
            if check(&status) {
                Ok(status)
            } else {
                Err(format!("last status: {status}"))
            }
        })
    }
}
