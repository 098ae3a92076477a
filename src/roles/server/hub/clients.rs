//! The hub's local clients: their outboxes, the fan-out of each live message, acks to the
//! senders, and the catch-up of a client whose outbox overflowed.
//!
//! **Who runs it.** No thread of its own: [`Clients`] is a part of the hub's state, and its
//! methods run under the hub's lock, in whichever thread called the hub: a client's
//! `conn-<peer>` thread (register, publish, leave), its `send-<name>` writer (catch-up), a
//! peer's `conn-<peer>` thread (a relay fanned out here), an `acks-<addr>` thread (acks).
//! The [`Hub`] methods a client's threads call are here too.
//!
//! **Whom it talks to.** Each client has an outbox ([`LocalClient::outbox_tx`]), a channel
//! of encoded frames bounded in frames and in bytes (`outbox.rs`). Its socket is written by
//! a `send-<name>` writer thread that exists only while there is something to write: when a
//! frame is queued for a client with no writer, the hub takes the client's pen and sends a
//! [`WriterJob`] to the `writers` thread (`server/writers.rs`), which starts one. An idle
//! client therefore costs one thread, its connection thread, not two.
//!
//! **Fan-out.** A message is encoded once (outside the lock) into an `Arc`, and every
//! recipient's outbox receives a clone of that `Arc`, never a copy of the payload
//! ([`Clients::fan_out`]).
//!
//! **Slow readers.** A client whose outbox is full is *behind*: the hub stops queuing for it,
//! and its writer refills the outbox from the history window as it drains
//! ([`Clients::catch_up`]). While a client behind is still reading, publishes wait rather
//! than push out of the window what it has not had
//! ([`State::has_room`](super::State::has_room)): a slower reader slows the senders down
//! and loses nothing. A client that takes nothing for
//! [`Limits::stall_timeout`](super::Limits::stall_timeout) has stopped reading; it no longer
//! holds anyone back, and when it reads again and finds its messages gone from the window it
//! is cut off with the reason (or a write to it times out first). It then resumes like a
//! failed-over client, and what it lost it reports as a gap.
//!
//! **When a client fails, and stopping.** A client is removed when its connection closes
//! or is replaced, when it falls behind the window, and when the server is fenced or stops
//! ([`Clients::remove_all`]). Removing it drops its outbox's sending end, so its writer
//! drains what is left and closes the connection. Its socket is shut down once the lock is
//! released ([`Cutoffs`]), so a writer blocked on a full socket wakes up too; only a client
//! that fell behind keeps its socket, for its writer to tell it why.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, unbounded};

use super::history::History;
use super::{CatchUp, Cutoffs, Frame, Hub, Registration};
use crate::auth;
use crate::protocol::{Message, Resume};
use crate::roles::server::outbox::{OutboxReceiver, OutboxSender, outbox};
use crate::roles::server::writers::WriterJob;

/// Where the hub asks for writer threads: the sending end of the `writers` thread's channel.
/// The channel is unbounded in crossbeam's sense, and bounded by the pen: a client has at
/// most one job on its way, so the channel holds at most `--max-clients` jobs. Sending never
/// blocks, so it is done under the hub's lock.
#[derive(Clone)]
pub(super) struct WriterRequests(pub(super) Sender<WriterJob>);

impl WriterRequests {
    /// Asks for a writer for `job`'s client. When the `writers` thread has gone (the server
    /// is stopping), nothing is started, which is what stopping wants.
    pub(super) fn request(&self, job: WriterJob) {
        let _ = self.0.send(job);
    }
}

impl Default for WriterRequests {
    /// Requests that go nowhere, for a state built without a server around it (unit tests).
    fn default() -> WriterRequests {
        WriterRequests(unbounded().0)
    }
}

