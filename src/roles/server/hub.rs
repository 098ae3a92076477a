//! The hub: a server's shared state and the one place where messages are ordered, deduplicated,
//! stored, fanned out and acknowledged.
//!
//! **Who calls it.** Every client connection thread (register, publish, deregister), every
//! peer-in thread (relayed messages), every peer-out thread (subscribe, acks) and the heartbeat
//! thread (peer list, epoch). They share one [`Hub`], a cloneable handle around
//! `Arc<Mutex<State>>`.
//!
//! **The lock rule.** Methods lock, change the state, copy out what the caller needs and
//! unlock. Sending to a client or a peer is a `try_push` on its bounded outbox, which never
//! blocks, so it may happen under the lock; socket I/O never does. The one wait, a publish
//! waiting for room ([`Hub::publish`]), is on a condition variable, which releases the lock.
//! Closing the sockets of clients cut off under the lock happens after the guard is dropped
//! (see [`Hub::with_state`]).
//!
//! **Fan-out.** Each local client has a writer thread draining its own outbox, a channel of
//! encoded frames bounded in frames and in bytes (`outbox.rs`). A message is encoded once
//! (outside the lock) into an `Arc`, and every recipient's outbox receives a clone of that
//! `Arc`, never a copy of the payload.
//!
//! **Slow readers.** A client whose outbox is full is *behind*: the hub stops queuing for it,
//! and its writer refills the outbox from the history window as it drains
//! ([`Hub::catch_up`]). While a client behind is still reading, publishes wait rather than
//! push out of the window what it has not had ([`State::has_room`]): a slower reader slows
//! the senders down and loses nothing. A client that takes nothing for
//! [`Limits::stall_timeout`] has stopped reading; it no longer holds anyone back, and when it
//! reads again and finds its messages gone from the window it is cut off with the reason
//! (or a write to it times out first). It then resumes like a failed-over client, and what
//! it lost it reports as a gap.
//!
//! **Memory.** What the hub holds is bounded by [`Limits`]: the history window
//! (`history_bytes` of payload), the outbound log (relays not yet confirmed by every peer,
//! about `relay_window_bytes`, because publishers wait beyond it), and the outboxes. An
//! outbox holds `Arc`s of frames that are still in the history window or the outbound log
//! (its byte bound is below both), so it adds little of its own. No structure grows with
//! the size of a file: a file is a stream of chunk messages like any other.
//!
//! **The rules that make delivery exactly-once and in order** (`docs/guarantees.md` argues why
//! they are correct):
//! 1. *Per-sender watermark.* For each sender session the hub remembers the highest `seq` it
//!    accepted. A message at or below it is a repeat and is not delivered again.
//! 2. *History.* Every accepted message is kept in a bounded window, so a client that fails
//!    over to this server can say what it has seen and get the rest. A new server (a first
//!    start, or a rejoin after being fenced) fills its window from every peer's history
//!    before it registers anyone: a client that fails over to it finds there what it missed.
//!    Such history may arrive out of each sender's order (two peers' windows start at
//!    different points), so it is only stored, never delivered live, and replays put each
//!    sender's messages back in `seq` order.
//! 3. *Outbound log.* Every message a *local* client publishes, repeats included, gets the next
//!    relay index and goes to every peer, in index order. Repeats are relayed because a peer
//!    may have missed them when the sender's previous server died mid-relay.
//! 4. *Acks.* A local client's message is acknowledged only when every live peer has confirmed
//!    its relay index: from then on it survives the loss of any one server.

use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use super::outbox::Frame;
use super::outbox::{OutboxReceiver, OutboxSender, outbox};
use crate::auth::{self, Secret};
use crate::protocol::{
    Body, Message, RELAY_INDEX_BYTES, Resume, ServerInfo, deliver_frame, relay_frame,
};

/// Sender sessions whose watermark is kept, at most, and sent to a registering client: 16
/// bytes each, so a `Registered` frame stays under a third of the frame cap. Beyond it, the
/// sessions with nothing left in the history window are forgotten (their messages can no
/// longer be replayed anyway).
const MAX_WATERMARKS: usize = 20_000;

/// How often a waiting publish looks again without being woken (see [`Hub::publish`]).
const ROOM_RECHECK: Duration = Duration::from_millis(100);

/// The bounds of a hub. Each is a flag of `dsys server`, except the queue lengths.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clients registered at once; the next registration is refused with "server full".
    pub max_clients: usize,
    /// Messages kept in the history window; the oldest is forgotten beyond this.
    pub history_messages: usize,
    /// Payload bytes kept in the history window; the oldest are forgotten beyond this.
    pub history_bytes: usize,
    /// Frames queued for one client. A client that lets its outbox fill is *behind*: it
    /// catches up from the history window ([`Hub::catch_up`]).
    pub client_queue: usize,
    /// Bytes queued for one client, the same rule.
    pub client_queue_bytes: usize,
    /// Frames queued for one peer, and the most local messages relayed but not yet confirmed
    /// by every peer (the relay window in messages). A peer's queue holds only unconfirmed
    /// relays, so it fills only when its link has died; the link is then restarted and
    /// resumes from the outbound log.
    pub peer_queue: usize,
    /// Bytes queued for one peer, the same rule.
    pub peer_queue_bytes: usize,
    /// The relay window in bytes: local messages relayed but not yet confirmed by every
    /// peer. A publish beyond it waits (see [`Hub::publish`]): this bounds the outbound log.
    pub relay_window_bytes: usize,
    /// How long a client that is behind may go without taking a frame and still hold the
    /// history window for itself (see [`Hub::publish`]). Beyond it, it is taken for a client
    /// that stopped reading: publishers no longer wait for it.
    pub stall_timeout: Duration,
}

