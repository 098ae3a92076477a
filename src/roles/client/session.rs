//! A client session: registration, sending with acknowledgements, receiving exactly once in
//! each sender's order, and failover to another server without the user doing anything.
//!
//! **Threads.** The session runs on one thread (`session`), which owns all the state below
//! and is the only writer of the server socket. Each connection adds a `recv` thread that
//! reads frames into a bounded channel; the session `select!`s over that channel, the
//! command channel (what to send), a keepalive ticker and the stop channel.
//!
//! **What the session remembers, and why.**
//! - `unacked`: every message sent and not yet acknowledged, in `seq` order. An ack means
//!   the message is stored on every live server, so after a failover only these are sent
//!   again; the server drops the ones it already has. The window is bounded
//!   ([`MAX_UNACKED`]): when it is full the session stops taking commands, which blocks
//!   whoever feeds it (stdin), so memory stays bounded and nothing is dropped.
//! - `recent`: the latest acknowledged messages, bounded ([`MAX_RECENT`]). An ack covers
//!   the loss of any one server; these cover the rarer loss of every server that held them
//!   (say the last live server dies while the only other one is hung). On resume the new
//!   server says up to which `seq` it holds this session's messages, and the session sends
//!   again the recent ones above that.
//! - `seen`: for each sender session, the highest `seq` delivered. A repeat is dropped, a
//!   jump is reported as a `gap` event. On failover the map is sent to the new server, which
//!   replays what is missing from its history window.
//!
//! **When the server fails.** A broken socket, a failed write, or silence longer than three
//! keepalive intervals (a hung server) starts [`Session::fail_over`]: ask the coordinator
//! where to go (naming the lost server), register again with the same session and token,
//! send again the recent messages the new server lacks and every unacknowledged one, and
//! print a `failover` event.
//!
//! **Stopping.** End of input (the command channel disconnects) waits until everything is
//! acknowledged, then deregisters. A stop signal does the same with a deadline
//! ([`STOP_GRACE`]).

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select, tick};

use super::{Command, Event, files};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Body, MAX_PAYLOAD_LEN, Message, Resume, Role, read_message, write_message};

/// Messages sent and not yet acknowledged, at most. At the bound the session stops reading
/// commands until acks arrive (backpressure), so nothing is lost and memory stays bounded.
pub const MAX_UNACKED: usize = 1024;
/// Payload bytes sent and not yet acknowledged, at most (same rule as [`MAX_UNACKED`]).
pub const MAX_UNACKED_BYTES: usize = 32 * 1024 * 1024;
/// Acknowledged messages kept for resending, at most (see `recent` in the module doc).
/// Beyond it the oldest is forgotten: it is on every server that was live when it was
/// acknowledged, so only the loss of all of those could make a receiver miss it, and then
/// the receiver gets a `gap` event, never silence.
pub const MAX_RECENT: usize = 1024;
/// Payload bytes of acknowledged messages kept for resending, at most (same rule).
pub const MAX_RECENT_BYTES: usize = 8 * 1024 * 1024;
/// How long the first registration may take before the client gives up (exit status 1).
const FIRST_REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a registration during failover may take. Short, because the server may be hung
/// (its kernel accepts the connection but nobody answers); the session then asks the
/// coordinator again.
const FAILOVER_REGISTER_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between failover attempts, so a client does not hammer a coordinator that has no
/// live server to offer yet.
const FAILOVER_RETRY: Duration = Duration::from_millis(100);
/// How long a stop signal waits for outstanding acknowledgements before leaving anyway.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long connecting to the coordinator may take.
const LOCATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the coordinator may take to answer "which server?". It holds the answer back
/// while it finds out whether a suspect server is hung (up to twice its heartbeat timeout),
/// so this is well above any sensible timeout.
const LOCATE_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read ahead of the session thread, per connection.
const RECV_QUEUE: usize = 1024;

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
}

