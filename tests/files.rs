//! Files through the real binary: streamed in chunks over three servers, byte-identical on
//! arrival, safe names, refusals before anything is sent, text overtaking a big file, and a
//! server killed in the middle of a transfer.
//!
//! Every check compares the saved bytes with the original, and ends by asserting that no
//! temporary (`.dsys-partial-*`) file is left in any download directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Client, Cluster, TIMEOUT, TempDir};
use serde_json::Value;

/// Time allowed for a big file to cross the cluster (generous: a loaded 2-core machine).
const BIG_FILE_TIMEOUT: Duration = Duration::from_secs(120);

/// Deterministic bytes that are not text: every value, NULs and invalid UTF-8 included.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn write_file(dir: &TempDir, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Waits for the next `file` event from `from` and checks it against `original`: size,
/// saved inside the download dir, and the very same bytes. Returns the event.
fn expect_identical_file(
    receiver: &Client,
    from: &str,
    original: &[u8],
    timeout: Duration,
) -> Value {
    let event = receiver.expect_event(&format!("a file from {from}"), timeout, |v| {
        v["event"] == "file" && v["from"] == from
    });
    assert_eq!(event["size"], original.len() as u64, "{event}");
    let saved = PathBuf::from(event["path"].as_str().unwrap_or_default());
    assert_eq!(
        saved.parent(),
        Some(receiver.download_dir()),
        "saved outside {}'s download dir: {event}",
        receiver.name
    );
    let content = std::fs::read(&saved).unwrap_or_else(|e| panic!("read {event}: {e}"));
    assert!(
        content == original,
        "{} saved different bytes for {event}",
        receiver.name
    );
    event
}

/// Names of the temporary files left in a download dir (there should be none).
fn partial_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".dsys-partial-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a client `r{i}` on server `i` for each `i` in `servers`, each registered.
fn registered_receivers(cluster: &Cluster, servers: std::ops::Range<usize>) -> Vec<Client> {
    let receivers: Vec<Client> = servers
        .map(|i| Client::start_on(&format!("r{i}"), cluster.coordinator(), cluster.addr(i)))
        .collect();
    for receiver in &receivers {
        receiver.wait_registered();
    }
    receivers
}

fn assert_no_partial_files(clients: &[&Client]) {
    for client in clients {
        let left = partial_files(client.download_dir());
        assert!(
            left.is_empty(),
            "{} has partial files left: {left:?}",
            client.name
        );
    }
}

#[test]
fn files_of_0_1_and_many_bytes_arrive_identical_on_every_server() {
    let cluster = Cluster::start(3);
    let files = TempDir::new("small-files");
    let empty = write_file(&files, "empty.bin", &[]);
    let one = write_file(&files, "one.bin", &[0]);
    // Two chunks and a bit, with NULs and invalid UTF-8.
    let several = pseudo_random_bytes(2 * 256 * 1024 + 7, 3);
    let several_path = write_file(&files, "several.bin", &several);

    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    let carol = Client::start_on("carol", cluster.coordinator(), cluster.addr(2));
    bob.wait_registered();
    carol.wait_registered();
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &[
            "--send-file",
            arg(&empty),
            "--send-file",
            arg(&one),
            "--send-file",
            arg(&several_path),
        ],
    );
    alice.wait_registered();

    for receiver in [&bob, &carol] {
        let originals: [&[u8]; 3] = [&[], &[0], &several];
        for (i, original) in originals.iter().enumerate() {
            let event = expect_identical_file(receiver, "alice", original, TIMEOUT);
            assert_eq!(
                event["seq"],
                i as u64 + 1,
                "files are numbered 1, 2, 3: {event}"
            );
        }
    }
    alice.close_stdin();
    assert!(alice.finish(TIMEOUT).success());
    assert_no_partial_files(&[&bob, &carol]);
}

#[test]
fn a_64_mib_file_reaches_every_client_on_three_servers_identical() {
    let cluster = Cluster::start(3);
    let files = TempDir::new("big-file");
    let big = pseudo_random_bytes(64 * 1024 * 1024, 64);
    let path = write_file(&files, "big.bin", &big);

    let receivers = registered_receivers(&cluster, 0..3);
    let mut sender = Client::start_with(
        "sender",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &["--send-file", arg(&path)],
    );
    sender.wait_registered();
    for receiver in &receivers {
        expect_identical_file(receiver, "sender", &big, BIG_FILE_TIMEOUT);
    }
    sender.close_stdin();
    assert!(sender.finish(TIMEOUT).success());
    assert_no_partial_files(&receivers.iter().collect::<Vec<_>>());
}