/// Where a message entered this server.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Published by a local client over connection `conn`.
    Local {
        /// The connection's id, to ignore a publish from a connection that was replaced.
        conn: u64,
    },
    /// Relayed by the peer incarnation `(addr, epoch)` at its relay `index`.
    Peer {
        /// The peer's advertised address.
        addr: String,
        /// The peer's incarnation.
        epoch: u64,
        /// The peer's relay index for this message.
        index: u64,
    },
    /// From the history of the peer incarnation `(addr, epoch)`, sent because this server
    /// is new and asked for it (see [`Hub::accept_peer`]).
    PeerHistory {
        /// The peer's advertised address.
        addr: String,
        /// The peer's incarnation.
        epoch: u64,
    },
}

/// A message on its way into the hub, encoded once before the lock is taken.
struct Arrival {
    origin: Origin,
    session: u64,
    seq: u64,
    /// Its payload bytes, what the windows count.
    size: usize,
    /// The `Deliver` frame every recipient's outbox and the history window share.
    deliver: Frame,
    /// For a local message, its `Relay` frame, whose index is filled in when it is taken in.
    relay: Option<Vec<u8>>,
}

/// What rule 1 makes of an arriving message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Next in its sender's stream: store it and deliver it.
    New,
    /// Older than what this new server already has from its sender, but missing here:
    /// store it for replays, deliver it to no one (live clients have moved past it).
    Backfill,
    /// Already here, or older than the window of a server that is ready: drop it.
    Repeat,
}

/// What a successful registration gives the connection thread.
pub struct Registration {
    /// The id of this connection, to be passed back with every publish and on close.
    pub conn: u64,
    /// The frames to write before anything from the outbox: `Registered`, then the replay
    /// of history the client has not seen (when resuming).
    pub initial: Vec<Frame>,
    /// The session the client speaks for.
    pub session: u64,
    /// The client's outbox, for its writer thread.
    pub outbox: OutboxReceiver,
}

/// The handle every thread of the server holds.
#[derive(Clone)]
pub struct Hub {
    state: Arc<Mutex<State>>,
    /// Notified when the server becomes ready (see [`Hub::wait_ready`]); used with `state`.
    ready_changed: Arc<Condvar>,
    /// Notified when room may have appeared for a waiting publish (see [`Hub::publish`]):
    /// relays confirmed, peers or clients gone, a client that was behind caught up.
    room: Arc<Condvar>,
    limits: Limits,
    /// The cluster secret, which makes resume tokens checkable on any server
    /// (`auth::resume_token`).
    secret: Option<Secret>,
}

struct LocalClient {
    conn: u64,
    session: u64,
    token: u64,
    /// The sending end of the client's outbox; its writer thread holds the receiver. Dropping
    /// this (by removing the client) makes the writer finish and close the connection.
    outbox_tx: OutboxSender,
    /// A second handle on the client's socket, used only to shut it down when the client is
    /// cut off, so a writer blocked on a full socket wakes up.
    stream: TcpStream,
    /// The arrival number of the last history entry this client has had queued (or skipped
    /// as not meant for it). While its outbox is marked behind, [`Hub::catch_up`] continues
    /// from here.
    last_queued: u64,
    /// The highest `seq` to acknowledge that did not fit into the outbox.
    pending_ack: Option<u64>,
}

struct Stored {
    /// Numbers every stored message in arrival order (1, 2, 3, ...), so a client that is
    /// behind knows where in the window to continue. The window holds consecutive numbers.
    arrival: u64,
    /// The payload bytes stored before this message, ever ([`State::bytes_stored`] then):
    /// the bytes from here to the newest entry are a subtraction away.
    bytes_before: u64,
    session: u64,
    seq: u64,
    size: usize,
    frame: Frame,
    /// Delivered live when it arrived. Backfills (see [`Verdict`]) are not: they are only
    /// for replays, which restore each sender's order.
    live: bool,
}

/// What [`Hub::catch_up`] did for a client that was behind.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// The client has every frame queued; live frames go to its outbox again.
    Done,
    /// The outbox filled again; call again when it has drained.
    Behind,
    /// The window no longer holds what the client missed. It has been removed; the writer
    /// tells it why and closes the connection.
    FellBehind(String),
    /// The connection was replaced or removed meanwhile.
    Gone,
}

struct Outbound {
    index: u64,
    size: usize,
    frame: Frame,
}

struct PeerLink {
    epoch: u64,
    /// Identifies the thread that serves this link, so a thread from an earlier link to the
    /// same peer knows it is no longer wanted.
    link_id: u64,
    /// The highest relay index the peer confirmed.
    acked: u64,
    /// The last relay index when the peer was added. Older messages were acknowledged
    /// without it, and its clients registered after them, so they are never sent to it: a
    /// server that joins late must not flood its new clients with old news.
    start_index: u64,
    /// The sending end of the link's queue, held while a peer-out thread is connected.
    /// Dropped (set to `None`) when the queue overflows: the thread then reconnects and
    /// resumes from the outbound log.
    outbox_tx: Option<OutboxSender>,
}

