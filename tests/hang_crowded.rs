//! A hang on a crowded server is noticed as fast as on an empty one. A server holding a
//! crowd of idle clients is SIGSTOPped; every observed client must be registered on the
//! other server within the coordinator's `--heartbeat-timeout` plus 2 s of the SIGSTOP,
//! whatever the crowd (`docs/heartbeats-and-failover.md`, "Client keepalives").
//!
//! The crowd are [`RawClient`]s (a socket each, no process: the server still gives each a
//! thread); the observed clients are real `dsys client --listen` processes, whose
//! `failover` events are awaited with the bound as the deadline. The server writes its own
//! keepalives to quiet clients, so a client's silence limit does not grow with the crowd;
//! when the client asked instead, 2,000 clients made each one wait 3 × 1.6 s for an answer.
//! The benchmark (`cargo bench --bench c10k -- hang 10000`) covers ten thousand.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Cluster, HEARTBEAT_TIMEOUT_MS, RawClient};

/// Idle clients in the crowd: as many as a test affords on a shared 2-core machine (one
/// descriptor each in this process, a thread each in the server), and enough that a
/// client-asked keepalive would have taken 1.6 s per interval.
const CROWD: usize = 2_000;

/// Real clients whose re-registration is observed.
const OBSERVED: usize = 3;

/// The goal: registered elsewhere within the coordinator's heartbeat timeout plus this,
/// counted from the SIGSTOP.
const AFTER_THE_WATCHDOG: Duration = Duration::from_secs(2);

#[test]
fn every_client_of_a_hung_crowded_server_is_registered_elsewhere_within_the_bound() {
    // The crowd holds a descriptor each here.
    if let Err(e) = dsys::support::limits::raise_open_files_limit() {
        eprintln!("cannot raise the open-file limit: {e}");
    }
    // The raw crowd never sends a keepalive: a long idle timeout keeps it registered for
    // the length of the test (it changes none of the timers under test).
    let cluster = Cluster::start_with(2, &[], &["--idle-timeout", "600000"]);
    let crowded = cluster.addr(0).to_string();
    let observed: Vec<Client> = (0..OBSERVED)
        .map(|i| {
            let name = format!("watcher-{i}");
            Client::start_with(&name, cluster.coordinator(), Some(&crowded), &["--listen"])
        })
        .collect();
    for client in &observed {
        assert_eq!(client.wait_registered(), crowded);
    }
    let crowd: Vec<RawClient> = (0..CROWD)
        .map(|i| {
            RawClient::register(&crowded, &format!("crowd-{i}"))
                .unwrap_or_else(|e| panic!("crowd client {i} could not register: {e}"))
        })
        .collect();

    // The crowded server hangs, its sockets still open.
    let hung = Instant::now();
    cluster.hang_server(0);

    // Every observed client prints `failover` from the hung server to the other one
    // before the bound has passed since the SIGSTOP.
    let bound = Duration::from_millis(HEARTBEAT_TIMEOUT_MS) + AFTER_THE_WATCHDOG;
    for client in &observed {
        let left = bound.saturating_sub(hung.elapsed());
        let event = client.expect_event(
            &format!("`failover` within {bound:?} of the SIGSTOP"),
            left,
            |e| e["event"] == "failover",
        );
        assert_eq!(event["from"], crowded.as_str(), "{event}");
        assert_eq!(event["to"], cluster.addr(1), "{event}");
    }
    eprintln!(
        "all {OBSERVED} observed clients registered elsewhere {:?} after the SIGSTOP of a \
         server with {CROWD} more",
        hung.elapsed()
    );
    // Nothing else to check: the cluster and the clients are killed on drop (a stopped
    // process dies of SIGKILL too), and the crowd's sockets close.
    drop(crowd);
}
