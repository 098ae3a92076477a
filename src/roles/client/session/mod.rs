//! A client session: the `session-<name>` thread, which owns all the client's state, sends
//! with acknowledgements, receives each sender's messages once and in order (its [`Inbox`]),
//! and moves to another server without the user doing anything.
//!
//! **Who calls it.** [`start`], from `dsys client` (`client::run`), `dsys demo` and `dsys
//! bench`. It registers first ([`register`], which also fails over and moves), then runs
//! [`Session::run`] on its own thread: a `select!` over the commands, the frames received, a
//! keepalive ticker and the stop channel. It reaches its server only through a [`Connection`]
//! ([`connection`]), whose two threads own the socket; the session never blocks on it.
//!
//! **How it stops.** End of input (the command channel disconnects) waits until everything
//! sent is acknowledged, then deregisters; a stop signal does the same within
//! [`STOP_GRACE`]. The rest: docs/architecture.md, "A client's threads", and
//! docs/heartbeats-and-failover.md, "Client failover".

use std::collections::VecDeque;
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select, tick};

use super::inbox::Inbox;
use super::{Command, Event, files, input};
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::protocol::{Body, MAX_PAYLOAD_LEN, Message};
use connection::Connection;

mod connection;
mod register;

/// Messages sent and not yet acknowledged, at most. At the bound the session stops reading
/// commands until acks arrive (backpressure), so nothing is lost and memory stays bounded.
pub const MAX_UNACKED: usize = 1024;
/// Payload bytes sent and not yet acknowledged, at most (same rule as [`MAX_UNACKED`]).
/// With files this is what bounds a sender's memory: 64 chunks in flight.
pub const MAX_UNACKED_BYTES: usize = 16 * 1024 * 1024;
/// Files waiting for the one being sent, at most; at the bound the session takes no more
/// commands until one has gone (backpressure on stdin, nothing dropped).
const MAX_QUEUED_FILES: usize = 64;
/// Acknowledged messages kept for resending, at most (see [`Session::recent`]).
/// Beyond it the oldest is forgotten: it is on every server that was live when it was
/// acknowledged, so only the loss of all of those could make a receiver miss it, and then
/// the receiver gets a `gap` event, never silence.
pub const MAX_RECENT: usize = 1024;
/// Payload bytes of acknowledged messages kept for resending, at most (same rule).
pub const MAX_RECENT_BYTES: usize = 8 * 1024 * 1024;
/// Frames queued for a connection's `send` thread, at most ([`Connection::open`]). The
/// session queues a publish only while the unacknowledged window has room, and after a
/// failover it resends at most the recent and unacknowledged messages, so the queue never
/// holds more than those two windows (at most 24 MiB of payload) plus a goodbye; a keepalive
/// is queued only when it is empty. Were the bound hit anyway, the connection would count as
/// lost and failover would start over on a fresh queue.
const SEND_QUEUE: usize = MAX_UNACKED + MAX_RECENT + 2;
/// How long a stop signal waits for outstanding acknowledgements before leaving anyway.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a leaving client waits for its goodbye to be written.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// What a session needs to know.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The coordinator, asked "which server?" at start and on every failover.
    pub coordinator: String,
    /// A server to start on, instead of asking the coordinator.
    pub server: Option<String>,
    /// The name to register under.
    pub name: String,
    /// Where received files are saved.
    pub download_dir: PathBuf,
    /// Largest file this client sends; bigger ones are refused before anything is sent.
    pub max_file_size: u64,
    /// The cluster secret, when the cluster has one (`auth.rs`).
    pub secret: Option<Secret>,
}

/// The server to go to should this one be gone, and the longest random wait before going
/// there ([`Message::Standby`]; `register.rs` uses it).
struct Standby {
    server: String,
    spread: Duration,
}