/// One registered client, as the hub sees it.
pub(super) struct LocalClient {
    /// The id of the connection that registered it, to ignore a replaced connection.
    pub(super) conn: u64,
    /// The session it speaks for.
    pub(super) session: u64,
    /// Its resume token, which a reconnect must show to replace this connection.
    pub(super) token: u64,
    /// The sending end of the client's outbox. Dropping this (by removing the client) makes
    /// its writer, if it has one, finish and close the connection.
    pub(super) outbox_tx: OutboxSender,
    /// The receiving end, handed to each writer thread the client gets ([`WriterJob`]).
    pub(super) outbox_rx: OutboxReceiver,
    /// The client's socket, shared with its connection and writer threads (one descriptor
    /// per client, not one per thread). The hub uses it only to shut it down when the
    /// client is cut off, so a writer blocked on a full socket wakes up, and to hand it to
    /// a new writer.
    pub(super) stream: Arc<TcpStream>,
    /// The arrival number of the last history entry this client has had queued (or skipped
    /// as not meant for it). While its outbox is marked behind, [`Clients::catch_up`]
    /// continues from here.
    pub(super) last_queued: u64,
    /// The highest `seq` to acknowledge that did not fit into the outbox.
    pub(super) pending_ack: Option<u64>,
}

/// The registered clients of this incarnation.
#[derive(Default)]
pub(super) struct Clients {
    /// The clients by name.
    by_name: HashMap<String, LocalClient>,
    /// The name of each local session: to route acks, to check that a publish comes from
    /// the session's current connection, and to keep a session to one name.
    names_by_session: HashMap<u64, String>,
    /// Counts the changes to the set of names, so that a heartbeat can tell whether the
    /// names it last sent still hold without copying them.
    version: u64,
}

// The entry points of a client's threads: its connection thread registers and leaves, its
// writer catches up; the heartbeat reports the names.
impl Hub {
    /// Gives back the room the client tables kept for clients that have left (a map does
    /// not shrink by itself), before the freed memory goes back to the system.
    pub fn shrink_to_fit(&self) {
        let mut state = self.lock();
        state.clients.by_name.shrink_to_fit();
        state.clients.names_by_session.shrink_to_fit();
    }

    /// How many clients are registered.
    pub fn client_count(&self) -> usize {
        self.lock().clients.len()
    }

    /// The names of the registered clients, sorted, for a heartbeat, with the version of
    /// that set of names; `None` instead of the names when the version is still `since`.
    pub fn client_names_since(&self, since: Option<u64>) -> (u64, Option<Vec<String>>) {
        let state = self.lock();
        let version = state.clients.version;
        if since == Some(version) {
            return (version, None);
        }
        let mut names = state.clients.names();
        drop(state);
        // Sorted after the lock is let go: ten thousand names take a millisecond to sort,
        // and every registration and publish waits while the lock is held.
        names.sort_unstable();
        (version, Some(names))
    }

