//! The command line as `CONTRACT.md` pins it: each subcommand's flags, exit status 2 for
//! usage errors (an address without a port among them), and exit status 1 with one clear
//! stderr line for runtime failures, which says what failed: nothing listens, the name does
//! not resolve, something accepted but did not answer, the coordinator knows no live server,
//! a server refused and why.
//!
//! Every test runs the real binary once per case and waits for it to exit (with a deadline).
//! Most need no cluster: they point the binary at a `127.0.0.1` port where nothing listens,
//! or at a listener of the test's own that never answers.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{
    Finished, TIMEOUT, TempDir, run_dsys, start_coordinator, start_server_with, unused_addr,
    wait_until_servers_alive,
};
use dsys::protocol::{Departure, Message, Role};

/// Runs `dsys ARGS` with the default environment.
fn run(args: &[&str]) -> Finished {
    run_dsys(args, &[], TIMEOUT)
}

/// Asserts that `dsys ARGS` (a `--help` request) exits 0 and prints every one of `words`.
fn assert_help_lists(args: &[&str], words: &[&str]) {
    let command = format!("`dsys {}`", args.join(" "));
    let done = run(args);
    assert_eq!(
        done.code(),
        Some(0),
        "{command} should exit 0; stderr: {:?}",
        done.stderr
    );
    for word in words {
        assert!(
            done.stdout.contains(word),
            "{command} should mention {word}; it printed:\n{}",
            done.stdout
        );
    }
}

/// Asserts a usage error: exit status 2 and something on stderr saying why.
fn assert_usage_error(args: &[&str]) {
    let done = run(args);
    assert_eq!(
        done.code(),
        Some(2),
        "`dsys {}` is a usage error and should exit 2; stderr: {:?}",
        args.join(" "),
        done.stderr
    );
    assert!(
        !done.stderr_lines().is_empty(),
        "`dsys {}` should say on stderr what is wrong",
        args.join(" ")
    );
}

/// Asserts a runtime failure as the contract pins it: exit status 1, and exactly one
/// non-blank line on stderr, which contains every one of `needles`.
///
/// The command runs with `RUST_LOG=off`: logs are a separate stream whose volume the user
/// picks, and the contract's "one clear line" is what remains with them turned off.
fn assert_runtime_failure(args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let mut envs = envs.to_vec();
    envs.push(("RUST_LOG", "off"));
    let done = run_dsys(args, &envs, TIMEOUT);
    let command = format!("`dsys {}` (env {envs:?})", args.join(" "));
    assert_eq!(
        done.code(),
        Some(1),
        "{command} should exit 1; stderr: {:?}",
        done.stderr
    );
    let lines = done.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{command} should print exactly one line on stderr, got: {lines:?}"
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{command}: the stderr line should contain {needle:?}: {:?}",
            lines[0]
        );
    }
}

// --- help -------------------------------------------------------------------------------

#[test]
fn top_level_help_lists_every_subcommand() {
    assert_help_lists(
        &["--help"],
        &["coordinator", "server", "client", "status", "demo", "bench"],
    );
}

#[test]
fn coordinator_help_lists_contract_flags() {
    assert_help_lists(
        &["coordinator", "--help"],
        &["--listen", "--heartbeat-timeout"],
    );
}

#[test]
fn server_help_lists_contract_flags() {
    assert_help_lists(
        &["server", "--help"],
        &[
            "--port",
            "--host",
            "--listen",
            "--coordinator",
            "--heartbeat-interval",
        ],
    );
}

#[test]
fn client_help_lists_contract_flags() {
    assert_help_lists(
        &["client", "--help"],
        &[
            "--register",
            "--coordinator",
            "--server",
            "--name",
            "--output",
            "--download-dir",
            "--send",
            "--send-file",
            "--listen",
        ],
    );
}

#[test]
fn status_help_lists_contract_flags() {
    assert_help_lists(&["status", "--help"], &["--coordinator", "--output"]);
}

#[test]
fn the_common_flags_have_short_forms() {
    let nowhere = unused_addr();
    // Runtime failures (exit 1) that name the address: the short flags were understood.
    assert_runtime_failure(&["status", "-o", "json", "-c", &nowhere], &[], &[&nowhere]);
    assert_runtime_failure(
        &["client", "-n", "shorty", "-o", "json", "-c", &nowhere],
        &[],
        &[&nowhere],
    );
    assert_runtime_failure(
        &["client", "-n", "shorty", "-s", &nowhere, "-c", &nowhere],
        &[],
        &[&nowhere],
    );
    assert_help_lists(&["server", "--help"], &["-p, --port", "-c, --coordinator"]);
}

