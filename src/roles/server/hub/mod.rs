//! The hub: a server's shared state and the one place where messages are ordered,
//! deduplicated, stored, fanned out and acknowledged. This file owns the handle ([`Hub`], a
//! cloneable `Arc<Mutex<State>>`) and the way in for every message ([`Hub::publish`]: room
//! asked of every part in [`State::has_room`], then taken in by [`State::take_in`]). The
//! parts of [`State`] live beside it: `history.rs` (rules 1 and 2), `relay.rs` (rules 3 and
//! 4), `clients.rs` and `delivery.rs` (the local clients, what each is sent), `standby.rs`
//! (where each client goes should this server be gone), `locked.rs` (the lock's guard) and
//! `incarnation.rs` (epoch, readiness, the fence).
//!
//! **Who calls it.** Every server thread: connection threads (register, publish, relays),
//! writers (catch-up), peer links (subscribe, acks) and `heartbeat` (peers, epoch). It starts
//! no thread. Methods lock, change, copy out and unlock; sends are `try_push`es that never
//! block, socket I/O happens after the guard is dropped, and the one wait, for room, is on
//! a condition variable. A fence ([`Hub::reset_incarnation`]) or a stop ([`Hub::shut_down`])
//! cuts every client and peer off at once. The rules and why they hold: `docs/guarantees.md`,
//! section 1; the lock rule: `docs/thread-per-connection.md`, "Tempting wrong version 1".

mod clients;
mod delivery;
mod history;
mod incarnation;
mod locked;
mod relay;
mod standby;

