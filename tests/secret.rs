//! Who may join: a cluster started with a secret (`--secret-file` or `DSYS_SECRET`) lets in
//! only the connections that prove it, through the real binary. Members share messages as
//! usual; a client, a `dsys status` or a server without the secret, or with a wrong one, is
//! refused with a message that says so, and the refusing side logs the reason.

mod common;

use std::net::TcpStream;

use common::{
    Client, Cluster, HEARTBEAT_INTERVAL_MS, TIMEOUT, TempDir, alive_servers, run_dsys,
    start_server_with, try_status_json_as,
};
use dsys::auth::Secret;
use dsys::protocol::{Message, PROTOCOL_VERSION, Resume, Role, read_message, write_message};

const SECRET: &str = "correct horse battery staple";

/// A coordinator and `n` servers started with [`SECRET`] from a secret file, and that file.
struct Members {
    cluster: Cluster,
    file: String,
    /// Holds the secret file; declared last, so it outlives the processes reading it.
    _dir: TempDir,
}

impl Members {
    fn start(n: usize, label: &str) -> Members {
        let dir = TempDir::new(label);
        let path = dir.path().join("cluster.secret");
        // Ending in a newline, as an editor would leave it: the newline is not part of it.
        std::fs::write(&path, format!("{SECRET}\n")).expect("write the secret file");
        let file = path.to_str().expect("temp paths are UTF-8").to_string();
        let cluster = Cluster::start_with_secret(n, &file, SECRET);
        Members {
            cluster,
            file,
            _dir: dir,
        }
    }

    /// The flags that give a client the secret.
    fn flags(&self) -> [&str; 2] {
        ["--secret-file", &self.file]
    }
}

#[test]
fn members_with_the_secret_share_messages_and_see_the_status() {
    let members = Members::start(2, "secret-members");
    let (cluster, flags) = (&members.cluster, members.flags());
    let mut alice = Client::start_with("alice", cluster.coordinator(), None, &flags);
    let bob = Client::start_with("bob", cluster.coordinator(), Some(cluster.addr(1)), &flags);
    alice.wait_registered();
    bob.wait_registered();
    alice.send_line("only for members");
    bob.wait_messages(&["alice"], 1, TIMEOUT);

    // The secret may come from the environment instead of a file.
    let table = try_status_json_as(cluster.coordinator(), Some(SECRET)).expect("status");
    assert_eq!(alive_servers(&table).len(), 2, "{table}");
}

/// What is tried, the command line, and the environment it runs with.
type Attempt<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

#[test]
fn clients_and_status_without_the_right_secret_are_refused_with_a_reason() {
    let members = Members::start(1, "secret-outsiders");
    let cluster = &members.cluster;
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
    let members = Members::start(1, "secret-server");
    let cluster = &members.cluster;

    let (outsider, _) = start_server_with(cluster.coordinator(), HEARTBEAT_INTERVAL_MS, &[]);
    outsider.wait_for_stderr("refused this server", TIMEOUT);
    cluster
        .coordinator
        .wait_for_stderr("refused Heartbeat", TIMEOUT);
    let table = try_status_json_as(cluster.coordinator(), Some(SECRET)).expect("status");
    assert_eq!(alive_servers(&table), [cluster.addr(0)], "{table}");
}

/// A raw connection to a server of the cluster: answers the challenge with the secret and
/// sends `Register`; returns the stream and the server's answer.
fn raw_register(server: &str, name: &str, resume: Option<Resume>) -> (TcpStream, Message) {
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let Ok(Some(Message::Challenge { nonce })) = read_message(&mut stream) else {
        panic!("{server} did not open with a challenge");
    };
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Client,
        proof: Secret::new(SECRET.as_bytes()).proof(&nonce, Role::Client),
    };
    let register = Message::Register {
        name: name.into(),
        resume,
    };
    write_message(&mut stream, &hello).unwrap();
    write_message(&mut stream, &register).unwrap();
    let answer = read_message(&mut stream)
        .expect("an answer")
        .expect("not closed");
    (stream, answer)
}

/// The body of the next message from `from` that `stream` (a raw registered client) gets.
fn next_from(stream: &mut TcpStream, from: &str) -> (u64, String) {
    loop {
        match read_message(stream).expect("a frame").expect("not closed") {
            Message::Deliver {
                from: sender,
                session,
                body,
                ..
            } if sender == from => break (session, format!("{body:?}")),
            _ => {}
        }
    }
}

/// Identity across servers: eve, a member, learns alice's session from a message alice
/// sends, and tries to resume it as alice on another server while alice is away. The token
/// does not match, so she is refused with the reason. alice herself, when her server is
/// killed, resumes on that other server and carries on.
#[test]
fn a_resume_with_a_wrong_token_is_refused_and_the_real_owner_fails_over() {
    let mut members = Members::start(2, "secret-identity");
    let flags = members.flags();
    let cluster = &members.cluster;
    let mut alice = Client::start_with(
        "alice",
        cluster.coordinator(),
        Some(cluster.addr(0)),
        &flags,
    );
    alice.wait_registered();

    let (mut eve, answer) = raw_register(cluster.addr(1), "eve", None);
    assert!(matches!(answer, Message::Registered { .. }), "{answer:?}");
    alice.send_line("hello from alice");
    let (alice_session, _) = next_from(&mut eve, "alice");

    let forged = Resume {
        session: alice_session,
        token: 0x5eed,
        seen: vec![],
    };
    let (_, answer) = raw_register(cluster.addr(1), "alice", Some(forged));
    let Message::RegisterRefused { reason, .. } = answer else {
        panic!("a resume with a forged token was not refused: {answer:?}");
    };
    assert!(reason.contains("token does not match"), "{reason}");

    members.cluster.kill_server(0);
    alice.expect_event("alice's failover", TIMEOUT, |v| v["event"] == "failover");
    alice.send_line("still alice");
    let (_, body) = next_from(&mut eve, "alice");
    assert!(body.contains("still alice"), "{body}");
}