#[test]
fn a_server_takes_its_address_as_listen_or_as_host_and_port() {
    let addr = unused_addr();
    let mut cmd = common::dsys();
    cmd.args(["server", "--listen", &addr, "--coordinator", &unused_addr()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let server = common::Proc::spawn("server --listen", cmd);
    let ready = server.wait_for_stderr("server listening on", TIMEOUT);
    assert!(ready.contains(&addr), "listening on {addr}: {ready}");
    drop(server);
    assert_usage_error(&["server", "--listen", &addr, "--port", "8080"]);
    assert_usage_error(&["server", "--listen", &addr, "--host", "127.0.0.1"]);
}

// --- usage errors -----------------------------------------------------------------------

#[test]
fn unknown_flag_is_a_usage_error() {
    for subcommand in ["coordinator", "server", "client", "status", "demo"] {
        assert_usage_error(&[subcommand, "--no-such-flag"]);
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    assert_usage_error(&["no-such-subcommand"]);
}

#[test]
fn server_flags_whose_names_would_not_fit_a_heartbeat_are_a_usage_error() {
    // 10,000 names of 255 bytes are 2.5 MB; a heartbeat frame carries 1 MiB.
    let args = ["server", "--port", "0", "--max-name-len", "255"];
    assert_usage_error(&args);
    let said = run(&args).stderr_lines().join("\n");
    assert!(
        said.contains("--max-clients") && said.contains("heartbeat"),
        "the line says what to lower: {said:?}"
    );
}

#[test]
fn bad_output_value_is_a_usage_error() {
    // Only `text` and `json` exist; the value is checked before anything connects.
    assert_usage_error(&["client", "--register", "--output", "xml"]);
    assert_usage_error(&["status", "--output", "xml"]);
}

// --- runtime failures -------------------------------------------------------------------

#[test]
fn client_without_coordinator_exits_1_naming_the_address() {
    let addr = unused_addr();
    let downloads = TempDir::new("cli-client");
    let dir = downloads.path().to_str().expect("temp paths are UTF-8");
    // Nothing listens at `addr`: the client cannot be placed on any server, says so in one
    // line that names where it looked, and exits 1 (within TIMEOUT, not after retrying
    // forever).
    assert_runtime_failure(
        &[
            "client",
            "--register",
            "--name",
            "alice",
            "--coordinator",
            &addr,
            "--download-dir",
            dir,
        ],
        &[],
        &["nothing listens at", &addr, "coordinator"],
    );
}

#[test]
fn client_takes_coordinator_from_env() {
    let addr = unused_addr();
    let downloads = TempDir::new("cli-client-env");
    let dir = downloads.path().to_str().expect("temp paths are UTF-8");
    // DSYS_COORDINATOR stands in for --coordinator: the failure names that address.
    assert_runtime_failure(
        &[
            "client",
            "--register",
            "--name",
            "alice",
            "--download-dir",
            dir,
        ],
        &[("DSYS_COORDINATOR", &addr)],
        &["nothing listens at", &addr],
    );
}

#[test]
fn status_without_coordinator_exits_1_naming_the_address() {
    let addr = unused_addr();
    // Nothing listens at `addr`: one line saying which coordinator could not be reached.
    assert_runtime_failure(&["status", "--coordinator", &addr], &[], &[&addr]);
    assert_runtime_failure(
        &["status", "--coordinator", &addr, "--output", "json"],
        &[],
        &[&addr],
    );
}

#[test]
fn a_secret_file_that_cannot_be_read_exits_1_naming_it() {
    let missing = "/nonexistent/dsys-cluster.secret";
    for role in [
        &["status"][..],
        &["coordinator"],
        &["server"],
        &["client", "--register"],
    ] {
        let args = [role, &["--secret-file", missing]].concat();
        assert_runtime_failure(&args, &[], &["cannot read the secret file", missing]);
    }
}

#[test]
fn status_takes_coordinator_from_env() {
    let addr = unused_addr();
    // DSYS_COORDINATOR stands in for --coordinator: the failure names that address.
    assert_runtime_failure(&["status"], &[("DSYS_COORDINATOR", &addr)], &[&addr]);
}

// --- addresses ----------------------------------------------------------------------------

#[test]
fn an_address_without_a_port_is_a_usage_error_for_every_address_flag() {
    // Checked when the command line is parsed, before anything connects: exit 2, and
    // clap's message names the flag and the expected form.
    let cases: [&[&str]; 7] = [
        &["client", "--coordinator", "127.0.0.1"],
        &["client", "--server", "localhost"],
        &["status", "--coordinator", "127.0.0.1"],
        &["server", "--coordinator", "127.0.0.1"],
        &["server", "--advertise", "127.0.0.1"],
        &["server", "--host", "127.0.0.1:8080"],
        &["coordinator", "--listen", "127.0.0.1"],
    ];
    for args in cases {
        let done = run(args);
        let stderr = done.stderr_lines().join("\n");
        assert_eq!(done.code(), Some(2), "`dsys {}`: {stderr}", args.join(" "));
        assert!(
            stderr.contains(args[1]) && stderr.contains("HOST"),
            "`dsys {}` should name the flag and the form HOST:PORT: {stderr}",
            args.join(" ")
        );
    }
    // DSYS_COORDINATOR is held to the same form.
    let done = run_dsys(&["status"], &[("DSYS_COORDINATOR", "127.0.0.1")], TIMEOUT);
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
}

#[test]
fn a_name_that_does_not_resolve_is_said_so() {
    // `.invalid` never resolves (RFC 2606).
    for command in ["client", "status"] {
        assert_runtime_failure(
            &[command, "--coordinator", "no-such-host.invalid:7000"],
            &[],
            &["cannot resolve", "no-such-host.invalid:7000"],
        );
    }
}

#[test]
fn a_peer_that_accepts_but_never_answers_is_said_so() {
    // The kernel completes connections to a listener that never accepts them, as it does
    // for a hung process or one out of file descriptors: the line says it did not answer.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = silent.local_addr().expect("local_addr").to_string();
    let coordinator = unused_addr();
    assert_runtime_failure(
        &["client", "--coordinator", &coordinator, "--server", &addr],
        &[],
        &["server at", &addr, "did not answer"],
    );
    assert_runtime_failure(
        &["status", "--coordinator", &addr],
        &[],
        &["coordinator at", &addr, "did not answer"],
    );
}

#[test]
fn a_coordinator_without_live_servers_says_so() {
    let (_coordinator, addr) = start_coordinator(common::HEARTBEAT_TIMEOUT_MS);
    assert_runtime_failure(
        &["client", "--coordinator", &addr],
        &[],
        &["no live server", &addr, "dsys server"],
    );
}

#[test]
fn a_server_that_refuses_says_why() {
    let (_coordinator, coordinator) = start_coordinator(common::HEARTBEAT_TIMEOUT_MS);
    let flags = ["--max-connections", "1"];
    let (_server, addr) = start_server_with(&coordinator, common::HEARTBEAT_INTERVAL_MS, &flags);
    wait_until_servers_alive(&coordinator, 1, TIMEOUT);
    // One connection that says nothing holds the only place (until the handshake deadline);
    // its challenge proves that the server has taken it.
    let mut holder = TcpStream::connect(&addr).expect("connect to the server");
    let mut challenge = [0u8; 4];
    holder
        .read_exact(&mut challenge)
        .expect("the server's challenge");
    assert_runtime_failure(
        &["client", "--coordinator", &coordinator, "--server", &addr],
        &[],
        &["server at", &addr, "too many connections"],
    );
}

// --- status at scale ----------------------------------------------------------------------

/// Three servers of 10,000 clients with 32-byte names: over a megabyte of names, more than
/// one frame may carry. `dsys status --output json` must still list every one; the
/// coordinator sends the report in parts (`protocol::report_frames`). The three servers are
/// played from here: each heartbeats its names once, then keeps heartbeating (without them)
/// until the test ends, so none is declared dead meanwhile.
#[test]
fn status_lists_every_client_when_the_names_need_several_frames() {
    const SERVERS: u16 = 3;
    const CLIENTS: usize = 10_000;
    let (_coordinator, coordinator) = start_coordinator(1_500);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        // Set on the way out, pass or fail, so the heartbeat threads end and the scope
        // can join them.
        let _stop = StopOnDrop(&stop);
        for server in 0..SERVERS {
            let (coordinator, stop) = (&coordinator, &stop);
            scope.spawn(move || heartbeat_as_a_full_server(coordinator, server, CLIENTS, stop));
        }
        let listed = || -> usize {
            common::try_status_json(&coordinator)
                .map(|status| {
                    common::status_servers(&status)
                        .iter()
                        .map(|s| s["clients"].as_array().map_or(0, |c| c.len()))
                        .sum()
                })
                .unwrap_or(0)
        };
        common::wait_until("status lists every client", TIMEOUT, || {
            listed() == SERVERS as usize * CLIENTS
        });
    });
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Heartbeats to `coordinator` as server number `server` with `clients` clients of 32-byte
/// names, every 200 ms until `stop` is set.
fn heartbeat_as_a_full_server(coordinator: &str, server: u16, clients: usize, stop: &AtomicBool) {
    let addr = format!("127.0.0.1:{}", 1 + server);
    let names: Vec<String> = (0..clients)
        .map(|i| format!("s{server}-{i:0>29}"))
        .collect();
    let mut stream = dsys::net::connect_as(coordinator, Role::Heartbeat, TIMEOUT, None)
        .expect("the coordinator takes a heartbeat connection");
    let mut epoch = 0;
    let mut clients = Some(names);
    while !stop.load(Ordering::SeqCst) {
        let heartbeat = Message::Heartbeat {
            addr: addr.clone(),
            epoch,
            clients: clients.take(),
            cut_off: Vec::new(),
            departure: Departure::Staying,
        };
        match dsys::net::request(&mut stream, &heartbeat).expect("a heartbeat reply") {
            Message::HeartbeatReply { epoch: given, .. } => epoch = given,
            other => panic!("expected HeartbeatReply, got {other:?}"),
        }
        // The heartbeat interval of a real server; the pace is what keeps it alive.
        thread::sleep(Duration::from_millis(200));
    }
}
