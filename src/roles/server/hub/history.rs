//! Rules 1 and 2 of the hub: which arriving messages are new (the per-sender watermark,
//! [`History::accept`]), and the bounded history window ([`History::store`]) that keeps them
//! for resuming clients ([`History::replay_for`]), for clients that are behind and for new
//! peers. History a new server takes from its peers may come out of each sender's order, so
//! it is only stored, never delivered live.
//!
//! **Who runs it.** No thread of its own: [`History`] is a part of the hub's state, run under
//! its lock by whichever thread called the hub. It holds no socket and no channel: it stores
//! frames and hands out clones of their `Arc`s.
//!
//! **When a bound is hit.** A full window forgets its oldest entry; a client that needed it
//! gets a `gap` on resuming, or is cut off if it is behind; publishes wait rather than push
//! out what a reading client has not had ([`History::has_room`]). The window outlives a
//! fence ([`Hub::reset_incarnation`](super::Hub::reset_incarnation) keeps it) and goes with
//! the hub. Why the rules hold: `docs/guarantees.md`, section 1.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Frame, Limits};
use crate::protocol::Resume;

/// Sender sessions whose watermark is kept, at most, and sent to a registering client: 16
/// bytes each, so a `Registered` frame stays under a third of the frame cap. Beyond it, the
/// sessions with nothing left in the history window are forgotten (their messages can no
/// longer be replayed anyway).
const MAX_WATERMARKS: usize = 20_000;

/// What rule 1 makes of an arriving message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Next in its sender's stream: store it and deliver it.
    New,
    /// Older than what this new server already has from its sender, but missing here:
    /// store it for replays, deliver it to no one (live clients have moved past it).
    Backfill,
    /// Already here, or older than the window of a server that is ready: drop it.
    Repeat,
}

/// One message in the history window.
pub(super) struct Stored {
    /// Numbers every stored message in arrival order (1, 2, 3, ...), so a client that is
    /// behind knows where in the window to continue. The window holds consecutive numbers.
    pub(super) arrival: u64,
    /// The payload bytes stored before this message, ever ([`History::bytes_stored`] then):
    /// the bytes from here to the newest entry are a subtraction away.
    bytes_before: u64,
    pub(super) session: u64,
    seq: u64,
    size: usize,
    pub(super) frame: Frame,
    /// Delivered live when it arrived. Backfills (see [`Verdict`]) are not: they are only
    /// for replays, which restore each sender's order.
    pub(super) live: bool,
}

/// Rules 1 and 2: the watermarks and the history window. It is kept whole across a fence
/// (see the module doc), so everything in it is about messages, nothing about this
/// incarnation.
#[derive(Default)]
pub(super) struct History {
    /// The window, oldest first.
    window: VecDeque<Stored>,
    /// The payload bytes in `window`.
    window_bytes: usize,
    /// The arrival number of the last stored message.
    arrivals: u64,
    /// Payload bytes ever stored (see [`Stored::bytes_before`]).
    bytes_stored: u64,
    /// The `(session, seq)` of every message in `window`, to tell a repeat from a backfill.
    stored: HashSet<(u64, u64)>,
    /// Rule 1: the highest accepted `seq` of each sender session.
    watermarks: HashMap<u64, u64>,
}

