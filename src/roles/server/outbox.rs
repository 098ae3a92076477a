//! An outbox: the bounded queue of encoded frames from the hub to one writer thread (a
//! client's `send-<name>` or a peer link's `peer-<addr>`).
//!
//! It is a crossbeam channel bounded in frames, with a byte count beside it, because a
//! frame may be a 40-byte text or a 256 KiB file chunk: a bound in frames alone would let
//! one slow reader pin gigabytes. The hub pushes with [`OutboxSender::try_push`], which never
//! blocks (the hub holds its lock while it pushes); when either bound would be exceeded the
//! push fails and the hub decides what that means (a client is marked *behind* and catches
//! up from the history window, a peer link is restarted). The writer thread pops with
//! [`OutboxReceiver::recv_timeout`] and [`OutboxReceiver::try_recv`], which give the bytes
//! back.
//!
//! The `behind` flag is how the hub and a client's writer agree that the client's outbox
//! overflowed: the hub stops pushing live frames, and the writer, seeing the flag, asks the
//! hub for the missed frames from the history window (`Hub::catch_up`).
//!
//! Every frame the writer takes stamps the time ([`OutboxSender::idle_for`] reads it). A
//! writer takes the next frame only when it has written the previous one, so the stamp
//! tells the hub whether a client that is behind is still reading, slowly, or has stopped:
//! the first one paces the publishers, the second one does not (see `State::has_room`).
//!
//! The frames are `Arc`s shared with the history window and the outbound log, so what a
//! queue holds is mostly memory that is held anyway; the byte bound is what keeps a queue
//! from pinning frames those have already let go.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

/// An encoded frame, encoded once and shared by every recipient: each outbox, the history
/// window and the outbound log hold a clone of the `Arc`, never a copy of the bytes.
pub type Frame = Arc<Vec<u8>>;

/// The hub's end of an outbox.
pub struct OutboxSender {
    tx: Sender<Frame>,
    queued_bytes: Arc<AtomicUsize>,
    behind: Arc<AtomicBool>,
    last_taken: Arc<AtomicU64>,
    max_bytes: usize,
}

/// The writer thread's end of an outbox. When every [`OutboxSender`] is dropped, the
/// receiver drains what is left and then reports `Disconnected`.
pub struct OutboxReceiver {
    rx: Receiver<Frame>,
    queued_bytes: Arc<AtomicUsize>,
    behind: Arc<AtomicBool>,
    /// When the writer last took a frame, in [`millis_now`] (or when the outbox was made).
    last_taken: Arc<AtomicU64>,
}

/// An outbox holding at most `max_frames` frames and, unless it is empty, at most
/// `max_bytes` bytes. (An empty outbox takes any frame, so a frame larger than the byte
/// bound still gets through; frames are at most 1 MiB.)
pub fn outbox(max_frames: usize, max_bytes: usize) -> (OutboxSender, OutboxReceiver) {
    let (tx, rx) = bounded(max_frames);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let behind = Arc::new(AtomicBool::new(false));
    let last_taken = Arc::new(AtomicU64::new(millis_now()));
    (
        OutboxSender {
            tx,
            queued_bytes: queued_bytes.clone(),
            behind: behind.clone(),
            last_taken: last_taken.clone(),
            max_bytes,
        },
        OutboxReceiver {
            rx,
            queued_bytes,
            behind,
            last_taken,
        },
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
    /// frames or bytes) or its writer has gone. Never blocks.
    pub fn try_push(&self, frame: Frame) -> bool {
        let len = frame.len();
        // Only the hub pushes, under its lock, so this check and the add below cannot race
        // with another push; the writer only ever takes bytes away, which makes room.
        let queued = self.queued_bytes.load(Ordering::Acquire);
        if queued > 0 && queued + len > self.max_bytes {
            return false;
        }
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if self.tx.try_send(frame).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Whether the reader is behind: frames meant for it were not pushed.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    /// Marks the reader as behind, or as caught up again.
    pub fn set_behind(&self, behind: bool) {
        self.behind.store(behind, Ordering::Release);
    }

    /// How long ago the writer last took a frame (or the outbox was made).
    pub fn idle_for(&self) -> Duration {
        let last = self.last_taken.load(Ordering::Acquire);
        Duration::from_millis(millis_now().saturating_sub(last))
    }
}

impl OutboxReceiver {
    /// The next frame, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Frame, RecvTimeoutError> {
        let frame = self.rx.recv_timeout(timeout)?;
        self.taken(&frame);
        Ok(frame)
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&self) -> Option<Frame> {
        let frame = self.rx.try_recv().ok()?;
        self.taken(&frame);
        Some(frame)
    }

    /// Every frame queued now, without waiting: how a writer gathers a backlog into one
    /// write.
    pub fn try_iter(&self) -> impl Iterator<Item = Frame> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }

    /// Whether the hub marked this outbox's reader as behind (see the module doc).
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    fn taken(&self, frame: &Frame) {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        self.last_taken.store(millis_now(), Ordering::Release);
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
}
