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
//! parent *thread* dies (`PR_SET_PDEATHSIG` via [`dsys::support::signals::die_with_parent`]), so even
//! a test process killed outright leaves no process behind. Because that signal follows the
//! spawning thread, spawn children from the test's own thread, not from a helper thread that
//! returns before the test ends.
//!
//! **Rules** (STYLE.md section 7): no fixed ports (everything binds `127.0.0.1:0` and reports
//! the address it got), never `0.0.0.0`, and no sleeping as synchronisation: wait for an
//! event, a log line or an exit; poll with [`wait_until`] only for state that has no event.
//!
//! **Files.** One per part of the harness. Tests import everything from here
//! (`use common::{...}`), so which file holds an item is this folder's business.
//!
//! - `proc.rs`: [`Proc`], the guard around one child process, and its stderr reader.
//! - `run.rs`: one-shot commands run to completion ([`run_dsys`], [`Finished`]), and
//!   [`unused_addr`].
//! - `cluster.rs`: starting a coordinator or a server ([`start_coordinator`],
//!   [`start_server`]), and [`Cluster`], a coordinator and its servers, with the failure
//!   verbs.
//! - `status.rs`: reading `dsys status` ([`status_json`], [`wait_until_servers_alive`]).
//! - `wait.rs`: [`wait_until`] and [`poll_until`], for state that has no event.
//! - `client.rs`: [`Client`], a client child and the JSON events it prints.
//! - `checks.rs`: what clients received ([`finish_all`], [`assert_seqs_exactly`]).
//! - `chatter.rs`: [`Chatter`], every client talking while the cluster changes, and the
//!   check that all of it arrived ([`finish_and_assert_everything_arrived`]).
//! - `helpers.rs`: [`TempDir`], [`median`], [`pseudo_random_bytes`].
//! - `full.rs`: [`FullServer`], a server filled to its open-file limit.
//! - `load.rs`: overload on purpose: [`busy_process`] pinned to a CPU, [`pin_process`].
//! - `raw.rs`: [`RawClient`], a client without a process, for tests that need many.
//! - `relay.rs`: [`Relay`], a TCP relay a test can hold, to make heartbeats late.
//! - `netns.rs`: [`Lab`], processes in network namespaces whose links a test can cut.
//!
//! The timeouts every file shares and [`dsys()`], the command they all start, are below.

// Each test file compiles its own copy of this module and uses only some of its helpers.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

mod chatter;
mod checks;
mod client;
mod cluster;
mod full;
mod helpers;
mod load;
mod netns;
mod proc;
mod raw;
mod relay;
mod run;
mod status;
mod wait;

// The interface of the harness, in one place. A test file that uses only some of it would
// otherwise be warned about the rest, as with `dead_code` above.
#[allow(unused_imports)]
pub use self::{
    chatter::{Chatter, finish_and_assert_everything_arrived},
    checks::{
        assert_numbered_texts, assert_seqs_exactly, describe_seqs, events_of, finish_all,
        finish_and_assert_all_from, message_seqs,
    },
    client::Client,
    cluster::{
        Cluster, start_coordinator, start_coordinator_at, start_coordinator_with, start_server,
        start_server_on_port, start_server_with, start_server_with_open_files,
    },
    full::FullServer,
    helpers::{TempDir, median, pseudo_random_bytes},
    load::{allowed_cpus, busy_process, missing_tools, pin_process},
    netns::{Lab, Node},
    proc::Proc,
    raw::RawClient,
    relay::Relay,
    run::{Finished, run_dsys, unused_addr},
    status::{
        alive_servers, entry_clients, status_entry, status_json, status_servers, try_status_json,
        try_status_json_as, wait_until_servers_alive, wait_until_servers_alive_as,
    },
    wait::{poll_until, wait_until},
};

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
    test_environment(Command::new(env!("CARGO_BIN_EXE_dsys")))
}

/// [`dsys()`] started by `sh` after `ulimit -n LIMIT`, which sets both the soft and the
/// hard open-file limit: the process cannot raise it again, so it meets the limit after
/// `LIMIT` descriptors. Arguments added to the command go to `dsys` (`"$@"`), and `exec`
/// makes the `dsys` process the child itself (same pid, so signals reach it).
pub fn dsys_with_open_files(limit: u64) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_dsys"));
    test_environment(cmd)
}

fn test_environment(mut cmd: Command) -> Command {
    cmd.env_remove("DSYS_COORDINATOR")
        .env_remove("DSYS_SECRET")
        .env("RUST_LOG", "info");
    cmd
}
