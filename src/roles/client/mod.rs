//! `dsys client`: registers with a server, sends each stdin line (and `/file PATH`) to every
//! other client, prints what the others send, and moves to a live server by itself when its
//! server fails.
//!
//! **Threads.** The main thread prints events (this file); `stdin` reads input lines into
//! the command channel; the session thread ([`session`]) does all the networking, through
//! a connection whose `recv` and `send` threads read and write the socket
//! ([`connection`]). Channels connect them: `commands` (stdin → session, bounded, so a
//! session waiting for acks slows the reader rather than buffering without bound) and
//! `events` (session → printer).
//!
//! **Stopping.** End of stdin closes the command channel: the session waits for every ack,
//! deregisters and ends, which closes the event channel, and the printer returns. SIGINT or
//! SIGTERM does the same with a deadline. Exit status 0 in both cases.

mod connection;
mod files;
mod inbox;
mod locate;
pub mod output;
pub mod session;

use std::io::BufRead;
use std::path::PathBuf;
use std::thread;

use crossbeam_channel::{Sender, bounded, unbounded};

use crate::Output;
use crate::error::Result;
use crate::support::signals;
pub use session::SessionConfig;

/// Something for the session to send.
#[derive(Debug, Clone)]
pub enum Command {
    /// A line of text.
    Text(String),
    /// A file, read when it is its turn.
    File(PathBuf),
}

/// Something the user sees: one line of text output, or one JSON object (`CONTRACT.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Registration accepted.
    Registered {
        /// Our name.
        name: String,
        /// The server (`host:port`).
        server: String,
    },
    /// A text message from another client.
    Message {
        /// Its sender.
        from: String,
        /// The sender's number for it.
        seq: u64,
        /// The text.
        text: String,
    },
    /// A whole file from another client, saved.
    File {
        /// Its sender.
        from: String,
        /// The sender's number for it.
        seq: u64,
        /// The name it was saved under.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Where it was saved.
        path: String,
    },
    /// Our server was lost; we are registered again on another.
    Failover {
        /// The lost server.
        from: String,
        /// The new server.
        to: String,
    },
    /// Our connection broke and we registered again on the same server.
    Reconnected {
        /// The server.
        server: String,
    },
    /// Messages from `from` that could not be recovered (never silent loss).
    Gap {
        /// Their sender.
        from: String,
        /// How many.
        missed: u64,
    },
    /// Something the user should know went wrong.
    Error {
        /// What.
        message: String,
    },
}

/// How `dsys client` is set up (its flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// The coordinator's address.
    pub coordinator: String,
    /// Start on this server instead of asking the coordinator.
    pub server: Option<String>,
    /// The name to register under.
    pub name: String,
    /// Text or JSON events on stdout.
    pub output: Output,
    /// Where received files go.
    pub download_dir: PathBuf,
    /// Texts to send before stdin.
    pub send: Vec<String>,
    /// Files to send before stdin.
    pub send_files: Vec<PathBuf>,
    /// Largest file sent; bigger ones are refused with an `error` event.
    pub max_file_size: u64,
    /// The cluster secret, when the cluster has one.
    pub secret: Option<crate::auth::Secret>,
}

/// Default for `--max-file-size`: 1 GiB. Memory does not depend on it (files are streamed);
/// it protects the receivers' disks from a mistake.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024 * 1024;

/// How many commands may wait for the session; the stdin reader blocks beyond this.
const COMMAND_QUEUE: usize = 64;

/// `dsys client`: register, then send and print until stdin ends or a signal arrives.
///
/// # Errors
/// Registration failures (no live server, name refused): exit status 1.
pub fn run(config: Config) -> Result<()> {
    let stop_rx = signals::stop_on_signal();
    let (commands_tx, commands_rx) = bounded(COMMAND_QUEUE);
    // Unbounded on purpose: the printer only writes to stdout and never waits on the
    // network, and a bound here could stall the session while it holds acks back.
    let (events_tx, events_rx) = unbounded();
    let session = session::start(
        SessionConfig {
            coordinator: config.coordinator,
            server: config.server,
            name: config.name,
            download_dir: config.download_dir,
            max_file_size: config.max_file_size,
            secret: config.secret,
        },
        commands_rx,
        events_tx,
        stop_rx,
    )?;
    let initial: Vec<Command> = config
        .send
        .into_iter()
        .map(Command::Text)
        .chain(config.send_files.into_iter().map(Command::File))
        .collect();
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_input(initial, commands_tx))?;
    for event in events_rx {
        output::print(&event, config.output);
    }
    session
        .join()
        .unwrap_or_else(|_| Err(crate::Error::Protocol("session thread panicked".into())))
}

/// Feeds the session: first `initial`, then one command per stdin line. Dropping
/// `commands_tx` at the end of stdin is what tells the session that input is over.
fn read_input(initial: Vec<Command>, commands_tx: Sender<Command>) {
    for command in initial {
        if commands_tx.send(command).is_err() {
            return;
        }
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let command = match line.strip_prefix("/file ") {
            Some(path) => Command::File(PathBuf::from(path.trim())),
            None => Command::Text(line),
        };
        if commands_tx.send(command).is_err() {
            return;
        }
    }
}
