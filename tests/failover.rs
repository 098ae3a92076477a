//! Failover (`CONTRACT.md` guarantees 2 and 3): a server that crashes (SIGKILL) or hangs
//! (SIGSTOP) loses its clients to the live servers, spread evenly, and no message is lost,
//! duplicated or reordered on the way; a hung server that wakes up (SIGCONT) delivers
//! nothing stale and rejoins as a new incarnation; a coordinator that crashes and comes back
//! on the same address costs nothing while it is down and knows the whole cluster again
//! within a few heartbeats.
//!
//! Timing: servers heartbeat every `HEARTBEAT_INTERVAL_MS` (100 ms; a server writes a
//! keepalive to a client after two of those without a frame, and a client gives up on a
//! server silent for five) and the coordinator declares a silent server dead after `HEARTBEAT_TIMEOUT_MS`
//! (1000 ms). Every scenario uses three servers with two clients each, pinned with
//! `--server` so that who is where does not depend on the coordinator's choices; clients
//! are named `s<server><a|b>`. The failure is injected only after `dsys status` lists every
//! client under its server, so the coordinator knows whom to move. Checks that say "exactly
//! once" run on each client's whole output, after [`finish_all`] ended it.
//!
//! The "coordinator down" case (no coordinator at all when a client starts) is in
//! `tests/cli.rs`.

mod common;

use std::io::Write;
use std::process::ChildStdin;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Client, Cluster, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, TIMEOUT, assert_numbered_texts,
    assert_seqs_exactly, entry_clients, events_of, finish_all, start_server, status_entry,
    status_json, status_servers, try_status_json, wait_until,
};
use serde_json::Value;

/// How long after the heartbeat timeout the coordinator may take to report a hung server
/// dead. Its watchdog checks every tenth of the timeout (100 ms) and one `dsys status` poll
/// takes a few milliseconds, so 100-200 ms would do on an idle machine; the rest is room for
/// a 2-core machine running several test binaries at once.
const DEAD_MARGIN: Duration = Duration::from_millis(1500);

/// How long a restarted coordinator may take to list every server alive with its clients:
/// one heartbeat interval (100 ms) per server is the design, twenty intervals leave room
/// for a loaded machine, and it is still "a few heartbeats" compared to the timeout.
const RESTART_RECOVERY: Duration = Duration::from_secs(2);

/// Starts two clients pinned to each server of `cluster`, named `s<i>a` and `s<i>b`, and
/// returns once each has registered and `dsys status` lists them all under their servers.
fn start_two_per_server(cluster: &Cluster) -> Vec<Client> {
    let clients: Vec<Client> = (0..cluster.addrs().len())
        .flat_map(|i| {
            ["a", "b"].map(|letter| {
                Client::start_on(
                    &format!("s{i}{letter}"),
                    cluster.coordinator(),
                    cluster.addr(i),
                )
            })
        })
        .collect();
    for (k, client) in clients.iter().enumerate() {
        assert_eq!(client.wait_registered(), cluster.addr(k / 2));
    }
    cluster.wait_status("every client listed under its server", TIMEOUT, |status| {
        (0..cluster.addrs().len()).all(|i| {
            entry_clients(&status_entry(status, cluster.addr(i)))
                == [format!("s{i}a"), format!("s{i}b")]
        })
    });
    clients
}

/// The names of `clients`.
fn names(clients: &[Client]) -> Vec<String> {
    clients.iter().map(|c| c.name.clone()).collect()
}

/// Every client sends one line, `"{tag} from {name}"`.
fn everyone_sends(clients: &mut [Client], tag: &str) {
    for client in clients.iter_mut() {
        let line = format!("{tag} from {}", client.name);
        client.send_line(&line);
    }
}

/// Waits until every client in `receivers` has `count` messages from each client in
/// `senders` other than itself.
fn wait_everyone_has(receivers: &[Client], senders: &[String], count: usize) {
    for receiver in receivers {
        let others: Vec<&str> = senders
            .iter()
            .map(String::as_str)
            .filter(|&s| s != receiver.name)
            .collect();
        receiver.wait_messages(&others, count, TIMEOUT);
    }
}