#[test]
fn a_text_sent_during_a_big_file_overtakes_it() {
    let cluster = Cluster::start(2);
    let files = TempDir::new("overtake");
    let big = pseudo_random_bytes(32 * 1024 * 1024, 5);
    let path = write_file(&files, "big.bin", &big);

    let bob = Client::start_on("bob", cluster.coordinator(), cluster.addr(1));
    bob.wait_registered();
    let mut alice = Client::start_on("alice", cluster.coordinator(), cluster.addr(0));
    alice.wait_registered();
    alice.send_line(&format!("/file {}", arg(&path)));
    alice.send_line("meanwhile");

    // The text is complete first, so it is message 1 and arrives before the file, which
    // gets number 2 when its last chunk is sent.
    let first = bob.expect_event("the first event from alice", BIG_FILE_TIMEOUT, |v| {
        (v["event"] == "message" || v["event"] == "file") && v["from"] == "alice"
    });
    assert_eq!(
        first["event"], "message",
        "the text should overtake the file: {first}"
    );
    assert_eq!(first["text"], "meanwhile");
    assert_eq!(first["seq"], 1);
    let file = expect_identical_file(&bob, "alice", &big, BIG_FILE_TIMEOUT);
    assert_eq!(file["seq"], 2, "{file}");
    alice.close_stdin();
    assert!(alice.finish(TIMEOUT).success());
    assert_no_partial_files(&[&bob]);
}

#[test]
fn missing_and_oversized_files_are_refused_and_cost_no_number() {
    let cluster = Cluster::start(1);
    let files = TempDir::new("refused");
    let too_big = write_file(&files, "too-big.bin", &[1; 11]);
    let bob = Client::start("bob", cluster.coordinator());
    bob.wait_registered();
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        None,
        &["--max-file-size", "10"],
    );
    alice.wait_registered();
    let missing = files.path().join("no-such-file");
    alice.send_line(&format!("/file {}", arg(&missing)));
    alice.send_line(&format!("/file {}", arg(&too_big)));
    alice.send_line(&format!("/file {}", arg(files.path())));
    alice.send_line("still here");

    for what in ["no-such-file", "limit", "not a regular file"] {
        let error = alice.expect_event(&format!("an error about {what}"), TIMEOUT, |v| {
            v["event"] == "error"
        });
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(what), "{error}");
    }
    let text = bob.expect_event("alice's text", TIMEOUT, |v| {
        v["event"] == "message" && v["from"] == "alice"
    });
    assert_eq!(text["seq"], 1, "refused files take no number: {text}");
    alice.close_stdin();
    assert!(alice.finish(TIMEOUT).success());
    assert!(
        bob.events_so_far().iter().all(|e| e["event"] != "file"),
        "nothing of a refused file may arrive"
    );
}

#[test]
fn file_names_from_the_wire_become_safe_names_and_never_overwrite() {
    let cluster = Cluster::start(1);
    let files = TempDir::new("names");
    let hidden = write_file(&files, ".profile", b"dot");
    let control = write_file(&files, "bell\u{7}name", b"bell");
    let bob = Client::start("bob", cluster.coordinator());
    bob.wait_registered();
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        None,
        &[
            "--send-file",
            arg(&hidden),
            "--send-file",
            arg(&hidden),
            "--send-file",
            arg(&control),
        ],
    );
    alice.wait_registered();
    let names: Vec<Value> = ["_profile", "_profile (1)", "bell_name"]
        .iter()
        .map(|_| {
            bob.expect_event("a file from alice", TIMEOUT, |v| {
                v["event"] == "file" && v["from"] == "alice"
            })["name"]
                .clone()
        })
        .collect();
    assert_eq!(names, ["_profile", "_profile (1)", "bell_name"]);
    alice.close_stdin();
    assert!(alice.finish(TIMEOUT).success());
    assert_no_partial_files(&[&bob]);
}

#[test]
fn killing_the_senders_server_mid_transfer_still_gives_identical_copies() {
    let mut cluster = Cluster::start(3);
    let files = TempDir::new("kill-mid-file");
    let big = pseudo_random_bytes(64 * 1024 * 1024, 9);
    let path = write_file(&files, "big.bin", &big);

    let receivers = registered_receivers(&cluster, 1..3);
    let mut sender = Client::start_on("sender", cluster.coordinator(), cluster.addr(0));
    sender.wait_registered();
    sender.send_line(&format!("/file {}", arg(&path)));

    // Mid-transfer: a receiver has started writing the file but not finished it.
    common::wait_until("a partial file at r1", BIG_FILE_TIMEOUT, || {
        !partial_files(receivers[0].download_dir()).is_empty()
    });
    cluster.kill_server(0);

    for receiver in &receivers {
        expect_identical_file(receiver, "sender", &big, BIG_FILE_TIMEOUT);
    }
    sender.expect_event("the sender's failover", TIMEOUT, |v| {
        v["event"] == "failover"
    });
    sender.close_stdin();
    assert!(sender.finish(TIMEOUT).success());
    assert_no_partial_files(&receivers.iter().collect::<Vec<_>>());
}
