//! Rules 3 and 4 of the hub: the outbound log that relays every local message, repeats
//! included, to every peer in relay-index order ([`Relay::relay_local`]), and the acks that
//! wait until every live peer has confirmed a message ([`Relay::advance_acks`]); with the
//! peer links' bookkeeping (which peers are live, their queues, what each confirmed).
//!
//! **Who runs it.** No thread of its own: [`Relay`] is a part of the hub's state, run under
//! its lock by whichever thread called the hub (a publishing `conn-<peer>`, `heartbeat`,
//! `peer-<addr>`, `acks-<addr>`). Each peer link has a bounded queue
//! ([`PeerLink::outbox_tx`]) whose receiving end its `peer-<addr>` thread holds.
//!
//! **Failures and stopping.** A full queue (a dead or stuck link) is dropped, and the link
//! resumes from the outbound log; a peer the coordinator no longer lists is dropped, and
//! acks stop waiting for it. A fence or a stop drops the whole [`Relay`]
//! ([`Hub::reset_incarnation`](super::Hub::reset_incarnation)): every queue disconnects and
//! the links end. Why the rules hold: `docs/guarantees.md`, section 1.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Frame, Hub, Limits};
use crate::protocol::{Message, RELAY_INDEX_BYTES, Refusal, ServerInfo};
use crate::roles::server::write::{OutboxReceiver, OutboxSender, Pens, outbox};

/// A local message in the outbound log, until every peer has confirmed it.
struct Outbound {
    index: u64,
    /// Its payload bytes, what the relay window counts.
    size: usize,
    /// Its `Relay` frame, shared with the peers' queues.
    frame: Frame,
}

/// A live peer incarnation and the link that relays to it.
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
    /// When the peer last answered on this link (its `PeerWelcome` or a `PeerAck`, which it
    /// sends for every keepalive too), or when it was added: a peer not heard from for long
    /// is cut off from this server, which says so in its heartbeats.
    heard: Instant,
}

/// Rules 3 and 4, and the peer links. Everything here belongs to one incarnation: a fence
/// drops it whole.
#[derive(Default)]
pub(super) struct Relay {
    /// Rule 3: local messages relayed and not yet confirmed by every peer, in index order.
    outbound: VecDeque<Outbound>,
    /// The payload bytes in `outbound`.
    outbound_bytes: usize,
    /// The relay index of the last local message.
    last_index: u64,
    /// The live peers, by advertised address.
    peers: HashMap<String, PeerLink>,
    /// The last relay index received from each peer incarnation, for `PeerWelcome`.
    inbound: HashMap<(String, u64), u64>,
    /// Local messages waiting for their relay to be confirmed by every peer.
    pending_acks: VecDeque<(u64, u64, u64)>, // (index, session, seq)
    /// The latest peer incarnations that a complete list no longer held (declared dead),
    /// at most [`REMOVED_KEPT`]: told so when they try to link in, they know they were
    /// fenced even if the coordinator cannot tell them.
    removed: VecDeque<(String, u64)>,
}

/// Removed peer incarnations remembered; beyond it the oldest is forgotten. That costs it a
/// plainer refusal and, should a restarted coordinator list it again, being taken back as
/// it is (see `set_peers`): 64 other peers would have to leave first.
const REMOVED_KEPT: usize = 64;