/// Asserts over whole outputs that every client got seqs `1..=count` from every other one,
/// exactly once and in order, and reported no gap.
fn assert_everyone_got_everything(clients: &[Client], count: u64) {
    for receiver in clients {
        let events = receiver.events_so_far();
        for sender in clients.iter().filter(|s| s.name != receiver.name) {
            assert_seqs_exactly(&events, &receiver.name, &sender.name, 1, count);
        }
        assert!(
            events_of(&events, "gap").is_empty(),
            "{} reported a gap: {:?}",
            receiver.name,
            events_of(&events, "gap")
        );
    }
}

/// Waits for `client`'s `failover` event away from `lost` and returns the server it moved to.
fn failover_target(client: &Client, lost: &str) -> String {
    let event = client.expect_event(&format!("a `failover` event from {lost}"), TIMEOUT, |v| {
        v["event"] == "failover"
    });
    assert_eq!(
        event["from"], lost,
        "{} failed over from the wrong server: {event}",
        client.name
    );
    event["to"].as_str().unwrap_or_default().to_string()
}

/// Asserts that the two clients of a lost server moved one to each of the two other servers.
fn assert_spread_evenly(cluster: &Cluster, lost: usize, targets: &[String]) {
    let mut targets = targets.to_vec();
    targets.sort();
    let mut survivors: Vec<String> = (0..3)
        .filter(|&i| i != lost)
        .map(|i| cluster.addr(i).to_string())
        .collect();
    survivors.sort();
    assert_eq!(
        targets, survivors,
        "the two clients of server {lost} should move one to each live server"
    );
}

/// Asserts that none of `clients` printed a `failover` event: their servers stayed up.
fn assert_none_moved<'a>(clients: impl IntoIterator<Item = &'a Client>) {
    for client in clients {
        let events = client.events_so_far();
        assert!(
            events_of(&events, "failover").is_empty(),
            "{} was on a live server and should not have moved: {events:?}",
            client.name
        );
    }
}

/// Writes `"{name} n{k}"` for every `k` in `range` to a client's stdin.
fn write_numbered(stdin: &mut ChildStdin, name: &str, range: std::ops::RangeInclusive<u64>) {
    for k in range {
        writeln!(stdin, "{name} n{k}").expect("write to a client's stdin");
    }
    stdin.flush().expect("flush a client's stdin");
}

/// Makes every client send `2 * batch` numbered lines (`"{name} n{k}"`) with a failure in
/// the middle: one writer thread per client writes lines `1..=batch` at once, `inject` runs
/// on the test thread meanwhile (it waits for progress, then breaks something), and only
/// when it has returned do the writers write `batch+1..=2*batch`.
///
/// Returns the clients' stdins, still open: a client whose stdin ends leaves as soon as its
/// own messages are acknowledged, maybe before the others' have reached it. Drop them once
/// every client has everything.
fn send_two_batches_around(
    clients: &mut [Client],
    batch: u64,
    inject: impl FnOnce(&[Client]),
) -> Vec<ChildStdin> {
    let all = names(clients);
    let mut stdins: Vec<ChildStdin> = clients.iter_mut().map(Client::take_stdin).collect();
    thread::scope(|s| {
        let mut gos = Vec::new();
        for (stdin, name) in stdins.iter_mut().zip(&all) {
            let (go_tx, go_rx) = mpsc::channel::<()>();
            gos.push(go_tx);
            s.spawn(move || {
                write_numbered(stdin, name, 1..=batch);
                // An error means `inject` panicked (the test failed): stop writing.
                if go_rx.recv().is_ok() {
                    write_numbered(stdin, name, batch + 1..=2 * batch);
                }
            });
        }
        inject(clients);
        for go in gos {
            let _ = go.send(());
        }
    });
    stdins
}

/// The end of a [`send_two_batches_around`] test: every client receives all the others'
/// lines; then every sender exits 0 (all its messages were acknowledged), each client got
/// from each other one seqs 1..=2*batch exactly once, in order, no gap, with the texts in
/// the order they were written, and the clients of servers 1 and 2 never moved.
fn finish_and_assert_both_batches(clients: &mut [Client], stdins: Vec<ChildStdin>, batch: u64) {
    let all = names(clients);
    wait_everyone_has(clients, &all, 2 * batch as usize);
    drop(stdins);
    finish_all(clients);
    assert_everyone_got_everything(clients, 2 * batch);
    assert_everyone_got_numbered_texts(clients, 2 * batch);
    assert_none_moved(&clients[2..]);
}