    /// Registers `name`, or returns why not. The registration carries the client's new
    /// outbox, bounded by [`Limits::client_queue`](super::Limits::client_queue) and
    /// [`Limits::client_queue_bytes`](super::Limits::client_queue_bytes).
    ///
    /// A resuming client with the right session and token replaces its own earlier
    /// connection, if that is still here. A resume this server has never seen is checked
    /// against the token's MAC when the cluster has a secret (`auth::resume_token`); a
    /// session registered here under another name is never anyone else's to resume. The
    /// history it has not seen is copied into the
    /// registration's initial frames *under the same lock* that adds its outbox, so no
    /// message falls between the replay and the live stream, and none is in both.
    pub fn register(
        &self,
        name: &str,
        resume: Option<Resume>,
        stream: Arc<TcpStream>,
        keepalive_ms: u32,
    ) -> Result<Registration, String> {
        let secret = self.secret.as_ref();
        self.with_state(|state, limits, cutoffs| {
            let (session, token) = match (&resume, state.clients.credentials(name)) {
                (Some(r), Some((session, token))) if r.session == session && r.token == token => {
                    state.clients.remove(name, cutoffs);
                    (session, token)
                }
                (_, Some(_)) => return Err(format!("name {name:?} is already taken")),
                (Some(r), None) => {
                    if state.clients.has_session(r.session) {
                        return Err("that session belongs to another client here".into());
                    }
                    if !auth::resume_token_valid(secret, r.session, name, r.token) {
                        return Err(format!(
                            "resume refused: the token does not match session {:#x} of {name:?}; \
                             only the client that registered a session can resume it",
                            r.session
                        ));
                    }
                    (r.session, r.token)
                }
                (None, None) => {
                    let session = crate::support::random::random_u64();
                    (session, auth::resume_token(secret, session, name))
                }
            };
            if state.clients.len() >= limits.max_clients {
                return Err(format!(
                    "server full ({} clients); try another server",
                    limits.max_clients
                ));
            }
            let registered = Message::Registered {
                session,
                token,
                keepalive_ms,
                watermarks: state.history.watermarks_for(resume.as_ref()),
            };
            let mut initial = vec![Arc::new(registered.encode())];
            if let Some(resume) = &resume {
                initial.extend(state.history.replay_for(session, &resume.seen));
            }
            state.next_id += 1;
            let conn = state.next_id;
            // The connection thread holds the pen from the start: it writes `initial` itself.
            let (outbox_tx, outbox_rx) =
                outbox(limits.client_queue, limits.client_queue_bytes, true);
            let client = LocalClient {
                conn,
                session,
                token,
                outbox_tx,
                outbox_rx: outbox_rx.clone(),
                stream,
                // The replay above covers everything stored so far.
                last_queued: state.history.last_arrival(),
                pending_ack: None,
            };
            state.clients.add(name, client);
            Ok(Registration {
                conn,
                initial,
                session,
                outbox: outbox_rx,
            })
        })
    }

    /// Removes `name` if connection `conn` still owns it (a replaced connection's late
    /// goodbye must not remove its successor). Returns whether it did.
    pub fn deregister(&self, name: &str, conn: u64) -> bool {
        let removed = self.with_state(|state, _, cutoffs| {
            if state.clients.owns(name, conn) {
                state.clients.remove(name, cutoffs);
                true
            } else {
                false
            }
        });
        // A client that was behind no longer holds the history window.
        self.room.notify_all();
        removed
    }

    /// Queues `answer` (a keepalive) for `name` behind whatever its writer is writing: how the client's
    /// connection thread answers a keepalive when a writer holds the pen (it may be
    /// lingering with nothing to write, and the client must hear an answer). Nothing is
    /// queued for a replaced connection, nor when the outbox is full: then frames are on
    /// their way to the client anyway.
    pub fn queue_keepalive(&self, name: &str, conn: u64, answer: &Message) {
        self.queue_to(name, Some(conn), answer);
    }

    /// Tells `name`, if it is here, to move to the server `to` (the coordinator is
    /// rebalancing). Returns whether the `Move` was queued; when the outbox is full it is
    /// not, the coordinator sees the client stay, and orders a move again later.
    pub fn order_move(&self, name: &str, to: &str) -> bool {
        let order = Message::Move {
            server: to.to_string(),
        };
        self.queue_to(name, None, &order)
    }

    /// Queues `message` for `name` (on connection `conn`, when given) and sees it written.
    fn queue_to(&self, name: &str, conn: Option<u64>, message: &Message) -> bool {
        self.with_state(|state, _, _| {
            let requests = state.writer_requests.clone();
            let client = state.clients.by_name.get_mut(name);
            let Some(client) = client.filter(|c| conn.is_none_or(|conn| c.conn == conn)) else {
                return false;
            };
            let queued = client.outbox_tx.try_push(Arc::new(message.encode()));
            client.see_written(name, &requests);
            queued
        })
    }

