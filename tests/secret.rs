//! Who may join: a cluster started with a secret (`--secret-file` or `DSYS_SECRET`) lets in
//! only the connections that prove it, through the real binary. Members share messages as
//! usual; a client, a `dsys status` or a server without the secret, or with a wrong one, is
//! refused with a message that says so, and the refusing side logs the reason.

mod common;

use std::path::PathBuf;

use common::{
    Client, Cluster, HEARTBEAT_INTERVAL_MS, TIMEOUT, TempDir, alive_servers, run_dsys,
    start_server_with,
};

const SECRET: &str = "correct horse battery staple";

/// A secret file in `dir`, ending in a newline as an editor would leave it (the newline is
/// not part of the secret).
fn secret_file(dir: &TempDir, secret: &str) -> PathBuf {
    let path = dir.path().join("cluster.secret");
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    path
}

/// A coordinator and `n` servers, all with [`SECRET`] in `file`.
fn cluster_with_secret(n: usize, file: &str) -> Cluster {
    Cluster::start_with_secret(n, file, SECRET)
}

#[test]
fn members_with_the_secret_share_messages_and_see_the_status() {
    let dir = TempDir::new("secret-members");
    let file = secret_file(&dir, SECRET);
    let file = file.to_str().expect("temp paths are UTF-8");
    let cluster = cluster_with_secret(2, file);

    let flags = ["--secret-file", file];
    let mut alice = Client::start_with("alice", cluster.coordinator(), None, &flags);
    let bob = Client::start_with("bob", cluster.coordinator(), Some(cluster.addr(1)), &flags);
    alice.wait_registered();
    bob.wait_registered();
    alice.send_line("only for members");
    bob.wait_messages(&["alice"], 1, TIMEOUT);

    // The secret may come from the environment instead of a file.
    let status = run_dsys(
        &[
            "status",
            "--coordinator",
            cluster.coordinator(),
            "--output",
            "json",
        ],
        &[("DSYS_SECRET", SECRET)],
        TIMEOUT,
    );
    assert_eq!(status.code(), Some(0), "{:?}", status.stderr_lines());
    let table: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(alive_servers(&table).len(), 2, "{table}");
}

/// What is tried, the command line, and the environment it runs with.
type Attempt<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

#[test]
fn clients_and_status_without_the_right_secret_are_refused_with_a_reason() {
    let dir = TempDir::new("secret-outsiders");
    let file = secret_file(&dir, SECRET);
    let cluster = cluster_with_secret(1, file.to_str().expect("temp paths are UTF-8"));
    let coordinator = cluster.coordinator();
    let client = ["client", "--register", "--name", "mallory", "--coordinator"];

    let attempts: Vec<Attempt> = vec![
        (
            "a client without a secret",
            [&client[..], &[coordinator]].concat(),
            vec![],
        ),
        (
            "a client with a wrong secret",
            [&client[..], &[coordinator]].concat(),
            vec![("DSYS_SECRET", "wrong horse")],
        ),
        (
            "a client going straight to a server without a secret",
            [&client[..], &[coordinator, "--server", cluster.addr(0)]].concat(),
            vec![],
        ),
        (
            "a status query without a secret",
            vec!["status", "--coordinator", coordinator],
            vec![],
        ),
    ];
    for (what, args, envs) in attempts {
        let done = run_dsys(&args, &envs, TIMEOUT);
        let stderr = done.stderr_lines().join("\n");
        assert_eq!(
            done.code(),
            Some(1),
            "{what}: exit status, stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("requires its secret"),
            "{what}: stderr should say the secret is missing or wrong:\n{stderr}"
        );
    }
    cluster
        .coordinator
        .wait_for_stderr("requires its secret", TIMEOUT);
    cluster
        .server(0)
        .wait_for_stderr("requires its secret", TIMEOUT);
}

#[test]
fn a_server_without_the_secret_cannot_join() {
    let dir = TempDir::new("secret-server");
    let file = secret_file(&dir, SECRET);
    let file = file.to_str().expect("temp paths are UTF-8");
    let cluster = cluster_with_secret(1, file);

    let (outsider, _) = start_server_with(cluster.coordinator(), HEARTBEAT_INTERVAL_MS, &[]);
    outsider.wait_for_stderr("refused this server", TIMEOUT);
    cluster
        .coordinator
        .wait_for_stderr("refused Heartbeat", TIMEOUT);
    let status = run_dsys(
        &[
            "status",
            "--coordinator",
            cluster.coordinator(),
            "--output",
            "json",
            "--secret-file",
            file,
        ],
        &[],
        TIMEOUT,
    );
    let table: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(alive_servers(&table), [cluster.addr(0)], "{table}");
}