/// How long an idle session sleeps when nothing at all happens: it has no work of its own
/// to do meanwhile (keepalives have their own tick), so this is only a ceiling.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// Everything a client knows, owned by the one `session-<name>` thread, so no lock.
struct Session {
    config: SessionConfig,
    /// To the printer on the client's main thread (or to `dsys demo` and `dsys bench`),
    /// which holds `events_rx`; dropped when the session ends, which ends the printer.
    events_tx: Sender<Event>,
    /// Disconnects when the holder of `stop_tx` drops it (a signal, a broken stdout, the
    /// last of `--count`): leave within [`STOP_GRACE`], and stop a failover that is looping.
    stop_rx: Receiver<()>,
    /// The session id, given by the first server (0 until then) and presented again, with
    /// `token`, on every resume: servers and receivers know this session's messages by it.
    id: u64,
    /// Proves ownership of `id` when resuming.
    token: u64,
    /// Where to register, without asking the coordinator, should the server be gone: the
    /// latest `Standby` the server sent, cleared on every new registration (the new server
    /// sends its own).
    standby: Option<Standby>,
    /// The next frame counter (`seq` on the wire).
    next_seq: u64,
    /// The next message number (`seq` in the events).
    next_number: u64,
    /// The file being sent, and the files waiting for it, each with the line of stdin that
    /// asked for it (for a refusal to name). A file goes out as `FileStart`, chunks and
    /// `FileEnd`, each a frame with its own `seq`, one chunk whenever nothing else is ready
    /// (so a text typed meanwhile waits for one chunk at most); it takes its message
    /// number with `FileEnd`.
    outgoing: Option<files::Outgoing>,
    outgoing_line: Option<u64>,
    queued_files: VecDeque<(PathBuf, Option<u64>)>,
    /// Every message sent and not yet acknowledged, in `seq` order. An ack means the message
    /// is stored on every live server, so after a failover only these (and some of `recent`)
    /// are sent again; the server drops the ones it already has. Bounded by [`MAX_UNACKED`]
    /// and [`MAX_UNACKED_BYTES`]: when it is full the session stops taking commands, which
    /// blocks whoever feeds it (stdin), so memory stays bounded and nothing is dropped.
    unacked: VecDeque<(u64, Body)>,
    unacked_bytes: usize,
    /// The latest acknowledged messages, bounded by [`MAX_RECENT`] and [`MAX_RECENT_BYTES`].
    /// An ack covers the loss of any one server; these cover the rarer loss of every server
    /// that held them (say the last live server dies while the only other one is hung). On
    /// resume the new server says up to which `seq` it holds this session's messages, and
    /// the session sends again the recent ones above that.
    recent: VecDeque<(u64, Body)>,
    recent_bytes: usize,
    /// The highest message number reported acknowledged (an `acked` event).
    acked_number: u64,
    /// What has been received: per sender, what was delivered and what a resume asks the
    /// new server to replay.
    inbox: Inbox,
}

/// Registers, then runs the session on its own thread until input ends (or a stop signal)
/// and everything sent is acknowledged.
///
/// The first registration happens before this returns, so its failure is the caller's
/// error (exit status 1 with one clear line), not a thread's.
///
/// # Errors
/// [`Error::NoLiveServer`] when the coordinator knows no live server;
/// [`Error::Unreachable`] when the coordinator or the server cannot be reached or does
/// not answer (the text says which); [`Error::Refused`] when the server refuses the name.
pub fn start(
    config: SessionConfig,
    commands_rx: Receiver<Command>,
    events_tx: Sender<Event>,
    stop_rx: Receiver<()>,
) -> Result<JoinHandle<Result<()>>> {
    let mut session = Session {
        events_tx,
        stop_rx,
        id: 0,
        token: 0,
        standby: None,
        next_seq: 1,
        next_number: 1,
        outgoing: None,
        outgoing_line: None,
        queued_files: VecDeque::new(),
        unacked: VecDeque::new(),
        unacked_bytes: 0,
        recent: VecDeque::new(),
        recent_bytes: 0,
        acked_number: 0,
        inbox: Inbox::new(config.download_dir.clone()),
        config,
    };
    let connection = session.first_registration()?;
    let name = session.config.name.clone();
    Ok(thread::Builder::new()
        .name(format!("session-{name}"))
        .spawn(move || session.run(connection, commands_rx))?)
}

impl Session {
    fn emit(&self, event: Event) {
        // The receiver is the printer; if it is gone the process is ending anyway.
        let _ = self.events_tx.send(event);
    }

