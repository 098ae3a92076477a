//! `dsys demo`: the whole story on one machine, narrated, with no setup. A coordinator and
//! three servers run as child processes (`tools/children.rs`), so that killing a server is a
//! real `SIGKILL`; six clients run in this process as sessions
//! ([`crate::roles::client::session`]), so the demo can count what each receives. This file
//! runs the steps ([`run`]); what it watches and counts is the [`story`].
//!
//! **Who calls it.** `main.rs`, for `dsys demo`. **Threads.** One `log-<child>` thread per
//! child drains its stderr, and one `events-<client>` thread per client tags its events with
//! the client's name into one channel that the main thread reads.
//!
//! **Stopping.** Every child is held by a [`ChildGuard`](crate::tools::children::ChildGuard)
//! that kills it on drop, and dies with this process too, so nothing outlives the demo: not
//! at the end, not on an error, not on Ctrl-C (the stop channel ends every wait). The story
//! step by step: the README, "Try it"; the children: `docs/shutdown.md`.

use std::collections::HashMap;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, unbounded};

use crate::error::{Error, Result};
use crate::roles::client::session::{self, SessionConfig};
use crate::roles::client::{self, Event, output};
use crate::support::signals;
use crate::tools::children::spawn_role;
use crate::tools::status;

/// `println!` that ignores a closed stdout (`println!` would panic): the demo still runs
/// to its end and its exit status still says whether anything was lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod story;

use story::{Story, story_line};

/// Heartbeat interval of the demo's servers: short, so the story moves quickly.
const HEARTBEAT_INTERVAL_MS: u64 = 200;
/// Heartbeat timeout of the demo's coordinator (five intervals).
const HEARTBEAT_TIMEOUT_MS: u64 = 1000;
/// How long any one step may take before the demo gives up with an error. Generous: the
/// steps take well under a second each on an idle machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the demo asks the coordinator whether it lists a server's clients yet: a
/// fraction of a heartbeat interval.
const LIST_POLL: Duration = Duration::from_millis(50);
/// The clients of the story.
const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

/// `dsys demo`: runs the story and exits 0 when nothing was lost or duplicated.
///
/// # Errors
/// A step that does not complete within [`STEP_TIMEOUT`], a child that cannot start, or
/// Ctrl-C.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let (narration_tx, narration_rx) = unbounded();
    let (events_tx, events_rx) = unbounded();
    let mut story = Story {
        events_rx,
        narration_rx,
        stop_rx: signals::stop_on_signal(),
        delivered: Vec::new(),
        failovers: Vec::new(),
        moves: Vec::new(),
        plans: Vec::new(),
    };

    say!("dsys demo: one coordinator, three servers and six clients on this machine.\n");
    say!("[1/7] Starting the coordinator (heartbeat timeout {HEARTBEAT_TIMEOUT_MS} ms).");
    let timeout = HEARTBEAT_TIMEOUT_MS.to_string();
    let (_coordinator, coordinator_addr) = spawn_role(
        "coordinator",
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            &timeout,
        ],
        story_line,
        &narration_tx,
    )?;
    say!("      listening on {coordinator_addr}");

    say!("[2/7] Starting three servers (heartbeat every {HEARTBEAT_INTERVAL_MS} ms).");
    let mut servers = Vec::new();
    for i in 1..=3 {
        let args = server_args(&coordinator_addr, "0");
        servers.push(spawn_role(
            &format!("server-{i}"),
            &args,
            story_line,
            &narration_tx,
        )?);
    }
    story.narrate_until(|line| line.contains("server up"), 3)?;

    say!("[3/7] Six clients ask the coordinator for a server and register.");
    let (commands, sessions, homes) = start_clients(&coordinator_addr, &events_tx, &mut story)?;
    for name in NAMES {
        let registered = Event::Registered {
            name: name.to_string(),
            server: homes[name].clone(),
        };
        say!("      {name:<6} {}", output::to_text(&registered));
    }

    say!("[4/7] Everyone says hello; every message goes to the five others.");
    send_round(&commands, "hello")?;
    story.wait_for_deliveries(NAMES.len() * (NAMES.len() - 1))?;
    say!(
        "      {} deliveries, {} out of order",
        story.delivered.len(),
        story.out_of_order()
    );

    // The victim is the server with the most clients, so that some move whatever the
    // coordinator's spread was.
    let busiest = (0..servers.len())
        .max_by_key(|&i| homes.values().filter(|&h| *h == servers[i].1).count())
        .unwrap_or(0);
    let (mut victim, victim_addr) = servers.remove(busiest);
    let moved: Vec<&str> = NAMES
        .into_iter()
        .filter(|n| homes[*n] == victim_addr)
        .collect();
    // The coordinator learns a server's clients from its heartbeats. Killed before the
    // next one, the victim would be declared dead with no clients listed, and there would
    // be no plan to show: wait until the coordinator lists them, as `dsys status` would.
    wait_until_listed(&coordinator_addr, &victim_addr, &moved, &story.stop_rx)?;
    say!(
        "[5/7] Killing server {victim_addr} with SIGKILL while everyone keeps talking \
         (its clients, as the coordinator lists them: {}).",
        moved.join(", ")
    );
    victim.kill();
    send_round(&commands, "still here")?;
    story.wait_for_failovers(moved.len())?;
    story.wait_for_deliveries(2 * NAMES.len() * (NAMES.len() - 1))?;
    story.narrate_pending();
    story.wait_for_plan(&victim_addr)?;

    say!("[6/7] Everyone talks once more across the two remaining servers.");
    send_round(&commands, "one more")?;
    story.wait_for_deliveries(3 * NAMES.len() * (NAMES.len() - 1))?;

    say!(
        "[7/7] Server {victim_addr} comes back; the coordinator moves clients to it until \
         the servers' counts differ by at most one."
    );
    // Six clients on three servers: the two that failed over make two survivors hold
    // three, and one of each moves back.
    let port = victim_addr.rsplit(':').next().unwrap_or("0");
    let args = server_args(&coordinator_addr, port);
    let _returned = spawn_role("server-back", &args, story_line, &narration_tx)?;
    story.wait_for_moves(moved.len())?;
    story.narrate_pending();
    send_round(&commands, "goodbye")?;
    let expected = 4 * NAMES.len() * (NAMES.len() - 1);
    story.wait_for_deliveries(expected)?;

    drop(commands); // end of input: each session waits for its acks, then deregisters
    for session in sessions {
        session
            .join()
            .unwrap_or_else(|_| Err(Error::Failed("a client session panicked".into())))?;
    }
    let summary = story.summary(4 * NAMES.len(), expected);
    say!("\n{summary}");
    say!("Finished in {:.1} s.", started.elapsed().as_secs_f64());
    drop(servers);
    if story.lost_or_duplicated(expected) {
        return Err(Error::Failed("messages were lost or duplicated".into()));
    }
    Ok(())
}