use std::collections::HashSet;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::write::{CatchUp, CatchUpSource, Frame, Pen, Pens, Pool};
use crate::auth::Secret;
use crate::protocol::{Body, deliver_frames, relay_frame};
use clients::Clients;
use history::{History, Verdict};
use locked::Locked;
use relay::Relay;
use standby::Standbys;

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
    /// Relayed by the peer incarnation `(addr, epoch)`; `index` is the peer's relay index
    /// of the last message of the batch (they follow each other).
    Peer {
        /// The peer's advertised address.
        addr: String,
        /// The peer's incarnation.
        epoch: u64,
        /// The peer's relay index for the (last) message.
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

impl Origin {
    /// For relays: the relay index of the last message taken in when the first `taken` of
    /// a batch of `len` were, the batch's relays following each other up to `index`.
    /// `None` for a message that is no relay.
    pub fn relay_index_taken(&self, len: usize, taken: usize) -> Option<u64> {
        match self {
            Origin::Peer { index, .. } => Some(index - (len - taken) as u64),
            Origin::Local { .. } | Origin::PeerHistory { .. } => None,
        }
    }
}

/// A message on its way into the hub, encoded once before the lock is taken. Where it came
/// from is the batch's (`Hub::publish`'s `origin`), the same for every message of it.
struct Arrival {
    session: u64,
    seq: u64,
    /// Its payload bytes, what the windows count.
    size: usize,
    /// The `Deliver` frame every recipient's outbox and the history window share.
    deliver: Frame,
    /// For a local message, its `Relay` frame, whose index is filled in when it is taken in.
    relay: Option<Vec<u8>>,
}

/// What a successful registration gives the connection thread.
pub struct Registration {
    /// The id of this connection, to be passed back with every publish and on close.
    pub conn: u64,
    /// The frames to write before anything from the outbox: `Registered`, then the replay
    /// of history the client has not seen (when resuming), then its `Standby`.
    pub initial: Vec<Frame>,
    /// How many of `initial` are replayed messages.
    pub replayed: usize,
    /// The session the client speaks for.
    pub session: u64,
    /// The client's pen, taken as it registered: the connection thread writes `initial`
    /// with it, then puts it down. `Some` until then.
    pub pen: Option<Pen>,
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
    /// Where a pen taken under the lock goes when the thread that took it does not write
    /// for it itself: the pool (see [`Locked`]).
    pool: Pool,
    /// The server's counters (`metrics.rs`). Counted after the lock is let go where the
    /// count is known by then: a publish adds its deliveries once, for the whole batch.
    metrics: Arc<Metrics>,
}

/// Everything behind the hub's lock.
#[derive(Default)]
struct State {
    /// This server's advertised address, to leave itself out of the peer list.
    addr: String,
    /// Whether a complete peer list has arrived in this incarnation.
    knows_peers: bool,
    /// The listed peer incarnations that have linked into this server and sent their whole
    /// history (each is asked once, see [`Hub::accept_peer`]).
    synced_from: HashSet<(String, u64)>,
    /// Latched true once every listed peer is in `synced_from` (see [`Hub::wait_ready`]).
    ready: bool,
    /// This incarnation's epoch, 0 until the coordinator assigned one.
    epoch: u64,
    /// The last id given to a client connection or a peer link.
    next_id: u64,
    /// The pens taken under the lock so far: clients with frames queued and nobody writing
    /// them. Empty whenever the lock is free (see [`Locked`]).
    taken: Vec<Pen>,
    /// The local clients (`clients.rs`, `delivery.rs`).
    clients: Clients,
    /// Rules 1 and 2 (`history.rs`); kept across a fence.
    history: History,
    /// Rules 3 and 4 and the peer links (`relay.rs`).
    relay: Relay,
    /// The servers dealt to the clients as standbys (`standby.rs`).
    standbys: Standbys,
}

/// What a scrape of the metrics reads from the hub ([`Hub::gauges`]).
pub struct Gauges {
    /// Clients registered.
    pub clients: usize,
    /// Payload bytes in the history window.
    pub history_bytes: usize,
    /// Live peers with a connected link.
    pub peer_links_up: usize,
}

/// Clients cut off under the lock, whose sockets are shut down after it is released.
type Cutoffs = Vec<Arc<TcpStream>>;

impl Hub {
    /// A hub for the server advertised at `addr`, in a cluster with `secret` (if any). It
    /// hands a [`Pen`] to `pool` whenever a client with no writer thread has
    /// something to be written that the calling thread does not write itself.
    /// Counts in `metrics`.
    pub fn new(
        addr: String,
        limits: Limits,
        secret: Option<Secret>,
        pool: Pool,
        metrics: Arc<Metrics>,
    ) -> Hub {
        Hub {
            state: Arc::new(Mutex::new(State {
                addr,
                ..State::default()
            })),
            ready_changed: Arc::default(),
            room: Arc::default(),
            limits,
            secret,
            pool,
            metrics,
        }
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

    /// Takes messages into the server: rules 1 to 4 (`docs/guarantees.md`), for each of
    /// `messages` (`(seq, body)`, in the order sent) from `from`, speaking for `session`.
    /// A publisher's connection thread passes every publish it has read (one read brings
    /// hundreds when a client sends back to back); a peer link passes the relays of one
    /// sender session it has read (`peers.rs`, `Relays`), or one message of a peer's
    /// history. Waits first, for each message, until there is room for it (see
    /// [`State::has_room`]), which is how the server slows a publisher down to what its
    /// slowest peer and its slowest reading client can take.
    ///
    /// **Why a batch.** The messages are encoded into one buffer, outside the lock, and
    /// taken in under one hold of the lock. Messages that follow each other in the history
    /// window and in the buffer reach each recipient's outbox as one run ([`Run`]): one
    /// queue operation and, later, one copy into the recipient's send, for the run instead
    /// of for each message. The sender gets one ack for the lot. On chat, where every client
    /// publishes and the lock is shared by all of them, that is most of the difference
    /// (`docs/benchmarks.md`).
    ///
    /// The pens taken for the recipients (and for acks made due) are added to `pens`: the
    /// calling thread writes for them ([`Pens::write_now`]) once it has taken in everything
    /// it has read, so a burst of messages goes out in one send per client. It writes for
    /// those it already holds before it waits for room here, since their clients may be
    /// what the room waits for.
    ///
    /// Returns `false` when a message was refused because its origin is stale (a replaced
    /// client connection, or a peer incarnation that is no longer live), also when it goes
    /// stale while waiting; stopping the server makes every origin stale. What was taken in
    /// before that stays taken in, and delivered.
    pub fn publish(
        &self,
        origin: Origin,
        from: &str,
        session: u64,
        messages: &[(u64, Body)],
        pens: &mut Pens,
    ) -> bool {
        let published = self.publish_until(origin, from, session, messages, pens, None);
        published != Published::Stale
    }

    /// [`Hub::publish`] that gives up waiting for room at `until`, if given: it then returns
    /// [`Published::Paused`] with how many of `messages` it took in, and the caller passes
    /// the rest again. A peer link uses it to answer its peer while a slow reader here
    /// holds its relays back (`peers.rs`): a link that says nothing for long is taken for
    /// a cut.
    pub fn publish_until(
        &self,
        origin: Origin,
        from: &str,
        session: u64,
        messages: &[(u64, Body)],
        pens: &mut Pens,
        until: Option<Instant>,
    ) -> Published {
        let arrivals = encode(&origin, from, session, messages);
        let mut state = self.lock();
        let mut run = Run::default();
        let mut published = Published::All;
        let mut taken_in = 0;
        for arrival in arrivals {
            state = match self.wait_for_room(state, &origin, &arrival, &mut run, pens, until) {
                Room::Made(state) => state,
                Room::Stale(state) => {
                    published = Published::Stale;
                    state
                }
                Room::NotYet(state) => {
                    published = Published::Paused(taken_in);
                    state
                }
            };
            if published != Published::All {
                break;
            }
            state.take_in(arrival, &self.limits, &mut run);
            taken_in += 1;
        }
        if let (Published::All | Published::Paused(1..), Origin::Peer { addr, epoch, .. }) =
            (published, &origin)
            && let Some(last) = origin.relay_index_taken(messages.len(), taken_in)
        {
            state.relay.note_received(addr, *epoch, last);
        }
        state.settle(&mut run);
        pens.add(state.taken.drain(..));
        drop(state);
        let refused = match published {
            Published::Stale => messages.len() - taken_in,
            Published::All | Published::Paused(_) => 0,
        };
        self.count_publish(&origin, taken_in, refused, run.delivered);
        published
    }

    /// Counts, with the lock let go, what one [`Hub::publish`] did: `taken_in` messages from
    /// `origin`, `refused` more from a stale one, and `delivered` handed to local clients.
    fn count_publish(&self, origin: &Origin, taken_in: usize, refused: usize, delivered: u64) {
        let m = &*self.metrics;
        match origin {
            Origin::Local { .. } => {
                Metrics::add(&m.publishes, taken_in as u64);
                if refused > 0 {
                    Metrics::add(&m.publishes_refused, refused as u64);
                }
            }
            Origin::Peer { .. } => Metrics::add(&m.relays_in, taken_in as u64),
            Origin::PeerHistory { .. } => {}
        }
        if delivered > 0 {
            Metrics::add(&m.deliveries_out, delivered);
        }
    }

    /// The gauges of the metrics, read under one short hold of the lock: a count of the
    /// peers is all that takes time, and a server has a handful.
    pub fn gauges(&self) -> Gauges {
        let state = self.lock();
        Gauges {
            clients: state.clients.len(),
            history_bytes: state.history.window_bytes(),
            peer_links_up: state.relay.links_up(),
        }
    }

    /// Returns the lock once there is room for `arrival` ([`State::has_room`]), or as soon
    /// as its `origin` is stale, or once `until` has passed. Before it lets the lock go to wait, it settles what
    /// the messages taken in so far owe (`run` fanned out, acks queued) and writes for the
    /// caller's `pens`.
    fn wait_for_room<'a>(
        &'a self,
        mut state: Locked<'a>,
        origin: &Origin,
        arrival: &Arrival,
        run: &mut Run,
        pens: &mut Pens,
        until: Option<Instant>,
    ) -> Room<'a> {
        let relayed = arrival.relay.is_some();
        loop {
            if !state.is_current(origin, arrival.session) {
                return Room::Stale(state);
            }
            if state.has_room(relayed, arrival.size, &self.limits) {
                return Room::Made(state);
            }
            if until.is_some_and(|until| Instant::now() >= until) {
                return Room::NotYet(state);
            }
            state.settle(run);
            pens.add(state.taken.drain(..));
            if !pens.is_empty() {
                drop(state);
                pens.write_now();
                state = self.lock();
                continue;
            }
            // Woken when room may have appeared; the timeout is for the one change nobody
            // announces: a client that is behind going quiet for `stall_timeout`.
            let recheck = until.map_or(ROOM_RECHECK, |until| {
                ROOM_RECHECK.min(until.saturating_duration_since(Instant::now()))
            });
            let guard = self
                .room
                .wait_timeout(state.into_guard(), recheck)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state = self.locked(guard);
        }
    }
}

