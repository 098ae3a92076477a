//! An outbox: the bounded queue of encoded frames from the hub to one connection's writer
//! (a client's `send-<name>` or a peer link's `peer-<addr>`), and the *pen* that says who
//! may write that connection's socket. The loop that writers run over it is in
//! `writer_loop.rs`.
//!
//! **The queue.** A crossbeam channel with a frame count and a byte count beside it, because
//! a frame may be a 40-byte text or a 256 KiB file chunk: a bound in frames alone would let
//! one slow reader pin gigabytes. The channel is crossbeam's list flavour, which allocates
//! its slots in small blocks as frames arrive and frees them as they leave, so an idle
//! client's outbox costs a few hundred bytes, not the full bound (a `bounded(4096)` channel
//! allocates all 4,096 slots up front: 64 KiB per client). The hub pushes with
//! [`OutboxSender::try_push`], which never blocks (the hub holds its lock while it pushes);
//! when either bound would be exceeded the push fails and the hub decides what that means
//! (a client is marked *behind* and catches up from the history window, a peer link is
//! restarted).
//!
//! **The pen.** A client's socket is written by at most one thread at a time, and for most
//! clients, most of the time, by none: an idle client has no writer thread at all
//! (`docs/thread-per-connection.md` measures why that matters: a thread costs about 10 KiB
//! even while it sleeps). Whoever holds the pen may write. The hub, after queuing a frame
//! for a client whose pen is down, takes it up ([`OutboxSender::take_pen`]); the thread
//! that called the hub then writes what it can without blocking and hands the rest, with
//! the pen, to a writer thread (`through.rs`). A writer puts the pen down as soon as
//! the outbox is empty ([`OutboxReceiver::put_pen_down`]), and then lingers without it for
//! a while, ready to be handed the pen again ([`OutboxReceiver::offer_pen`],
//! [`OutboxReceiver::await_pen`]) so that the next hand-over costs no thread start. The
//! client's own connection thread takes the pen for the few bytes it writes itself (the
//! frames of the registration, and a keepalive answered). Taking and putting down are
//! atomic, and putting down looks at the queue once more afterwards, so a frame queued at
//! that very moment is never left without a writer (see [`OutboxReceiver::put_pen_down`]).
//! A peer link's outbox is made with the pen taken for good: its writer thread lives as
//! long as the link.
//!
//! **Behind.** The `behind` flag is how the hub and a client's writer agree that the
//! client's outbox overflowed: the hub stops pushing live frames, and the writer, seeing the
//! flag, asks the hub for the missed frames from the history window (`Hub::catch_up`).
//!
//! **Idle time.** Every time the writer takes frames it stamps the time
//! ([`OutboxSender::idle_for`] reads it). A writer takes frames only when it has written the
//! previous ones, so the stamp tells the hub whether a client that is behind is still
//! reading, slowly, or has stopped: the first one paces the publishers, the second one does
//! not (see `State::has_room`).
//!
//! The frames are `Arc`s shared with the history window and the outbound log, so what a
//! queue holds is mostly memory that is held anyway; the byte bound is what keeps a queue
//! from pinning frames those have already let go.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