    /// The session loop. Returns when input has ended and everything is acknowledged.
    fn run(mut self, mut connection: Connection, commands_rx: Receiver<Command>) -> Result<()> {
        let mut input_open = true;
        let mut stop_deadline: Option<Instant> = None;
        let mut keepalive = tick(connection.keepalive_check());
        loop {
            let sending_files = self.outgoing.is_some() || !self.queued_files.is_empty();
            if !input_open && !sending_files && self.unacked.is_empty() {
                break;
            }
            if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                log::warn!(
                    "leaving with {} messages unacknowledged name={}",
                    self.unacked.len(),
                    self.config.name
                );
                break;
            }
            // Backpressure: take new commands only while the unacked window has room.
            // A `never()` receiver makes a `select!` arm that cannot fire: that is how an
            // optional channel is written in a crossbeam `select!` (`commands` here, `stop`
            // below once it has fired).
            let room = self.unacked.len() < MAX_UNACKED && self.unacked_bytes < MAX_UNACKED_BYTES;
            let commands = if input_open && room && self.queued_files.len() < MAX_QUEUED_FILES {
                &commands_rx
            } else {
                &never()
            };
            // With a file chunk to send, do not wait: the `default` arm sends it whenever
            // nothing else is ready, so commands and frames still come first.
            // Otherwise nothing is due until something arrives, but the stop's deadline: an
            // idle session sleeps until then, instead of waking a few times a second for
            // nothing (ten thousand idle clients on one machine add up).
            let idle = if room && self.outgoing.is_some() {
                Duration::ZERO
            } else if let Some(deadline) = stop_deadline {
                deadline.saturating_duration_since(Instant::now())
            } else {
                IDLE_WAKE
            };
            let stop = if stop_deadline.is_none() {
                &self.stop_rx
            } else {
                &never()
            };
            let mut lost: Option<Error> = None;
            let mut move_to: Option<String> = None;
            select! {
                recv(commands) -> command => match command {
                    Ok(command) => lost = self.send_command(&mut connection, command).err(),
                    Err(_) => input_open = false,
                },
                recv(connection.received_rx) -> frame => match frame {
                    Ok(Ok(Message::Move { server })) => move_to = Some(server),
                    Ok(Ok(message)) => lost = self.handle(message).err(),
                    Ok(Err(e)) => lost = Some(e),
                    Err(_) => lost = Some(Error::PeerGone("connection reader ended".into())),
                },
                recv(keepalive) -> _ => {
                    connection.send_keepalive();
                }
                recv(stop) -> _ => {
                    input_open = false;
                    stop_deadline = Some(Instant::now() + STOP_GRACE);
                }
                default(idle) => {
                    if room && self.outgoing.is_some() {
                        lost = self.send_next_chunk(&mut connection).err();
                    }
                }
            }
            if let Some(reason) = lost {
                connection = match self.fail_over(connection, reason) {
                    Some(connection) => connection,
                    None => return Ok(()), // stopped while failing over
                };
                keepalive = tick(connection.keepalive_check());
            } else if let Some(target) = move_to {
                connection = self.move_to(connection, &target);
                keepalive = tick(connection.keepalive_check());
            }
        }
        connection.close_with(&Message::Deregister, GOODBYE_GRACE);
        log::info!("deregistered name={}", self.config.name);
        Ok(())
    }

    /// Sends a text at once, or queues a file behind the one being sent. What cannot be
    /// sent becomes a refusal (an `error` event) and costs no number: a text over [`MAX_PAYLOAD_LEN`]
    /// is refused here, before it takes a `seq`, since a server would close the connection
    /// on it and the session would send it again after every failover, for ever.
    fn send_command(&mut self, connection: &mut Connection, command: Command) -> Result<()> {
        match command {
            Command::Text(text) if text.len() > MAX_PAYLOAD_LEN => {
                let message = input::too_long("a text", text.len());
                self.emit(Event::Refused { message });
                Ok(())
            }
            Command::Text(text) => {
                let number = self.take_number();
                self.publish(connection, Body::Text { number, text })
            }
            Command::File { path, line } => {
                self.queued_files.push_back((path, line));
                self.start_next_file(connection)
            }
            Command::Unsendable(message) => {
                self.emit(Event::Refused { message });
                Ok(())
            }
        }
    }

    fn take_number(&mut self) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        number
    }

    /// Gives `body` the next `seq`, keeps it until it is acknowledged, and sends it.
    fn publish(&mut self, connection: &mut Connection, body: Body) -> Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked_bytes += body.payload_len();
        let publish = Message::Publish {
            seq,
            body: body.clone(),
        };
        self.unacked.push_back((seq, body));
        connection.send(&publish)
    }

    /// When no file is being sent, starts the next queued one that can be opened. A file
    /// that cannot be sent is refused (an `error` event) and costs no number.
    fn start_next_file(&mut self, connection: &mut Connection) -> Result<()> {
        while self.outgoing.is_none() {
            let Some((path, line)) = self.queued_files.pop_front() else {
                break;
            };
            match files::Outgoing::open(&path, self.config.max_file_size) {
                Ok((outgoing, name, size)) => {
                    self.outgoing = Some(outgoing);
                    self.outgoing_line = line;
                    self.publish(connection, Body::FileStart { name, size })?;
                }
                Err(why) => self.refuse_file(line, why),
            }
        }
        Ok(())
    }

    /// Reports a file that was not sent, naming the line of stdin that asked for it.
    fn refuse_file(&self, line: Option<u64>, why: String) {
        let message = match line {
            Some(line) => format!("line {line}: {why}"),
            None => why,
        };
        self.emit(Event::Refused { message });
    }

    /// Sends the next chunk of the file being sent, or its end.
    fn send_next_chunk(&mut self, connection: &mut Connection) -> Result<()> {
        let Some(outgoing) = self.outgoing.as_mut() else {
            return Ok(());
        };
        let body = match outgoing.next_chunk() {
            Ok(Some(data)) => return self.publish(connection, Body::FileChunk { data }),
            Ok(None) => {
                let Some(outgoing) = self.outgoing.take() else {
                    return Ok(()); // cannot happen: `outgoing` was Some just above
                };
                let sha256 = outgoing.finish();
                Body::FileEnd {
                    number: self.take_number(),
                    sha256,
                }
            }
            Err(why) => {
                // The chunks already sent cannot be taken back: tell the receivers to
                // discard them. The file costs no number.
                self.outgoing = None;
                self.refuse_file(self.outgoing_line, why);
                Body::FileEnd {
                    number: 0,
                    sha256: [0; 32],
                }
            }
        };
        self.publish(connection, body)?;
        self.start_next_file(connection)
    }

    /// One frame from the server.
    fn handle(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Deliver {
                from,
                session,
                seq,
                body,
            } => {
                for event in self.inbox.deliver(from, session, seq, body) {
                    self.emit(event);
                }
            }
            Message::Ack { seq } => self.take_ack(seq),
            Message::Keepalive => {}
            Message::Standby { server, spread_ms } => self.take_standby(server, spread_ms),
            Message::Error { code, reason } => {
                return Err(Error::Refused(code, reason));
            }
            other => log::warn!("ignoring unexpected {} from the server", other.kind()),
        }
        Ok(())
    }

    /// Keeps the standby the server named (none when `server` is empty), and logs it when
    /// it changed: the server deals them again as the cluster changes.
    fn take_standby(&mut self, server: String, spread_ms: u32) {
        let changed = self.standby.as_ref().map(|s| s.server.as_str()) != Some(server.as_str());
        if changed && !server.is_empty() {
            log::info!(
                "standby name={} server={server} spread_ms={spread_ms} (where this client \
                 goes should its server be gone)",
                self.config.name
            );
        }
        self.standby = (!server.is_empty()).then(|| Standby {
            server,
            spread: Duration::from_millis(spread_ms.into()),
        });
    }

    /// Every frame up to `seq` is acknowledged: they leave the unacknowledged window for the
    /// recent ones, and the highest message number among them, if it is new, is reported.
    /// Numbers grow with `seq` (a file takes its number with its last frame), so that
    /// number covers every message before it too.
    fn take_ack(&mut self, seq: u64) {
        let mut highest = self.acked_number;
        while let Some((oldest, _)) = self.unacked.front()
            && *oldest <= seq
            && let Some(acked) = self.unacked.pop_front()
        {
            self.unacked_bytes -= acked.1.payload_len();
            highest = highest.max(acked.1.number());
            self.keep_recent(acked);
        }
        if highest > self.acked_number {
            self.acked_number = highest;
            self.emit(Event::Acked { seq: highest });
        }
    }

    /// Keeps an acknowledged message among the recent ones, forgetting the oldest beyond
    /// [`MAX_RECENT`] and [`MAX_RECENT_BYTES`].
    fn keep_recent(&mut self, acked: (u64, Body)) {
        self.recent_bytes += acked.1.payload_len();
        self.recent.push_back(acked);
        while self.recent.len() > MAX_RECENT || self.recent_bytes > MAX_RECENT_BYTES {
            // Over a bound means at least the message just pushed is there.
            let Some((_, body)) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= body.payload_len();
        }
    }
}
