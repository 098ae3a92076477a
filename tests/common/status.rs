//! Reading the coordinator's view of its servers through `dsys status --output json`, and
//! waiting until it shows a number of them alive.

use std::time::Duration;

use serde_json::Value;

use super::TIMEOUT;
use super::helpers::indent;
use super::run::run_dsys;
use super::wait::poll_until;

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
