//! Starting a coordinator or a server as a child, ready once it logs the address it bound,
//! and reading the coordinator's view of its servers through `dsys status --output json`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::helpers::indent;
use super::proc::Proc;
use super::run::run_dsys;
use super::wait::poll_until;
use super::{TIMEOUT, dsys, dsys_with_open_files};

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
