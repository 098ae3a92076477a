//! The hub's local clients ([`Clients`]): who is registered, under which session and
//! connection, and how a client registers, resumes, leaves, is moved and is cut off. What
//! each client is sent is in `delivery.rs`.
//!
//! **Who runs it.** No thread of its own: its methods (and the [`Hub`] methods that call
//! them) run under the hub's lock, in whichever thread called the hub: a client's
//! `conn-<peer>` thread, the heartbeat thread, the `keepalives` thread.
//!
//! **When a client fails, and stopping.** A client is removed when its connection closes or
//! is replaced, when it falls behind the window, and when the server is fenced or stops
//! ([`Clients::remove_all`]); its socket is shut down once the lock is released
//! ([`Cutoffs`]), so a blocked writer wakes too; only a client that fell behind keeps its
//! socket, for its writer to tell it why. A new client: `docs/guarantees.md`; a move:
//! "Rebalancing" in `docs/heartbeats-and-failover.md`.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::standby::Holding;
use super::{Cutoffs, Frame, Hub, Registration};
use crate::auth;
use crate::protocol::{Message, Refusal, Resume};
use crate::roles::server::keepalive::ClientTimers;
use crate::roles::server::write::{OutboxSender, WriteSide, outbox};

/// One registered client, as the hub sees it.
pub(super) struct LocalClient {
    /// Its name: the same `Arc` as its key in [`Clients::by_name`], its entry in
    /// [`Clients::names_by_session`] and its [`WriteSide`]'s.
    pub(super) name: Arc<str>,
    /// The id of the connection that registered it, to ignore a replaced connection.
    pub(super) conn: u64,
    /// The session it speaks for.
    pub(super) session: u64,
    /// Its resume token, which a reconnect must show to replace this connection.
    pub(super) token: u64,
    /// The sending end of the client's outbox. Dropping this (by removing the client) makes
    /// its writer, if it has one, finish and close the connection.
    pub(super) outbox_tx: OutboxSender,
    /// The receiving end of the outbox and the client's socket, shared with its connection
    /// and writer threads (one descriptor per client, not one per thread), and its pen: the
    /// hub takes the pen when it queued something for a client nobody writes to
    /// (`LocalClient::see_written`), and uses the socket only to shut it down when the
    /// client is cut off, so a writer blocked on a full socket wakes up.
    pub(super) side: WriteSide,
    /// The arrival number of the last history entry this client has had queued (or skipped
    /// as not meant for it). While its outbox is marked behind, [`Clients::catch_up`]
    /// continues from here.
    pub(super) last_queued: u64,
    /// The highest `seq` to acknowledge that did not fit into the outbox.
    pub(super) pending_ack: Option<u64>,
    /// Its hold on the standby it was last dealt (`standby.rs`), let go with the client.
    pub(super) standby: Option<Holding>,
}

/// The registered clients of this incarnation.
#[derive(Default)]
pub(super) struct Clients {
    /// The clients by name (`delivery.rs` reads it too).
    pub(super) by_name: HashMap<Arc<str>, LocalClient>,
    /// The name of each local session: to route acks, to check that a publish comes from
    /// the session's current connection, and to keep a session to one name.
    pub(super) names_by_session: HashMap<u64, Arc<str>>,
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