/// Asserts over whole outputs that every client got the texts `"{sender} n1"` ...
/// `"{sender} n{total}"` from every other client, in that order.
fn assert_everyone_got_numbered_texts(clients: &[Client], total: u64) {
    for receiver in clients {
        let events = receiver.events_so_far();
        for sender in clients.iter().filter(|s| s.name != receiver.name) {
            assert_numbered_texts(&events, &receiver.name, &sender.name, total);
        }
    }
}

#[test]
fn killed_server_clients_fail_over_evenly_and_keep_sharing() {
    let mut cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);
    let all = names(&clients);
    let lost = cluster.addr(0).to_string();

    cluster.kill_server(0);
    // Both clients of the crashed server print `failover` from it to a live server ...
    let targets = [
        failover_target(&clients[0], &lost),
        failover_target(&clients[1], &lost),
    ];
    // ... one to each of the two others (server 0 dealt its two clients one standby each).
    assert_spread_evenly(&cluster, 0, &targets);
    // The coordinator reports the crashed server dead and three clients on each other one.
    cluster.wait_status(
        "server 0 dead, three clients on each live one",
        TIMEOUT,
        |st| {
            status_entry(st, &lost)["alive"] == false
                && (1..3).all(|i| entry_clients(&status_entry(st, cluster.addr(i))).len() == 3)
        },
    );

    // Afterwards everyone still receives everyone's messages.
    everyone_sends(&mut clients, "after the crash");
    wait_everyone_has(&clients, &all, 1);
    finish_all(&mut clients);
    // Exactly once each, and only the crashed server's clients moved.
    assert_everyone_got_everything(&clients, 1);
    assert_none_moved(&clients[2..]);
}

#[test]
fn a_crashed_servers_clients_go_to_their_standbys_while_the_coordinator_is_stopped() {
    let mut cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);
    let all = names(&clients);
    let lost = cluster.addr(0).to_string();

    // Nobody can ask the coordinator now: a client that did would wait for ever.
    cluster.hang_coordinator();
    cluster.kill_server(0);
    // Each client of the crashed server registers on the standby its server dealt it, one
    // to each live server, without a word from the coordinator.
    let targets = [
        failover_target(&clients[0], &lost),
        failover_target(&clients[1], &lost),
    ];
    assert_spread_evenly(&cluster, 0, &targets);
    everyone_sends(&mut clients, "after the crash");
    wait_everyone_has(&clients, &all, 1);

    // Acknowledgements wait for the coordinator to declare server 0 dead; then everyone
    // leaves with everything, exactly once.
    cluster.wake_coordinator();
    finish_all(&mut clients);
    assert_everyone_got_everything(&clients, 1);
    assert_none_moved(&clients[2..]);
}

#[test]
fn a_server_that_joins_is_dealt_as_a_standby_and_a_crash_spreads_over_it() {
    // Rebalancing would move clients onto the newcomer by itself: off, so that only the
    // standbys decide where the crash sends them.
    let mut cluster = Cluster::start_with(2, &["--no-rebalance"], &[]);
    let mut clients: Vec<Client> = (0..4)
        .map(|k| Client::start_on(&format!("c{k}"), cluster.coordinator(), cluster.addr(0)))
        .collect();
    let standby_line =
        |client: &Client, server: &str| format!("standby name={} server={server} ", client.name);
    for client in &clients {
        assert_eq!(client.wait_registered(), cluster.addr(0));
        // The only other server is everyone's standby.
        let line = standby_line(client, cluster.addr(1));
        client.proc.wait_for_stderr(&line, TIMEOUT);
    }

    let (_third, third) = start_server(cluster.coordinator(), HEARTBEAT_INTERVAL_MS);
    // Server 0 deals again once the coordinator lists the newcomer: in turn over both
    // others, so two of the four now hold it.
    let holding_third = |clients: &[Client]| {
        clients
            .iter()
            .filter(|c| {
                let line = standby_line(c, &third);
                c.proc.stderr_so_far().iter().any(|l| l.contains(&line))
            })
            .count()
    };
    wait_until(
        "two clients hold the new server as their standby",
        TIMEOUT,
        || holding_third(&clients) == 2,
    );

    let lost = cluster.addr(0).to_string();
    cluster.kill_server(0);
    let mut targets: Vec<String> = clients.iter().map(|c| failover_target(c, &lost)).collect();
    targets.sort();
    let mut expected = vec![cluster.addr(1).to_string(), third.clone()];
    expected.extend(expected.clone());
    expected.sort();
    assert_eq!(targets, expected, "two clients to each live server");

    let all = names(&clients);
    everyone_sends(&mut clients, "after the crash");
    wait_everyone_has(&clients, &all, 1);
    finish_all(&mut clients);
    assert_everyone_got_everything(&clients, 1);
}