/// What [`Hub::publish_until`] did with the messages it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Took every one in.
    All,
    /// Took in this many, the first ones, and then its time was up while it waited for
    /// room: the caller passes the rest again.
    Paused(usize),
    /// Refused the rest because their origin is stale (see [`Hub::publish`]).
    Stale,
}

/// How a wait for room ended ([`Hub::wait_for_room`]); each holds the lock again.
enum Room<'a> {
    /// There is room now.
    Made(Locked<'a>),
    /// The origin is stale: the message is refused.
    Stale(Locked<'a>),
    /// Still no room, and the caller's time is up.
    NotYet(Locked<'a>),
}

/// `messages` as they enter the hub: each one's `Deliver` frame, all in one buffer, and,
/// for a local message, its `Relay` frame (a peer link relays peers' messages to nobody).
fn encode(origin: &Origin, from: &str, session: u64, messages: &[(u64, Body)]) -> Vec<Arrival> {
    // Outside the lock: these copies of the payloads are the only ones made.
    let (bytes, ends) = deliver_frames(from, session, messages);
    let bytes = Arc::new(bytes);
    let starts = std::iter::once(0).chain(ends.iter().copied());
    messages
        .iter()
        .zip(starts.zip(ends.iter().copied()))
        .map(|((seq, body), (start, end))| Arrival {
            session,
            seq: *seq,
            size: body.payload_len(),
            deliver: Frame::run(&bytes, start..end),
            relay: match origin {
                Origin::Local { .. } => Some(relay_frame(0, from, session, *seq, body)),
                Origin::Peer { .. } | Origin::PeerHistory { .. } => None,
            },
        })
        .collect()
}

/// Messages taken in but not yet fanned out: consecutive in the history window, from one
/// sender, and back to back in one buffer, so that each recipient can be given them as
/// one [`Frame`]. Fanned out when the next message does not follow on, and whenever the
/// hub's lock is let go ([`State::settle`]): a message is in every outbox it goes to
/// before anyone else can look at the state.
#[derive(Default)]
struct Run {
    /// The sender's session, the frames, and the arrival number of the last of them.
    pending: Option<(u64, Frame, u64)>,
    /// How many messages `pending` holds.
    messages: u64,
    /// Messages handed to recipients' outboxes so far: each run's messages times the
    /// clients that took it, for the metrics.
    delivered: u64,
}

impl Run {
    /// Adds the message stored as `arrival` to the run, if it follows on from it; gives it
    /// back otherwise.
    fn extend(&mut self, session: u64, frame: &Frame, arrival: u64) -> bool {
        let Some((run_session, run_frame, last)) = &mut self.pending else {
            return false;
        };
        let follows = *run_session == session && *last + 1 == arrival;
        match run_frame.joined(frame).filter(|_| follows) {
            Some(joined) => {
                *run_frame = joined;
                *last = arrival;
                self.messages += 1;
                true
            }
            None => false,
        }
    }
}

impl State {
    /// Whether a message from `origin` (speaking for `session`) is still welcome: its client
    /// connection has not been replaced, its peer incarnation is still live.
    fn is_current(&self, origin: &Origin, session: u64) -> bool {
        match origin {
            Origin::Local { conn } => self.clients.is_current(session, *conn),
            Origin::Peer { addr, epoch, .. } | Origin::PeerHistory { addr, epoch } => {
                self.relay.is_live_peer(addr, *epoch)
            }
        }
    }

    /// Whether a message of `size` payload bytes may come in now. Two bounds, each the
    /// reason a publish waits (backpressure, see `docs/architecture.md`):
    /// - *The relay window*, for a local message (`relayed`): unconfirmed relays stay within
    ///   [`Limits::relay_window_bytes`] and [`Limits::peer_queue`] messages, so the outbound
    ///   log, and every peer's queue, stay bounded while a peer is slow ([`Relay::has_room`]).
    /// - *The history window*: storing the message must not push out an entry that a client
    ///   still reading needs ([`History::has_room`]). So a reader that is slower than a
    ///   publisher, a file's receiver on a slow disk say, slows the publisher down instead
    ///   of losing messages. A client that stopped reading does not hold anyone back
    ///   ([`Clients::reading_behind`]).
    ///
    /// An empty window takes any one message, so a message larger than a bound still passes.
    fn has_room(&self, relayed: bool, size: usize, limits: &Limits) -> bool {
        if relayed && !self.relay.has_room(size, limits) {
            return false; // no need to look through the clients
        }
        let reading = self.clients.reading_behind(limits.stall_timeout);
        self.history.has_room(reading, size, limits)
    }

    /// Takes a message in, once there is room for it: rules 1 to 4 (`docs/guarantees.md`).
    /// A new message joins `run`, to be fanned out with the ones around it; the acks it
    /// makes due wait for [`State::settle`].
    fn take_in(&mut self, arrival: Arrival, limits: &Limits, run: &mut Run) {
        let Arrival {
            session,
            seq,
            size,
            deliver,
            relay,
        } = arrival;
        match self.history.accept(session, seq, self.ready) {
            Verdict::New => {
                self.history
                    .store(session, seq, size, deliver.clone(), true, limits);
                let arrival = self.history.last_arrival();
                if !run.extend(session, &deliver, arrival) {
                    self.fan_out(run);
                    run.pending = Some((session, deliver, arrival));
                    run.messages = 1;
                }
            }
            Verdict::Backfill => self
                .history
                .store(session, seq, size, deliver, false, limits),
            Verdict::Repeat => {}
        }
        if let Some(relay) = relay {
            self.relay.relay_local(relay, session, seq, size, limits);
        }
    }

    /// Puts the messages of `run` in the outbox of every local client but their sender.
    fn fan_out(&mut self, run: &mut Run) {
        if let Some((session, frames, last)) = run.pending.take() {
            let recipients = self
                .clients
                .fan_out(session, &frames, last, &mut self.taken);
            run.delivered += run.messages * recipients;
        }
    }

    /// Settles what the messages taken in so far owe, before the lock is let go: `run`
    /// fanned out, and the acks that became due queued.
    fn settle(&mut self, run: &mut Run) {
        self.fan_out(run);
        self.advance_acks();
    }

    /// Rule 4: acknowledges to their senders the local messages whose relay every live peer
    /// has now confirmed ([`Relay::advance_acks`]).
    fn advance_acks(&mut self) {
        let confirmed = self.relay.advance_acks();
        self.clients.queue_acks(confirmed, &mut self.taken);
    }
}
