//! One-shot `dsys` commands: [`run_dsys`] runs one to completion and returns a [`Finished`]
//! with everything it printed; [`unused_addr`] gives an address where nothing listens.

use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::dsys;
use super::proc::Proc;

/// What a `dsys` command that ran to completion left behind.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Every line it wrote on stderr.
    pub stderr: Vec<String>,
}

impl Finished {
    /// The exit code (`None` when a signal ended the process).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The stderr lines that are not blank.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `dsys ARGS` with `envs` added to [`dsys()`]'s environment and stdin empty, waits for
/// it to exit, and returns what it printed.
///
/// # Panics
/// When it does not exit within `timeout`.
pub fn run_dsys(args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Finished {
    let mut cmd = dsys();
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(format!("dsys {}", args.join(" ")), cmd);
    let mut stdout = proc.take_stdout().expect("stdout was set to piped above");
    // The reader is scoped (STYLE S8): it is joined, and its panic would fail the test.
    thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        // A command that does not exit must fail the test, not hang it: the scope joins the
        // reader, which reads until the child's stdout closes, so the child is killed first.
        let status = match panic::catch_unwind(AssertUnwindSafe(|| proc.wait_exit(timeout))) {
            Ok(status) => status,
            Err(failure) => {
                proc.kill();
                panic::resume_unwind(failure);
            }
        };
        let stderr = proc.stderr_to_end(timeout);
        let stdout = reader.join().expect("the stdout reader does not panic");
        Finished {
            status,
            stdout,
            stderr,
        }
    })
}

/// A `127.0.0.1` address where nothing listens: bind port 0, read it, drop the listener.
///
/// Another process could take the port in between; on a test machine that is rare enough,
/// and a test using it would then fail loudly rather than pass wrongly.
pub fn unused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local_addr of a bound listener");
    addr.to_string()
}
