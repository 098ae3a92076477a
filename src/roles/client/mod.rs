//! `dsys client`: registers with a server, sends each stdin line (and `/file PATH`) to every
//! other client, prints what the others send, and moves to a live server by itself when its
//! server fails.
//!
//! **What this file owns.** [`run`], which `main.rs` calls with the flags ([`Config`]); the
//! [`Command`]s given to the session and the [`Event`]s it gives back; and the main thread,
//! the printer, which prints each event ([`output`]) and decides the exit status. It starts
//! the `stdin` thread ([`input::read_input`]), which feeds the bounded `commands` channel, and
//! the session ([`session::start`]), which does all the networking and sends `events` back.
//!
//! **How it stops.** End of stdin closes `commands`: the session waits for every ack,
//! deregisters and ends, which closes `events`, and the printer returns. A listener
//! (`--listen`) never reads stdin; a signal, a stdout that fails, or the last of `--count`
//! messages drops the session's stop channel instead. The rest: docs/architecture.md, "A
//! client's threads".

mod files;
mod inbox;
pub mod input;
mod locate;
pub mod output;
pub mod session;

use std::path::PathBuf;
use std::thread;

use crossbeam_channel::{bounded, never, select, unbounded};

use crate::Output;
use crate::error::{Error, Result};
use crate::support::signals;
pub use session::SessionConfig;

/// Something for the session to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A line of text.
    Text(String),
    /// A file, read when it is its turn.
    File {
        /// Where it is.
        path: PathBuf,
        /// The line of stdin that asked for it (`None` for `--send-file`), so that a
        /// refusal can name it.
        line: Option<u64>,
    },
    /// A line of input that cannot be sent, and why: the session reports it as an `error`
    /// event in its place among the others, and sends nothing.
    Unsendable(String),
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
    /// Our server told us to move (the cluster is rebalancing, or the server is stopping on
    /// purpose), and we are registered on the new one.
    Moved {
        /// The server we left.
        from: String,
        /// The server we moved to.
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
    /// Something the user should know went wrong; the client goes on.
    Error {
        /// What.
        message: String,
    },
    /// A line of input, a `--send` or a file that was not sent, and why. The client goes
    /// on with the rest, and exits 1 at the end (`CONTRACT.md`). Shown as an `error`.
    Refused {
        /// Why, naming the line when it came from stdin.
        message: String,
    },
    /// Something that is not an error yet, but the user should know (the client runs with
    /// no coordinator behind it, say).
    Warning {
        /// What, and what follows from it.
        message: String,
    },
    /// Every message of ours up to `seq` (our message number) is acknowledged: stored on
    /// every live server, so it cannot be lost any more. Shown in JSON only.
    Acked {
        /// The highest message number acknowledged; every lower one is too.
        seq: u64,
    },
    /// Why the client is ending with exit status 1; always the last event.
    Fatal {
        /// What went wrong, and what to do.
        message: String,
    },
}

/// How `dsys client` is set up (its flags): what the session needs, and what the input and
/// the printer around it need.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to register, as whom, where received files go, the largest file sent, the
    /// secret: everything the session thread uses.
    pub session: SessionConfig,
    /// Text or JSON events on stdout.
    pub output: Output,
    /// Texts to send before stdin.
    pub send: Vec<String>,
    /// Files to send before stdin.
    pub send_files: Vec<PathBuf>,
    /// Receive only: never read stdin, run until a signal or `count` (`--listen`).
    pub listen: bool,
    /// Leave after receiving this many messages and files (`--count`).
    pub count: Option<u64>,
}

/// Default for `--max-file-size`: 1 GiB. Memory does not depend on it (files are streamed);
/// it protects the receivers' disks from a mistake.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024 * 1024;

/// How many commands may wait for the session; the stdin reader blocks beyond this.
const COMMAND_QUEUE: usize = 64;

/// `dsys client`: register, then send and print until stdin ends (or, with `--listen`,
/// until a signal or `--count` messages), and exit 0, or 1 when anything was refused.
///
/// # Errors
/// A `--send-file` that cannot be sent or a name no server accepts ([`Error::Failed`]);
/// registration failures (no live server, nothing listening, name refused); a stdout that
/// cannot be written; a line, `--send` or file that was refused on the way (after all the
/// rest was sent). Each is exit status 1; with `--output json` it is also the last event,
/// an `error` with `fatal: true`.
pub fn run(config: Config) -> Result<()> {
    let output = config.output;
    let result = converse(config);
    if let Err(e) = &result
        && output == Output::Json
    {
        let fatal = Event::Fatal {
            message: e.to_string(),
        };
        // Best effort: when stdout is what failed, stderr still says why.
        let _ = output::print(&fatal, output);
    }
    result
}

