//! The harness for integration tests that drive the real `dsys` binary
//! (`env!("CARGO_BIN_EXE_dsys")`): start a coordinator, servers and clients as child
//! processes, await what they log or print, and stop them all when the test ends.
//!
//! **Threads.** Every [`Proc`] starts one named thread, `stderr-<name>`, that drains the
//! child's stderr until end of file, so a chatty child never blocks on a full pipe. Every
//! [`Client`] also starts `stdout-<name>`, which parses the child's JSON Lines. Both threads
//! end on their own when the child dies (end of file on the pipe); they hold no lock while
//! blocked and never panic, so they cannot hang or fail a test by themselves.
//!
//! **Whom it talks to.** Children only, through their stdin/stdout/stderr pipes and signals
//! (SIGKILL, SIGSTOP, SIGCONT). The reader threads hold the sending end of a channel; the
//! test thread holds the receiving end and waits on it with a deadline.
//!
//! **When a child fails.** Every wait has a deadline, and a missed deadline panics with what
//! was awaited and everything the child had written so far. A child that exits while
//! awaited ends the wait at once (its channel disconnects) with the same report.
//!
//! **Stopping.** [`Proc`] is a guard: dropping it SIGKILLs and reaps the child, pass or
//! fail. As a second line of defence each child asks the kernel to SIGKILL it when its
//! parent *thread* dies (`PR_SET_PDEATHSIG` via [`dsys::signals::die_with_parent`]), so even
//! a test process killed outright leaves no process behind. Because that signal follows the
//! spawning thread, spawn children from the test's own thread, not from a helper thread that
//! returns before the test ends.
//!
//! **Rules** (STYLE.md section 7): no fixed ports (everything binds `127.0.0.1:0` and reports
//! the address it got), never `0.0.0.0`, and no sleeping as synchronisation: wait for an
//! event, a log line or an exit; poll with [`wait_until`] only for state that has no event.

// Each test file compiles its own copy of this module and uses only some of its helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long any single wait in a test may take before the test fails: 10 s.
///
/// Why so generous: the happy path takes milliseconds, but CI may be a 2-core machine running
/// several test binaries at once, each starting a handful of processes, so one slow
/// scheduling decision can stretch a step by seconds. A wait only lasts this long when the
/// test is failing anyway, so a wide margin costs nothing on success and removes flakiness.
/// When it fires, the wait panics with what it waited for and what the process said.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two polls in [`wait_until`] and [`Proc::wait_exit`]: short enough to add
/// no noticeable latency, long enough not to steal a core from the processes under test.
pub const POLL_PAUSE: Duration = Duration::from_millis(10);

/// The heartbeat interval tests give servers (ms): fast, so failures are noticed quickly.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// The heartbeat timeout tests give the coordinator (ms): several intervals, so a server
/// that is merely slow under load is not declared dead by mistake.
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1000;

/// A `Command` for the `dsys` binary under test, with an environment that does not depend
/// on the developer's shell: `DSYS_COORDINATOR` and `DSYS_SECRET` removed, `RUST_LOG=info`.
pub fn dsys() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsys"));
    cmd.env_remove("DSYS_COORDINATOR")
        .env_remove("DSYS_SECRET")
        .env("RUST_LOG", "info");
    cmd
}

// ---------------------------------------------------------------------------------------
// Proc: one child process
// ---------------------------------------------------------------------------------------

