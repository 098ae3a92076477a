//! The accept loop of every listening role: the `accept` thread, one `conn-<peer>` thread per
//! connection, the cap on open connections, and how the loop is stopped. The server and the
//! coordinator each hold one [`AcceptLoop`] and give it the function that serves one
//! connection; everything a connection says is that function's business, not this file's.
//!
//! **Threads.** [`AcceptLoop::start`] starts `accept`, which blocks in `accept()` and
//! starts a named `conn-<peer>` thread for every connection it takes.
//!
//! **Whom it talks to.** Nobody, apart from the one `Error` frame that tells a connection
//! over the limit why it is closed ([`refuse_busy`]): the connection threads own their
//! streams.
//!
//! **When a peer fails.** Its serve function returns an error, which the connection thread
//! logs; that costs only the connection. A failed `accept()` (mostly "too many open files")
//! is logged and retried after a pause.
//!
//! **Stopping.** [`AcceptLoop::stop`] sets a flag, wakes `accept()` with a connection to
//! itself and joins the thread; connection threads are not joined and end on their own.
//! This file lives apart from `net.rs` because it is the one piece of the socket helpers
//! with a thread and a stop order of its own.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::error::Result;
use crate::protocol::Message;

/// How long the wake-up connection of [`AcceptLoop::stop`] may take. It goes to this
/// process's own listening socket, whose kernel completes it at once; the timeout only
/// bounds the case where something is badly wrong with the machine.
const WAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// The `accept` thread of a thread-per-connection server ([`accept_loop`]), with what it
/// takes to stop it. The server's and the coordinator's handles each hold one.
///
/// A thread blocked in `accept()` does not look at any flag, and std offers no way to
/// interrupt the call. So stopping sets a flag and then *connects to the listener itself*:
/// `accept()` returns that connection, the loop sees the flag and returns.
/// [`AcceptLoop::stop`] gives the order of the steps and why it matters.
///
/// Dropping an `AcceptLoop` stops it as well, so that a handle dropped without being
/// stopped (say, by a test that panics) still frees its thread and its port.
pub struct AcceptLoop {
    /// Set by [`AcceptLoop::stop`] before the wake-up connection; the accept thread (which
    /// holds the other clone) reads it after every accepted connection and returns once
    /// it is set.
    stopping: Arc<AtomicBool>,
    /// The listener's own address, where the wake-up connection goes.
    wake_addr: SocketAddr,
    /// The accept thread, until [`AcceptLoop::stop`] takes and joins it. `None` afterwards,
    /// which makes a second stop (and the drop after a stop) do nothing.
    thread: Option<thread::JoinHandle<()>>,
}

impl AcceptLoop {
    /// Starts the `accept` thread on `listener`: every connection gets its own thread, with
    /// `stack_size` bytes of stack, that runs `serve`; beyond `max_connections` open at
    /// once, a new connection is refused (see [`accept_loop`]). The listener moves into the
    /// thread and is closed when the thread ends.
    ///
    /// # Errors
    /// When the listener's address cannot be read or the thread cannot be started.
    pub fn start<F>(
        listener: TcpListener,
        max_connections: usize,
        stack_size: usize,
        serve: F,
    ) -> io::Result<AcceptLoop>
    where
        F: Fn(TcpStream) -> Result<()> + Clone + Send + 'static,
    {
        let wake_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = stopping.clone();
            thread::Builder::new()
                .name("accept".into())
                .spawn(move || {
                    accept_loop(listener, stopping, max_connections, stack_size, serve)
                })?
        };
        Ok(AcceptLoop {
            stopping,
            wake_addr,
            thread: Some(thread),
        })
    }

    /// Stops accepting and joins the accept thread; the port closes with it. Blocks until
    /// that thread has returned, which the wake-up connection makes a matter of moments.
    ///
    /// The order:
    /// 1. **Set `stopping`.** It must come first: were the flag set after the wake-up
    ///    connection, the loop could accept that connection, see no flag, serve it as an
    ///    ordinary one and block in `accept()` again, and step 3 would wait forever.
    /// 2. **Connect to the listener** (within [`WAKE_TIMEOUT`]) and close that connection
    ///    at once. `accept()` returns it, and the loop, seeing the flag, breaks out without
    ///    serving it.
    /// 3. **Join** the accept thread.
    ///
    /// Connection threads are not joined: each ends when its peer closes or its read
    /// deadline passes, and the role's own stop steps (a server shuts its clients' sockets)
    /// make that quick. Calling `stop` again does nothing.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.wake_addr, WAKE_TIMEOUT);
        let _ = thread.join();
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The heart of a thread-per-connection server: accepts connections until `stopping` is
/// set, and gives each one its own thread (named `conn-<peer>`, with `stack_size` bytes of
/// stack) that runs `serve`. A connection's error is logged and costs only that
/// connection. Beyond `max_connections` open at once, a new connection gets a refusal
/// instead of a thread. It runs on the thread of an [`AcceptLoop`], whose
/// [`stop`](AcceptLoop::stop) sets `stopping` and then connects once to wake it.
fn accept_loop<F>(
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    max_connections: usize,
    stack_size: usize,
    serve: F,
) where
    F: Fn(TcpStream) -> Result<()> + Clone + Send + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    let mut refused: u64 = 0;
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Mostly "too many open files": pause instead of spinning on the error.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if open.load(Ordering::Acquire) >= max_connections {
            refused += 1;
            // One line per refusal would let a flood fill the log as well.
            if refused.is_power_of_two() {
                log::warn!(
                    "connection refused peer={peer} reason=\"{max_connections} connections \
                     open (the limit)\" refused_so_far={refused}"
                );
            }
            refuse_busy(stream, max_connections);
            continue;
        }
        let slot = OpenSlot::take(&open);
        let serve = serve.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn-{peer}"))
            .stack_size(stack_size)
            .spawn(move || {
                let _slot = slot; // given back when the connection ends, however it ends
                if let Err(e) = serve(stream) {
                    log::warn!("connection closed peer={peer} reason=\"{e}\"");
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
    log::debug!("accept loop stopped");
}

/// One of the `max_connections` places, held by a connection thread and given back on drop.
struct OpenSlot(Arc<AtomicUsize>);

impl OpenSlot {
    fn take(open: &Arc<AtomicUsize>) -> OpenSlot {
        open.fetch_add(1, Ordering::AcqRel);
        OpenSlot(open.clone())
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a connection over the limit why it is closed. The write is non-blocking, so the
/// accept thread never waits on a stranger: a fresh socket's send buffer takes the few
/// bytes, and if it does not, the peer gets a bare close.
fn refuse_busy(stream: TcpStream, max_connections: usize) {
    let reason = format!("too many connections ({max_connections} open); try again later");
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&Message::Error { reason }.encode());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_closes_the_port_and_a_second_stop_does_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accept = AcceptLoop::start(listener, 4, 64 * 1024, |_| Ok(())).unwrap();
        accept.stop();
        // The listener went with the accept thread, so nobody listens there any more.
        assert!(TcpStream::connect_timeout(&addr, WAKE_TIMEOUT).is_err());
        accept.stop();
    }
}