/// Encoded bytes, encoded once and shared by every recipient: each outbox, the history
/// window and the outbound log hold a clone of the `Arc`, never a copy of the bytes.
///
/// Usually one frame. The messages a publisher sent back to back are encoded into one
/// buffer (`Hub::publish`), and a recipient's outbox then takes a *run*: a `Frame` that
/// covers several of them, frames whole and in order, pushed and written as one (one queue
/// operation and one copy per recipient for the run, not for each message). The history
/// window keeps each message as its own `Frame` over the same buffer, so the buffer lives
/// until its last message has left the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Frame {
    /// The frames at `range` of `bytes`, which the caller encoded whole there.
    pub fn run(bytes: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Frame {
        assert!(range.start <= range.end && range.end <= bytes.len());
        Frame {
            bytes: bytes.clone(),
            start: range.start,
            end: range.end,
        }
    }

    /// This and `next` as one run, when `next` follows it in the same buffer; `None`
    /// otherwise.
    pub fn joined(&self, next: &Frame) -> Option<Frame> {
        (Arc::ptr_eq(&self.bytes, &next.bytes) && self.end == next.start).then(|| Frame {
            bytes: self.bytes.clone(),
            start: self.start,
            end: next.end,
        })
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        let end = bytes.len();
        Frame {
            bytes: Arc::new(bytes),
            start: 0,
            end,
        }
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

/// Frames a writer gathers into one write when a backlog exists, bounding batch latency.
pub const MAX_BATCH: usize = 256;

/// What both ends of one outbox share.
struct Shared {
    /// Frames queued and not yet taken; the frame bound is checked against it.
    queued_frames: AtomicUsize,
    /// Bytes queued and not yet taken; the byte bound is checked against it.
    queued_bytes: AtomicUsize,
    behind: AtomicBool,
    /// When the writer last took frames, in [`millis_now`] (or when the outbox was made).
    last_taken: AtomicU64,
    /// The pen: true while some thread has the right to write the socket.
    pen: AtomicBool,
    /// Where a lingering writer waits to be handed the pen, with the bytes its last holder
    /// could not send. A rendezvous (capacity 0): a hand-over succeeds only while a writer
    /// is waiting on the other side, so the pen is never left in a channel nobody reads.
    handoff_tx: Sender<Vec<u8>>,
    handoff_rx: Receiver<Vec<u8>>,
}

impl Shared {
    /// Takes the pen up if it is down; returns whether this call did (both ends use it).
    ///
    /// The hub asks this for every frame it queues, and the pen is usually up already (the
    /// thread writing for the client took it with the first frame of a burst), so a plain
    /// read comes first: only a pen seen down costs the locked `swap`. Reading `true` is as
    /// good as the `swap` returning it: a writer putting the pen down after this read looks
    /// at the queue afterwards and finds the frame (see [`OutboxReceiver::put_pen_down`]).
    fn take_pen(&self) -> bool {
        !self.pen.load(Ordering::SeqCst) && !self.pen.swap(true, Ordering::SeqCst)
    }
}

/// The hub's end of an outbox.
pub struct OutboxSender {
    frames_tx: Sender<Frame>,
    shared: Arc<Shared>,
    max_frames: usize,
    max_bytes: usize,
}

/// The writers' end of an outbox. Cloned for each writer thread a client gets over time
/// (one at a time: the pen sees to that). When the [`OutboxSender`] is dropped, a receiver
/// drains what is left and then reports `Disconnected`.
#[derive(Clone)]
pub struct OutboxReceiver {
    frames_rx: Receiver<Frame>,
    shared: Arc<Shared>,
}

/// An outbox holding at most `max_frames` frames and, unless it is empty, at most
/// `max_bytes` bytes. (An empty outbox takes any frame, so a frame larger than the byte
/// bound still gets through; frames are at most 1 MiB.) With `pen_taken`, the caller holds
/// the pen from the start: a client's connection thread, about to write the registration
/// frames, or a peer link's writer, for good.
pub fn outbox(
    max_frames: usize,
    max_bytes: usize,
    pen_taken: bool,
) -> (OutboxSender, OutboxReceiver) {
    // Unbounded in crossbeam's sense only: the bounds are counted here (see the module doc).
    let (frames_tx, frames_rx) = unbounded();
    let (handoff_tx, handoff_rx) = bounded(0);
    let shared = Arc::new(Shared {
        queued_frames: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        behind: AtomicBool::new(false),
        last_taken: AtomicU64::new(millis_now()),
        pen: AtomicBool::new(pen_taken),
        handoff_tx,
        handoff_rx,
    });
    (
        OutboxSender {
            frames_tx,
            shared: shared.clone(),
            max_frames,
            max_bytes,
        },
        OutboxReceiver { frames_rx, shared },
    )
}

/// Milliseconds since the first call in this process: a clock that fits in an atomic.
fn millis_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64
}

impl OutboxSender {
    /// Queues `frame`, or returns `false` without queueing it when the outbox is full (in
    /// frames or bytes) or its writers' end has gone. Never blocks.
    pub fn try_push(&self, frame: Frame) -> bool {
        let len = frame.len();
        let shared = &self.shared;
        // Only the hub pushes, under its lock, so this check and the adds below cannot race
        // with another push; a writer only ever takes frames away, which makes room.
        let frames = shared.queued_frames.load(Ordering::SeqCst);
        let bytes = shared.queued_bytes.load(Ordering::SeqCst);
        if frames >= self.max_frames || (frames > 0 && bytes + len > self.max_bytes) {
            return false;
        }
        shared.queued_bytes.fetch_add(len, Ordering::SeqCst);
        shared.queued_frames.fetch_add(1, Ordering::SeqCst);
        if self.frames_tx.send(frame).is_err() {
            shared.queued_frames.fetch_sub(1, Ordering::SeqCst);
            shared.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Takes the pen up if it is down, and returns whether it did: then the caller must see
    /// that a writer is started. Called by the hub after it queued something, or marked the
    /// client behind, for a client that may have no writer.
    pub fn take_pen(&self) -> bool {
        self.shared.take_pen()
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Whether the reader is behind: frames meant for it were not pushed.
    pub fn is_behind(&self) -> bool {
        self.shared.behind.load(Ordering::SeqCst)
    }

    /// Marks the reader as behind, or as caught up again.
    pub fn set_behind(&self, behind: bool) {
        self.shared.behind.store(behind, Ordering::SeqCst);
    }

    /// How long ago the writer last took a frame (or the outbox was made). A client with no
    /// writer and nothing queued is not behind, so this is asked only of busy outboxes.
    pub fn idle_for(&self) -> Duration {
        let last = self.shared.last_taken.load(Ordering::Acquire);
        Duration::from_millis(millis_now().saturating_sub(last))
    }
}

impl OutboxReceiver {
    /// The next frame, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Frame, RecvTimeoutError> {
        let frame = self.frames_rx.recv_timeout(timeout)?;
        self.taken(&frame);
        self.stamp();
        Ok(frame)
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&self) -> Option<Frame> {
        let frame = self.take_queued()?;
        self.stamp();
        Some(frame)
    }

    /// Every frame queued now, without waiting: how a writer gathers a backlog into one
    /// write, right after [`recv_timeout`](Self::recv_timeout) took the first one. That
    /// call stamped the time; these frames do not read the clock again, which cost more
    /// than anything else per frame when a writer had a backlog to gather.
    pub fn try_iter(&self) -> impl Iterator<Item = Frame> + '_ {
        std::iter::from_fn(|| self.take_queued())
    }

    /// Appends queued frames to `batch`, up to [`MAX_BATCH`] of them and until `batch` holds
    /// `max_bytes` or more (the frame that crosses the bound is the last taken): how a thread
    /// that writes for a client without blocking gathers one send (`through.rs`).
    pub fn take_batch_into(&self, batch: &mut Vec<u8>, max_bytes: usize) {
        let start = batch.len();
        let mut frames = 0;
        while frames < MAX_BATCH && (frames == 0 || batch.len() < max_bytes) {
            let Ok(frame) = self.frames_rx.try_recv() else {
                break;
            };
            batch.extend_from_slice(&frame);
            frames += 1;
        }
        if frames > 0 {
            // The counts come down once for the batch rather than once per frame: this
            // runs for every delivery, and two locked instructions per frame were a
            // measurable share of the fan-out's CPU (docs/benchmarks.md).
            self.taken_many(frames, batch.len() - start);
            self.stamp();
        }
    }

    /// Takes the next queued frame off the counts, without stamping the time.
    fn take_queued(&self) -> Option<Frame> {
        let frame = self.frames_rx.try_recv().ok()?;
        self.taken(&frame);
        Some(frame)
    }

    /// Whether the hub marked this outbox's reader as behind (see the module doc).
    pub fn is_behind(&self) -> bool {
        self.shared.behind.load(Ordering::SeqCst)
    }

    /// Takes the pen up if it is down, and returns whether it did. The connection thread
    /// takes it to answer a keepalive; if a writer holds it, frames are flowing anyway.
    pub fn take_pen(&self) -> bool {
        self.shared.take_pen()
    }

    /// Puts the pen down. Returns `true` when the caller must go on writing after all:
    /// frames were queued (or the client was marked behind) while it held the pen, and it
    /// took the pen up again.
    ///
    /// Why the second look is needed: the hub queues a frame and then tries to take the pen;
    /// a writer puts the pen down and then looks at the queue. Whichever of the two comes
    /// second sees what the other did (every step is `SeqCst`), so either the hub starts a
    /// new writer or this one goes on, and a frame is never stranded with nobody to write
    /// it. If both see each other, the `swap` below lets only one of them hold the pen.
    pub fn put_pen_down(&self) -> bool {
        let shared = &self.shared;
        shared.pen.store(false, Ordering::SeqCst);
        let work_left =
            shared.queued_frames.load(Ordering::SeqCst) > 0 || shared.behind.load(Ordering::SeqCst);
        work_left && shared.take_pen()
    }

    /// Hands the pen, which the caller holds, to a writer lingering on this outbox
    /// ([`await_pen`](Self::await_pen)), with `unsent`: bytes the caller took from the
    /// outbox and could not send, which the writer sends before anything else. When no
    /// writer is waiting right now, gives `unsent` back: the caller keeps the pen and must
    /// find another writer.
    ///
    /// # Errors
    /// `unsent`, given back, when no writer is waiting.
    pub fn offer_pen(&self, unsent: Vec<u8>) -> Result<(), Vec<u8>> {
        self.shared
            .handoff_tx
            .try_send(unsent)
            .map_err(|e| e.into_inner())
    }

    /// How a writer without the pen lingers: waits up to `timeout` to be handed it
    /// ([`offer_pen`](Self::offer_pen)). Returns the bytes to send first, and then the
    /// caller holds the pen; `None` when nobody handed it over in time.
    pub fn await_pen(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.shared.handoff_rx.recv_timeout(timeout).ok()
    }

    /// Takes `frame` off the queue's counts, making room for the hub's next pushes.
    fn taken(&self, frame: &Frame) {
        self.taken_many(1, frame.len());
    }

    /// Takes `frames` frames of `bytes` bytes in all off the queue's counts.
    fn taken_many(&self, frames: usize, bytes: usize) {
        let shared = &self.shared;
        shared.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
        shared.queued_frames.fetch_sub(frames, Ordering::SeqCst);
    }

    /// Notes that the writer took frames now ([`OutboxSender::idle_for`] reads it).
    fn stamp(&self) {
        self.shared
            .last_taken
            .store(millis_now(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Frame {
        Frame::from(vec![0; len])
    }

    #[test]
    fn a_push_beyond_either_bound_fails_and_taking_makes_room() {
        let (tx, rx) = outbox(3, 100, false);
        assert!(tx.try_push(frame(60)));
        assert!(!tx.try_push(frame(60)), "160 bytes would exceed 100");
        assert!(tx.try_push(frame(30)));
        assert!(tx.try_push(frame(10)));
        assert!(!tx.try_push(frame(0)), "a fourth frame would exceed 3");
        assert_eq!(tx.queued_bytes(), 100);
        assert_eq!(rx.try_recv().map(|f| f.len()), Some(60));
        assert_eq!(tx.queued_bytes(), 40);
        assert!(tx.try_push(frame(60)));
    }

    #[test]
    fn both_ends_see_the_behind_flag() {
        let (tx, rx) = outbox(3, 100, false);
        assert!(!rx.is_behind());
        tx.set_behind(true);
        assert!(rx.is_behind() && tx.is_behind());
        tx.set_behind(false);
        assert!(!rx.is_behind());
    }

    #[test]
    fn an_empty_outbox_takes_a_frame_larger_than_its_byte_bound() {
        let (tx, rx) = outbox(3, 10, false);
        assert!(tx.try_push(frame(50)));
        assert!(!tx.try_push(frame(1)));
        assert!(rx.recv_timeout(Duration::ZERO).is_ok());
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn taking_a_frame_resets_the_idle_time() {
        let (tx, rx) = outbox(3, 100, false);
        std::thread::sleep(Duration::from_millis(100)); // the idle time being measured
        let before = tx.idle_for();
        assert!(before >= Duration::from_millis(100));
        assert!(tx.try_push(frame(1)));
        assert!(rx.try_recv().is_some());
        assert!(tx.idle_for() < before);
    }

    #[test]
    fn a_push_to_a_gone_writer_fails_and_counts_nothing() {
        let (tx, rx) = outbox(3, 100, false);
        drop(rx);
        assert!(!tx.try_push(frame(5)));
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn only_one_party_holds_the_pen() {
        let (tx, rx) = outbox(3, 100, false);
        assert!(tx.take_pen(), "the pen starts down");
        assert!(!rx.take_pen() && !tx.take_pen(), "it is held");
        assert!(!rx.put_pen_down(), "nothing queued: the holder may go");
        assert!(rx.take_pen());
    }

    #[test]
    fn a_frame_queued_while_the_pen_is_held_keeps_its_writer_going() {
        let (tx, rx) = outbox(3, 100, true);
        assert!(tx.try_push(frame(5)));
        assert!(!tx.take_pen(), "the writer holds it: no second writer");
        assert!(rx.put_pen_down(), "a frame is waiting: the writer goes on");
        assert!(!tx.take_pen(), "and it holds the pen again");
        assert!(rx.try_recv().is_some());
        assert!(!rx.put_pen_down());
    }

    #[test]
    fn a_client_marked_behind_keeps_its_writer_going() {
        let (tx, rx) = outbox(3, 100, true);
        tx.set_behind(true);
        assert!(rx.put_pen_down(), "catching up is work left");
    }

    #[test]
    fn the_pen_is_handed_only_to_a_writer_that_waits_for_it() {
        let (_tx, rx) = outbox(10, 1000, true);
        assert_eq!(
            rx.offer_pen(vec![1, 2]),
            Err(vec![1, 2]),
            "no writer waits: the bytes come back"
        );
        let lingering = rx.clone();
        let writer = std::thread::spawn(move || lingering.await_pen(Duration::from_secs(60)));
        // The offer succeeds once the writer is waiting; until then it comes back.
        let mut unsent = vec![3];
        while let Err(back) = rx.offer_pen(unsent) {
            unsent = back;
            std::thread::yield_now();
        }
        assert_eq!(writer.join().unwrap(), Some(vec![3]));
        assert_eq!(rx.await_pen(Duration::ZERO), None, "nobody offered it");
    }

    #[test]
    fn a_batch_is_gathered_up_to_its_byte_bound() {
        let (tx, rx) = outbox(10, 1000, false);
        for byte in 1..=4u8 {
            assert!(tx.try_push(Frame::from(vec![byte; 3])));
        }
        let mut batch = Vec::new();
        rx.take_batch_into(&mut batch, 5);
        assert_eq!(
            batch,
            [1, 1, 1, 2, 2, 2],
            "the frame that crosses the bound is the last"
        );
        rx.take_batch_into(&mut batch, 100);
        assert_eq!(batch.len(), 12);
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn a_batch_makes_room_for_as_many_frames_as_it_took() {
        let (tx, rx) = outbox(4, 1000, false);
        for _ in 0..4 {
            assert!(tx.try_push(frame(3)));
        }
        assert!(!tx.try_push(frame(3)), "full at 4 frames");
        let mut batch = Vec::new();
        rx.take_batch_into(&mut batch, 5);
        assert_eq!(batch.len(), 6, "two frames taken");
        assert_eq!(tx.queued_bytes(), 6);
        assert!(tx.try_push(frame(3)));
        assert!(tx.try_push(frame(3)));
        assert!(!tx.try_push(frame(3)), "full at 4 frames again");
    }
}