#[test]
fn messages_in_flight_when_a_server_dies_arrive_exactly_once_in_order() {
    // Each client sends BATCH numbered lines before the crash and as many after it.
    const BATCH: u64 = 500;
    let mut cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);
    let lost = cluster.addr(0).to_string();

    let stdins = send_two_batches_around(&mut clients, BATCH, |clients| {
        // The crash comes mid-stream: once a client elsewhere has a quarter of the first
        // batch of both clients of server 0, so messages are still on their way when it dies.
        clients[2].wait_messages(&["s0a", "s0b"], BATCH as usize / 4, TIMEOUT);
        cluster.kill_server(0);
    });

    // Both clients of the crashed server fail over, one to each live server.
    let targets = [
        failover_target(&clients[0], &lost),
        failover_target(&clients[1], &lost),
    ];
    assert_spread_evenly(&cluster, 0, &targets);
    finish_and_assert_both_batches(&mut clients, stdins, BATCH);
}

#[test]
fn briefly_hung_server_loses_and_duplicates_nothing() {
    // Each client sends BATCH numbered lines before the hang and as many after it.
    const BATCH: u64 = 500;
    let cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);

    let stdins = send_two_batches_around(&mut clients, BATCH, |clients| {
        // Server 0 hangs mid-stream, only until its first client notices the silence (its
        // silence limit, 500 ms): well within the coordinator's timeout, so its clients are
        // told to stay, and it wakes with their messages and its peers' in its sockets.
        clients[2].wait_messages(&["s0a", "s0b"], BATCH as usize / 4, TIMEOUT);
        cluster.hang_server(0);
        clients[0].proc.wait_for_stderr("lost server", TIMEOUT);
        cluster.wake_server(0);
    });

    finish_and_assert_both_batches(&mut clients, stdins, BATCH);
}

