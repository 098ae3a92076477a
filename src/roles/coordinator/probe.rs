//! Asking a server whether it still answers, from the coordinator's side: the probe of a
//! server whose heartbeat is late ([`probe`], run on a `probe-<addr>` thread started by the
//! watchdog), and the bare reachability check a client's report of a lost server triggers
//! ([`answers_connect`], run on that client's locate connection thread). Each blocks its
//! caller for at most its deadline; neither holds the registry's lock.

use std::net::TcpStream;
use std::time::Duration;

use crate::auth::Secret;
use crate::error::Error;
use crate::net;
use crate::protocol::{Role, read_message};

/// How long the coordinator waits when it checks a server that a client reported as lost.
///
/// A dead process on a reachable host refuses at once; a hung one is accepted by its
/// kernel. Either answer comes in well under this on any network dsys is meant for.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Asks the server at `addr` whether it still answers: opens a connection with role
/// `Probe`, to which the server replies with one `Keepalive` from a fresh connection thread.
/// Any reply within `deadline` counts, even a refusal (say, too many connections): the
/// process runs. Silence, a refused connection or a reset do not. Blocks for at most about
/// twice `deadline` (the connect, then the reply).
pub(super) fn probe(addr: &str, deadline: Duration, secret: Option<&Secret>) -> bool {
    match net::connect_as(addr, Role::Probe, deadline, secret) {
        Ok(mut stream) => matches!(read_message(&mut stream), Ok(Some(_))),
        Err(Error::Refused(_)) => true,
        Err(_) => false,
    }
}

/// True when something accepts a TCP connection at `addr` within [`PROBE_TIMEOUT`].
pub(super) fn answers_connect(addr: &str) -> bool {
    net::resolve(addr)
        .ok()
        .and_then(|sock| TcpStream::connect_timeout(&sock, PROBE_TIMEOUT).ok())
        .is_some()
}
