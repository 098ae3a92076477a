//! Asking a server whether it still answers, from the coordinator's side: the probe of a
//! server whose heartbeat is late ([`probe`]), and the check of a server that a client
//! reported as lost ([`is_gone`]). Both connect and wait for the server's first frame; what
//! counts as an answer, and why, is said at each.
//!
//! **Who calls it.** [`probe`] runs on a `probe-<addr>` thread that the watchdog's round
//! starts (`Coordinator::start_probe`), which records the answer in the registry;
//! [`is_gone`] runs on a locate connection's thread (`Coordinator::locate`). Neither holds
//! the registry's lock.
//!
//! **How it stops.** Each blocks its caller for at most about twice its deadline (the
//! connect, then the first frame), then closes its connection. `docs/heartbeats-and-failover.md`
//! ("Late is not dead: the probe") tells the rest.

use std::time::Duration;

use crate::net;
use crate::protocol::read_message;

/// How long the coordinator waits when it checks a server that a client reported as lost.
///
/// A dead process on a reachable host refuses at once; a hung one is accepted by its
/// kernel. Either answer comes in well under this on any network dsys is meant for.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Asks the server at `addr` whether it still answers: connects and waits for the first
/// frame, which the server's accept thread sends as soon as it takes the connection (the
/// `Challenge`, or an `Error` refusing it, say for too many connections), then closes
/// without a word. Any frame within `deadline` counts: the process runs, and its accept
/// thread with it. Silence, a refused connection or a reset do not: a hung (stopped)
/// process's kernel completes the connection, but nobody sends a byte.
///
/// It asks no more than that on purpose. A server so busy that its heartbeat is late may
/// also be slow to start a thread (thousands of its threads ending at once all wait on the
/// kernel's lock of its memory map), and a probe that waited for a new thread's answer once
/// took such a server for a dead one. Blocks for at most about twice `deadline` (the
/// connect, then the frame).
pub(super) fn probe(addr: &str, deadline: Duration) -> bool {
    let Ok(mut stream) = net::connect(addr, deadline) else {
        return false;
    };
    matches!(read_message(&mut stream), Ok(Some(_)))
}

/// True when the server at `addr` is gone ([`net::is_gone`], given [`PROBE_TIMEOUT`]).
pub(super) fn is_gone(addr: &str) -> bool {
    net::is_gone(addr, PROBE_TIMEOUT)
}