/// One live connection to a server.
struct Connection {
    server: String,
    /// The highest `seq` of this session that the server already holds (0 on a first
    /// registration): recent messages above it are sent again after a failover.
    server_has: u64,
    /// The session thread's write half.
    stream: TcpStream,
    /// Frames from the `recv` thread; an `Err` or a disconnect means the connection is gone.
    frames_rx: Receiver<Result<Message>>,
    reader: Option<JoinHandle<()>>,
    keepalive: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Unblocks the `recv` thread, then waits for it, so no thread outlives its socket.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

struct Session {
    config: SessionConfig,
    events_tx: Sender<Event>,
    stop_rx: Receiver<()>,
    session: u64,
    token: u64,
    next_seq: u64,
    unacked: VecDeque<(u64, Body)>,
    unacked_bytes: usize,
    recent: VecDeque<(u64, Body)>,
    recent_bytes: usize,
    seen: HashMap<u64, u64>,
}

/// Registers, then runs the session on its own thread until input ends (or a stop signal)
/// and everything sent is acknowledged.
///
/// The first registration happens before this returns, so its failure is the caller's
/// error (exit status 1 with one clear line), not a thread's.
///
/// # Errors
/// [`Error::NoLiveServer`] when neither the coordinator nor `--server` gives a server that
/// answers; [`Error::Refused`] when the server refuses the name.
pub fn start(
    config: SessionConfig,
    commands_rx: Receiver<Command>,
    events_tx: Sender<Event>,
    stop_rx: Receiver<()>,
) -> Result<JoinHandle<Result<()>>> {
    let mut session = Session {
        config,
        events_tx,
        stop_rx,
        session: 0,
        token: 0,
        next_seq: 1,
        unacked: VecDeque::new(),
        unacked_bytes: 0,
        recent: VecDeque::new(),
        recent_bytes: 0,
        seen: HashMap::new(),
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

    fn first_registration(&mut self) -> Result<Connection> {
        let server = match &self.config.server {
            Some(server) => server.clone(),
            None => locate(&self.config.coordinator, &self.config.name, "")?,
        };
        let connection = self
            .register(&server, FIRST_REGISTER_TIMEOUT)
            .map_err(|e| match e {
                Error::Refused(_) | Error::NoLiveServer(_) | Error::Usage(_) => e,
                other => Error::NoLiveServer(format!("server {server} did not answer: {other}")),
            })?;
        log::info!("registered name={} server={server}", self.config.name);
        self.emit(Event::Registered {
            name: self.config.name.clone(),
            server,
        });
        Ok(connection)
    }

    /// Connects to `server` and registers (resuming when this session has registered before).
    fn register(&mut self, server: &str, timeout: Duration) -> Result<Connection> {
        let mut stream = net::connect_as(server, Role::Client, timeout)?;
        let resume = (self.session != 0).then(|| Resume {
            session: self.session,
            token: self.token,
            seen: self.seen.iter().map(|(s, q)| (*s, *q)).collect(),
        });
        let first = resume.is_none();
        let request = Message::Register {
            name: self.config.name.clone(),
            resume,
        };
        let (keepalive, server_has) = match net::request(&mut stream, &request)? {
            Message::Registered {
                session,
                token,
                keepalive_ms,
                watermarks,
            } => {
                self.session = session;
                self.token = token;
                let mut server_has = 0;
                if first {
                    // Everything up to these marks was sent before we registered.
                    self.seen.extend(watermarks);
                } else {
                    // On a resume the only mark is this session's own, if the server has it.
                    server_has = watermarks
                        .iter()
                        .find(|(s, _)| *s == session)
                        .map_or(0, |(_, seq)| *seq);
                }
                let keepalive = Duration::from_millis(keepalive_ms.max(10) as u64);
                (keepalive, server_has)
            }
            Message::RegisterRefused { reason } => return Err(Error::Refused(reason)),
            other => {
                return Err(Error::Protocol(format!(
                    "expected Registered, got {}",
                    other.kind()
                )));
            }
        };
        // Three keepalive intervals without a frame means the server is dead or hung.
        let silence = (keepalive * 3).max(Duration::from_millis(300));
        stream.set_read_timeout(Some(silence))?;
        let (frames_tx, frames_rx) = bounded(RECV_QUEUE);
        let mut read_half = stream.try_clone()?;
        let reader = thread::Builder::new()
            .name(format!("recv-{}", self.config.name))
            .spawn(move || {
                loop {
                    let frame = match read_message(&mut read_half) {
                        Ok(Some(message)) => Ok(message),
                        Ok(None) => Err(Error::Protocol("server closed the connection".into())),
                        Err(e) if e.is_timeout() => Err(Error::Protocol(format!(
                            "server silent for {} ms",
                            silence.as_millis()
                        ))),
                        Err(e) => Err(e),
                    };
                    let failed = frame.is_err();
                    if frames_tx.send(frame).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(Connection {
            server: server.to_string(),
            server_has,
            stream,
            frames_rx,
            reader: Some(reader),
            keepalive,
        })
    }

    /// The session loop. Returns when input has ended and everything is acknowledged.
    fn run(mut self, mut connection: Connection, commands_rx: Receiver<Command>) -> Result<()> {
        let mut input_open = true;
        let mut stop_deadline: Option<Instant> = None;
        let mut keepalive = tick(connection.keepalive);
        loop {
            if !input_open && self.unacked.is_empty() {
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
            let room = self.unacked.len() < MAX_UNACKED && self.unacked_bytes < MAX_UNACKED_BYTES;
            let commands = if input_open && room {
                &commands_rx
            } else {
                &never()
            };
            let stop = if stop_deadline.is_none() {
                &self.stop_rx
            } else {
                &never()
            };
            let mut lost: Option<Error> = None;
            select! {
                recv(commands) -> command => match command {
                    Ok(command) => lost = self.send_command(&mut connection, command).err(),
                    Err(_) => input_open = false,
                },
                recv(connection.frames_rx) -> frame => match frame {
                    Ok(Ok(message)) => lost = self.handle(message).err(),
                    Ok(Err(e)) => lost = Some(e),
                    Err(_) => lost = Some(Error::Protocol("connection reader ended".into())),
                },
                recv(keepalive) -> _ => {
                    lost = write_message(&mut connection.stream, &Message::Keepalive).err();
                }
                recv(stop) -> _ => {
                    input_open = false;
                    stop_deadline = Some(Instant::now() + STOP_GRACE);
                }
                default(Duration::from_millis(200)) => {}
            }
            if let Some(reason) = lost {
                connection = match self.fail_over(connection, reason) {
                    Some(connection) => connection,
                    None => return Ok(()), // stopped while failing over
                };
                keepalive = tick(connection.keepalive);
            }
        }
        let _ = write_message(&mut connection.stream, &Message::Deregister);
        log::info!("deregistered name={}", self.config.name);
        Ok(())
    }

    /// Turns a command into a numbered message and sends it. A file that cannot be sent is
    /// reported as an `error` event and costs no `seq`.
    fn send_command(&mut self, connection: &mut Connection, command: Command) -> Result<()> {
        let body = match command {
            Command::Text(text) => Body::Text(text),
            Command::File(path) => match files::read_for_sending(&path, MAX_PAYLOAD_LEN) {
                Ok((name, data)) => Body::File { name, data },
                Err(why) => {
                    self.emit(Event::Error { message: why });
                    return Ok(());
                }
            },
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked_bytes += body.payload_len();
        let publish = Message::Publish {
            seq,
            body: body.clone(),
        };
        self.unacked.push_back((seq, body));
        write_message(&mut connection.stream, &publish)
    }

    /// One frame from the server.
    fn handle(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Deliver {
                from,
                session,
                seq,
                body,
            } => self.deliver(from, session, seq, body),
            Message::Ack { seq } => {
                while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                    let acked = self.unacked.pop_front().expect("front exists");
                    self.unacked_bytes -= acked.1.payload_len();
                    self.keep_recent(acked);
                }
            }
            Message::Keepalive => {}
            Message::Error { reason } => {
                return Err(Error::Refused(reason));
            }
            other => log::warn!("ignoring unexpected {} from the server", other.kind()),
        }
        Ok(())
    }

    /// Exactly once, in each sender's order: repeats are dropped, jumps reported as gaps.
    fn deliver(&mut self, from: String, session: u64, seq: u64, body: Body) {
        match self.seen.get(&session) {
            Some(&last) if seq <= last => return, // a repeat after failover
            Some(&last) if seq > last + 1 => self.emit(Event::Gap {
                from: from.clone(),
                missed: seq - last - 1,
            }),
            _ => {}
        }
        self.seen.insert(session, seq);
        match body {
            Body::Text(text) => self.emit(Event::Message { from, seq, text }),
            Body::File { name, data } => {
                match files::save(&self.config.download_dir, &name, &data) {
                    Ok(path) => self.emit(Event::File {
                        from,
                        seq,
                        name: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        size: data.len() as u64,
                        path: path.display().to_string(),
                    }),
                    Err(e) => self.emit(Event::Error {
                        message: format!("cannot save file {name:?} from {from}: {e}"),
                    }),
                }
            }
        }
    }

    /// Finds a live server and registers there again, then sends every unacknowledged
    /// message again. Keeps trying until it succeeds or the session is stopped (`None`).
    fn fail_over(&mut self, lost: Connection, reason: Error) -> Option<Connection> {
        let old = lost.server.clone();
        drop(lost);
        log::info!(
            "lost server name={} server={old} reason=\"{reason}\"; failing over",
            self.config.name
        );
        loop {
            // Ask the coordinator; if it is down too, try the old server again (the
            // connection may have broken while the server is fine).
            let target =
                locate(&self.config.coordinator, &self.config.name, &old).unwrap_or_else(|e| {
                    log::debug!("locate failed: {e}");
                    old.clone()
                });
            match self.register(&target, FAILOVER_REGISTER_TIMEOUT) {
                Ok(mut connection) => match self.resend(&mut connection) {
                    Ok(resent) => {
                        log::info!(
                            "failover name={} from={old} to={target} resent={resent}",
                            self.config.name
                        );
                        if target == old {
                            self.emit(Event::Reconnected { server: target });
                        } else {
                            self.emit(Event::Failover {
                                from: old.clone(),
                                to: target,
                            });
                        }
                        return Some(connection);
                    }
                    Err(e) => log::debug!("resending to {target} failed: {e}"),
                },
                Err(Error::Refused(why)) => {
                    log::warn!("failover refused by {target}: {why}");
                }
                Err(e) => log::debug!("failover attempt to {target} failed: {e}"),
            }
            select! {
                recv(self.stop_rx) -> _ => return None,
                default(FAILOVER_RETRY) => {}
            }
        }
    }

    /// Keeps an acknowledged message among the recent ones, forgetting the oldest beyond
    /// [`MAX_RECENT`] and [`MAX_RECENT_BYTES`].
    fn keep_recent(&mut self, acked: (u64, Body)) {
        self.recent_bytes += acked.1.payload_len();
        self.recent.push_back(acked);
        while self.recent.len() > MAX_RECENT || self.recent_bytes > MAX_RECENT_BYTES {
            let (_, body) = self.recent.pop_front().expect("recent is not empty");
            self.recent_bytes -= body.payload_len();
        }
    }

    /// After a resume: sends again the recent messages the new server does not hold, then
    /// every unacknowledged one (even those it holds: their acks are still owed). Servers
    /// and receivers drop what they already have, so nothing is delivered twice. Returns
    /// how many were sent.
    fn resend(&self, connection: &mut Connection) -> Result<usize> {
        let missing = self
            .recent
            .iter()
            .filter(|(seq, _)| *seq > connection.server_has);
        let mut count = 0;
        for (seq, body) in missing.chain(&self.unacked) {
            let publish = Message::Publish {
                seq: *seq,
                body: body.clone(),
            };
            write_message(&mut connection.stream, &publish)?;
            count += 1;
        }
        Ok(count)
    }
}

/// Asks the coordinator which server `name` should use, naming a `suspect` it just lost.
///
/// # Errors
/// [`Error::NoLiveServer`] when the coordinator is unreachable or knows no live server.
pub fn locate(coordinator: &str, name: &str, suspect: &str) -> Result<String> {
    let mut stream = net::connect_as(coordinator, Role::Locate, LOCATE_CONNECT_TIMEOUT)
        .map_err(|e| net::coordinator_unreachable(coordinator, e))?;
    stream.set_read_timeout(Some(LOCATE_REPLY_TIMEOUT))?;
    let request = Message::Locate {
        name: name.to_string(),
        suspect: suspect.to_string(),
    };
    match net::request(&mut stream, &request) {
        Ok(Message::Assign { server }) => Ok(server),
        Ok(other) => Err(Error::Protocol(format!(
            "expected Assign, got {}",
            other.kind()
        ))),
        Err(Error::Refused(why)) => Err(Error::NoLiveServer(format!(
            "{why} (coordinator {coordinator}); start a server with `dsys server`"
        ))),
        Err(e) => Err(net::coordinator_unreachable(coordinator, e)),
    }
}
