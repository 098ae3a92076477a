//! An outbox: the bounded queue of encoded frames ([`Frame`]) from the hub to one
//! connection's writer, a client's pen holder or a peer link's `peer-<addr>`, bounded in
//! frames and in bytes. The hub pushes with [`OutboxSender::try_push`], which never blocks
//! (the hub holds its lock while it pushes); when a bound would be exceeded the push fails
//! and the hub decides what that means (a client is *behind*, a peer link is restarted).
//!
//! Beside the queue sit three things its two ends agree on: the pen flag, touched only by
//! `pen.rs` ([`OutboxReceiver::put_pen_down`] must look at the queue right after); the
//! `behind` flag (the hub stops pushing live frames, the writer catches up from the history
//! window); and the time the writer last took frames ([`OutboxSender::idle_for`]), which tells
//! a slow reader from a stopped one. The loop writers run over it is `writer_loop.rs`.
//!
//! A writer sees `Disconnected` when the hub drops the sending end (the client was removed).
//! The sizes and what each bound costs: `docs/architecture.md`, "A server's threads".

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

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

/// The counts and flags of one outbox, beside its channel: what both ends read and change.
struct OutboxState {
    /// Frames queued and not yet taken; the frame bound is checked against it.
    queued_frames: AtomicUsize,
    /// Bytes queued and not yet taken; the byte bound is checked against it.
    queued_bytes: AtomicUsize,
    behind: AtomicBool,
    /// When the writer last took frames, in [`millis_now`] (or when the outbox was made).
    last_taken: AtomicU64,
    /// The pen: true while some thread has the right to write the socket (a [`Pen`]
    /// exists for it).
    ///
    /// [`Pen`]: super::Pen
    pen: AtomicBool,
}

impl OutboxState {
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
    state: Arc<OutboxState>,
    max_frames: usize,
    max_bytes: usize,
}

/// The writers' end of an outbox. Cloned for each writer thread a client gets over time
/// (one at a time: the pen sees to that). When the [`OutboxSender`] is dropped, a receiver
/// drains what is left and then reports `Disconnected`.
#[derive(Clone)]
pub struct OutboxReceiver {
    frames_rx: Receiver<Frame>,
    state: Arc<OutboxState>,
}

/// An outbox holding at most `max_frames` frames and, unless it is empty, at most
/// `max_bytes` bytes. (An empty outbox takes any frame, so a frame larger than the byte
/// bound still gets through; frames are at most 1 MiB.) Its pen is down: a client's is
/// taken through its `WriteSide`; a peer link's is never used, since the link's own thread
/// is its one writer.
pub fn outbox(max_frames: usize, max_bytes: usize) -> (OutboxSender, OutboxReceiver) {
    // Unbounded in crossbeam's sense only: the bounds are counted here (see the module doc).
    let (frames_tx, frames_rx) = unbounded();
    let state = Arc::new(OutboxState {
        queued_frames: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        behind: AtomicBool::new(false),
        last_taken: AtomicU64::new(millis_now()),
        pen: AtomicBool::new(false),
    });
    (
        OutboxSender {
            frames_tx,
            state: state.clone(),
            max_frames,
            max_bytes,
        },
        OutboxReceiver { frames_rx, state },
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
        let state = &self.state;
        // Only the hub pushes, under its lock, so this check and the adds below cannot race
        // with another push; a writer only ever takes frames away, which makes room.
        let frames = state.queued_frames.load(Ordering::SeqCst);
        let bytes = state.queued_bytes.load(Ordering::SeqCst);
        if frames >= self.max_frames || (frames > 0 && bytes + len > self.max_bytes) {
            return false;
        }
        state.queued_bytes.fetch_add(len, Ordering::SeqCst);
        state.queued_frames.fetch_add(1, Ordering::SeqCst);
        if self.frames_tx.send(frame).is_err() {
            state.queued_frames.fetch_sub(1, Ordering::SeqCst);
            state.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.state.queued_bytes.load(Ordering::Acquire)
    }

    /// Whether the reader is behind: frames meant for it were not pushed.
    pub fn is_behind(&self) -> bool {
        self.state.behind.load(Ordering::SeqCst)
    }

    /// Marks the reader as behind, or as caught up again.
    pub fn set_behind(&self, behind: bool) {
        self.state.behind.store(behind, Ordering::SeqCst);
    }

    /// How long ago the writer last took a frame (or the outbox was made). A client with no
    /// writer and nothing queued is not behind, so this is asked only of busy outboxes.
    pub fn idle_for(&self) -> Duration {
        let last = self.state.last_taken.load(Ordering::Acquire);
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
        self.state.behind.load(Ordering::SeqCst)
    }

    /// Takes the pen up if it is down, and returns whether it did: the flag under
    /// `WriteSide::take_pen`, which makes the [`Pen`](super::Pen) that goes with it.
    pub(super) fn take_pen(&self) -> bool {
        self.state.take_pen()
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
    pub(super) fn put_pen_down(&self) -> bool {
        let state = &self.state;
        state.pen.store(false, Ordering::SeqCst);
        let work_left =
            state.queued_frames.load(Ordering::SeqCst) > 0 || state.behind.load(Ordering::SeqCst);
        work_left && state.take_pen()
    }

    /// Takes `frame` off the queue's counts, making room for the hub's next pushes.
    fn taken(&self, frame: &Frame) {
        self.taken_many(1, frame.len());
    }

    /// Takes `frames` frames of `bytes` bytes in all off the queue's counts.
    fn taken_many(&self, frames: usize, bytes: usize) {
        let state = &self.state;
        state.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
        state.queued_frames.fetch_sub(frames, Ordering::SeqCst);
    }

    /// Notes that the writer took frames now ([`OutboxSender::idle_for`] reads it).
    fn stamp(&self) {
        self.state.last_taken.store(millis_now(), Ordering::Release);
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
        let (tx, rx) = outbox(3, 100);
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
        let (tx, rx) = outbox(3, 100);
        assert!(!rx.is_behind());
        tx.set_behind(true);
        assert!(rx.is_behind() && tx.is_behind());
        tx.set_behind(false);
        assert!(!rx.is_behind());
    }

    #[test]
    fn an_empty_outbox_takes_a_frame_larger_than_its_byte_bound() {
        let (tx, rx) = outbox(3, 10);
        assert!(tx.try_push(frame(50)));
        assert!(!tx.try_push(frame(1)));
        assert!(rx.recv_timeout(Duration::ZERO).is_ok());
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn taking_a_frame_resets_the_idle_time() {
        let (tx, rx) = outbox(3, 100);
        std::thread::sleep(Duration::from_millis(100)); // the idle time being measured
        let before = tx.idle_for();
        assert!(before >= Duration::from_millis(100));
        assert!(tx.try_push(frame(1)));
        assert!(rx.try_recv().is_some());
        assert!(tx.idle_for() < before);
    }

    #[test]
    fn a_push_to_a_gone_writer_fails_and_counts_nothing() {
        let (tx, rx) = outbox(3, 100);
        drop(rx);
        assert!(!tx.try_push(frame(5)));
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn only_one_party_holds_the_pen() {
        let (_tx, rx) = outbox(3, 100);
        assert!(rx.take_pen(), "the pen starts down");
        assert!(!rx.clone().take_pen(), "it is held");
        assert!(!rx.put_pen_down(), "nothing queued: the holder may go");
        assert!(rx.take_pen());
    }

    #[test]
    fn a_batch_is_gathered_up_to_its_byte_bound() {
        let (tx, rx) = outbox(10, 1000);
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
        let (tx, rx) = outbox(4, 1000);
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
