//! The write path: who writes a client's socket, and how a frame the hub queued gets there.
//! This is the one account of it; the other module docs and the chapters point here.
//!
//! **The pen.** A client's socket is written by at most one thread at a time, so frames
//! never interleave, and for most clients, most of the time, by none: an idle client has
//! no writer thread at all (a thread costs about 10 KiB even asleep,
//! `docs/thread-per-connection.md`). The right to write is the client's *pen*, a [`Pen`]
//! value (`pen.rs`). It is taken only from the client's [`WriteSide`], which the hub and
//! the client's connection thread both hold, and only while it is down; it goes down only
//! through [`Pen::put_down`], which first flushes what the holder wrote and then looks at
//! the queue once more, so a frame queued at that moment is never left without a writer.
//!
//! **Who takes it.** The hub, after it queued a frame for a client (`try_push` on its
//! bounded [outbox](OutboxSender), `outbox.rs`), takes the client's pen if it is down:
//! then nobody was writing to that client, and the pen goes to the thread that called the
//! hub. The connection thread holds the pen from the registration on, writes `Registered`
//! and the replay, and puts it down. The `keepalives` thread takes a quiet client's pen
//! for the keepalive it writes it (`keepalive.rs`), and leaves a pen that is up alone:
//! its holder's frames tell the client as much.
//!
//! **Writing through.** The thread that called the hub (a publisher's connection thread,
//! a peer link's, or an `acks-<addr>` thread whose acks became due) keeps the pens it was
//! given ([`Pens`], `through.rs`) until it has taken in everything it has read, and then
//! writes each client's queued frames itself, in one `send` that never blocks. A client
//! that keeps up is served on a thread that was running anyway: no wake-up, no thread.
//! Messages a publisher sent back to back reach each recipient as a *run*: one [`Frame`]
//! over a shared buffer, pushed and written as one (`Hub::publish`).
//!
//! **The hand-over.** When the socket is full (what it did not take stays in the pen),
//! when the client is *behind* (its outbox overflowed, and catching up from the history
//! window is a writer's work), or after `SENDS_PER_CLIENT` sends (a client whose outbox
//! refills as fast as it is written), the thread hands the pen over ([`Pool::hand_over`]):
//! to the client's writer if one is lingering, through a rendezvous, or else to the pool
//! (`pool.rs`), whose `pool` thread starts a `send-<name>` writer for it. Pens taken under
//! the hub's lock by any other call are handed over the same way as the lock is let go.
//! A writer may block on its one client, for at most `--write-timeout`: a slow reader
//! costs only its own writer.
//!
//! **The writer and its linger.** A `send-<name>` writer writes the bytes it was handed,
//! then runs the one writer loop ([`write_frames`], `writer_loop.rs`, which a peer link's
//! writer runs too), catching its client up through [`CatchUpSource`] when it is behind,
//! and puts the pen down as soon as the outbox is empty. It then lingers without the pen
//! for `WRITER_LINGER` (1 s; 50 ms while other clients wait for a writer), ready to be
//! handed it again with no thread to start, and ends when nobody does.
//!
//! **The thread budget.** The pool runs at most [`writer_budget`] writers at once: the
//! threads a process may hold, less one per connection and a reserve. Beyond it a pen
//! waits in the pool, oldest first, and its client's frames wait in its bounded outbox:
//! late, never lost.
//!
//! **Nothing here looks up.** The hub uses this folder; nothing in it names the hub, the
//! connection threads or the peers. A writer reaches the history window through
//! [`CatchUpSource`], which the hub implements. The one thing it names above it is the
//! server's `Metrics` (`metrics.rs`), a leaf: a [`WriteSide`] counts the bytes its pen puts
//! on the socket, and a writer the clients it cuts off.

mod outbox;
mod pen;
mod pool;
mod through;
mod writer_loop;

pub use outbox::{Frame, OutboxReceiver, OutboxSender, outbox};
pub use pen::{Pen, WriteSide};
pub use pool::{CatchUp, CatchUpSource, Pool, pool_loop, writer_budget};
pub use through::Pens;
pub use writer_loop::{Flow, WhenIdle, write_frames};

/// Bytes a writer gathers before it writes to the socket: a batch of small frames goes out
/// in one system call. Allocated only while a writer runs, and touched only as far as a
/// batch fills it.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// Stack size of a client's writer thread: it holds no large buffer on its stack (its
/// batch is on the heap), and small stacks let a server hold thousands of writers.
const WRITER_STACK: usize = 256 * 1024;
