//! The write path: everything between a frame queued for a client and that client's socket.
//!
//! - `outbox.rs`: the bounded queue to one connection's writer, with [`Frame`], and the pen
//!   that says who may write a client's socket;
//! - `through.rs`: [`Pens`], how the thread that took a message in writes it to the clients
//!   that keep up, without blocking;
//! - `pool.rs`: the [`Pool`], the `pool` thread that starts a `send-<name>` writer for a
//!   client whose socket could not take everything at once, within the thread budget;
//! - `writer_loop.rs`: the one writer loop, for clients and peer links.
//!
//! Nothing here looks up into the hub: a writer catches its client up from the history
//! window through [`CatchUpSource`], which the hub implements.

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