    /// Refills the outbox of a client that is behind (see `LocalClient::queue_live`) from
    /// the history window, in arrival order, for as long as it has room. Called by the
    /// client's writer thread whenever it sees the outbox marked behind.
    ///
    /// When the window has already forgotten a message the client had not had, the client
    /// is removed with the reason, for the writer to send: it is too slow to be served from
    /// memory. It then resumes like any failed-over client and reports the loss as a gap.
    pub fn catch_up(&self, name: &str, conn: u64) -> CatchUp {
        let result = self.with_state(|state, _, _| {
            let requests = state.writer_requests.clone();
            state
                .clients
                .catch_up(name, conn, &state.history, &state.addr, &requests)
        });
        // The client needs less of the window now (or nothing: it left); a publish
        // waiting for room may go on.
        self.room.notify_all();
        result
    }
}

impl Clients {
    /// How many clients are registered.
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The names of the registered clients, in no particular order.
    pub(super) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The `(session, token)` of `name`, if it is registered.
    pub(super) fn credentials(&self, name: &str) -> Option<(u64, u64)> {
        self.by_name.get(name).map(|c| (c.session, c.token))
    }

    /// Whether some client here speaks for `session`.
    pub(super) fn has_session(&self, session: u64) -> bool {
        self.names_by_session.contains_key(&session)
    }

    /// Whether connection `conn` still owns `name`.
    pub(super) fn owns(&self, name: &str, conn: u64) -> bool {
        self.by_name.get(name).is_some_and(|c| c.conn == conn)
    }

    /// Whether `session` is registered here over connection `conn` (and not a replaced one).
    pub(super) fn is_current(&self, session: u64, conn: u64) -> bool {
        self.names_by_session
            .get(&session)
            .and_then(|name| self.by_name.get(name))
            .is_some_and(|c| c.conn == conn)
    }

    /// Adds `client` under `name`.
    pub(super) fn add(&mut self, name: &str, client: LocalClient) {
        self.names_by_session
            .insert(client.session, name.to_string());
        self.by_name.insert(name.to_string(), client);
        self.version += 1;
    }

    /// Removes `name`, if registered, and adds its socket to `cutoffs` to be shut down.
    pub(super) fn remove(&mut self, name: &str, cutoffs: &mut Cutoffs) {
        if let Some(client) = self.by_name.remove(name) {
            self.names_by_session.remove(&client.session);
            cutoffs.push(client.stream);
            self.version += 1;
        }
    }

    /// No clients, with a version that no earlier set of names had (see
    /// [`Hub::client_names_since`]).
    pub(super) fn emptied(&self) -> Clients {
        Clients {
            version: self.version + 1,
            ..Clients::default()
        }
    }

    /// Removes every client, adding their sockets to `cutoffs`.
    pub(super) fn remove_all(&mut self, cutoffs: &mut Cutoffs) {
        let names: Vec<String> = self.by_name.keys().cloned().collect();
        for name in names {
            self.remove(&name, cutoffs);
        }
    }

    /// Fan-out: the shared frame, stored as number `arrival`, to every local client except
    /// its sender `session`; a client that has no writer gets one through `requests`.
    pub(super) fn fan_out(
        &mut self,
        session: u64,
        frame: &Frame,
        arrival: u64,
        requests: &WriterRequests,
    ) {
        for (name, client) in &mut self.by_name {
            if client.session != session {
                client.queue_live(name, frame, arrival);
                client.see_written(name, requests);
            }
        }
    }

    /// Queues to each sender in `highest` (session to `seq`) the ack of its messages up to
    /// that `seq`.
    pub(super) fn queue_acks(&mut self, highest: HashMap<u64, u64>, requests: &WriterRequests) {
        for (session, seq) in highest {
            let Some(name) = self.names_by_session.get(&session) else {
                continue; // the sender left; it resends on its next server if it needs to
            };
            if let Some(client) = self.by_name.get_mut(name) {
                client.queue_ack(name, seq);
                client.see_written(name, requests);
            }
        }
    }