// The entry points for the links: the heartbeat sets the peer list, a `peer-<addr>` thread
// asks whether it is still wanted and subscribes, its `acks-<addr>` thread confirms.
impl Hub {
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
            state.relay.drop_unlisted(&listed, complete);
            if complete {
                // A peer incarnation that left never comes back (a rejoin has a new epoch).
                state
                    .synced_from
                    .retain(|(addr, epoch)| listed.get(addr.as_str()) == Some(epoch));
            }
            let mut started = Vec::new();
            for (addr, epoch) in listed {
                if state.relay.is_live_peer(addr, epoch) {
                    continue;
                }
                // An incarnation this server dropped has missed relays that were then
                // acknowledged without it, and nothing would send them later: it may not
                // come back as it is. A coordinator that restarted may list it again (it
                // forgot whom it declared dead); its next link is refused with
                // `Refusal::DeclaredDead`, so it fences itself and rejoins as a new incarnation,
                // which copies this server's window before it takes a client.
                if state.relay.was_removed(addr, epoch) {
                    continue;
                }
                state.next_id += 1;
                let link_id = state.next_id;
                state.relay.add_peer(addr, epoch, link_id);
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

    /// Whether the peer-out thread `link_id` should still serve `addr`.
    pub fn peer_wanted(&self, addr: &str, link_id: u64) -> bool {
        self.lock().relay.peer_wanted(addr, link_id)
    }

    /// Whether `(addr, epoch)` is a live peer incarnation (for the receiving side of a
    /// link, which checks it on every keepalive too: an idle link from a peer that was
    /// declared dead is refused within a heartbeat interval).
    pub fn is_live_peer(&self, addr: &str, epoch: u64) -> bool {
        self.lock().relay.is_live_peer(addr, epoch)
    }

    /// The peers not heard from for longer than `silence` (see `PeerLink::heard`): cut off
    /// from this server, though each may be fine for everyone else.
    pub fn cut_off_peers(&self, silence: Duration) -> Vec<String> {
        let state = self.lock();
        let mut cut_off: Vec<String> = state
            .relay
            .peers
            .iter()
            .filter(|(_, link)| link.heard.elapsed() > silence)
            .map(|(addr, _)| addr.clone())
            .collect();
        cut_off.sort();
        cut_off
    }

    /// Why the incarnation `(addr, epoch)` may not link in, with the words for its log:
    /// [`Refusal::DeclaredDead`] when this server saw the coordinator drop it (a server cut
    /// off from the coordinator alone learns it this way, `peers::peer_link_loop`), else
    /// [`Refusal::NotListedYet`]: the coordinator lists a new server to the others one
    /// heartbeat at a time, so the first tries of a joining server's links meet this, and
    /// the next try (an interval later) gets in.
    pub fn peer_refusal(&self, addr: &str, epoch: u64) -> (Refusal, String) {
        let state = self.lock();
        if state.relay.was_removed(addr, epoch) {
            let why = format!(
                "{addr} epoch {epoch} was declared dead: the coordinator no longer lists it; \
                 rejoin as a new incarnation"
            );
            (Refusal::DeclaredDead, why)
        } else {
            let why = format!("{addr} epoch {epoch} is not a live peer of {}", state.addr);
            (Refusal::NotListedYet, why)
        }
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
        let (outbox_rx, resume_after) =
            state
                .relay
                .attach(addr, link_id, last_index, &self.limits)?;
        let mut backlog = Vec::new();
        if with_history {
            backlog.extend(state.history.frames());
            backlog.push(Frame::from(Message::PeerSynced.encode()));
        }
        backlog.extend(state.relay.logged_after(resume_after));
        Some((outbox_rx, backlog))
    }

    /// Records that the peer behind `link_id` stored every relay up to `index`, and
    /// acknowledges the local messages that are now on every live peer. The pens of their
    /// senders go to `pens`, for the calling `acks-<addr>` thread to write for.
    pub fn peer_acked(&self, addr: &str, link_id: u64, index: u64, pens: &mut Pens) {
        self.with_state(|state, _, _| {
            if state.relay.confirm(addr, link_id, index) {
                state.advance_acks();
            }
            pens.add(state.taken.drain(..));
        });
        self.room.notify_all();
    }
}

impl Relay {
    /// Whether `(addr, epoch)` is a live peer incarnation.
    pub(super) fn is_live_peer(&self, addr: &str, epoch: u64) -> bool {
        self.peers.get(addr).is_some_and(|p| p.epoch == epoch)
    }

    /// Whether `(addr, epoch)` was dropped from the peers because a complete list no
    /// longer held it.
    pub(super) fn was_removed(&self, addr: &str, epoch: u64) -> bool {
        self.removed.iter().any(|(a, e)| a == addr && *e == epoch)
    }

    /// Whether the peer-out thread `link_id` should still serve `addr`.
    pub(super) fn peer_wanted(&self, addr: &str, link_id: u64) -> bool {
        self.peers.get(addr).is_some_and(|p| p.link_id == link_id)
    }

    /// The live peer incarnations, as `(addr, epoch)`.
    pub(super) fn incarnations(&self) -> impl Iterator<Item = (&str, u64)> {
        self.peers.iter().map(|(addr, p)| (addr.as_str(), p.epoch))
    }

    /// How many live peers have a connected link (a peer-out thread holding its queue).
    pub(super) fn links_up(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.outbox_tx.is_some())
            .count()
    }

    /// How many peers are live.
    pub(super) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Drops the peers that `listed` (address to epoch) no longer holds, or holds with
    /// another epoch, and what was received from them. When the list is not `complete`,
    /// a peer missing from it is kept (see [`Hub::set_peers`]).
    pub(super) fn drop_unlisted(&mut self, listed: &HashMap<&str, u64>, complete: bool) {
        let mut removed = Vec::new();
        self.peers.retain(|addr, link| {
            let keep = match listed.get(addr.as_str()) {
                Some(epoch) => *epoch == link.epoch,
                None => !complete,
            };
            if !keep {
                log::info!("peer removed addr={addr} epoch={}", link.epoch);
                removed.push((addr.clone(), link.epoch));
            }
            keep
        });
        for incarnation in removed {
            if self.removed.len() == REMOVED_KEPT {
                self.removed.pop_front();
            }
            self.removed.push_back(incarnation);
        }
        let peers = &self.peers;
        self.inbound
            .retain(|(addr, epoch), _| peers.get(addr).is_some_and(|p| p.epoch == *epoch));
    }

