//! The accept loop of every listening role ([`AcceptLoop`]): the `accept` thread, one named
//! `conn-<peer>` thread per connection, the cap on open connections, the newcomer turned
//! away when descriptors run out ([`accept_at_the_limit`]), and how the loop is stopped.
//!
//! **Who calls it.** The server and the coordinator each start one with the function that
//! serves one connection; the metrics port starts one with other words
//! ([`AcceptLoop::start_plain`]: no greeting, HTTP `503` for a refusal). The accept thread
//! sends each connection its first frame itself, the `Challenge` (`net::send_challenge`) or
//! the `Error` of a refusal ([`refuse_busy`]); after that the connection thread owns the
//! stream, and an error of the serve function costs only that connection, logged.
//!
//! **Stopping.** [`AcceptLoop::stop`] sets a flag, wakes `accept()` with a connection to
//! itself and joins the thread; connection threads are not joined and end on their own.
//! The model and its bounds: `docs/thread-per-connection.md`; why the `Challenge` comes
//! from this thread: `docs/heartbeats-and-failover.md`, "Late is not dead: the probe".

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Challenge, send_challenge};
use crate::error::Result;
use crate::protocol::{Message, Refusal};
use crate::support::limits::{self, SpareDescriptor};

/// How long the wake-up connection of [`AcceptLoop::stop`] may take. It goes to this
/// process's own listening socket, whose kernel completes it at once; the timeout only
/// bounds the case where something is badly wrong with the machine.
const WAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// How long the accept loop rests after turning a connection away for want of descriptors.
/// Descriptors come back only when connections end, which takes the other threads' time,
/// not the accept thread's; without the pause a flood of newcomers to a full process would
/// keep this thread busy refusing. 10 ms caps refusals at about a hundred a second: each
/// newcomer still waits only that long for its answer, and once the spare itself is gone
/// (another thread took the descriptor it freed) the loop retries this often instead of
/// spinning.
const OUT_OF_FILES_PAUSE: Duration = Duration::from_millis(10);

/// The least time between two warnings about refusals for want of descriptors; each
/// warning counts the refusals since the one before. A process at its limit refuses on
/// every attempt, and one line per refusal would drown the log.
const OUT_OF_FILES_WARNING_EVERY: Duration = Duration::from_secs(1);

/// Pause after any other failed `accept()`, so that an error that repeats does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

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

/// What the accept thread itself says to a connection, before the connection's own thread
/// runs: the greeting every newcomer gets, and the words for one it turns away. A dsys port
/// challenges and refuses in an `Error` frame ([`DSYS`]); the metrics port says nothing
/// first and refuses in HTTP ([`AcceptLoop::start_plain`]).
struct Speech<G> {
    /// The accept thread's name.
    thread: &'static str,
    /// What connection threads are named, before `-<peer>`.
    conn: &'static str,
    /// Written to every connection taken, before its thread starts; what it returns goes
    /// to the serve function (a dsys port's challenge).
    greet: fn(&TcpStream) -> G,
    /// Writes why a connection is turned away, without blocking, and closes it.
    refuse: fn(TcpStream, String),
}

// Not derived: a derive would ask `G: Clone`, which the fields do not need.
impl<G> Clone for Speech<G> {
    fn clone(&self) -> Self {
        Speech { ..*self }
    }
}

/// How a dsys port speaks: the challenge first, refusals in an `Error` frame.
const DSYS: Speech<Challenge> = Speech {
    thread: "accept",
    conn: "conn",
    greet: send_challenge,
    refuse: refuse_at_once,
};

impl AcceptLoop {
    /// Starts the `accept` thread on `listener`: every connection is challenged
    /// (`net::send_challenge`) and gets its own thread, with `stack_size` bytes of stack,
    /// that runs `serve` with the stream and its challenge; beyond `max_connections` open
    /// at once, a new connection is refused (see [`accept_loop`]). The listener moves into the
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
        F: Fn(TcpStream, Challenge) -> Result<()> + Clone + Send + 'static,
    {
        AcceptLoop::start_speaking(listener, &DSYS, max_connections, stack_size, serve)
    }