/// A child process guard: the child is SIGKILLed and reaped when this is dropped.
///
/// Its stderr is read line by line by a background thread, both into a channel that
/// [`Proc::wait_for_stderr`] consumes and into a shared log for failure messages.
pub struct Proc {
    /// Who this is in failure messages ("coordinator", "client alice", ...).
    name: String,
    child: Child,
    /// Lines of stderr not yet looked at by `wait_for_stderr`. The other end is held by the
    /// `stderr-<name>` thread, which drops it at end of file: a disconnect means the child
    /// closed its stderr (it exited or was killed) and every line has been read.
    stderr_rx: Receiver<String>,
    /// Every stderr line so far, in order. The reader pushes here *before* it sends on the
    /// channel, so this is always at least as complete as what the channel delivered.
    stderr_log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` with stderr piped and drained in the background. stdin and stdout are
    /// left as `cmd` configures them (take them with [`Proc::take_stdin`] /
    /// [`Proc::take_stdout`] when piped).
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Proc {
        let name = name.into();
        cmd.stderr(Stdio::piped());
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(dsys::signals::die_with_parent);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stderr = child.stderr.take().expect("stderr was set to piped above");
        let stderr_log = Arc::new(Mutex::new(Vec::new()));
        let (stderr_tx, stderr_rx) = channel();
        let log = Arc::clone(&stderr_log);
        thread::Builder::new()
            .name(format!("stderr-{name}"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                    // The receiver may be gone (the Proc was dropped); keep draining anyway
                    // until end of file, so the child never blocks on a full pipe.
                    let _ = stderr_tx.send(line);
                }
            })
            .expect("cannot start a stderr reader thread");
        Proc {
            name,
            child,
            stderr_rx,
            stderr_log,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's peak resident memory so far, in bytes (`VmHWM` in `/proc/PID/status`).
    ///
    /// # Panics
    /// When the process has exited or the field cannot be read.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// The child's resident memory now, in bytes (`VmRSS`).
    ///
    /// # Panics
    /// As [`Proc::peak_rss_bytes`].
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|kib| kib.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Who this process is in failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The piped stdin of the child, if it was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The piped stdout of the child, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Every stderr line the child has written so far (as far as the reader has got).
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stderr so far as one indented block, for failure messages.
    pub fn stderr_report(&self) -> String {
        indent(&self.stderr_so_far())
    }

    /// Blocks until the child writes a stderr line containing `pattern`, and returns that
    /// line. Looks only at lines after the one an earlier call returned (lines skipped on
    /// the way are not seen again by later calls, but stay in the failure report).
    ///
    /// # Panics
    /// After `timeout`, or as soon as the child closes its stderr (it exited), with the
    /// pattern awaited and the stderr so far.
    pub fn wait_for_stderr(&self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not log {pattern:?} within {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its stderr (exited?) before logging {pattern:?}; its stderr:\n{}",
                    self.name,
                    self.stderr_report()
                ),
            }
        }
    }

    /// Blocks until the child has closed its stderr and the reader has read all of it, then
    /// returns every line. Use after [`Proc::wait_exit`] to check what a process printed.
    ///
    /// # Panics
    /// When stderr is still open after `timeout`.
    pub fn stderr_to_end(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return self.stderr_so_far(),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not close its stderr within {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
            }
        }
    }

    /// SIGKILLs the child (a crash, as far as its peers can tell) and reaps it.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("cannot SIGKILL {}: {e}", self.name));
        let _ = self.child.wait();
    }

    /// SIGSTOPs the child: it hangs, with its sockets still open.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// SIGCONTs a stopped child: it wakes up where it was.
    pub fn cont(&self) {
        self.signal("-CONT");
    }

    /// Sends a signal with kill(1): the runtime crates include no `libc`.
    fn signal(&self, flag: &str) {
        let status = Command::new("kill")
            .arg(flag)
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {flag} for {}: {e}", self.name));
        assert!(
            status.success(),
            "kill {flag} {} failed: {status}",
            self.name
        );
    }

    /// Blocks until the child exits and returns its status (polls every [`POLL_PAUSE`]).
    ///
    /// # Panics
    /// When it is still running after `timeout`, with its stderr so far.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_PAUSE),
                Ok(None) => panic!(
                    "{} still running after {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
                Err(e) => panic!("cannot wait for {}: {e}", self.name),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Fails only when the child is already reaped; either way it is gone afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// One-shot commands
// ---------------------------------------------------------------------------------------

/// What a `dsys` command that ran to completion left behind.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Every line it wrote on stderr.
    pub stderr: Vec<String>,
}

impl Finished {
    /// The exit code (`None` when a signal ended the process).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The stderr lines that are not blank.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `dsys ARGS` with `envs` added to [`dsys()`]'s environment and stdin empty, waits for
/// it to exit, and returns what it printed.
///
/// # Panics
/// When it does not exit within `timeout`.
pub fn run_dsys(args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Finished {
    let mut cmd = dsys();
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(format!("dsys {}", args.join(" ")), cmd);
    let mut stdout = proc.take_stdout().expect("stdout was set to piped above");
    // The reader is scoped (STYLE S8): it is joined, and its panic would fail the test.
    thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let status = proc.wait_exit(timeout);
        let stderr = proc.stderr_to_end(timeout);
        let stdout = reader.join().expect("the stdout reader does not panic");
        Finished {
            status,
            stdout,
            stderr,
        }
    })
}

/// A `127.0.0.1` address where nothing listens: bind port 0, read it, drop the listener.
///
/// Another process could take the port in between; on a test machine that is rare enough,
/// and a test using it would then fail loudly rather than pass wrongly.
pub fn unused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local_addr of a bound listener");
    addr.to_string()
}

// ---------------------------------------------------------------------------------------
// Coordinator, servers, status
// ---------------------------------------------------------------------------------------

/// The address in a log line `... listening on ADDR ...`: the text after "listening on " up
/// to whitespace or the end of the line.
fn listening_addr(proc: &Proc) -> String {
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
    let mut cmd = dsys();
    cmd.args(["server", "--host", "127.0.0.1", "--port", "0"])
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

/// Runs `dsys status --coordinator ADDR --output json` and returns the parsed object, or
/// why that failed (exit status, stderr, or stdout that is not JSON).
pub fn try_status_json(coordinator: &str) -> Result<Value, String> {
    try_status_json_as(coordinator, None)
}

/// [`try_status_json`] for a cluster with a `secret` (passed in `DSYS_SECRET`).
pub fn try_status_json_as(coordinator: &str, secret: Option<&str>) -> Result<Value, String> {
    let envs: Vec<(&str, &str)> = secret.map(|s| ("DSYS_SECRET", s)).into_iter().collect();
    let done = run_dsys(
        &["status", "--coordinator", coordinator, "--output", "json"],
        &envs,
        TIMEOUT,
    );
    if !done.status.success() {
        return Err(format!(
            "dsys status exited with {}; stderr:\n{}",
            done.status,
            indent(&done.stderr)
        ));
    }
    serde_json::from_str(done.stdout.trim())
        .map_err(|e| format!("dsys status printed {:?}, not JSON: {e}", done.stdout))
}

/// `dsys status --output json` against `coordinator`, parsed.
///
/// # Panics
/// When the command fails or prints something that is not JSON.
pub fn status_json(coordinator: &str) -> Value {
    try_status_json(coordinator).unwrap_or_else(|why| panic!("{why}"))
}

/// The `servers` array of a status object (empty when missing).
pub fn status_servers(status: &Value) -> Vec<Value> {
    status["servers"].as_array().cloned().unwrap_or_default()
}

/// The addresses of the servers marked `"alive": true` in a status object.
pub fn alive_servers(status: &Value) -> Vec<String> {
    status_servers(status)
        .iter()
        .filter(|s| s["alive"] == Value::Bool(true))
        .filter_map(|s| s["addr"].as_str().map(str::to_string))
        .collect()
}

/// Polls `dsys status` until exactly `n` servers are alive (so it also serves to wait for
/// a count to drop after a failure), and returns the last status.
///
/// # Panics
/// After `timeout`, with the last status or error seen.
pub fn wait_until_servers_alive(coordinator: &str, n: usize, timeout: Duration) -> Value {
    wait_until_servers_alive_as(coordinator, None, n, timeout)
}

/// [`wait_until_servers_alive`] for a cluster with a `secret`.
pub fn wait_until_servers_alive_as(
    coordinator: &str,
    secret: Option<&str>,
    n: usize,
    timeout: Duration,
) -> Value {
    poll_until(
        &format!("{n} servers alive at coordinator {coordinator}"),
        timeout,
        || {
            let status = try_status_json_as(coordinator, secret)?;
            let alive = alive_servers(&status);
            if alive.len() == n {
                Ok(status)
            } else {
                Err(format!("{} alive; last status: {status}", alive.len()))
            }
        },
    )
}

/// The entry of server `addr` in a status object.
///
/// # Panics
/// When the status does not list `addr`.
pub fn status_entry(status: &Value, addr: &str) -> Value {
    status_servers(status)
        .into_iter()
        .find(|s| s["addr"] == addr)
        .unwrap_or_else(|| panic!("status does not list server {addr}: {status}"))
}

/// The sorted client names a status entry lists.
pub fn entry_clients(entry: &Value) -> Vec<String> {
    let mut names: Vec<String> = entry["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// Cluster: a coordinator and its servers, with the failures tests inject
// ---------------------------------------------------------------------------------------

/// A coordinator and `n` servers, all children of the test, with the named verbs through
/// which tests inject failures (STYLE S5): [`Cluster::kill_server`], [`Cluster::hang_server`],
/// [`Cluster::wake_server`], [`Cluster::kill_coordinator`], [`Cluster::restart_coordinator`].
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

// ---------------------------------------------------------------------------------------
// Waiting for state
// ---------------------------------------------------------------------------------------

/// Polls `cond` every [`POLL_PAUSE`] until it holds. Only for state that cannot be awaited
/// as an event, a log line or an exit.
///
/// # Panics
/// After `timeout`, saying what was waited for.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    poll_until(what, timeout, || {
        if cond() { Ok(()) } else { Err(String::new()) }
    })
}

/// Polls `attempt` every [`POLL_PAUSE`] until it returns `Ok`, and returns that value.
///
/// # Panics
/// After `timeout`, saying what was waited for and the last `Err` (the last observation).
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for: {what}\n{last}")
            }
            Err(_) => thread::sleep(POLL_PAUSE),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// A `dsys client --register --output json` child with stdin piped, its JSON events parsed
/// by a background thread, and its own download directory (removed on drop).
pub struct Client {
    /// The name it registered under.
    pub name: String,
    /// The process (kill, stop, wait for exit, stderr). Declared before `download_dir`, so
    /// the client is dead before its directory is removed.
    pub proc: Proc,
    stdin: Option<ChildStdin>,
    /// Events from the `stdout-<name>` thread, which drops its end at end of stdout.
    events_rx: Receiver<Value>,
    /// Events received but not yet matched by `expect_event`, oldest first.
    pending: std::cell::RefCell<VecDeque<Value>>,
    /// Every event the client printed, in order, for failure messages.
    events_log: Arc<Mutex<Vec<Value>>>,
    download_dir: TempDir,
}

/// The event the stdout reader records for a line that is not a JSON object with a string
/// field `event` (a contract violation that [`Client::expect_event`] reports).
const NOT_AN_EVENT: &str = "harness: not a JSON event";

impl Client {
    /// Starts a client named `name` that asks `coordinator` for a server.
    pub fn start(name: &str, coordinator: &str) -> Client {
        Client::start_with(name, coordinator, None, &[])
    }

    /// Starts a client named `name` on `server` (`--server`); failovers still go through
    /// `coordinator`.
    pub fn start_on(name: &str, coordinator: &str, server: &str) -> Client {
        Client::start_with(name, coordinator, Some(server), &[])
    }

    /// Starts `dsys client --register --output json --name NAME --coordinator ADDR
    /// [--server ADDR] --download-dir DIR EXTRA...` with stdin piped.
    pub fn start_with(
        name: &str,
        coordinator: &str,
        server: Option<&str>,
        extra_args: &[&str],
    ) -> Client {
        let download_dir = TempDir::new(&format!("downloads-{name}"));
        let mut cmd = dsys();
        cmd.args(["client", "--register", "--output", "json", "--name", name])
            .args(["--coordinator", coordinator]);
        if let Some(server) = server {
            cmd.args(["--server", server]);
        }
        cmd.arg("--download-dir")
            .arg(download_dir.path())
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(format!("client {name}"), cmd);
        let stdin = proc.take_stdin();
        let stdout = proc.take_stdout().expect("stdout was set to piped above");

        let events_log = Arc::new(Mutex::new(Vec::new()));
        let (events_tx, events_rx) = channel();
        let log = Arc::clone(&events_log);
        thread::Builder::new()
            .name(format!("stdout-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let event = match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v["event"].is_string() => v,
                        _ => serde_json::json!({ "event": NOT_AN_EVENT, "line": line }),
                    };
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(event.clone());
                    // Keep reading after the Client is gone, so the child never blocks.
                    let _ = events_tx.send(event);
                }
            })
            .expect("cannot start a stdout reader thread");

        Client {
            name: name.to_string(),
            proc,
            stdin,
            events_rx,
            pending: Default::default(),
            events_log,
            download_dir,
        }
    }

    /// Where this client saves received files.
    pub fn download_dir(&self) -> &Path {
        self.download_dir.path()
    }

    /// Types one line on the client's stdin: a text message, or `/file PATH`.
    ///
    /// # Panics
    /// When stdin was closed or the client is gone.
    pub fn send_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of client {name} is already closed"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to client {name}'s stdin: {e}"));
    }

    /// Closes stdin: end of input, so the client finishes sending, deregisters and exits 0.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Takes the client's stdin, for a sender thread to write to (dropping it closes it).
    ///
    /// # Panics
    /// When stdin was already taken or closed.
    pub fn take_stdin(&mut self) -> ChildStdin {
        let name = &self.name;
        self.stdin
            .take()
            .unwrap_or_else(|| panic!("stdin of client {name} is already taken or closed"))
    }

    /// Closes stdin, waits until the client exits and until its stdout reader has read
    /// everything, and returns the exit status: from then on [`Client::events_so_far`] is
    /// the client's whole output.
    ///
    /// # Panics
    /// When the client does not exit, or does not close its stdout, within `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        self.close_stdin();
        let status = self.proc.wait_exit(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events_rx.recv_timeout(left) {
                Ok(event) => self.pending.borrow_mut().push_back(event),
                Err(RecvTimeoutError::Disconnected) => return status,
                Err(RecvTimeoutError::Timeout) => self.fail(
                    "the end of its stdout",
                    &format!("it exited ({status}) but its stdout stayed open"),
                ),
            }
        }
    }

    /// Waits until this client has printed at least `count` messages from each of
    /// `senders`, polling its event log.
    ///
    /// # Panics
    /// After `timeout`, with each sender's seqs so far summarised (see [`describe_seqs`])
    /// and the client's stderr.
    pub fn wait_messages(&self, senders: &[&str], count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_so_far();
            let short: Vec<&str> = senders
                .iter()
                .copied()
                .filter(|s| message_seqs(&events, s).len() < count)
                .collect();
            if short.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = senders
                    .iter()
                    .map(|s| format!("from {s}: {}", describe_seqs(&message_seqs(&events, s))))
                    .collect();
                let other: Vec<String> = events
                    .iter()
                    .filter(|e| e["event"] != "message")
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "client {} did not print {count} messages from each of {senders:?} within \
                     {timeout:?}\nits messages:\n{}\nits other events:\n{}\nits stderr:\n{}",
                    self.name,
                    indent(&seen),
                    indent(&other),
                    self.proc.stderr_report()
                );
            }
            thread::sleep(POLL_PAUSE);
        }
    }

    /// Every event printed so far, in order (including those already matched).
    pub fn events_so_far(&self) -> Vec<Value> {
        self.events_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blocks until an event satisfying `pred` arrives, and returns it. Events that do not
    /// match are set aside, not lost: a later call sees them first, in arrival order.
    ///
    /// # Panics
    /// After `timeout`, when the client closes its stdout (it exited), or when it prints a
    /// line that is not a JSON event; the message names `what` and shows every event and
    /// the stderr so far.
    pub fn expect_event(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        {
            let mut pending = self.pending.borrow_mut();
            if let Some(i) = pending.iter().position(&mut pred) {
                return pending.remove(i).expect("the index was just found");
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events_rx.recv_timeout(left) {
                Ok(event) if event["event"] == NOT_AN_EVENT => self.fail(
                    what,
                    &format!(
                        "printed a stdout line that is not a JSON event: {}",
                        event["line"]
                    ),
                ),
                Ok(event) if pred(&event) => return event,
                Ok(event) => self.pending.borrow_mut().push_back(event),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(what, &format!("did not print it within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(what, "closed its stdout (exited?) first")
                }
            }
        }
    }

    fn fail(&self, what: &str, why: &str) -> ! {
        let events: Vec<String> = self.events_so_far().iter().map(Value::to_string).collect();
        panic!(
            "client {} was expected to print {what}, but {why}\nits events:\n{}\nits stderr:\n{}",
            self.name,
            indent(&events),
            self.proc.stderr_report()
        )
    }

    /// Waits for the `registered` event and returns its `server` field (`host:port`).
    pub fn wait_registered(&self) -> String {
        let event = self.expect_event("a `registered` event", TIMEOUT, |v| {
            v["event"] == "registered"
        });
        event["server"]
            .as_str()
            .unwrap_or_else(|| panic!("`registered` without a string `server`: {event}"))
            .to_string()
    }

    /// Waits for `count` `message` events from `from` and returns them in arrival order
    /// (other events are set aside for later calls).
    pub fn messages_from(&self, from: &str, count: usize) -> Vec<Value> {
        (1..=count)
            .map(|i| {
                self.expect_event(
                    &format!("message {i} of {count} from {from}"),
                    TIMEOUT,
                    |v| v["event"] == "message" && v["from"] == from,
                )
            })
            .collect()
    }

    /// Waits for `count` messages from `from` and returns their `text` fields.
    pub fn texts_from(&self, from: &str, count: usize) -> Vec<String> {
        self.messages_from(from, count)
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Checking what clients received
// ---------------------------------------------------------------------------------------

/// Ends every client (stdin closed, all at once) and asserts that each exits 0, which
/// means everything it sent was acknowledged. Afterwards each client's event log is whole.
pub fn finish_all(clients: &mut [Client]) {
    for client in clients.iter_mut() {
        client.close_stdin();
    }
    for client in clients.iter_mut() {
        let status = client.finish(TIMEOUT);
        assert!(
            status.success(),
            "client {} should exit 0 once all it sent is acknowledged, got {status}; \
             stderr:\n{}",
            client.name,
            client.proc.stderr_report()
        );
    }
}

/// The `seq` of every `message` and `file` event from `from` in `events`, in order.
pub fn message_seqs(events: &[Value], from: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| (e["event"] == "message" || e["event"] == "file") && e["from"] == from)
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// The events of kind `kind` (`"failover"`, `"gap"`, ...) in `events`.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// A short description of a list of seqs for failure messages: how many, the first and
/// last, and every place where a seq does not follow its predecessor by one.
pub fn describe_seqs(seqs: &[u64]) -> String {
    let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
        return "none".to_string();
    };
    let breaks: Vec<String> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .take(20)
        .map(|w| format!("{}->{}", w[0], w[1]))
        .collect();
    format!(
        "{} messages, first {first}, last {last}, breaks in the sequence: [{}]",
        seqs.len(),
        breaks.join(", ")
    )
}

/// Asserts that `receiver`'s `events` hold from `sender` exactly the seqs `first..=last`,
/// each once, in order: nothing lost, nothing duplicated, nothing reordered.
pub fn assert_seqs_exactly(events: &[Value], receiver: &str, sender: &str, first: u64, last: u64) {
    let seqs = message_seqs(events, sender);
    let expected: Vec<u64> = (first..=last).collect();
    assert!(
        seqs == expected,
        "{receiver} should have received seqs {first}..={last} from {sender} exactly once, \
         in order; it got {}",
        describe_seqs(&seqs)
    );
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The median of `runs` (benchmarks report medians, not means: one slow run on a shared
/// machine should not move the figure).
pub fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Deterministic bytes that are not text: every value, NULs and invalid UTF-8 included.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A fresh directory under Cargo's per-target temp dir, removed with its contents on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `target/tmp/dsys-<label>-<pid>-<n>-<nanos>`.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("dsys-{label}-{}-{n}-{nanos}", std::process::id());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines indented for a failure message, or "    (nothing)".
fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (nothing)".to_string();
    }
    lines
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
