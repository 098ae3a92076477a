//! [`Proc`]: one `dsys` child process, SIGKILLed and reaped when dropped. Its `stderr-<name>`
//! thread drains the child's stderr into a channel that the test awaits and into a log for
//! failure messages.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::POLL_PAUSE;
use super::helpers::indent;

/// A child process guard: the child is SIGKILLed and reaped when this is dropped.
///
/// Its stderr is read line by line by a background thread, both into a channel that
/// [`Proc::wait_for_stderr`] consumes and into a shared log for failure messages.
pub struct Proc {
    /// Who this is in failure messages ("coordinator", "client alice", ...). Visible to
    /// the harness so that `start_server_with` can name a server after the address it bound.
    pub(super) name: String,
    child: Child,
    /// Lines of stderr not yet looked at by `wait_for_stderr`. The other end is held by the
    /// `stderr-<name>` thread, which drops it at end of file: a disconnect means the child
    /// closed its stderr (it exited or was killed) and every line has been read.
    stderr_rx: Receiver<String>,
    /// Every stderr line so far, in order. The reader pushes here *before* it sends on the
    /// channel, so this is always at least as complete as what the channel delivered.
    stderr_log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` with stderr piped and drained in the background. stdin and stdout are
    /// left as `cmd` configures them (take them with [`Proc::take_stdin`] /
    /// [`Proc::take_stdout`] when piped).
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Proc {
        let name = name.into();
        cmd.stderr(Stdio::piped());
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(dsys::support::signals::die_with_parent);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stderr = child.stderr.take().expect("stderr was set to piped above");
        let stderr_log = Arc::new(Mutex::new(Vec::new()));
        let (stderr_tx, stderr_rx) = channel();
        let log = Arc::clone(&stderr_log);
        thread::Builder::new()
            .name(format!("stderr-{name}"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                    // The receiver may be gone (the Proc was dropped); keep draining anyway
                    // until end of file, so the child never blocks on a full pipe.
                    let _ = stderr_tx.send(line);
                }
            })
            .expect("cannot start a stderr reader thread");
        Proc {
            name,
            child,
            stderr_rx,
            stderr_log,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's peak resident memory so far, in bytes (`VmHWM` in `/proc/PID/status`).
    ///
    /// # Panics
    /// When the process has exited or the field cannot be read.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// The child's resident memory now, in bytes (`VmRSS`).
    ///
    /// # Panics
    /// As [`Proc::peak_rss_bytes`].
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// How many descriptors the child holds open now (entries of `/proc/PID/fd`).
    ///
    /// # Panics
    /// When the process has exited or the directory cannot be read.
    pub fn open_fds(&self) -> usize {
        let path = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
            .count()
    }

    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|kib| kib.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Who this process is in failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The piped stdin of the child, if it was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The piped stdout of the child, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Every stderr line the child has written so far (as far as the reader has got).
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stderr so far as one indented block, for failure messages.
    pub fn stderr_report(&self) -> String {
        indent(&self.stderr_so_far())
    }

    /// Blocks until the child writes a stderr line containing `pattern`, and returns that
    /// line. Looks only at lines after the one an earlier call returned (lines skipped on
    /// the way are not seen again by later calls, but stay in the failure report).
    ///
    /// # Panics
    /// After `timeout`, or as soon as the child closes its stderr (it exited), with the
    /// pattern awaited and the stderr so far.
    pub fn wait_for_stderr(&self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not log {pattern:?} within {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its stderr (exited?) before logging {pattern:?}; its stderr:\n{}",
                    self.name,
                    self.stderr_report()
                ),
            }
        }
    }

    /// Blocks until the child has closed its stderr and the reader has read all of it, then
    /// returns every line. Use after [`Proc::wait_exit`] to check what a process printed.
    ///
    /// # Panics
    /// When stderr is still open after `timeout`.
    pub fn stderr_to_end(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return self.stderr_so_far(),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not close its stderr within {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
            }
        }
    }

    /// SIGKILLs the child (a crash, as far as its peers can tell) and reaps it.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn kill(&mut self) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("cannot SIGKILL {}: {e}", self.name));
        let _ = self.child.wait();
    }

    /// SIGSTOPs the child: it hangs, with its sockets still open.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// SIGCONTs a stopped child: it wakes up where it was.
    pub fn cont(&self) {
        self.signal("-CONT");
    }

    /// SIGTERMs the child: what `kill PID`, systemd and a container runtime send to ask a
    /// process to end. Does not wait for it.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal with kill(1): the runtime crates include no `libc`.
    fn signal(&self, flag: &str) {
        let status = Command::new("kill")
            .arg(flag)
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {flag} for {}: {e}", self.name));
        assert!(
            status.success(),
            "kill {flag} {} failed: {status}",
            self.name
        );
    }

    /// Its exit status if it has exited (reaping it), or `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name))
    }

    /// Blocks until the child exits and returns its status (polls every [`POLL_PAUSE`]).
    ///
    /// # Panics
    /// When it is still running after `timeout`, with its stderr so far.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL_PAUSE),
                Ok(None) => panic!(
                    "{} still running after {timeout:?}; its stderr so far:\n{}",
                    self.name,
                    self.stderr_report()
                ),
                Err(e) => panic!("cannot wait for {}: {e}", self.name),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Fails only when the child is already reaped; either way it is gone afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