    /// [`AcceptLoop::start`] for a port that does not speak the dsys protocol (the metrics
    /// port, `net/metrics_http.rs`): the same limits, the same out-of-descriptors rule and
    /// the same stop, but the accept thread is named `thread` and its connection threads
    /// `thread-<peer>`, a newcomer is not challenged, and one turned away is written
    /// `refuse(stream, reason)` instead of an `Error` frame (a write that must not block).
    ///
    /// # Errors
    /// As [`AcceptLoop::start`].
    pub fn start_plain<F>(
        listener: TcpListener,
        thread: &'static str,
        refuse: fn(TcpStream, String),
        max_connections: usize,
        stack_size: usize,
        serve: F,
    ) -> io::Result<AcceptLoop>
    where
        F: Fn(TcpStream) -> Result<()> + Clone + Send + 'static,
    {
        let speech = Speech {
            thread,
            conn: thread,
            greet: |_: &TcpStream| (),
            refuse,
        };
        AcceptLoop::start_speaking(
            listener,
            &speech,
            max_connections,
            stack_size,
            move |s, ()| serve(s),
        )
    }

    fn start_speaking<G, F>(
        listener: TcpListener,
        speech: &Speech<G>,
        max_connections: usize,
        stack_size: usize,
        serve: F,
    ) -> io::Result<AcceptLoop>
    where
        G: Send + 'static,
        F: Fn(TcpStream, G) -> Result<()> + Clone + Send + 'static,
    {
        let wake_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let speech = speech.clone();
        let thread = {
            let stopping = stopping.clone();
            thread::Builder::new()
                .name(speech.thread.into())
                .spawn(move || {
                    accept_loop(
                        listener,
                        stopping,
                        &speech,
                        max_connections,
                        stack_size,
                        serve,
                    )
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
/// set, greets each one as `speech` says (a dsys port's challenge) and gives it its own
/// thread (named `conn-<peer>` on a dsys port, with `stack_size` bytes of stack) that runs
/// `serve`. A connection's error is logged and costs only that
/// connection. Beyond `max_connections` open at once, a new connection gets a refusal
/// instead of a thread. It runs on the thread of an [`AcceptLoop`], whose
/// [`stop`](AcceptLoop::stop) sets `stopping` and then connects once to wake it.
fn accept_loop<G, F>(
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    speech: &Speech<G>,
    max_connections: usize,
    stack_size: usize,
    serve: F,
) where
    G: Send + 'static,
    F: Fn(TcpStream, G) -> Result<()> + Clone + Send + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    let mut refused: u64 = 0;
    // Opened first, so that the process meets its limit with the spare already held.
    let mut spare = SpareDescriptor::new();
    let mut out_of_files = OutOfFiles::default();
    for accepted in listener.incoming() {
        let stream = match accepted {
            Ok(stream) => Some(stream),
            Err(e) if limits::is_out_of_descriptors(&e) => accept_at_the_limit(
                &listener,
                speech.refuse,
                &mut spare,
                &open,
                &mut out_of_files,
            ),
            Err(e) => {
                log::warn!("accept failed: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
                None
            }
        };
        // Looked at after every accept, whichever path took it: the connection may be the
        // wake-up of `stop`.
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Some(stream) = stream else {
            continue;
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
            refuse_busy(stream, speech.refuse, max_connections);
            continue;
        }
        let challenge = (speech.greet)(&stream);
        let slot = OpenSlot::take(&open);
        let serve = serve.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}-{peer}", speech.conn))
            .stack_size(stack_size)
            .spawn(move || {
                let _slot = slot; // given back when the connection ends, however it ends
                if let Err(e) = serve(stream, challenge) {
                    log_closed(&peer, &e);
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
    }
    log::debug!("accept loop stopped");
}

/// Logs why a connection ended in error, on its own thread. A peer that broke the protocol
/// or missed a deadline is a WARN: something an operator may want to look at. A peer that
/// went away under us (a reset, a broken pipe) did nothing wrong: whatever its going means
/// (a crashed server, a client killed mid-send) is said by the role that sees it, so here
/// it is an INFO. The reason may quote the peer's own words (the text of its `Error`
/// frame), so it is written escaped (`{:?}`): a peer cannot put a control character into
/// the operator's terminal.
fn log_closed(peer: &str, error: &crate::Error) {
    let level = if error.is_closed_by_peer() {
        log::Level::Info
    } else {
        log::Level::Warn
    };
    log::log!(
        level,
        "connection closed peer={peer} reason={:?}",
        error.to_string()
    );
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

/// Tells a connection over the limit why it is closed, in the port's words (`refuse`:
/// [`refuse_at_once`] on a dsys port).
fn refuse_busy(stream: TcpStream, refuse: fn(TcpStream, String), max_connections: usize) {
    let reason = format!("too many connections ({max_connections} open); try again later");
    refuse(stream, reason);
}

/// What the accept loop does when `accept()` failed for want of a descriptor. The kernel
/// takes the descriptor before it looks for a connection, so this also happens with nobody
/// waiting. Frees the spare and accepts with it, waiting for a newcomer if none is queued
/// yet. If the spare can be taken back then, descriptors came back meanwhile (clients left
/// while this thread waited): the newcomer is returned, to be served. If not, the process
/// is still at its limit: the newcomer is told so ([`refuse_at_once`]) and closed, the
/// spare is taken back with its descriptor, the refusal is counted for the log, and the
/// thread pauses for [`OUT_OF_FILES_PAUSE`]. Returns `None` then, and when the accept
/// failed.
///
/// The accept fails when another thread took the freed descriptor first (say, a heartbeat
/// opening its connection to the coordinator while this thread waited for a newcomer).
/// The spare is lost then, and without it no newcomer could be told anything: each would
/// wait in the listen queue until its own timeout. So a call that finds the spare gone
/// first takes it back, which succeeds as soon as that thread closes its descriptor, and
/// until then pauses and returns `None`: the newcomer waits for that, not for ever.
fn accept_at_the_limit(
    listener: &TcpListener,
    refuse: fn(TcpStream, String),
    spare: &mut SpareDescriptor,
    open: &AtomicUsize,
    out_of_files: &mut OutOfFiles,
) -> Option<TcpStream> {
    if !spare.take_back() {
        thread::sleep(OUT_OF_FILES_PAUSE);
        return None;
    }
    spare.release();
    let accepted = listener.accept();
    let spared = spare.take_back();
    let stream = match accepted {
        Ok((stream, _)) if spared => return Some(stream),
        Ok((stream, peer)) => {
            let connections = open.load(Ordering::Acquire);
            let reason = format!(
                "server out of file descriptors ({connections} connections open); try \
                 another server"
            );
            refuse(stream, reason);
            spare.take_back();
            out_of_files.refused(&peer.to_string(), connections);
            None
        }
        Err(_) => None,
    };
    thread::sleep(OUT_OF_FILES_PAUSE);
    stream
}

/// Writes `reason` in an `Error` frame and closes the connection. The write is
/// non-blocking, so the accept thread never waits on a stranger: a fresh socket's send
/// buffer takes the few bytes, and if it does not, the peer gets a bare close. The peer
/// has sent nothing yet (it waits for the challenge), so the close is an orderly one and
/// the frame is read before the end of the stream.
fn refuse_at_once(stream: TcpStream, reason: String) {
    let _ = stream.set_nonblocking(true);
    let code = Refusal::Other;
    let _ = (&stream).write_all(&Message::Error { code, reason }.encode());
}

/// The refusals for want of descriptors not logged yet, and when the last warning was:
/// the accept thread warns at most once per [`OUT_OF_FILES_WARNING_EVERY`].
#[derive(Default)]
struct OutOfFiles {
    last_warning: Option<Instant>,
    /// Refusals since `last_warning` (the one that triggers a warning included).
    unlogged: u64,
}

impl OutOfFiles {
    /// Counts one refusal and warns when the last warning is old enough: the first
    /// refusal is logged at once, later ones at most once a second, with their count.
    fn refused(&mut self, peer: &str, connections: usize) {
        self.unlogged += 1;
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < OUT_OF_FILES_WARNING_EVERY)
        {
            return;
        }
        log::warn!(
            "connection refused peer={peer} reason=\"out of file descriptors\" \
             open={connections} refused_since_last_warning={}; raise the open-file limit \
             (ulimit -Hn) or lower --max-connections below it",
            self.unlogged
        );
        self.unlogged = 0;
        self.last_warning = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_within_a_second_of_a_warning_are_counted_for_the_next_one() {
        let mut out_of_files = OutOfFiles::default();
        out_of_files.refused("peer", 3);
        assert_eq!(
            out_of_files.unlogged, 0,
            "the first refusal is logged at once"
        );
        out_of_files.refused("peer", 3);
        out_of_files.refused("peer", 3);
        assert_eq!(
            out_of_files.unlogged, 2,
            "the next ones wait for the next warning"
        );
        // A second later, the next refusal is logged with those before it.
        out_of_files.last_warning = Some(Instant::now() - OUT_OF_FILES_WARNING_EVERY);
        out_of_files.refused("peer", 3);
        assert_eq!(out_of_files.unlogged, 0);
    }

    #[test]
    fn stop_closes_the_port_and_a_second_stop_does_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accept = AcceptLoop::start(listener, 4, 64 * 1024, |_, _| Ok(())).unwrap();
        accept.stop();
        // The listener went with the accept thread, so nobody listens there any more.
        assert!(TcpStream::connect_timeout(&addr, WAKE_TIMEOUT).is_err());
        accept.stop();
    }
}
