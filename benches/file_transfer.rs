//! Benchmark: how fast a 64 MiB file crosses a three-server cluster, against a baseline
//! measured in the same run. Run with `cargo bench --bench file_transfer`.
//!
//! - **baseline**: the least any transfer must do on this machine. One thread reads the
//!   file, hashes it (SHA-256) and writes it in 256 KiB pieces into one loopback TCP
//!   connection; another reads, hashes and writes the bytes to a file.
//! - **dsys**: `sender` on server 0 sends the file with `/file`; receivers on servers 0, 1
//!   and 2 each save a copy. Timed from the command to the third `file` event.
//!
//! Runs alternate (baseline, dsys, baseline, ...) so both see the same machine load, and the
//! report gives medians and their ratio. Nothing is asserted: speed is reported, not tested.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Cluster, TempDir, median, pseudo_random_bytes};
use dsys::support::sha256::Sha256;

const FILE_LEN: usize = 64 * 1024 * 1024;
const PIECE: usize = 256 * 1024;
const RUNS: usize = 5;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let files = TempDir::new("bench-files");
    let path = files.path().join("big.bin");
    std::fs::write(&path, pseudo_random_bytes(FILE_LEN, 7)).expect("write the test file");

    let cluster = Cluster::start(3);
    let receivers: Vec<Client> = (0..3)
        .map(|i| Client::start_on(&format!("r{i}"), cluster.coordinator(), cluster.addr(i)))
        .collect();
    for receiver in &receivers {
        receiver.wait_registered();
    }
    let mut sender = Client::start_on("sender", cluster.coordinator(), cluster.addr(0));
    sender.wait_registered();

    let mut baseline = Vec::new();
    let mut dsys = Vec::new();
    for run in 1..=RUNS {
        let b = baseline_transfer(&path, files.path());
        let d = dsys_transfer(&mut sender, &receivers, &path);
        println!(
            "run {run}: baseline {:.0} MiB/s, dsys {:.0} MiB/s",
            mib_per_s(b),
            mib_per_s(d)
        );
        baseline.push(b);
        dsys.push(d);
    }
    let (b, d) = (median(&mut baseline), median(&mut dsys));
    println!(
        "median of {RUNS}: baseline {:.0} MiB/s ({:.0} ms), dsys {:.0} MiB/s ({:.0} ms) to 3 \
         receivers on 3 servers; dsys/baseline = {:.2}",
        mib_per_s(b),
        b.as_secs_f64() * 1000.0,
        mib_per_s(d),
        d.as_secs_f64() * 1000.0,
        b.as_secs_f64() / d.as_secs_f64()
    );
    for i in 0..3 {
        println!(
            "server {i} peak RSS {:.1} MiB",
            cluster.server(i).peak_rss_bytes() as f64 / MIB
        );
    }
    sender.close_stdin();
    sender.finish(common::TIMEOUT);
}

/// One dsys transfer, from `/file` to the last receiver's `file` event.
fn dsys_transfer(sender: &mut Client, receivers: &[Client], path: &Path) -> Duration {
    let start = Instant::now();
    sender.send_line(&format!("/file {}", path.display()));
    for receiver in receivers {
        let event = receiver.expect_event("the file", Duration::from_secs(300), |v| {
            v["event"] == "file"
        });
        assert_eq!(event["size"], FILE_LEN as u64, "{event}");
        let saved = event["path"].as_str().unwrap_or_default();
        let _ = std::fs::remove_file(saved);
    }
    start.elapsed()
}

/// The baseline transfer (see the module doc).
fn baseline_transfer(path: &Path, dir: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let out_path = dir.join("baseline-copy.bin");
    let start = Instant::now();
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut out = std::fs::File::create(&out_path).expect("create the copy");
        let digest = pump(&mut stream, &mut out);
        let _ = std::fs::remove_file(&out_path);
        digest
    });
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut file = std::fs::File::open(path).expect("open");
    let sent = pump(&mut file, &mut stream);
    drop(stream);
    let received = reader.join().expect("baseline reader");
    assert_eq!(received, sent, "the baseline copy differs");
    start.elapsed()
}

/// Copies `from` to `to` in pieces of [`PIECE`] bytes, hashing as it goes; returns the
/// SHA-256 of what passed.
fn pump(from: &mut impl Read, to: &mut impl Write) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut buf = vec![0; PIECE];
    loop {
        let n = from.read(&mut buf).expect("read");
        if n == 0 {
            return hash.finish();
        }
        hash.update(&buf[..n]);
        to.write_all(&buf[..n]).expect("write");
    }
}

fn mib_per_s(d: Duration) -> f64 {
    FILE_LEN as f64 / MIB / d.as_secs_f64()
}