    /// Registers `name`, or returns why not: [`Refusal::ServerFull`] when the server holds
    /// [`Limits::max_clients`](super::Limits::max_clients) clients already, else
    /// [`Refusal::Other`], with the words for the client. The registration carries the client's new
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
        timers: ClientTimers,
    ) -> Result<Registration, (Refusal, String)> {
        let secret = self.secret.as_ref();
        self.with_state(|state, limits, cutoffs| {
            let (session, token) = match (&resume, state.clients.credentials(name)) {
                (Some(r), Some((session, token))) if r.session == session && r.token == token => {
                    state.clients.remove(name, cutoffs);
                    (session, token)
                }
                (_, Some(_)) => {
                    return Err((Refusal::Other, format!("name {name:?} is already taken")));
                }
                (Some(r), None) => {
                    if state.clients.has_session(r.session) {
                        let why = "that session belongs to another client here";
                        return Err((Refusal::Other, why.into()));
                    }
                    if !auth::resume_token_valid(secret, r.session, name, r.token) {
                        return Err((
                            Refusal::Other,
                            format!(
                                "resume refused: the token does not match session {:#x} of \
                                 {name:?}; only the client that registered a session can \
                                 resume it",
                                r.session
                            ),
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
                return Err((
                    Refusal::ServerFull,
                    format!(
                        "server full ({} clients); try another server",
                        limits.max_clients
                    ),
                ));
            }
            let registered = Message::Registered {
                session,
                token,
                keepalive_ms: millis(timers.client_keepalive),
                silence_ms: millis(timers.silence),
                watermarks: state.history.watermarks_for(resume.as_ref()),
            };
            let mut initial = vec![Frame::from(registered.encode())];
            if let Some(resume) = &resume {
                initial.extend(state.history.replay_for(session, &resume.seen));
            }
            let replayed = initial.len() - 1;
            let (standby_frame, standby) = state.standbys.deal(state.clients.len() + 1);
            initial.push(standby_frame);
            state.next_id += 1;
            let conn = state.next_id;
            let (outbox_tx, outbox_rx) = outbox(limits.client_queue, limits.client_queue_bytes);
            let name: Arc<str> = name.into();
            let side = WriteSide::new(name.clone(), conn, stream, outbox_rx, self.metrics.clone());
            // The connection thread holds the pen from the start: it writes `initial` itself.
            let pen = side.take_pen().expect("a new outbox's pen is down");
            let client = LocalClient {
                name,
                conn,
                session,
                token,
                outbox_tx,
                side,
                // The replay above covers everything stored so far.
                last_queued: state.history.last_arrival(),
                pending_ack: None,
                standby,
            };
            state.clients.add(client);
            Ok(Registration {
                conn,
                initial,
                replayed,
                session,
                pen: Some(pen),
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

    /// The write sides of the clients this server has written nothing to for `quiet`
    /// (`keepalive.rs` writes them a keepalive). Clones of an `Arc` each, so the lock is
    /// held for a look at every client and no I/O.
    pub fn quiet_clients(&self, quiet: Duration) -> Vec<WriteSide> {
        // One clock read for all of them: ten thousand clients are looked at each time.
        let now = Instant::now();
        let state = self.lock();
        let clients = state.clients.by_name.values();
        clients
            .filter(|client| client.side.quiet_for(now) >= quiet)
            .map(|client| client.side.clone())
            .collect()
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
            let client = state.clients.by_name.get_mut(name);
            let Some(client) = client.filter(|c| conn.is_none_or(|conn| c.conn == conn)) else {
                return false;
            };
            let queued = client.outbox_tx.try_push(Frame::from(message.encode()));
            client.see_written(&mut state.taken);
            queued
        })
    }
}

/// A duration as the milliseconds a frame carries.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

impl Clients {
    /// How many clients are registered.
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The names of the registered clients, in no particular order.
    pub(super) fn names(&self) -> Vec<String> {
        self.by_name.keys().map(|name| name.to_string()).collect()
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

    /// Adds `client` under its name.
    pub(super) fn add(&mut self, client: LocalClient) {
        self.names_by_session
            .insert(client.session, client.name.clone());
        self.by_name.insert(client.name.clone(), client);
        self.version += 1;
    }

    /// Removes `name`, if registered, and adds its socket to `cutoffs` to be shut down.
    pub(super) fn remove(&mut self, name: &str, cutoffs: &mut Cutoffs) {
        if let Some(client) = self.by_name.remove(name) {
            self.names_by_session.remove(&client.session);
            cutoffs.push(client.side.stream().clone());
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
        let names: Vec<Arc<str>> = self.by_name.keys().cloned().collect();
        for name in names {
            self.remove(&name, cutoffs);
        }
    }
}
