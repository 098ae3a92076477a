//! What the hub sends its local clients: every live message (the fan-out,
//! [`Clients::fan_out`]: one [`Frame`] shared by every recipient's outbox), the acks of
//! their own messages, and the catch-up of a client whose outbox overflowed
//! ([`Clients::catch_up`]). Who the clients are is in `clients.rs`.
//!
//! **Who runs it.** Under the hub's lock, in whichever thread called the hub: a client's or
//! a peer's `conn-<peer>` thread (fan-out), an `acks-<addr>` thread (acks), a client's
//! `send-<name>` writer (catch-up). When a frame is queued for a client whose pen is down,
//! the hub takes the pen ([`LocalClient::see_written`]) into `State::taken`, for the calling
//! thread to write through, or for the lock's guard to hand over (`Locked`).
//!
//! **Slow readers.** A client whose outbox is full is *behind*: it catches up from the
//! history window, publishes wait for it while it still reads, and one that has stopped
//! reading for [`Limits::stall_timeout`](super::Limits::stall_timeout) is cut off once its
//! messages leave the window. Why: `docs/thread-per-connection.md`, "Tempting wrong version
//! 1"; the bounds: `docs/guarantees.md`, section 5.

use std::collections::HashMap;
use std::time::Duration;

use super::clients::{Clients, LocalClient};
use super::history::History;
use super::{CatchUp, CatchUpSource, Cutoffs, Frame, Hub, Metrics, Pen};
use crate::net;
use crate::protocol::Message;

// The way in for a client's writer thread.
impl Hub {
    /// Refills the outbox of a client that is behind (see `LocalClient::queue_live`) from
    /// the history window, in arrival order, for as long as it has room. Called by the
    /// client's writer thread whenever it sees the outbox marked behind.
    ///
    /// When the window has already forgotten a message the client had not had, the client
    /// is removed with the reason, for the writer to send: it is too slow to be served from
    /// memory. It then resumes like any failed-over client and reports the loss as a gap.
    pub fn catch_up(&self, name: &str, conn: u64) -> CatchUp {
        let mut delivered = 0;
        let result = self.with_state(|state, _, _| {
            state.clients.catch_up(
                name,
                conn,
                &state.history,
                &state.addr,
                &mut state.taken,
                &mut delivered,
            )
        });
        let m = &*self.metrics;
        Metrics::add(&m.deliveries_out, delivered);
        match result {
            CatchUp::Done => Metrics::add(&m.catch_ups, 1),
            CatchUp::FellBehind(_) => Metrics::add(&m.slow_consumer_cutoffs, 1),
            CatchUp::Behind | CatchUp::Gone => {}
        }
        // The client needs less of the window now (or nothing: it left); a publish
        // waiting for room may go on.
        self.room.notify_all();
        result
    }
}

/// How the pool's writers reach the window: `write/` knows the hub only through this.
impl CatchUpSource for Hub {
    fn catch_up(&self, name: &str, conn: u64) -> CatchUp {
        Hub::catch_up(self, name, conn)
    }
}

// What each local client is sent: live messages, acks, and the catch-up from the window.
impl Clients {
    /// Fan-out: the shared frames (one message, or a run of them) whose last was stored as
    /// number `arrival`, to every local client except their sender `session`; the pen of a
    /// client nobody writes to goes into `taken`. Returns how many clients it was queued for
    /// (one that is behind gets it later, from the window).
    pub(super) fn fan_out(
        &mut self,
        session: u64,
        frame: &Frame,
        arrival: u64,
        taken: &mut Vec<Pen>,
    ) -> u64 {
        let mut queued = 0;
        for client in self.by_name.values_mut() {
            if client.session != session {
                queued += u64::from(client.queue_live(frame, arrival));
                client.see_written(taken);
            }
        }
        queued
    }

    /// Queues to each sender in `highest` (session to `seq`) the ack of its messages up to
    /// that `seq`.
    pub(super) fn queue_acks(&mut self, highest: HashMap<u64, u64>, taken: &mut Vec<Pen>) {
        for (session, seq) in highest {
            let Some(name) = self.names_by_session.get(&session) else {
                continue; // the sender left; it resends on its next server if it needs to
            };
            if let Some(client) = self.by_name.get_mut(name) {
                client.queue_ack(seq);
                client.see_written(taken);
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
    /// to a client that fell behind the window. Adds the messages it queued to `delivered`.
    pub(super) fn catch_up(
        &mut self,
        name: &str,
        conn: u64,
        history: &History,
        addr: &str,
        taken: &mut Vec<Pen>,
        delivered: &mut u64,
    ) -> CatchUp {
        let Some(client) = self.by_name.get_mut(name).filter(|c| c.conn == conn) else {
            return CatchUp::Gone;
        };
        // The caller is the client's writer, which holds the pen; should it ever be called
        // without, this still makes sure someone writes what it queues.
        client.see_written(taken);
        if let Some(seq) = client.pending_ack {
            if !client.outbox_tx.try_push(ack_frame(seq)) {
                return CatchUp::Behind;
            }
            client.pending_ack = None;
        }
        if let Some(missed) = history.forgotten_after(client.last_queued) {
            let reason =
                format!("too slow: fell {missed} messages behind the history window of {addr}");
            log::warn!(
                "slow consumer cut off name={name} peer={} reason={reason:?}",
                net::peer_of(client.side.stream())
            );
            // No socket to shut down here: the writer tells the client why, then closes.
            self.remove(name, &mut Cutoffs::new());
            return CatchUp::FellBehind(reason);
        }
        for stored in history.after(client.last_queued) {
            let meant_for_it = stored.live && stored.session != client.session;
            if meant_for_it {
                if !client.outbox_tx.try_push(stored.frame.clone()) {
                    return CatchUp::Behind;
                }
                *delivered += 1;
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
    /// Returns whether it was queued.
    fn queue_live(&mut self, frame: &Frame, arrival: u64) -> bool {
        if self.outbox_tx.is_behind() {
            return false; // catch_up will find this frame in the window
        }
        if self.outbox_tx.try_push(frame.clone()) {
            self.last_queued = arrival;
            true
        } else {
            self.mark_behind();
            false
        }
    }

    /// Queues an acknowledgement, or keeps it for [`Clients::catch_up`] when the outbox is
    /// full. Acks are cumulative, so only the highest is kept.
    fn queue_ack(&mut self, seq: u64) {
        let seq = self.pending_ack.map_or(seq, |pending| pending.max(seq));
        if self.outbox_tx.is_behind() || !self.outbox_tx.try_push(ack_frame(seq)) {
            self.pending_ack = Some(seq);
            self.mark_behind();
        } else {
            self.pending_ack = None;
        }
    }

    /// Makes sure what was just queued (or the catch-up a client behind needs) gets
    /// written: when the client's pen is down, nobody writes to it, so the hub takes the
    /// pen and adds the client to `taken` (see the module doc). Never blocks.
    pub(super) fn see_written(&self, taken: &mut Vec<Pen>) {
        taken.extend(self.side.take_pen());
    }

    fn mark_behind(&mut self) {
        if !self.outbox_tx.is_behind() {
            log::debug!(
                "client behind name={} queued_bytes={}",
                self.name,
                self.outbox_tx.queued_bytes()
            );
            self.outbox_tx.set_behind(true);
        }
    }
}

fn ack_frame(seq: u64) -> Frame {
    Frame::from(Message::Ack { seq }.encode())
}