    /// Adds the peer incarnation `(addr, epoch)`, to be served by the thread `link_id`.
    pub(super) fn add_peer(&mut self, addr: &str, epoch: u64, link_id: u64) {
        // A new peer is owed only what is published from now on: older messages were
        // acknowledged (or are waiting) on the peers that existed then.
        let start_index = self.last_index;
        self.peers.insert(
            addr.to_string(),
            PeerLink {
                epoch,
                link_id,
                acked: start_index,
                start_index,
                outbox_tx: None,
                heard: Instant::now(),
            },
        );
        log::info!("peer added addr={addr} epoch={epoch}");
    }

    /// Gives the (re)connected thread `link_id` a new queue for `addr`, whose peer has
    /// received every relay up to `last_index`. Returns the queue's receiving end and the
    /// relay index after which the link resumes from the outbound log
    /// ([`Relay::logged_after`]); `None` when the link is no longer wanted.
    pub(super) fn attach(
        &mut self,
        addr: &str,
        link_id: u64,
        last_index: u64,
        limits: &Limits,
    ) -> Option<(OutboxReceiver, u64)> {
        let first_kept = self.outbound.front().map(|o| o.index);
        let link = self.peers.get_mut(addr).filter(|p| p.link_id == link_id)?;
        let (outbox_tx, outbox_rx) = outbox(limits.peer_queue, limits.peer_queue_bytes);
        link.outbox_tx = Some(outbox_tx);
        link.heard = Instant::now(); // it has just answered our PeerHello
        let last_index = last_index.max(link.start_index);
        if let Some(first) = first_kept
            && first > last_index + 1
        {
            log::warn!(
                "peer behind the outbound log addr={addr} missed={}",
                first - last_index - 1
            );
        }
        Some((outbox_rx, last_index))
    }

    /// The logged relays after relay index `index`, in index order.
    pub(super) fn logged_after(&self, index: u64) -> impl Iterator<Item = Frame> + '_ {
        self.outbound
            .iter()
            .filter(move |o| o.index > index)
            .map(|o| o.frame.clone())
    }

    /// Records that the peer behind `link_id` stored every relay up to `index`. Returns
    /// `false` when that link is no longer wanted, and then changes nothing.
    pub(super) fn confirm(&mut self, addr: &str, link_id: u64, index: u64) -> bool {
        let Some(link) = self.peers.get_mut(addr).filter(|p| p.link_id == link_id) else {
            return false;
        };
        link.acked = link.acked.max(index);
        link.heard = Instant::now();
        true
    }

    /// Records that the peer incarnation `(addr, epoch)` relayed its message `index` here.
    pub(super) fn note_received(&mut self, addr: &str, epoch: u64, index: u64) {
        self.inbound.insert((addr.to_string(), epoch), index);
    }

    /// The last relay index received from the peer incarnation `(addr, epoch)`, 0 if none.
    pub(super) fn last_received(&self, addr: &str, epoch: u64) -> u64 {
        self.inbound
            .get(&(addr.to_string(), epoch))
            .copied()
            .unwrap_or(0)
    }

    /// Rule 3 for a local message of `size` payload bytes, sent by `session` as `seq`: its
    /// `Relay` frame (encoded with index 0) gets the next relay index, goes into the outbound
    /// log and to every peer, and its ack waits for rule 4.
    pub(super) fn relay_local(
        &mut self,
        mut frame: Vec<u8>,
        session: u64,
        seq: u64,
        size: usize,
        limits: &Limits,
    ) {
        self.last_index += 1;
        let index = self.last_index;
        frame[RELAY_INDEX_BYTES].copy_from_slice(&index.to_be_bytes());
        self.log_outbound(index, size, Frame::from(frame), limits);
        self.pending_acks.push_back((index, session, seq));
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

    /// Rule 4: takes out every local message whose relay every live peer has confirmed.
    /// Returns, for each sender session, the highest `seq` now acknowledged; the hub queues
    /// those acks to the senders ([`State::advance_acks`](super::State::advance_acks)).
    pub(super) fn advance_acks(&mut self) -> HashMap<u64, u64> {
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
        highest
    }

    /// The relay window's part of [`State::has_room`](super::State::has_room): whether a
    /// local message of `size` payload bytes may be relayed now, with unconfirmed relays
    /// staying within [`Limits::relay_window_bytes`] and [`Limits::peer_queue`] messages.
    /// An empty log takes any one message, so a message larger than the bound still passes.
    pub(super) fn has_room(&self, size: usize, limits: &Limits) -> bool {
        self.outbound.is_empty()
            || (self.outbound_bytes + size <= limits.relay_window_bytes
                && self.outbound.len() < limits.peer_queue)
    }
}
