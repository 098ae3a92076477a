//! `--metrics`: the Prometheus endpoint of the server and the coordinator
//! (`docs/heartbeats-and-failover.md`, "Metrics"). A scrape taken while clients talk is
//! valid for Prometheus's own checker, the counters move by exactly the traffic sent, and
//! hostile bytes on the metrics port cost only their own connection.
//!
//! **promtool.** The format test runs `promtool check metrics` (Debian's `prometheus`
//! package, which `.ci/run` installs). Where it is missing the test says so and passes,
//! unless `CI` is set: there a missing checker is a broken setup, and the test fails.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Cluster, Proc, TIMEOUT, poll_until};

/// The metrics flag every role in these tests gets: a free port, reported in the log.
const METRICS: [&str; 2] = ["--metrics", "127.0.0.1:0"];

/// The address `proc` serves its metrics on, from its `metrics listening on` line.
fn metrics_addr(proc: &Proc) -> String {
    poll_until("the metrics port's log line", TIMEOUT, || {
        proc.stderr_so_far()
            .iter()
            .find_map(|line| {
                let (_, after) = line.split_once("metrics listening on http://")?;
                Some(after.trim_end_matches("/metrics").trim().to_string())
            })
            .ok_or_else(String::new)
    })
}

/// Sends `request` to `addr` and returns the whole answer (the server closes after it).
fn http(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET /metrics` on `addr`: the body, after checking the status and the headers.
#[track_caller]
fn scrape(addr: &str) -> String {
    body_of_ok(&http(addr, GET_METRICS))
}

/// The request a scraper sends.
const GET_METRICS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";

/// The body of a `200` answer to a scrape, after checking its status and headers.
#[track_caller]
fn body_of_ok(answer: &str) -> String {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line after the head: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    body.to_string()
}

/// The value of the sample `name` (with its labels, as written) in `body`.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
        .parse()
        .expect("a number")
}

/// Starts `count` clients on the cluster's server 0 and waits until each is registered.
fn clients_on(cluster: &Cluster, names: &[&str]) -> Vec<Client> {
    let clients: Vec<Client> = names
        .iter()
        .map(|name| Client::start_on(name, cluster.coordinator(), cluster.addr(0)))
        .collect();
    for client in &clients {
        client.wait_registered();
    }
    clients
}

#[test]
fn the_counters_move_by_exactly_the_traffic_sent() {
    const N: usize = 25;
    let cluster = Cluster::start_with(1, &[], &METRICS);
    let addr = metrics_addr(cluster.server(0));
    let mut clients = clients_on(&cluster, &["sender", "r1", "r2", "r3"]);
    let receivers = clients.len() - 1;
    let before = scrape(&addr);
    assert_eq!(sample(&before, "dsys_server_clients"), 4.0);
    assert_eq!(
        sample(&before, "dsys_server_registrations_total{kind=\"new\"}"),
        4.0
    );
    for i in 1..=N {
        clients[0].send_line(&format!("message {i}"));
    }
    for receiver in &clients[1..] {
        receiver.wait_messages(&["sender"], N, TIMEOUT);
    }
    let after = scrape(&addr);
    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        grew("dsys_server_messages_in_total{from=\"client\"}"),
        N as f64,
        "one count per publish:\n{after}"
    );
    assert_eq!(
        grew("dsys_server_deliveries_total"),
        (N * receivers) as f64,
        "one count per message and receiver:\n{after}"
    );
    // Each delivery is a frame of more than its text; the sender's acks add to that.
    let text = "message 10".len() as f64;
    assert!(grew("dsys_server_client_bytes_sent_total") > text * (N * receivers) as f64);
    assert!(grew("dsys_server_client_bytes_received_total") > text * N as f64);
    assert_eq!(grew("dsys_server_publishes_refused_total"), 0.0);
    assert_eq!(grew("dsys_server_slow_consumer_cutoffs_total"), 0.0);
    for client in &mut clients {
        client.finish(TIMEOUT);
    }
}

#[test]
fn promtool_accepts_a_scrape_of_a_server_and_of_the_coordinator_while_clients_talk() {
    let cluster = Cluster::start_with(2, &METRICS, &METRICS);
    let server = metrics_addr(cluster.server(0));
    let coordinator = metrics_addr(&cluster.coordinator);
    let mut clients = clients_on(&cluster, &["talker", "listener"]);
    for i in 1..=300 {
        clients[0].send_line(&format!("line {i} while the scrape is taken"));
    }
    let scrapes = [
        ("server", scrape(&server)),
        ("coordinator", scrape(&coordinator)),
    ];
    clients[1].wait_messages(&["talker"], 300, TIMEOUT);
    let server_body = &scrapes[0].1;
    assert_eq!(sample(server_body, "dsys_server_peer_links_up"), 1.0);
    assert!(sample(server_body, "dsys_server_keepalive_interval_seconds") > 0.0);
    let coordinator_body = &scrapes[1].1;
    assert_eq!(
        sample(coordinator_body, "dsys_coordinator_servers{state=\"live\"}"),
        2.0
    );
    for client in &mut clients {
        client.finish(TIMEOUT);
    }

    if Command::new("promtool").arg("--version").output().is_err() {
        let why = "promtool is not installed (Debian: apt-get install prometheus)";
        assert!(std::env::var_os("CI").is_none(), "{why}; CI must have it");
        eprintln!("SKIPPED the promtool check: {why}");
        return;
    }
    for (role, body) in &scrapes {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool starts");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(body.as_bytes())
            .expect("promtool reads the scrape");
        let out = child.wait_with_output().expect("promtool ends");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on the {role}'s scrape: {}\n{}{}\nthe scrape:\n{body}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hostile_bytes_on_the_metrics_port_cost_only_their_own_connection() {
    let flags = ["--metrics", "127.0.0.1:0", "--handshake-timeout", "1000"];
    let cluster = Cluster::start_with(1, &[], &flags);
    let addr = metrics_addr(cluster.server(0));

    // Garbage, an unknown path, another method, an oversized head: each an error answer
    // and the close.
    let answer = http(&addr, b"\x00\xff\x16\x03 garbage\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let answer = http(&addr, b"GET /admin HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    let answer = http(&addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(20 * 1024, b'a');
    let answer = http(&addr, &huge);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    scrape(&addr);

    // A slow, half-sent request is closed at the handshake deadline (1 s here).
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(5),
        "a half-sent request was held {held:?}, past its 1 s deadline"
    );
    assert!(rest.is_empty(), "nothing is answered to it: {rest:?}");

    // Many idle connections: beyond the cap each is told 503 at once, and a scrape is
    // served again once a held one ends (at its deadline, or sooner if a connection above
    // was still ending when the flood came and left a slot to free). The dsys port is
    // untouched meanwhile.
    let idle: Vec<TcpStream> = (0..48)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let mut last = idle.last().unwrap();
    last.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut refusal = String::new();
    let _ = last.read_to_string(&mut refusal);
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal:?}");
    let client = Client::start_on("during-the-flood", cluster.coordinator(), cluster.addr(0));
    client.wait_registered();
    // Taken while the idle ones are still open: closing them frees their slots only as
    // each thread notices, so a scrape right after the close could still meet the cap.
    let body = poll_until("a scrape served after the flood", TIMEOUT, || {
        let answer = http(&addr, GET_METRICS);
        if answer.starts_with("HTTP/1.1 200") {
            Ok(body_of_ok(&answer))
        } else {
            Err(answer)
        }
    });
    assert_eq!(sample(&body, "dsys_server_clients"), 1.0);
    drop(idle);
}
