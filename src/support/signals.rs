//! SIGINT and SIGTERM as a stop channel, and a parent-death signal for child processes.
//!
//! **Who calls it.** Each role's `run` and the demo take [`stop_on_signal`] (a server also
//! [`stop_at_once_on_signal`], for a second signal during a planned stop);
//! `tools/children.rs` and the tests' child processes use [`die_with_parent`].
//!
//! **Threads.** The handler only writes a byte to a pipe; the `signals` thread reads it and
//! drops a `Sender`, so every receiver sees `Disconnected` at once ("stop means
//! disconnect"). It lives as long as the process. The C functions are declared by hand (no
//! `libc` crate). The self-pipe trick, step by step: `docs/shutdown.md`, "Ctrl-C: from a
//! signal to a channel".

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use crossbeam_channel::{Receiver, bounded};

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

/// The write end of the self-pipe, or -1 before [`stop_on_signal`] installs the handler.
static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_signum: i32) {
    let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid one-byte static.
        unsafe {
            write(fd, b"x".as_ptr(), 1);
        }
    }
}

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
    PIPE_WRITE_FD.store(pipe_tx.into_raw_fd(), Ordering::Relaxed);
    // SAFETY: `on_signal` only performs an async-signal-safe write(2).
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
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
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and is async-signal-safe.
    let rc = unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