/// Registers, feeds the session its input, and prints its events until it ends.
fn converse(config: Config) -> Result<()> {
    check_before_registering(&config)?;
    let signal_rx = signals::stop_on_signal();
    // The session stops when this sender is dropped: on a signal, when stdout fails, or
    // when `--count` messages have arrived.
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (commands_tx, commands_rx) = bounded(COMMAND_QUEUE);
    // Unbounded on purpose: the printer only writes to stdout and never waits on the
    // network, and a bound here could stall the session while it holds acks back.
    let (events_tx, events_rx) = unbounded();
    let session = session::start(config.session, commands_rx, events_tx, stop_rx)?;
    // A listener never reads stdin: it holds the command sender, so its input never ends
    // and only a signal or `--count` stops it.
    let _listening = if config.listen {
        Some(commands_tx)
    } else {
        let initial: Vec<Command> = config
            .send
            .into_iter()
            .map(Command::Text)
            .chain(
                config
                    .send_files
                    .into_iter()
                    .map(|path| Command::File { path, line: None }),
            )
            .collect();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || input::read_input(initial, std::io::stdin().lock(), commands_tx))?;
        None
    };

    let mut printer = Printer {
        output: config.output,
        left_to_receive: config.count,
        refused: 0,
        stdout_failed: None,
    };
    let mut stop_tx = Some(stop_tx);
    let mut signal_rx = signal_rx;
    loop {
        select! {
            recv(events_rx) -> event => match event {
                Ok(event) => {
                    if printer.show(&event) == Next::Stop {
                        stop_tx = None;
                    }
                }
                Err(_) => break, // the session has ended
            },
            recv(signal_rx) -> _ => {
                stop_tx = None;
                // `never()` is a channel that never delivers: the arm stays in the
                // `select!` but can no longer fire.
                signal_rx = never();
            }
        }
    }
    drop(stop_tx);
    session
        .join()
        .unwrap_or_else(|_| Err(Error::Failed("the session thread panicked".into())))?;
    printer.outcome()
}

/// Whether the client should go on after an event.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    GoOn,
    Stop,
}

/// The main thread's side: prints the session's events, and keeps what decides how the
/// client ends (refusals, a broken stdout, `--count`).
struct Printer {
    output: Output,
    /// Messages and files still to receive before leaving (`--count`), if counted.
    left_to_receive: Option<u64>,
    /// Lines, `--send`s and files refused so far.
    refused: u64,
    /// Why stdout could not be written, once it could not.
    stdout_failed: Option<std::io::Error>,
}

impl Printer {
    /// Prints `event` (unless stdout has failed, or `--count` is reached: then the rest is
    /// drained unseen) and says whether the client should stop.
    fn show(&mut self, event: &Event) -> Next {
        if matches!(event, Event::Refused { .. }) {
            self.refused += 1;
        }
        let received = matches!(event, Event::Message { .. } | Event::File { .. });
        if self.stdout_failed.is_some() || (received && self.left_to_receive == Some(0)) {
            return Next::GoOn;
        }
        if let Err(e) = output::print(event, self.output) {
            log::warn!("cannot write to stdout ({e}); leaving");
            self.stdout_failed = Some(e);
            return Next::Stop;
        }
        match &mut self.left_to_receive {
            Some(left) if received => {
                *left -= 1;
                if *left == 0 { Next::Stop } else { Next::GoOn }
            }
            _ => Next::GoOn,
        }
    }

    /// How the client ends, once the session has: exit status 1 when stdout failed or
    /// anything was refused, with the line that says so.
    fn outcome(self) -> Result<()> {
        if let Some(e) = self.stdout_failed {
            return Err(Error::Failed(format!("cannot write events to stdout: {e}")));
        }
        match self.refused {
            0 => Ok(()),
            n => Err(Error::Failed(format!(
                "refused {n} of the lines and files given (each said why above); all the \
                 rest was sent"
            ))),
        }
    }
}

/// What can be checked before registering, so that a mistake costs exit status 1 and one
/// line rather than an `error` event in the middle of a run: the name against the naming
/// rule at its most lenient (servers may be stricter, and then refuse it), and every
/// `--send-file`. A file that changes after this check is reported when its turn comes.
fn check_before_registering(config: &Config) -> Result<()> {
    crate::protocol::valid_name(&config.session.name, crate::protocol::MAX_NAME_LEN_LIMIT)
        .map_err(|why| Error::Failed(format!("cannot register: {why}")))?;
    for path in &config.send_files {
        files::Outgoing::open(path, config.session.max_file_size)
            .map_err(|why| Error::Failed(format!("{why}; nothing was sent (--send-file)")))?;
    }
    Ok(())
}