    /// The arrival number each client that is behind needs next, for the clients that still
    /// read: a client that took no frame for `stall` stopped reading, and must not hold
    /// everyone else back (see [`History::has_room`]).
    pub(super) fn reading_behind(&self, stall: Duration) -> impl Iterator<Item = u64> + '_ {
        self.by_name
            .values()
            .filter(move |c| c.outbox_tx.is_behind() && c.outbox_tx.idle_for() < stall)
            .map(|c| c.last_queued + 1)
    }

    /// [`Hub::catch_up`](super::Hub::catch_up), under the lock: refills the outbox of `name`
    /// (connection `conn`) from `history`. `addr`, this server's, goes into the reason given
    /// to a client that fell behind the window.
    pub(super) fn catch_up(
        &mut self,
        name: &str,
        conn: u64,
        history: &History,
        addr: &str,
        requests: &WriterRequests,
    ) -> CatchUp {
        let Some(client) = self.by_name.get_mut(name).filter(|c| c.conn == conn) else {
            return CatchUp::Gone;
        };
        // The caller is the client's writer, which holds the pen; should it ever be called
        // without, this still makes sure someone writes what it queues.
        client.see_written(name, requests);
        if let Some(seq) = client.pending_ack {
            if !client.outbox_tx.try_push(ack_frame(seq)) {
                return CatchUp::Behind;
            }
            client.pending_ack = None;
        }
        if let Some(missed) = history.forgotten_after(client.last_queued) {
            let reason =
                format!("too slow: fell {missed} messages behind the history window of {addr}");
            log::warn!("slow consumer cut off name={name} reason=\"{reason}\"");
            // No socket to shut down here: the writer tells the client why, then closes.
            self.remove(name, &mut Cutoffs::new());
            return CatchUp::FellBehind(reason);
        }
        for stored in history.after(client.last_queued) {
            let meant_for_it = stored.live && stored.session != client.session;
            if meant_for_it && !client.outbox_tx.try_push(stored.frame.clone()) {
                return CatchUp::Behind;
            }
            client.last_queued = stored.arrival;
        }
        client.outbox_tx.set_behind(false);
        log::debug!("client caught up name={name}");
        CatchUp::Done
    }
}

impl LocalClient {
    /// Queues a live frame that arrived as number `arrival`. When the outbox is full, the
    /// client is marked behind instead: the hub stops queuing live frames for it, and its
    /// writer fetches what it missed from the history window ([`Clients::catch_up`]). So a
    /// client that is slow for a moment holds no one back and loses nothing.
    fn queue_live(&mut self, name: &str, frame: &Frame, arrival: u64) {
        if self.outbox_tx.is_behind() {
            return; // catch_up will find this frame in the window
        }
        if self.outbox_tx.try_push(frame.clone()) {
            self.last_queued = arrival;
        } else {
            self.mark_behind(name);
        }
    }

    /// Queues an acknowledgement, or keeps it for [`Clients::catch_up`] when the outbox is
    /// full. Acks are cumulative, so only the highest is kept.
    fn queue_ack(&mut self, name: &str, seq: u64) {
        let seq = self.pending_ack.map_or(seq, |pending| pending.max(seq));
        if self.outbox_tx.is_behind() || !self.outbox_tx.try_push(ack_frame(seq)) {
            self.pending_ack = Some(seq);
            self.mark_behind(name);
        } else {
            self.pending_ack = None;
        }
    }

    /// Makes sure what was just queued (or the catch-up a client behind needs) gets
    /// written: when the client's pen is down, it has no writer, so the hub takes the pen
    /// and asks the `writers` thread for one. Never blocks.
    fn see_written(&self, name: &str, requests: &WriterRequests) {
        if self.outbox_tx.take_pen() {
            requests.request(WriterJob {
                name: name.to_string(),
                conn: self.conn,
                stream: self.stream.clone(),
                outbox: self.outbox_rx.clone(),
            });
        }
    }

    fn mark_behind(&mut self, name: &str) {
        if !self.outbox_tx.is_behind() {
            log::debug!(
                "client behind name={name} queued_bytes={}",
                self.outbox_tx.queued_bytes()
            );
            self.outbox_tx.set_behind(true);
        }
    }
}

fn ack_frame(seq: u64) -> Frame {
    Arc::new(Message::Ack { seq }.encode())
}