impl History {
    /// Rule 1: a message is new when it is above its sender's watermark. Below it, a server
    /// that is not `ready` yet keeps what it lacks as a backfill (history from a peer); a
    /// ready server has nothing to learn from old messages.
    pub(super) fn accept(&mut self, session: u64, seq: u64, ready: bool) -> Verdict {
        if self.stored.contains(&(session, seq)) {
            return Verdict::Repeat;
        }
        match self.watermarks.get(&session) {
            Some(&last) if seq <= last => {
                if ready {
                    Verdict::Repeat
                } else {
                    Verdict::Backfill
                }
            }
            Some(&last) => {
                if seq > last + 1 && ready {
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
    pub(super) fn store(
        &mut self,
        session: u64,
        seq: u64,
        size: usize,
        frame: Frame,
        live: bool,
        limits: &Limits,
    ) {
        self.arrivals += 1;
        self.window.push_back(Stored {
            arrival: self.arrivals,
            bytes_before: self.bytes_stored,
            session,
            seq,
            size,
            frame,
            live,
        });
        self.stored.insert((session, seq));
        self.window_bytes += size;
        self.bytes_stored += size as u64;
        // The bound: forget the oldest until both limits hold again. A client that needs a
        // forgotten message gets a `gap` event with the count instead.
        while self.window.len() > limits.history_messages
            || (self.window_bytes > limits.history_bytes && self.window.len() > 1)
        {
            let old = self.window.pop_front().expect("history is not empty");
            self.stored.remove(&(old.session, old.seq));
            self.window_bytes -= old.size;
        }
        // Senders whose messages have all left the window need no watermark beyond a bound:
        // keep the map from growing with every session that ever spoke.
        if self.watermarks.len() > MAX_WATERMARKS {
            let live: HashSet<u64> = self.window.iter().map(|s| s.session).collect();
            self.watermarks.retain(|session, _| live.contains(session));
        }
    }

    /// The arrival number of the last stored message (0 before the first).
    /// The payload bytes the window holds.
    pub(super) fn window_bytes(&self) -> usize {
        self.window_bytes
    }

    pub(super) fn last_arrival(&self) -> u64 {
        self.arrivals
    }

    /// The watermarks a registering client is told, as `(session, seq)`.
    ///
    /// A first registration learns where every known sender stands, so it can tell later
    /// messages from earlier ones. A resuming client knows that already; it learns how far
    /// this server holds its own messages, to send again what is missing here.
    pub(super) fn watermarks_for(&self, resume: Option<&Resume>) -> Vec<(u64, u64)> {
        match resume {
            Some(r) => self
                .watermarks
                .get(&r.session)
                .map(|seq| vec![(r.session, *seq)])
                .unwrap_or_default(),
            None => self
                .watermarks
                .iter()
                .take(MAX_WATERMARKS)
                .map(|(s, q)| (*s, *q))
                .collect(),
        }
    }

    /// The history entries a resuming client has not seen, each sender's in `seq` order.
    /// Its own messages are left out: it never receives those.
    ///
    /// Arrival order is each sender's order except for backfills (see [`Verdict`]), so each
    /// sender's entries are sorted by `seq`, and put back into the slots that sender had in
    /// arrival order: the interleaving of different senders stays as it arrived.
    pub(super) fn replay_for(&self, own_session: u64, seen: &[(u64, u64)]) -> Vec<Frame> {
        let seen: HashMap<u64, u64> = seen.iter().copied().collect();
        let unseen: Vec<&Stored> = self
            .window
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

    /// Every frame in the window, in arrival order: the history a new peer asks for.
    pub(super) fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        self.window.iter().map(|s| s.frame.clone())
    }

    /// How many messages after arrival number `last` the window has forgotten already, if
    /// any: a client that had everything up to `last` queued can no longer be served from
    /// memory.
    pub(super) fn forgotten_after(&self, last: u64) -> Option<u64> {
        let oldest = self.window.front().map_or(u64::MAX, |s| s.arrival);
        (oldest > last + 1 && last < self.arrivals).then(|| oldest - last - 1)
    }

    /// The entries after arrival number `last`, in arrival order.
    pub(super) fn after(&self, last: u64) -> impl Iterator<Item = &Stored> {
        let start = self.window.partition_point(|s| s.arrival <= last);
        self.window.range(start..)
    }

    /// The history window's part of [`State::has_room`](super::State::has_room): whether
    /// `size` more payload bytes fit without pushing out an entry that a reader still
    /// needs. `next_wanted` gives the arrival number each reader that is behind (and still
    /// reading) needs next. An empty window takes any one message, so a message larger than
    /// the bound still passes.
    pub(super) fn has_room(
        &self,
        next_wanted: impl Iterator<Item = u64>,
        size: usize,
        limits: &Limits,
    ) -> bool {
        let (messages, bytes) = self.needed(next_wanted);
        messages == 0
            || (messages < limits.history_messages && bytes + size <= limits.history_bytes)
    }

    /// The newest entries of the window that some reader still needs: from the oldest of
    /// `next_wanted` that is still in the window. Returns `(messages, payload bytes)`.
    fn needed(&self, next_wanted: impl Iterator<Item = u64>) -> (usize, usize) {
        let Some(front) = self.window.front() else {
            return (0, 0);
        };
        let oldest_needed = next_wanted
            // Below the window it is lost already (`catch_up` will say so).
            .filter(|&arrival| arrival >= front.arrival && arrival <= self.arrivals)
            .min();
        let Some(first) = oldest_needed else {
            return (0, 0);
        };
        // Arrival numbers in the window are consecutive, so the entry is found by index.
        let entry = &self.window[(first - front.arrival) as usize];
        debug_assert_eq!(entry.arrival, first);
        let messages = (self.arrivals - first + 1) as usize;
        (messages, (self.bytes_stored - entry.bytes_before) as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::State;
    use super::*;
    use crate::protocol::{Body, Message, deliver_frame};

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
                let verdict = state.history.accept(session, seq, state.ready);
                if verdict != Verdict::Repeat {
                    let body = Body::Text {
                        number: seq,
                        text: "x".into(),
                    };
                    let frame = Frame::from(deliver_frame("s", session, seq, &body));
                    let live = verdict == Verdict::New;
                    state.history.store(session, seq, 1, frame, live, &limits());
                }
                verdict
            })
            .collect()
    }

    /// The `(session, seq)` of each replayed frame, decoded.
    fn replayed(state: &State, own: u64, seen: &[(u64, u64)]) -> Vec<(u64, u64)> {
        state
            .history
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