#[derive(Default)]
struct State {
    /// This server's advertised address, to leave itself out of the peer list.
    addr: String,
    /// Whether a complete peer list has arrived in this incarnation.
    knows_peers: bool,
    /// The peer incarnations that have linked into this server and, when this server asked
    /// for it, sent their whole history.
    synced_from: HashSet<(String, u64)>,
    /// Latched true once every listed peer is in `synced_from` (see [`Hub::wait_ready`]).
    ready: bool,
    /// This incarnation's epoch, 0 until the coordinator assigned one.
    epoch: u64,
    next_id: u64,
    clients: HashMap<String, LocalClient>,
    /// Local sessions, to route acks and to leave a sender out of its own fan-out.
    names_by_session: HashMap<u64, String>,
    history: VecDeque<Stored>,
    history_bytes: usize,
    /// The arrival number of the last stored message.
    arrivals: u64,
    /// Payload bytes ever stored (see [`Stored::bytes_before`]).
    bytes_stored: u64,
    /// The `(session, seq)` of every message in `history`, to tell a repeat from a backfill.
    stored: HashSet<(u64, u64)>,
    /// Rule 1: the highest accepted `seq` of each sender session.
    watermarks: HashMap<u64, u64>,
    outbound: VecDeque<Outbound>,
    outbound_bytes: usize,
    last_index: u64,
    peers: HashMap<String, PeerLink>,
    /// The last relay index received from each peer incarnation, for `PeerWelcome`.
    inbound: HashMap<(String, u64), u64>,
    /// Local messages waiting for their relay to be confirmed by every peer.
    pending_acks: VecDeque<(u64, u64, u64)>, // (index, session, seq)
}

/// Clients cut off under the lock, whose sockets are shut down after it is released.
type Cutoffs = Vec<TcpStream>;

