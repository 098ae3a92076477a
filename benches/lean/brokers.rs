//! The broker processes the benches measure dsys against (`systems.rs` starts them): a
//! Redis server ([`RedisServer`]) and one or more NATS servers ([`NatsServers`], routed into
//! a cluster when more than one), started for one run and killed after it.
//!
//! Each broker is a child process of this bench, never a system service: it listens on
//! loopback ports the OS gave out a moment before ([`free_ports`]), keeps nothing on disk,
//! and runs with its defaults otherwise, so what is measured is the broker as installed.
//! Every process is held by a [`Proc`] guard (`tests/common`), which SIGKILLs and reaps it
//! when dropped, pass or fail, and drains its log so that it never blocks on a full pipe;
//! that log is shown when a broker does not come up in time.
//!
//! The main thread does everything here: starting, waiting until each broker accepts
//! connections (bounded by [`STARTUP_TIMEOUT`]), and for a cluster waiting until its
//! routes are up and its nodes know of every subscription, by asking each node's
//! monitoring port over plain HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Proc, poll_until};

/// How long a broker may take to accept connections, or a cluster to form. Either takes
/// milliseconds; past this, the panic shows the broker's log.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a monitoring answer may hold. `/routez` with subscriptions is a few KiB.
const MAX_HTTP_BODY: u64 = 1024 * 1024;

/// Whether `program` is a file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `count` distinct loopback ports that were free a moment ago: all bound at once to port
/// 0 (so the OS cannot give one out twice), read, and released for the broker to take.
/// Another process could take one in between; the broker would then fail to start, and
/// the wait for it would panic with its log.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound listener's address").port())
        .collect()
}

/// Waits until something accepts connections at `addr`.
///
/// # Panics
/// After [`STARTUP_TIMEOUT`], with `proc`'s log.
fn wait_accepting(proc: &Proc, addr: &str) {
    let socket: SocketAddr = addr.parse().expect("a loopback address");
    poll_until(
        &format!("{} to accept connections on {addr}", proc.name()),
        STARTUP_TIMEOUT,
        || match TcpStream::connect_timeout(&socket, STARTUP_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "last: {e}; its log so far:\n{}",
                proc.stderr_report()
            )),
        },
    );
}

/// A Redis server, with no persistence: `--save ""` (no snapshots) and `--appendonly no`.
pub struct RedisServer {
    /// Where clients connect.
    pub addr: String,
    proc: Proc,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        let port = free_ports(1)[0].to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port])
            .args(["--save", "", "--appendonly", "no"])
            // Its log to stderr, which `Proc` drains and shows on failure.
            .args(["--logfile", "/dev/stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let proc = Proc::spawn("redis-server", cmd);
        let addr = format!("127.0.0.1:{port}");
        wait_accepting(&proc, &addr);
        RedisServer { addr, proc }
    }

    /// The server's process id, whose CPU time is measured.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its log so far.
    pub fn log(&self) -> Vec<String> {
        self.proc.stderr_so_far()
    }
}

/// One NATS server, or several routed into a cluster (each given the others' cluster
/// ports as routes).
pub struct NatsServers {
    /// Where clients connect, one per server.
    pub addrs: Vec<String>,
    /// Each server's monitoring address (HTTP), used only in a cluster.
    monitors: Vec<String>,
    procs: Vec<Proc>,
}

impl NatsServers {
    /// Starts `count` servers on free ports and waits until each accepts connections and,
    /// when there are several, until each has a route to every other.
    pub fn start(count: usize) -> NatsServers {
        let ports = free_ports(3 * count);
        let (clients, rest) = ports.split_at(count);
        let (cluster, monitor) = rest.split_at(count);
        let mut servers = NatsServers {
            addrs: Vec::new(),
            monitors: Vec::new(),
            procs: Vec::new(),
        };
        for i in 0..count {
            let mut cmd = Command::new("nats-server");
            cmd.args(["-a", "127.0.0.1", "-p", &clients[i].to_string()]);
            if count > 1 {
                let routes: Vec<String> = (0..count)
                    .filter(|&j| j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", cluster[j]))
                    .collect();
                cmd.args(["--cluster_name", "bench"])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", cluster[i])])
                    .args(["--routes", &routes.join(",")])
                    .args(["-m", &monitor[i].to_string()]);
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let proc = Proc::spawn(format!("nats-server {}", i + 1), cmd);
            let addr = format!("127.0.0.1:{}", clients[i]);
            wait_accepting(&proc, &addr);
            servers.addrs.push(addr);
            servers.monitors.push(format!("127.0.0.1:{}", monitor[i]));
            servers.procs.push(proc);
        }
        if count > 1 {
            for i in 0..count {
                servers.wait_routes(i, count - 1, |_| true);
            }
        }
        servers
    }

    /// The servers' process ids, whose CPU time is measured.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    /// Their logs so far, one after the other.
    pub fn log(&self) -> Vec<String> {
        self.procs.iter().flat_map(Proc::stderr_so_far).collect()
    }

    /// Waits until server `index` has learnt from every other server that it has
    /// subscribers on `subject`. A server sends a message only along the routes that told
    /// it of interest, and tells its routes of a new subscription after confirming it to
    /// the client: without this wait, the warm-up could go out before node 1 knows of
    /// node 3's subscribers. A single server has nothing to wait for.
    pub fn wait_for_interest(&self, index: usize, subject: &str) {
        if self.procs.len() > 1 {
            self.wait_routes(index, self.procs.len() - 1, |route| {
                route["subscriptions_list"]
                    .as_array()
                    .is_some_and(|subs| subs.iter().any(|s| s == subject))
            });
        }
    }

    /// Waits until server `index` has routes to `count` distinct other servers for which
    /// `ready` holds (`/routez?subs=1` on its monitoring port).
    ///
    /// # Panics
    /// After [`STARTUP_TIMEOUT`], with the last answer and the server's log.
    fn wait_routes(&self, index: usize, count: usize, ready: impl Fn(&Value) -> bool) {
        let monitor = &self.monitors[index];
        let proc = &self.procs[index];
        let what = format!("{} to have {count} routes ready", proc.name());
        poll_until(&what, STARTUP_TIMEOUT, || {
            let routez = http_get(monitor, "/routez?subs=1")?;
            let mut peers: Vec<&str> = routez["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|route| ready(route))
                .filter_map(|route| route["remote_id"].as_str())
                .collect();
            peers.sort_unstable();
            peers.dedup();
            if peers.len() >= count {
                Ok(())
            } else {
                Err(format!(
                    "last /routez: {routez}\nlog:\n{}",
                    proc.stderr_report()
                ))
            }
        });
    }
}

/// `GET path` at `addr` (HTTP/1.0, so the server closes after its answer), as JSON.
fn http_get(addr: &str, path: &str) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(STARTUP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_HTTP_BODY)
        .read_to_end(&mut answer)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| &answer[at + 4..])
        .ok_or_else(|| format!("GET {path}: no end of headers"))?;
    serde_json::from_slice(body).map_err(|e| format!("GET {path}: not JSON: {e}"))
}
