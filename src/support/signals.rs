//! SIGINT and SIGTERM as a stop channel, and a parent-death signal for child processes.
//!
//! **Who calls it.** Each role's `run` and the demo take [`stop_on_signal`] (a server also
//! [`stop_at_once_on_signal`], for a second signal during a planned stop);
//! `tools/children.rs` and the tests' child processes use [`die_with_parent`].
//!
//! **Threads.** The handler only writes a byte to a pipe; the `signals` thread reads it and
//! drops a `Sender`, so every receiver sees `Disconnected` at once ("stop means
//! disconnect"). It lives as long as the process. `signal`, `write` and `prctl` come from
//! `sys.rs`. The self-pipe trick, step by step: `docs/shutdown.md`, "Ctrl-C: from a
//! signal to a channel".

use std::io::{PipeWriter, Read};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, bounded};

use super::sys::{self, SignalHandler};

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The write end of the self-pipe, set once before the handler is installed and never
/// closed. Reading a set `OnceLock` never blocks and allocates nothing, so the handler may read it.
static PIPE_WRITE: OnceLock<PipeWriter> = OnceLock::new();

extern "C" fn on_signal(_signum: i32) {
    if let Some(pipe) = PIPE_WRITE.get() {
        // Nothing to do if it fails: a handler can neither log nor retry safely.
        let _ = sys::write(pipe.as_fd(), b"x");
    }
}

// SAFETY: `on_signal` reads a `OnceLock` set before the handler is installed, which never
// blocks, and calls write(2), which is async-signal-safe.
const ON_SIGNAL: SignalHandler = unsafe { SignalHandler::new(on_signal) };

/// Returns a receiver that disconnects on the first SIGINT or SIGTERM. Installs the
/// handlers on first use; later calls return clones of the same receiver.
///
/// Nothing is ever sent on the channel: waiting code uses it in `select!` and treats
/// `Disconnected` as "stop now".
pub fn stop_on_signal() -> Receiver<()> {
    receivers().0.clone()
}

/// Returns a receiver that disconnects on the *second* SIGINT or SIGTERM: what a process
/// still stopping after the first one takes as "stop now". Installs the handlers on first
/// use, as [`stop_on_signal`] does.
pub fn stop_at_once_on_signal() -> Receiver<()> {
    receivers().1.clone()
}

/// The first-signal and second-signal receivers, installed once.
fn receivers() -> &'static (Receiver<()>, Receiver<()>) {
    static RECEIVERS: OnceLock<(Receiver<()>, Receiver<()>)> = OnceLock::new();
    RECEIVERS.get_or_init(install)
}

fn install() -> (Receiver<()>, Receiver<()>) {
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (again_tx, again_rx) = bounded::<()>(0);
    let Ok((mut pipe_rx, pipe_tx)) = std::io::pipe() else {
        log::warn!("cannot create the signal pipe; Ctrl-C will end the process abruptly");
        // Never disconnect: behave as if no signal ever comes.
        std::mem::forget(stop_tx);
        std::mem::forget(again_tx);
        return (stop_rx, again_rx);
    };
    // `install` runs once (`receivers`), so the cell is empty.
    let _ = PIPE_WRITE.set(pipe_tx);
    // signal(2) fails only for a signal that cannot be caught, and these two can.
    let _ = sys::signal(SIGINT, ON_SIGNAL);
    let _ = sys::signal(SIGTERM, ON_SIGNAL);
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            let _ = pipe_rx.read(&mut byte);
            log::info!("signal received, stopping");
            drop(stop_tx);
            // A handler writes one byte per signal, so the next byte is the second signal.
            let _ = pipe_rx.read(&mut byte);
            log::debug!("second signal received");
            drop(again_tx);
        });
    if spawned.is_err() {
        log::warn!("cannot start the signal thread; Ctrl-C will end the process abruptly");
    }
    (stop_rx, again_rx)
}

/// Asks the kernel to SIGKILL the calling process when its parent dies. Called in a child
/// between fork and exec (see `Command::pre_exec`), so that children of `dsys demo` or of a
/// test never outlive it, even when it is killed with SIGKILL itself.
///
/// # Errors
/// The OS error of prctl(2).
pub fn die_with_parent() -> std::io::Result<()> {
    sys::set_parent_death_signal(SIGKILL)
}
