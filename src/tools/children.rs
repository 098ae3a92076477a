//! Coordinators and servers started as child processes of this executable, for the
//! subcommands that run a whole cluster on one machine: `dsys demo` and `dsys bench`.
//!
//! They are real processes, not threads, so that killing a server is a real `SIGKILL` and a
//! server's CPU time can be read from `/proc`. Each child is held by a [`ChildGuard`] that
//! kills it on drop, and dies with this process (parent-death signal), so nothing outlives
//! the subcommand that started it: not at the end, not on an error, not on Ctrl-C.
//!
//! **Threads.** One `log-<child>` thread per child drains its stderr: it picks out the
//! address from the "listening on ADDR" line and hands the lines that `forward` keeps to the
//! caller's channel, and ends when the child's stderr closes. Why the guards and the signal:
//! `docs/shutdown.md`, "Children of the demo and of the tests".

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::error::{Error, Result};
use crate::support::signals;

/// How long a child may take to start listening. Generous: it takes milliseconds on an
/// idle machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    label: String,
    child: Child,
    log: Option<JoinHandle<()>>,
}

impl ChildGuard {
    /// Kills the child (SIGKILL), reaps it and waits for its log thread.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = self.log.take() {
            let _ = log.join(); // ends at the child's end of stderr
        }
    }

    /// Sends the child SIGKILL and returns at once. The kernel's teardown of a busy
    /// server (its threads, its sockets) takes tens of milliseconds; a caller timing what
    /// a crash costs others must not stand still through it. The child is reaped when the
    /// guard drops.
    pub fn kill_without_waiting(&mut self) {
        let _ = self.child.kill();
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        log::debug!("stopped {}", self.label);
    }
}

/// A command that runs this executable again with `args`, as a child that dies with this
/// process (a parent-death signal), so no child outlives a bench or a demo killed hard.
///
/// # Errors
/// When the path of this executable cannot be read.
pub fn this_executable(args: &[impl AsRef<std::ffi::OsStr>]) -> Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(args);
    // SAFETY: the closure runs between fork and exec and only calls prctl(2).
    unsafe {
        command.pre_exec(signals::die_with_parent);
    }
    Ok(command)
}

/// Starts `dsys <args>` as a child (with `RUST_LOG=info`) and returns it with the address
/// from its "listening on ADDR" log line. Each other line of its log that `forward` maps to
/// `Some` goes to `lines_tx`.
///
/// # Errors
/// When the child cannot start, or does not say where it listens within [`START_TIMEOUT`].
pub fn spawn_role(
    label: &str,
    args: &[impl AsRef<std::ffi::OsStr>],
    forward: fn(&str) -> Option<String>,
    lines_tx: &Sender<String>,
) -> Result<(ChildGuard, String)> {
    let mut command = this_executable(args)?;
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let Some(stderr) = child.stderr.take() else {
        return Err(Error::Failed(format!("{label} has no stderr to read"))); // piped above
    };
    let (addr_tx, addr_rx) = bounded(1);
    let lines_tx = lines_tx.clone();
    let log = thread::Builder::new()
        .name(format!("log-{label}"))
        .spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.try_send(addr.to_string());
                } else if let Some(kept) = forward(&line) {
                    let _ = lines_tx.send(kept);
                }
            }
        })?;
    let guard = ChildGuard {
        label: label.to_string(),
        child,
        log: Some(log),
    };
    let addr = addr_rx
        .recv_timeout(START_TIMEOUT)
        .map_err(|_| Error::Failed(format!("{label} did not start listening")))?;
    Ok((guard, addr))
}