impl Hub {
    /// A hub for the server advertised at `addr`, in a cluster with `secret` (if any).
    pub fn new(addr: String, limits: Limits, secret: Option<Secret>) -> Hub {
        Hub {
            state: Arc::new(Mutex::new(State {
                addr,
                ..State::default()
            })),
            ready_changed: Arc::default(),
            room: Arc::default(),
            limits,
            secret,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic in one connection thread
        // must not take the whole server down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` on the locked state, then, with the lock released, shuts down the
    /// sockets of the clients it cut off. This is where "no socket I/O under the lock" is
    /// enforced for every method that may cut someone off.
    fn with_state<R>(&self, change: impl FnOnce(&mut State, &Limits, &mut Cutoffs) -> R) -> R {
        let mut cutoffs = Cutoffs::new();
        let result = {
            let mut state = self.lock();
            change(&mut state, &self.limits, &mut cutoffs)
        };
        for stream in cutoffs {
            let _ = stream.shutdown(Shutdown::Both);
        }
        result
    }

    /// This incarnation's epoch (0 before the first heartbeat reply).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The names of the registered clients, for heartbeats.
    pub fn client_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().clients.keys().cloned().collect();
        names.sort();
        names
    }

    /// Registers `name`, or returns why not. The registration carries the client's new
    /// outbox, bounded by [`Limits::client_queue`] and [`Limits::client_queue_bytes`].
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
        stream: TcpStream,
        keepalive_ms: u32,
    ) -> Result<Registration, String> {
        let secret = self.secret.as_ref();
        self.with_state(|state, limits, cutoffs| {
            let existing = state.clients.get(name).map(|c| (c.session, c.token));
            let (session, token) = match (&resume, existing) {
                (Some(r), Some((session, token))) if r.session == session && r.token == token => {
                    state.remove_client(name, cutoffs);
                    (session, token)
                }
                (_, Some(_)) => return Err(format!("name {name:?} is already taken")),
                (Some(r), None) => {
                    if state.names_by_session.contains_key(&r.session) {
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
                    let session = crate::net::random_u64();
                    (session, auth::resume_token(secret, session, name))
                }
            };
            if state.clients.len() >= limits.max_clients {
                return Err(format!(
                    "server full ({} clients); try another server",
                    limits.max_clients
                ));
            }
            // A first registration learns where every known sender stands, so it can tell
            // later messages from earlier ones. A resuming client knows that already; it
            // learns how far this server holds its own messages, to send again what is
            // missing here.
            let watermarks = match &resume {
                Some(r) => state
                    .watermarks
                    .get(&r.session)
                    .map(|seq| vec![(r.session, *seq)])
                    .unwrap_or_default(),
                None => state
                    .watermarks
                    .iter()
                    .take(MAX_WATERMARKS)
                    .map(|(s, q)| (*s, *q))
                    .collect(),
            };
            let registered = Message::Registered {
                session,
                token,
                keepalive_ms,
                watermarks,
            };
            let mut initial = vec![Arc::new(registered.encode())];
            if let Some(resume) = &resume {
                initial.extend(state.replay_for(session, &resume.seen));
            }
            state.next_id += 1;
            let conn = state.next_id;
            let (outbox_tx, outbox_rx) = outbox(limits.client_queue, limits.client_queue_bytes);
            state.names_by_session.insert(session, name.to_string());
            state.clients.insert(
                name.to_string(),
                LocalClient {
                    conn,
                    session,
                    token,
                    outbox_tx,
                    stream,
                    // The replay above covers everything stored so far.
                    last_queued: state.arrivals,
                    pending_ack: None,
                },
            );
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
            if state.clients.get(name).is_some_and(|c| c.conn == conn) {
                state.remove_client(name, cutoffs);
                true
            } else {
                false
            }
        });
        // A client that was behind no longer holds the history window.
        self.room.notify_all();
        removed
    }

    /// Takes one message into the server: rules 1 to 4 of the module doc. Waits first until
    /// there is room for it (see [`State::has_room`]), which is how the server slows a
    /// publisher down to what its slowest peer and its slowest reading client can take.
    ///
    /// Returns `false` when the message was refused because its origin is stale (a replaced
    /// client connection, or a peer incarnation that is no longer live), also when it goes
    /// stale while waiting; stopping the server makes every origin stale.
    pub fn publish(&self, origin: Origin, from: &str, session: u64, seq: u64, body: &Body) -> bool {
        // Encode outside the lock: these copies of the payload are the only ones made.
        let deliver: Frame = Arc::new(deliver_frame(from, session, seq, body));
        let relay = match origin {
            Origin::Local { .. } => Some(relay_frame(0, from, session, seq, body)),
            Origin::Peer { .. } | Origin::PeerHistory { .. } => None,
        };
        let arrival = Arrival {
            origin,
            session,
            seq,
            size: body.payload_len(),
            deliver,
            relay,
        };
        let Some(mut state) = self.wait_for_room(&arrival) else {
            return false;
        };
        state.take_in(arrival, &self.limits);
        true
    }

    /// Locks the state once there is room for `arrival` ([`State::has_room`]), or returns
    /// `None` as soon as its origin is stale.
    fn wait_for_room(&self, arrival: &Arrival) -> Option<MutexGuard<'_, State>> {
        let relayed = arrival.relay.is_some();
        let mut state = self.lock();
        loop {
            if !state.is_current(&arrival.origin, arrival.session) {
                return None;
            }
            if state.has_room(relayed, arrival.size, &self.limits) {
                return Some(state);
            }
            // Woken when room may have appeared; the timeout is for the one change nobody
            // announces: a client that is behind going quiet for `stall_timeout`.
            state = self
                .room
                .wait_timeout(state, ROOM_RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Replaces the peer set with the live servers the coordinator listed (this server
    /// excluded). Returns the `(addr, epoch, link_id)` of each new peer, for which the caller
    /// starts a peer-out thread. Peers no longer listed are dropped: their threads see their
    /// queue disconnect and stop, and acks stop waiting for them. When the list is not
    /// `complete` (a coordinator that just restarted), peers are only added: dropping one
    /// that merely has not heartbeated yet would lose what is relayed meanwhile.
    pub fn set_peers(&self, servers: &[ServerInfo], complete: bool) -> Vec<(String, u64, u64)> {
        let started = self.with_state(|state, _, _| {
            let own = state.addr.clone();
            let listed: HashMap<&str, u64> = servers
                .iter()
                .filter(|s| s.alive && s.addr != own)
                .map(|s| (s.addr.as_str(), s.epoch))
                .collect();
            state.peers.retain(|addr, link| {
                let keep = match listed.get(addr.as_str()) {
                    Some(epoch) => *epoch == link.epoch,
                    None => !complete,
                };
                if !keep {
                    log::info!("peer removed addr={addr} epoch={}", link.epoch);
                }
                keep
            });
            let peers = &state.peers;
            state
                .inbound
                .retain(|(addr, epoch), _| peers.get(addr).is_some_and(|p| p.epoch == *epoch));
            let mut started = Vec::new();
            for (addr, epoch) in listed {
                if state.peers.get(addr).is_some_and(|p| p.epoch == epoch) {
                    continue;
                }
                state.next_id += 1;
                let link_id = state.next_id;
                // A new peer is owed only what is published from now on: older messages
                // were acknowledged (or are waiting) on the peers that existed then.
                let start_index = state.last_index;
                state.peers.insert(
                    addr.to_string(),
                    PeerLink {
                        epoch,
                        link_id,
                        acked: start_index,
                        start_index,
                        outbox_tx: None,
                    },
                );
                log::info!("peer added addr={addr} epoch={epoch}");
                started.push((addr.to_string(), epoch, link_id));
            }
            state.advance_acks();
            state.knows_peers |= complete;
            started
        });
        // A peer that left no longer holds the relay window.
        self.room.notify_all();
        self.note_ready(&mut self.lock());
        started
    }

    /// Sets this incarnation's epoch (from a heartbeat reply).
    pub fn set_epoch(&self, epoch: u64) {
        self.lock().epoch = epoch;
    }

    /// Forgets this incarnation after the coordinator fenced it: every client is cut off
    /// (they have been moved elsewhere already), peers and the outbound log are dropped, and
    /// the epoch returns to 0 so the next heartbeat joins as a new server.
    ///
    /// The history window and the watermarks are kept. They hold real messages, stored
    /// once and never altered, and when every other server failed too they may be the only
    /// copy left of what a failed-over client has not seen yet. Keeping them cannot cause a
    /// duplicate: replays and watermarks are per sender and `seq`, like everything else.
    pub fn reset_incarnation(&self) {
        self.with_state(|state, _, cutoffs| {
            let names: Vec<String> = state.clients.keys().cloned().collect();
            for name in names {
                state.remove_client(&name, cutoffs);
            }
            let old = std::mem::take(state);
            *state = State {
                addr: old.addr,
                next_id: old.next_id,
                history: old.history,
                history_bytes: old.history_bytes,
                arrivals: old.arrivals,
                bytes_stored: old.bytes_stored,
                stored: old.stored,
                watermarks: old.watermarks,
                ..State::default()
            };
        });
        self.room.notify_all();
    }

    /// Cuts off every client and peer link: the first step of stopping the server.
    pub fn shut_down(&self) {
        self.reset_incarnation();
    }

    /// Whether the peer-out thread `link_id` should still serve `addr`.
    pub fn peer_wanted(&self, addr: &str, link_id: u64) -> bool {
        self.lock()
            .peers
            .get(addr)
            .is_some_and(|p| p.link_id == link_id)
    }

    /// Attaches a (re)connected peer-out thread: returns its queue and the backlog to write
    /// first, taken under the same lock so that nothing is missed or sent twice. The backlog
    /// is this server's whole history followed by `PeerSynced` when the peer asked for it
    /// (`with_history`), then the outbound frames after `last_index` that the peer has not
    /// received. `None` when the link is no longer wanted.
    pub fn subscribe_peer(
        &self,
        addr: &str,
        link_id: u64,
        last_index: u64,
        with_history: bool,
    ) -> Option<(OutboxReceiver, Vec<Frame>)> {
        let mut state = self.lock();
        let first_kept = state.outbound.front().map(|o| o.index);
        let link = state.peers.get_mut(addr).filter(|p| p.link_id == link_id)?;
        let (outbox_tx, outbox_rx) = outbox(self.limits.peer_queue, self.limits.peer_queue_bytes);
        link.outbox_tx = Some(outbox_tx);
        let last_index = last_index.max(link.start_index);
        if let Some(first) = first_kept
            && first > last_index + 1
        {
            log::warn!(
                "peer behind the outbound log addr={addr} missed={}",
                first - last_index - 1
            );
        }
        let mut backlog = Vec::new();
        if with_history {
            backlog.extend(state.history.iter().map(|s| s.frame.clone()));
            backlog.push(Arc::new(Message::PeerSynced.encode()));
        }
        backlog.extend(
            state
                .outbound
                .iter()
                .filter(|o| o.index > last_index)
                .map(|o| o.frame.clone()),
        );
        Some((outbox_rx, backlog))
    }

    /// Refills the outbox of a client that is behind (see `LocalClient::queue_live`) from
    /// the history window, in arrival order, for as long as it has room. Called by the
    /// client's writer thread whenever it sees the outbox marked behind.
    ///
    /// When the window has already forgotten a message the client had not had, the client
    /// is removed with the reason, for the writer to send: it is too slow to be served from
    /// memory. It then resumes like any failed-over client and reports the loss as a gap.
    pub fn catch_up(&self, name: &str, conn: u64) -> CatchUp {
        let result = self.lock().catch_up(name, conn);
        // The client needs less of the window now (or nothing: it left); a publish
        // waiting for room may go on.
        self.room.notify_all();
        result
    }

    /// Records that the peer behind `link_id` stored every relay up to `index`, and
    /// acknowledges the local messages that are now on every live peer.
    pub fn peer_acked(&self, addr: &str, link_id: u64, index: u64) {
        self.with_state(|state, _, _| {
            if let Some(link) = state.peers.get_mut(addr).filter(|p| p.link_id == link_id) {
                link.acked = link.acked.max(index);
                state.advance_acks();
            }
        });
        self.room.notify_all();
    }

    /// Accepts an incoming link from the peer incarnation `(addr, epoch)` if the coordinator
    /// lists it as live. Returns the last relay index already received from it, and whether
    /// this server wants the peer's history first: only a server that is not ready yet and
    /// has not had it from this peer asks. Without history the peer counts as synced now.
    pub fn accept_peer(&self, addr: &str, epoch: u64) -> Option<(u64, bool)> {
        let mut state = self.lock();
        if !state.is_live_peer(addr, epoch) {
            return None;
        }
        let peer = (addr.to_string(), epoch);
        let want_history = !state.ready && !state.synced_from.contains(&peer);
        if !want_history {
            state.synced_from.insert(peer.clone());
            self.note_ready(&mut state);
        }
        let last_index = state.inbound.get(&peer).copied().unwrap_or(0);
        Some((last_index, want_history))
    }

    /// Records that the peer incarnation `(addr, epoch)` has sent its whole history.
    pub fn peer_synced(&self, addr: &str, epoch: u64) {
        let mut state = self.lock();
        if state.is_live_peer(addr, epoch) {
            state.synced_from.insert((addr.to_string(), epoch));
            self.note_ready(&mut state);
        }
    }

    /// Blocks until the server is ready, or `timeout` passes. Returns whether it is ready.
    ///
    /// Ready means: the coordinator's complete peer list has arrived, and every peer on it
    /// has linked into this server and sent its history. From then on, every message
    /// published anywhere in the cluster reaches this server, and its window holds what the
    /// peers' windows held. A client registered before that could miss messages, so
    /// registration waits for it (a few heartbeat intervals, plus the time to copy the
    /// peers' windows, when a server has just started; never afterwards).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .ready_changed
            .wait_timeout_while(state, timeout, |s| !s.ready)
            .unwrap_or_else(|p| p.into_inner());
        state.ready
    }

    /// Latches `ready` when its conditions hold, and wakes the waiting registrations.
    fn note_ready(&self, state: &mut State) {
        if state.ready || !state.knows_peers {
            return;
        }
        let synced = &state.synced_from;
        if state
            .peers
            .iter()
            .all(|(addr, p)| synced.contains(&(addr.clone(), p.epoch)))
        {
            state.ready = true;
            log::info!(
                "server ready addr={} peers={}",
                state.addr,
                state.peers.len()
            );
            self.ready_changed.notify_all();
        }
    }
}

impl LocalClient {
    /// Queues a live frame that arrived as number `arrival`. When the outbox is full, the
    /// client is marked behind instead: the hub stops queuing live frames for it, and its
    /// writer fetches what it missed from the history window ([`Hub::catch_up`]). So a
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

    /// Queues an acknowledgement, or keeps it for [`Hub::catch_up`] when the outbox is
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

impl State {
    fn is_live_peer(&self, addr: &str, epoch: u64) -> bool {
        self.peers.get(addr).is_some_and(|p| p.epoch == epoch)
    }

    /// Whether a message from `origin` (speaking for `session`) is still welcome: its client
    /// connection has not been replaced, its peer incarnation is still live.
    fn is_current(&self, origin: &Origin, session: u64) -> bool {
        match origin {
            Origin::Local { conn } => self
                .names_by_session
                .get(&session)
                .and_then(|name| self.clients.get(name))
                .is_some_and(|c| c.conn == *conn),
            Origin::Peer { addr, epoch, .. } | Origin::PeerHistory { addr, epoch } => {
                self.is_live_peer(addr, *epoch)
            }
        }
    }

    /// Whether a message of `size` payload bytes may come in now. Two bounds, each the
    /// reason a publish waits (backpressure, see `docs/architecture.md`):
    /// - *The relay window*, for a local message (`relayed`): unconfirmed relays stay within
    ///   [`Limits::relay_window_bytes`] and [`Limits::peer_queue`] messages, so the outbound
    ///   log, and every peer's queue, stay bounded while a peer is slow.
    /// - *The history window*: storing the message must not push out an entry that a client
    ///   still reading needs ([`State::needed`]). So a reader that is slower than a
    ///   publisher, a file's receiver on a slow disk say, slows the publisher down instead
    ///   of losing messages. A client that stopped reading does not hold anyone back.
    ///
    /// An empty window takes any one message, so a message larger than a bound still passes.
    fn has_room(&self, relayed: bool, size: usize, limits: &Limits) -> bool {
        let relay_room = !relayed
            || self.outbound.is_empty()
            || (self.outbound_bytes + size <= limits.relay_window_bytes
                && self.outbound.len() < limits.peer_queue);
        if !relay_room {
            return false; // no need to look through the clients
        }
        let (messages, bytes) = self.needed(limits.stall_timeout);
        messages == 0
            || (messages < limits.history_messages && bytes + size <= limits.history_bytes)
    }

    /// The newest entries of the history window that some client still needs: from the
    /// oldest one a client that is behind has not had queued. Clients that took no frame for
    /// `stall` are left out: they stopped reading, and must not hold everyone else back.
    /// Returns `(messages, payload bytes)`.
    fn needed(&self, stall: Duration) -> (usize, usize) {
        let Some(front) = self.history.front() else {
            return (0, 0);
        };
        let oldest_needed = self
            .clients
            .values()
            .filter(|c| c.outbox_tx.is_behind() && c.outbox_tx.idle_for() < stall)
            .map(|c| c.last_queued + 1)
            // Below the window it is lost already (`catch_up` will say so).
            .filter(|&arrival| arrival >= front.arrival && arrival <= self.arrivals)
            .min();
        let Some(first) = oldest_needed else {
            return (0, 0);
        };
        // Arrival numbers in the window are consecutive, so the entry is found by index.
        let entry = &self.history[(first - front.arrival) as usize];
        debug_assert_eq!(entry.arrival, first);
        let messages = (self.arrivals - first + 1) as usize;
        (messages, (self.bytes_stored - entry.bytes_before) as usize)
    }

    /// [`Hub::catch_up`], under the lock.
    fn catch_up(&mut self, name: &str, conn: u64) -> CatchUp {
        let Some(client) = self.clients.get_mut(name).filter(|c| c.conn == conn) else {
            return CatchUp::Gone;
        };
        if let Some(seq) = client.pending_ack {
            if !client.outbox_tx.try_push(ack_frame(seq)) {
                return CatchUp::Behind;
            }
            client.pending_ack = None;
        }
        let oldest = self.history.front().map_or(u64::MAX, |s| s.arrival);
        if oldest > client.last_queued + 1 && client.last_queued < self.arrivals {
            let missed = oldest - client.last_queued - 1;
            let reason = format!(
                "too slow: fell {missed} messages behind the history window of {}",
                self.addr
            );
            log::warn!("slow consumer cut off name={name} reason=\"{reason}\"");
            // No socket to shut down here: the writer tells the client why, then closes.
            self.remove_client(name, &mut Cutoffs::new());
            return CatchUp::FellBehind(reason);
        }
        let start = self
            .history
            .partition_point(|s| s.arrival <= client.last_queued);
        for stored in self.history.range(start..) {
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

    /// Takes a message in, once there is room for it: rules 1 to 4 of the module doc.
    fn take_in(&mut self, arrival: Arrival, limits: &Limits) {
        let Arrival {
            origin,
            session,
            seq,
            size,
            deliver,
            relay,
        } = arrival;
        if let Origin::Peer { addr, epoch, index } = &origin {
            self.inbound.insert((addr.clone(), *epoch), *index);
        }
        match self.accept(session, seq) {
            Verdict::New => {
                self.store(session, seq, size, deliver.clone(), true, limits);
                self.fan_out(session, &deliver);
            }
            Verdict::Backfill => self.store(session, seq, size, deliver, false, limits),
            Verdict::Repeat => {}
        }
        if let Some(mut relay) = relay {
            self.last_index += 1;
            let index = self.last_index;
            relay[RELAY_INDEX_BYTES].copy_from_slice(&index.to_be_bytes());
            self.log_outbound(index, size, Arc::new(relay), limits);
            self.pending_acks.push_back((index, session, seq));
            self.advance_acks();
        }
    }

    /// Rule 1: a message is new when it is above its sender's watermark. Below it, a server
    /// that is not ready yet keeps what it lacks as a backfill (history from a peer); a
    /// ready server has nothing to learn from old messages.
    fn accept(&mut self, session: u64, seq: u64) -> Verdict {
        if self.stored.contains(&(session, seq)) {
            return Verdict::Repeat;
        }
        match self.watermarks.get(&session) {
            Some(&last) if seq <= last => {
                if self.ready {
                    Verdict::Repeat
                } else {
                    Verdict::Backfill
                }
            }
            Some(&last) => {
                if seq > last + 1 && self.ready {
                    // Receivers see the jump and report a gap: never silent loss.
                    log::warn!("gap in sender stream session={session} from={last} to={seq}");
                }
                self.watermarks.insert(session, seq);
                Verdict::New
            }
            None => {
                self.watermarks.insert(session, seq);
                Verdict::New
            }
        }
    }

    /// Rule 2: keep the message in the bounded history window.
    fn store(
        &mut self,
        session: u64,
        seq: u64,
        size: usize,
        frame: Frame,
        live: bool,
        limits: &Limits,
    ) {
        self.arrivals += 1;
        self.history.push_back(Stored {
            arrival: self.arrivals,
            bytes_before: self.bytes_stored,
            session,
            seq,
            size,
            frame,
            live,
        });
        self.stored.insert((session, seq));
        self.history_bytes += size;
        self.bytes_stored += size as u64;
        // The bound: forget the oldest until both limits hold again. A client that needs a
        // forgotten message gets a `gap` event with the count instead.
        while self.history.len() > limits.history_messages
            || (self.history_bytes > limits.history_bytes && self.history.len() > 1)
        {
            let old = self.history.pop_front().expect("history is not empty");
            self.stored.remove(&(old.session, old.seq));
            self.history_bytes -= old.size;
        }
        // Senders whose messages have all left the window need no watermark beyond a bound:
        // keep the map from growing with every session that ever spoke.
        if self.watermarks.len() > MAX_WATERMARKS {
            let live: std::collections::HashSet<u64> =
                self.history.iter().map(|s| s.session).collect();
            self.watermarks.retain(|session, _| live.contains(session));
        }
    }

    /// Rule 3: keep a local message in the bounded outbound log and queue it for every peer.
    fn log_outbound(&mut self, index: u64, size: usize, frame: Frame, limits: &Limits) {
        for (addr, link) in &mut self.peers {
            let Some(outbox_tx) = &link.outbox_tx else {
                continue;
            };
            if !outbox_tx.try_push(frame.clone()) {
                // The bound on a peer's queue (or its thread has gone): restart the link; the
                // thread reconnects and resumes from this log, so the peer misses nothing
                // still in the log.
                log::warn!("peer queue full or link down, restarting link addr={addr}");
                link.outbox_tx = None;
            }
        }
        self.outbound.push_back(Outbound { index, size, frame });
        self.outbound_bytes += size;
        while self.outbound.len() > limits.history_messages
            || (self.outbound_bytes > limits.history_bytes && self.outbound.len() > 1)
        {
            let old = self
                .outbound
                .pop_front()
                .expect("outbound log is not empty");
            self.outbound_bytes -= old.size;
        }
    }

    /// Fan-out: the shared frame (the last one stored) to every local client except its
    /// sender.
    fn fan_out(&mut self, session: u64, frame: &Frame) {
        let arrival = self.arrivals;
        for (name, client) in &mut self.clients {
            if client.session != session {
                client.queue_live(name, frame, arrival);
            }
        }
    }

    /// Rule 4: acknowledge every local message whose relay every live peer has confirmed.
    fn advance_acks(&mut self) {
        let confirmed = self
            .peers
            .values()
            .map(|p| p.acked)
            .min()
            .unwrap_or(self.last_index);
        let mut highest: HashMap<u64, u64> = HashMap::new();
        while let Some(&(index, session, seq)) = self.pending_acks.front() {
            if index > confirmed {
                break;
            }
            self.pending_acks.pop_front();
            let entry = highest.entry(session).or_default();
            *entry = (*entry).max(seq);
        }
        // A relay every peer has confirmed is never sent again: a link that restarts resumes
        // after what its peer has received, which is at least what it confirmed. So the
        // outbound log holds only unconfirmed relays, which the relay window bounds.
        while let Some(old) = self.outbound.front()
            && old.index <= confirmed
        {
            self.outbound_bytes -= old.size;
            self.outbound.pop_front();
        }
        for (session, seq) in highest {
            let Some(name) = self.names_by_session.get(&session) else {
                continue; // the sender left; it resends on its next server if it needs to
            };
            if let Some(client) = self.clients.get_mut(name) {
                client.queue_ack(name, seq);
            }
        }
    }

    /// The history entries a resuming client has not seen, each sender's in `seq` order.
    /// Its own messages are left out: it never receives those.
    ///
    /// Arrival order is each sender's order except for backfills (see [`Verdict`]), so each
    /// sender's entries are sorted by `seq`, and put back into the slots that sender had in
    /// arrival order: the interleaving of different senders stays as it arrived.
    fn replay_for(&self, own_session: u64, seen: &[(u64, u64)]) -> Vec<Frame> {
        let seen: HashMap<u64, u64> = seen.iter().copied().collect();
        let unseen: Vec<&Stored> = self
            .history
            .iter()
            .filter(|s| s.session != own_session)
            .filter(|s| seen.get(&s.session).is_none_or(|&last| s.seq > last))
            .collect();
        let mut by_sender: HashMap<u64, VecDeque<&Stored>> = HashMap::new();
        for stored in &unseen {
            by_sender
                .entry(stored.session)
                .or_default()
                .push_back(stored);
        }
        for entries in by_sender.values_mut() {
            entries.make_contiguous().sort_by_key(|s| s.seq);
        }
        unseen
            .iter()
            .filter_map(|slot| by_sender.get_mut(&slot.session)?.pop_front())
            .map(|s| s.frame.clone())
            .collect()
    }

    fn remove_client(&mut self, name: &str, cutoffs: &mut Cutoffs) {
        if let Some(client) = self.clients.remove(name) {
            self.names_by_session.remove(&client.session);
            cutoffs.push(client.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_clients: 10,
            history_messages: 100,
            history_bytes: 1 << 20,
            client_queue: 10,
            client_queue_bytes: 1 << 20,
            peer_queue: 10,
            peer_queue_bytes: 1 << 20,
            relay_window_bytes: 1 << 20,
            stall_timeout: Duration::from_secs(60),
        }
    }

    /// Feeds `(session, seq)` through rule 1 and stores what it keeps; returns the verdicts.
    fn arrive(state: &mut State, messages: &[(u64, u64)]) -> Vec<Verdict> {
        messages
            .iter()
            .map(|&(session, seq)| {
                let verdict = state.accept(session, seq);
                if verdict != Verdict::Repeat {
                    let body = Body::Text {
                        number: seq,
                        text: "x".into(),
                    };
                    let frame = Arc::new(deliver_frame("s", session, seq, &body));
                    let live = verdict == Verdict::New;
                    state.store(session, seq, 1, frame, live, &limits());
                }
                verdict
            })
            .collect()
    }

    /// The `(session, seq)` of each replayed frame, decoded.
    fn replayed(state: &State, own: u64, seen: &[(u64, u64)]) -> Vec<(u64, u64)> {
        state
            .replay_for(own, seen)
            .iter()
            .map(|frame| match Message::decode(&frame[4..]) {
                Ok(Message::Deliver { session, seq, .. }) => (session, seq),
                other => panic!("replay holds a non-Deliver frame: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_ready_server_drops_repeats_and_old_messages() {
        let mut state = State {
            ready: true,
            ..State::default()
        };
        let verdicts = arrive(&mut state, &[(1, 1), (1, 2), (1, 2), (1, 1), (2, 1)]);
        use Verdict::*;
        assert_eq!(verdicts, [New, New, Repeat, Repeat, New]);
    }

    #[test]
    fn a_new_server_backfills_older_history_without_delivering_it() {
        let mut state = State::default();
        // One peer's window starts at seq 5, another's at 1; the later one arrives second.
        let verdicts = arrive(
            &mut state,
            &[(1, 5), (1, 6), (1, 1), (1, 5), (1, 2), (1, 7)],
        );
        use Verdict::*;
        assert_eq!(verdicts, [New, New, Backfill, Repeat, Backfill, New]);
    }

    #[test]
    fn replay_puts_each_sender_back_in_seq_order_and_skips_what_was_seen() {
        let mut state = State::default();
        arrive(
            &mut state,
            &[(1, 3), (2, 1), (1, 4), (1, 1), (2, 2), (1, 2), (9, 1)],
        );
        // Client of session 9 has seen sender 1 up to 1 and nothing of sender 2.
        assert_eq!(
            replayed(&state, 9, &[(1, 1)]),
            [(1, 2), (2, 1), (1, 3), (2, 2), (1, 4)]
        );
    }
}