/// The arguments of a demo server on `port` (`"0"`: any free one).
fn server_args(coordinator: &str, port: &str) -> Vec<String> {
    let interval = HEARTBEAT_INTERVAL_MS.to_string();
    [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--coordinator",
        coordinator,
        "--heartbeat-interval",
        &interval,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Asks the coordinator (as `dsys status` does) until it lists exactly `clients` on
/// `server`. Polls every [`LIST_POLL`]: the coordinator has no way to announce it.
///
/// # Errors
/// When it does not within [`STEP_TIMEOUT`], or on Ctrl-C.
fn wait_until_listed(
    coordinator: &str,
    server: &str,
    clients: &[&str],
    stop_rx: &Receiver<()>,
) -> Result<()> {
    let mut wanted: Vec<&str> = clients.to_vec();
    wanted.sort_unstable();
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match status::query(coordinator, None) {
            Ok(servers) => {
                let listed = servers.iter().find(|s| s.addr == server).map(|s| {
                    let mut names: Vec<&str> = s.clients.iter().map(String::as_str).collect();
                    names.sort_unstable();
                    names
                });
                if listed.as_ref() == Some(&wanted) {
                    return Ok(());
                }
                last = format!("it lists {listed:?}");
            }
            Err(e) => last = e.to_string(),
        }
        select! {
            recv(stop_rx) -> _ => return Err(Error::Failed("interrupted".into())),
            default(LIST_POLL) => {}
        }
    }
    Err(Error::Failed(format!(
        "the coordinator did not list {wanted:?} on {server} within {STEP_TIMEOUT:?} ({last})"
    )))
}

type Started = (
    Vec<Sender<client::Command>>,
    Vec<JoinHandle<Result<()>>>,
    HashMap<&'static str, String>,
);

/// Registers the six clients through the coordinator, one after the other so the
/// coordinator spreads them two per server. Returns a home for every one of [`NAMES`] (or
/// an error), so the caller may index by name.
fn start_clients(
    coordinator: &str,
    events_tx: &Sender<(String, Event)>,
    story: &mut Story,
) -> Result<Started> {
    let mut commands = Vec::new();
    let mut sessions = Vec::new();
    let mut homes = HashMap::new();
    for name in NAMES {
        let (commands_tx, commands_rx) = bounded(64);
        let (client_events_tx, client_events_rx) = unbounded();
        let config = SessionConfig {
            coordinator: coordinator.to_string(),
            server: None,
            name: name.to_string(),
            download_dir: std::env::temp_dir().join("dsys-demo-downloads"),
            max_file_size: crate::roles::client::DEFAULT_MAX_FILE_SIZE,
            secret: None,
        };
        sessions.push(session::start(
            config,
            commands_rx,
            client_events_tx,
            story.stop_rx.clone(),
        )?);
        let events_tx = events_tx.clone();
        thread::Builder::new()
            .name(format!("events-{name}"))
            .spawn(move || {
                for event in client_events_rx {
                    if events_tx.send((name.to_string(), event)).is_err() {
                        return;
                    }
                }
            })?;
        // The session registered before `start` returned, so its first event is this.
        loop {
            match story.next_event()? {
                (who, Event::Registered { server, .. }) if who == name => {
                    homes.insert(name, server);
                    break;
                }
                (who, other) => story.record(who, other),
            }
        }
        commands.push(commands_tx);
    }
    Ok((commands, sessions, homes))
}

fn send_round(commands: &[Sender<client::Command>], text: &str) -> Result<()> {
    for (name, commands_tx) in NAMES.iter().zip(commands) {
        commands_tx
            .send(client::Command::Text(format!("{text} from {name}")))
            .map_err(|_| Error::Failed(format!("{name}'s session ended early")))?;
    }
    Ok(())
}