#[test]
fn hung_server_is_replaced_and_delivers_nothing_stale_when_it_wakes() {
    // Lines each client sends while server 0 hangs.
    const HANG_BATCH: usize = 50;
    let cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);
    let all = names(&clients);
    let hung = cluster.addr(0).to_string();
    let old_epoch = status_entry(&status_json(cluster.coordinator()), &hung)["epoch"]
        .as_u64()
        .expect("status gives each server's epoch");

    everyone_sends(&mut clients, "before the hang");
    wait_everyone_has(&clients, &all, 1);

    let hung_at = Instant::now();
    cluster.hang_server(0);
    // Sent while server 0 hangs: its clients' lines sit unread in its sockets, the others'
    // wait in its peer links. These are what a woken server could deliver stale.
    for _ in 0..HANG_BATCH {
        everyone_sends(&mut clients, "during the hang");
    }

    // The coordinator reports the hung server dead within the heartbeat timeout plus a margin.
    cluster.wait_status("the hung server reported dead", TIMEOUT, |st| {
        status_entry(st, &hung)["alive"] == false
    });
    let took = hung_at.elapsed();
    let allowed = Duration::from_millis(HEARTBEAT_TIMEOUT_MS) + DEAD_MARGIN;
    assert!(
        took <= allowed,
        "declared dead after {took:?}, allowed {allowed:?}"
    );

    // Its two clients fail over, one to each live server ...
    let targets = [
        failover_target(&clients[0], &hung),
        failover_target(&clients[1], &hung),
    ];
    assert_spread_evenly(&cluster, 0, &targets);
    // ... and messages keep flowing: the lines sent during the hang arrive, then new ones.
    wait_everyone_has(&clients, &all, 1 + HANG_BATCH);
    everyone_sends(&mut clients, "after the failover");
    wait_everyone_has(&clients, &all, 2 + HANG_BATCH);

    // Wake the hung server. The links it is about to make are counted from here.
    let links_before: Vec<(usize, usize, usize)> = [(0, 1), (0, 2), (1, 0), (2, 0)]
        .into_iter()
        .map(|(i, j)| (i, j, cluster.peer_links_up(i, j)))
        .collect();
    cluster.wake_server(0);
    // It rejoins as a new incarnation: alive again, with a new epoch ...
    cluster.wait_status("the woken server alive with a new epoch", TIMEOUT, |st| {
        let entry = status_entry(st, &hung);
        entry["alive"] == true && entry["epoch"].as_u64() != Some(old_epoch)
    });
    // ... and linked with both other servers in both directions again.
    for (i, j, before) in links_before {
        cluster.wait_peer_links(i, j, before + 1);
    }
    // A newcomer on the woken server shares with everyone.
    let late = Client::start_on("late", cluster.coordinator(), &hung);
    assert_eq!(late.wait_registered(), hung);
    everyone_sends(&mut clients, "after the wake-up");
    clients.push(late);
    clients[6].send_line("hello from late");
    wait_everyone_has(&clients[..6], &all, 3 + HANG_BATCH);
    wait_everyone_has(&clients[..6], &["late".to_string()], 1);
    let originals: Vec<&str> = all.iter().map(String::as_str).collect();
    clients[6].wait_messages(&originals, 1, TIMEOUT);

    finish_all(&mut clients);
    // Nothing stale and nothing twice anywhere: each original client got every seq from
    // each other original client exactly once, in order, and late's one message ...
    let (originals, newcomer) = clients.split_at(6);
    let last = 3 + HANG_BATCH as u64;
    assert_everyone_got_everything(originals, last);
    for receiver in originals {
        assert_seqs_exactly(&receiver.events_so_far(), &receiver.name, "late", 1, 1);
    }
    // ... and late, registered after all the others, got exactly the last one from each.
    let events = newcomer[0].events_so_far();
    for sender in &all {
        assert_seqs_exactly(&events, "late", sender, last, last);
    }
    assert!(
        events_of(&events, "gap").is_empty(),
        "late reported a gap: {events:?}"
    );
    assert_none_moved(&originals[2..]);
}

#[test]
fn coordinator_restart_costs_nothing_and_status_recovers() {
    let mut cluster = Cluster::start(3);
    let mut clients = start_two_per_server(&cluster);
    let all = names(&clients);
    let mut sent = 0;
    // One round: everyone sends a line, and everyone waits for everyone else's.
    let mut round = |clients: &mut [Client], tag: &str| {
        everyone_sends(clients, tag);
        sent += 1;
        wait_everyone_has(clients, &all, sent);
    };

    cluster.kill_coordinator();
    // While the coordinator is down, clients keep sharing, across servers too.
    for _ in 0..3 {
        round(&mut clients, "while the coordinator is down");
    }

    cluster.restart_coordinator();
    let restarted_at = Instant::now();
    // Sharing goes on while the servers report to the new coordinator, round after round,
    // until its status is whole again: every server alive with its two clients.
    let whole = |status: &Value| {
        (0..3).all(|i| {
            let entry = status_entry(status, cluster.addr(i));
            entry["alive"] == true && entry_clients(&entry) == [format!("s{i}a"), format!("s{i}b")]
        })
    };
    loop {
        round(&mut clients, "while the coordinator restarts");
        let status = try_status_json(cluster.coordinator());
        if status
            .as_ref()
            .is_ok_and(|st| status_servers(st).len() == 3 && whole(st))
        {
            break;
        }
        // That takes a few heartbeats, not more.
        assert!(
            restarted_at.elapsed() <= RESTART_RECOVERY,
            "the restarted coordinator's status is not whole after {RESTART_RECOVERY:?}: {status:?}"
        );
    }
    // A few more rounds after the recovery, then the whole-output checks: no client moved,
    // and every line arrived exactly once, in order.
    for _ in 0..3 {
        round(&mut clients, "after the restart");
    }
    finish_all(&mut clients);
    assert_everyone_got_everything(&clients, sent as u64);
    assert_none_moved(&clients);
}
