//! The write path: who writes a client's socket, and how a frame the hub queued gets there.
//! This folder owns the pen ([`Pen`], `pen.rs`: the right to write one client's socket), the
//! bounded queue to a writer ([`OutboxSender`], `outbox.rs`), writing through without
//! blocking ([`Pens`] and its one send, [`send_through`], `through.rs`), the writers and the
//! `pool` thread that starts them within a thread budget ([`Pool`], `pool.rs`), and the one
//! writer loop ([`write_frames`], `writer_loop.rs`), which a peer link's writer runs too.
//!
//! **Who calls it.** The hub queues frames and takes pens (`hub/`); the threads that called
//! the hub write through (connection threads, `acks-<addr>`); the `keepalives` thread takes
//! a quiet client's pen and writes its keepalive through the same way (`keepalive.rs`); the
//! server starts the `pool` thread. Nothing here names the hub, the connection threads or
//! the peers: a writer reaches the history window through [`CatchUpSource`], which the hub
//! implements.
//!
//! **Stopping.** A `send-<name>` writer ends with its client or after lingering without the
//! pen; the `pool` thread when the server's stop channel disconnects. The whole account, and
//! why it is shaped so: `docs/thread-per-connection.md`, "Who writes a client's socket".

mod outbox;
mod pen;
mod pool;
mod through;
mod writer_loop;

pub use outbox::{Frame, OutboxReceiver, OutboxSender, outbox};
pub use pen::{Pen, WriteSide};
pub use pool::{CatchUp, CatchUpSource, Pool, pool_loop, writer_budget};
pub use through::{Pens, send_through};
pub use writer_loop::{Flow, WhenIdle, write_frames};

/// Bytes a writer gathers before it writes to the socket: a batch of small frames goes out
/// in one system call. Allocated only while a writer runs, and touched only as far as a
/// batch fills it.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// Stack size of a client's writer thread: it holds no large buffer on its stack (its
/// batch is on the heap), and small stacks let a server hold thousands of writers.
const WRITER_STACK: usize = 256 * 1024;
