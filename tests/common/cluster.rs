//! [`Cluster`]: a coordinator and its servers, started together and ready to use, with the
//! named verbs through which tests inject failures (kill, hang, wake, restart).

use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::proc::Proc;
use super::status::{
    entry_clients, start_coordinator_at, start_coordinator_with, start_server_on_port,
    start_server_with, status_entry, try_status_json_as, wait_until_servers_alive_as,
};
use super::wait::{poll_until, wait_until};
use super::{HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, TIMEOUT};

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
