//! [`FullServer`]: a coordinator and one server started under an open-file limit it cannot
//! raise, then filled with clients (`RawClient`, no process each) until it refuses one.

use std::time::Instant;

use super::cluster::{start_coordinator, start_server_with_open_files};
use super::proc::Proc;
use super::raw::RawClient;
use super::run::{Finished, run_dsys};
use super::status::wait_until_servers_alive;
use super::{HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, TIMEOUT};

/// More clients than any limit a test gives could hold: a server that has not refused one
/// by then does not refuse at its limit, and [`FullServer::start`] fails.
const MAX_FILLS: usize = 1000;

/// A coordinator and one server at its open-file limit: registered clients hold every
/// descriptor the server has, and the last newcomer was refused. Dropping it kills both
/// processes and closes the clients.
pub struct FullServer {
    /// The coordinator's address.
    pub coordinator_addr: String,
    /// The server process.
    pub server: Proc,
    /// The server's address.
    pub addr: String,
    /// The clients that fill it, `fill-0`, `fill-1`, ...
    pub fills: Vec<RawClient>,
    /// What the first refused newcomer was told.
    pub reason: String,
    /// When that newcomer started to connect.
    pub first_refused_at: Instant,
    _coordinator: Proc,
}

impl FullServer {
    /// Starts a coordinator and a server under `ulimit -n OPEN_FILES`, and registers
    /// clients `fill-N` on the server until it refuses one.
    ///
    /// # Panics
    /// When a registration fails otherwise than by a refusal, or none is refused.
    pub fn start(open_files: u64) -> FullServer {
        let (coordinator, coordinator_addr) = start_coordinator(HEARTBEAT_TIMEOUT_MS);
        let (server, addr) =
            start_server_with_open_files(&coordinator_addr, HEARTBEAT_INTERVAL_MS, open_files, &[]);
        // Under `ulimit -n` the hard limit is the soft one: the server could not raise it.
        server.wait_for_stderr(
            &format!("open-file limit {open_files} (hard {open_files})"),
            TIMEOUT,
        );
        wait_until_servers_alive(&coordinator_addr, 1, TIMEOUT);
        let mut fills = Vec::new();
        loop {
            let name = format!("fill-{}", fills.len());
            assert!(
                fills.len() < MAX_FILLS,
                "{MAX_FILLS} clients registered under `ulimit -n {open_files}` and none was \
                 refused; server stderr:\n{}",
                server.stderr_report()
            );
            let started = Instant::now();
            match RawClient::register(&addr, &name) {
                Ok(client) => fills.push(client),
                Err(dsys::Error::Refused(_, reason)) => {
                    return FullServer {
                        coordinator_addr,
                        server,
                        addr,
                        fills,
                        reason,
                        first_refused_at: started,
                        _coordinator: coordinator,
                    };
                }
                Err(e) => panic!(
                    "{name} failed otherwise than by a refusal: {e}; server stderr:\n{}",
                    server.stderr_report()
                ),
            }
        }
    }

    /// Runs `dsys client --register --server ADDR --name NAME` with empty stdin, to the end.
    pub fn run_client(&self, name: &str) -> Finished {
        let args = [
            "client",
            "--register",
            "--server",
            &self.addr,
            "--coordinator",
            &self.coordinator_addr,
            "--name",
            name,
        ];
        run_dsys(&args, &[], TIMEOUT)
    }
}
