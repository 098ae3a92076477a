//! An outbox: the bounded queue of encoded frames from the hub to one connection's writer
//! (a client's `send-<name>` or a peer link's `peer-<addr>`), the *pen* that says who may
//! write that connection's socket, and [`write_frames`], the one writer loop both kinds of
//! writer run.
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
//! for a client whose pen is down, takes it up ([`OutboxSender::take_pen`]) and asks for a
//! writer thread to be started; that writer puts the pen down when the outbox has stayed
//! empty for a while ([`OutboxReceiver::put_pen_down`]) and ends. The client's own
//! connection thread takes the pen for the few bytes it writes itself (the frames of the
//! registration, and a keepalive answered). Taking and putting down are atomic, and putting
//! down looks at the queue once more afterwards, so a frame queued at that very moment is
//! never left without a writer (see [`OutboxReceiver::put_pen_down`]). A peer link's outbox
//! is made with the pen taken for good: its writer thread lives as long as the link.
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

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

/// An encoded frame, encoded once and shared by every recipient: each outbox, the history
/// window and the outbound log hold a clone of the `Arc`, never a copy of the bytes.
pub type Frame = Arc<Vec<u8>>;

/// Frames a writer gathers into one write when a backlog exists, bounding batch latency.
const MAX_BATCH: usize = 256;

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
}

impl Shared {
    /// Takes the pen up if it is down; returns whether this call did (both ends use it).
    fn take_pen(&self) -> bool {
        !self.pen.swap(true, Ordering::SeqCst)
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
    let shared = Arc::new(Shared {
        queued_frames: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        behind: AtomicBool::new(false),
        last_taken: AtomicU64::new(millis_now()),
        pen: AtomicBool::new(pen_taken),
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

    /// Takes `frame` off the queue's counts, making room for the hub's next pushes.
    fn taken(&self, frame: &Frame) {
        let shared = &self.shared;
        shared.queued_bytes.fetch_sub(frame.len(), Ordering::SeqCst);
        shared.queued_frames.fetch_sub(1, Ordering::SeqCst);
    }

    /// Notes that the writer took frames now ([`OutboxSender::idle_for`] reads it).
    fn stamp(&self) {
        self.shared
            .last_taken
            .store(millis_now(), Ordering::Release);
    }
}

/// What a writer does once its outbox has stayed empty for its idle time.
#[derive(Debug, Clone, Copy)]
pub enum WhenIdle<'a> {
    /// Write these bytes (a peer link's keepalive) and wait again: the link stays up.
    Keepalive(&'a [u8]),
    /// Put the pen down and end, unless frames arrived meanwhile (a client's writer).
    /// When `crowded` is set as the outbox runs empty, because other clients wait for a
    /// writer's place, the writer lingers only [`CROWDED_LINGER`]: so a burst to more
    /// clients than the thread budget allows reaches the last ones without waiting out
    /// every first writer's idle time. (It looks once, when it starts to linger, and then
    /// sleeps: thousands of lingering writers waking every few milliseconds to look again
    /// cost more than the waiting they save.)
    PutPenDown {
        /// Whether clients wait for a writer (set by the `writers` thread).
        crowded: &'a AtomicBool,
    },
}

/// How long a client's writer waits for more frames while other clients wait for a place:
/// long enough for the next message of a burst to reach it (a message reaches ten
/// thousand outboxes in a few milliseconds), so that it does not end between two messages
/// and leave its client to queue for a writer again.
pub const CROWDED_LINGER: Duration = Duration::from_millis(50);

/// Whether a writer goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on writing.
    Continue,
    /// End the loop: the connection is done.
    Stop,
}

/// The one writer loop, for clients and peer links alike: before each wait it calls
/// `refill` (a client's writer catches up there when it is behind), then waits up to
/// `idle` for a frame ([`CROWDED_LINGER`] for a client's writer while others wait for a
/// place),
/// writes it with whatever else is queued in one write, and goes on. When nothing came for
/// `idle` it does what `when_idle` says.
///
/// Blocks in the socket write when the reader is slow; the socket's write timeout bounds
/// that. Returns when the outbox disconnects (its sender was dropped: the hub removed the
/// client or the peer), when `refill` says stop, or when the writer puts the pen down.
///
/// # Errors
/// A failed or timed-out write.
pub fn write_frames<W: Write>(
    out: &mut W,
    outbox: &OutboxReceiver,
    idle: Duration,
    when_idle: WhenIdle<'_>,
    mut refill: impl FnMut(&mut W) -> io::Result<Flow>,
) -> io::Result<()> {
    loop {
        if refill(out)? == Flow::Stop {
            return out.flush();
        }
        let wait = match when_idle {
            WhenIdle::PutPenDown { crowded } if crowded.load(Ordering::Relaxed) => {
                idle.min(CROWDED_LINGER)
            }
            _ => idle,
        };
        match outbox.recv_timeout(wait) {
            Ok(frame) => {
                out.write_all(&frame)?;
                // A backlog goes out in one write instead of one per frame.
                for frame in outbox.try_iter().take(MAX_BATCH) {
                    out.write_all(&frame)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => match when_idle {
                WhenIdle::Keepalive(bytes) => out.write_all(bytes)?,
                WhenIdle::PutPenDown { .. } => {
                    if !outbox.put_pen_down() {
                        return Ok(());
                    }
                }
            },
            Err(RecvTimeoutError::Disconnected) => return out.flush(),
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Frame {
        Arc::new(vec![0; len])
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
    fn the_writer_loop_writes_a_backlog_and_ends_when_the_pen_goes_down() {
        let (tx, rx) = outbox(10, 1000, true);
        for byte in 1..=3u8 {
            assert!(tx.try_push(Arc::new(vec![byte])));
        }
        let mut out = Vec::new();
        write_frames(
            &mut out,
            &rx,
            Duration::from_millis(10),
            WhenIdle::PutPenDown {
                crowded: &AtomicBool::new(false),
            },
            |_| Ok(Flow::Continue),
        )
        .expect("writing to a Vec cannot fail");
        assert_eq!(out, [1, 2, 3]);
        assert!(tx.take_pen(), "the writer put the pen down as it ended");
    }

    #[test]
    fn a_writer_stops_lingering_when_others_wait_for_its_place() {
        let (tx, rx) = outbox(10, 1000, true);
        assert!(tx.try_push(Arc::new(vec![1])));
        let mut out = Vec::new();
        let crowded = AtomicBool::new(true);
        let start = std::time::Instant::now();
        write_frames(
            &mut out,
            &rx,
            Duration::from_secs(60),
            WhenIdle::PutPenDown { crowded: &crowded },
            |_| Ok(Flow::Continue),
        )
        .expect("writing to a Vec cannot fail");
        assert_eq!(out, [1]);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "it ended without lingering for its idle time"
        );
        assert!(tx.take_pen(), "the writer put the pen down as it ended");
    }

    #[test]
    fn the_writer_loop_of_a_link_ends_when_the_hub_drops_the_outbox() {
        let (tx, rx) = outbox(10, 1000, true);
        assert!(tx.try_push(Arc::new(vec![7])));
        drop(tx);
        let mut out = Vec::new();
        write_frames(
            &mut out,
            &rx,
            Duration::from_secs(60),
            WhenIdle::Keepalive(b"k"),
            |_| Ok(Flow::Continue),
        )
        .expect("writing to a Vec cannot fail");
        assert_eq!(out, [7]);
    }
}
