//! The one writer loop, [`write_frames`], that every writer of an outbox runs: a client's
//! `send-<name>` (`pool.rs`) and a peer link's `peer-<addr>` (`peers.rs`). It takes
//! frames off the outbox (`outbox.rs`) in order, writes whatever is queued in one write,
//! and, when the outbox is empty, writes a keepalive (a link) or returns, for a client's
//! writer to put its pen down (`Pen::put_down`). It blocks only on its own socket, for at
//! most that socket's write timeout. It knows nothing of pens: a client's writer passes
//! its [`Pen`](super::Pen) as the place to write.

use std::io::{self, Write};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use super::outbox::{MAX_BATCH, OutboxReceiver};

/// What a writer does once its outbox has stayed empty for its idle time.
#[derive(Debug, Clone, Copy)]
pub enum WhenIdle<'a> {
    /// Write these bytes (a peer link's keepalive) and wait again: the link stays up.
    Keepalive(&'a [u8]),
    /// Return [`Ended::Idle`]: a client's writer then puts its pen down, which flushes what
    /// it holds, and lingers without it (`pool.rs`).
    Return,
}

/// Whether a writer goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on writing.
    Continue,
    /// End the loop: the connection is done.
    Stop,
}

/// Why [`write_frames`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The outbox was empty (`WhenIdle::Return`).
    Idle,
    /// The connection is done: the hub dropped the outbox, or `refill` said stop.
    Done,
}

/// The one writer loop, for clients and peer links alike: before each wait it calls
/// `refill` (a client's writer catches up there when it is behind), then waits up to
/// `idle` for a frame, writes it with whatever else is queued in one write, and goes on.
/// When nothing came for `idle` it does what `when_idle` says.
///
/// Blocks in the socket write when the reader is slow; the socket's write timeout bounds
/// that. Returns when the outbox disconnects (its sender was dropped: the hub removed the
/// client or the peer), when `refill` says stop, or when it is idle and `when_idle` says
/// return.
///
/// # Errors
/// A failed or timed-out write.
pub fn write_frames<W: Write>(
    out: &mut W,
    outbox: &OutboxReceiver,
    idle: Duration,
    when_idle: WhenIdle<'_>,
    mut refill: impl FnMut(&mut W) -> io::Result<Flow>,
) -> io::Result<Ended> {
    loop {
        if refill(out)? == Flow::Stop {
            out.flush()?;
            return Ok(Ended::Done);
        }
        match outbox.recv_timeout(idle) {
            Ok(frame) => {
                out.write_all(&frame)?;
                // A backlog goes out in one write instead of one per frame.
                for frame in outbox.try_iter().take(MAX_BATCH) {
                    out.write_all(&frame)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => match when_idle {
                WhenIdle::Keepalive(bytes) => out.write_all(bytes)?,
                // Not flushed here: a pen flushes as it goes down (`Pen::put_down`).
                WhenIdle::Return => return Ok(Ended::Idle),
            },
            Err(RecvTimeoutError::Disconnected) => {
                out.flush()?;
                return Ok(Ended::Done);
            }
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::server::write::outbox::{Frame, outbox};

    #[test]
    fn the_writer_loop_writes_a_backlog_and_returns_once_the_outbox_is_empty() {
        let (tx, rx) = outbox(10, 1000);
        for byte in 1..=3u8 {
            assert!(tx.try_push(Frame::from(vec![byte])));
        }
        let mut out = Vec::new();
        let ended = write_frames(&mut out, &rx, Duration::ZERO, WhenIdle::Return, |_| {
            Ok(Flow::Continue)
        })
        .expect("writing to a Vec cannot fail");
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(ended, Ended::Idle);
    }

    #[test]
    fn the_writer_loop_of_a_link_ends_when_the_hub_drops_the_outbox() {
        let (tx, rx) = outbox(10, 1000);
        assert!(tx.try_push(Frame::from(vec![7])));
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
