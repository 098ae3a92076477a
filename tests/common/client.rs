//! [`Client`]: a `dsys client --output json` child whose stdout a `stdout-<name>` thread
//! parses into events, which a test awaits one by one or reads all at once.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::checks::{describe_seqs, message_seqs};
use super::helpers::{TempDir, indent};
use super::proc::Proc;
use super::{POLL_PAUSE, TIMEOUT, dsys};

/// A `dsys client --register --output json` child with stdin piped, its JSON events parsed
/// by a background thread, and its own download directory (removed on drop).
pub struct Client {
    /// The name it registered under.
    pub name: String,
    /// The process (kill, stop, wait for exit, stderr). Declared before `download_dir`, so
    /// the client is dead before its directory is removed.
    pub proc: Proc,
    stdin: Option<ChildStdin>,
    /// Events from the `stdout-<name>` thread, which drops its end at end of stdout.
    events_rx: Receiver<Value>,
    /// Events received but not yet matched by `expect_event`, oldest first.
    pending: std::cell::RefCell<VecDeque<Value>>,
    /// Every event the client printed, in order, with when the test read it (for failure
    /// messages, and for tests that time what happened, such as the fault report).
    events_log: Arc<Mutex<Vec<(Instant, Value)>>>,
    download_dir: TempDir,
}

/// The event the stdout reader records for a line that is not a JSON object with a string
/// field `event` (a contract violation that [`Client::expect_event`] reports).
const NOT_AN_EVENT: &str = "harness: not a JSON event";

impl Client {
    /// Starts a client named `name` that asks `coordinator` for a server.
    pub fn start(name: &str, coordinator: &str) -> Client {
        Client::start_with(name, coordinator, None, &[])
    }

    /// Starts a client named `name` on `server` (`--server`); failovers still go through
    /// `coordinator`.
    pub fn start_on(name: &str, coordinator: &str, server: &str) -> Client {
        Client::start_with(name, coordinator, Some(server), &[])
    }

    /// Starts `dsys client --register --output json --name NAME --coordinator ADDR
    /// [--server ADDR] --download-dir DIR EXTRA...` with stdin piped.
    pub fn start_with(
        name: &str,
        coordinator: &str,
        server: Option<&str>,
        extra_args: &[&str],
    ) -> Client {
        Client::start_from(dsys(), name, coordinator, server, extra_args)
    }

    /// [`Client::start_with`] from `cmd`, a command for the `dsys` binary (one that runs it
    /// in a network namespace, say).
    pub fn start_from(
        mut cmd: Command,
        name: &str,
        coordinator: &str,
        server: Option<&str>,
        extra_args: &[&str],
    ) -> Client {
        let download_dir = TempDir::new(&format!("downloads-{name}"));
        cmd.args(["client", "--register", "--output", "json", "--name", name])
            .args(["--coordinator", coordinator]);
        if let Some(server) = server {
            cmd.args(["--server", server]);
        }
        cmd.arg("--download-dir")
            .arg(download_dir.path())
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(format!("client {name}"), cmd);
        let stdin = proc.take_stdin();
        let stdout = proc.take_stdout().expect("stdout was set to piped above");

        let events_log = Arc::new(Mutex::new(Vec::new()));
        let (events_tx, events_rx) = channel();
        let log = Arc::clone(&events_log);
        thread::Builder::new()
            .name(format!("stdout-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let event = match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v["event"].is_string() => v,
                        _ => serde_json::json!({ "event": NOT_AN_EVENT, "line": line }),
                    };
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), event.clone()));
                    // Keep reading after the Client is gone, so the child never blocks.
                    let _ = events_tx.send(event);
                }
            })
            .expect("cannot start a stdout reader thread");

        Client {
            name: name.to_string(),
            proc,
            stdin,
            events_rx,
            pending: Default::default(),
            events_log,
            download_dir,
        }
    }

    /// Where this client saves received files.
    pub fn download_dir(&self) -> &Path {
        self.download_dir.path()
    }

    /// Types one line on the client's stdin: a text message, or `/file PATH`.
    ///
    /// # Panics
    /// When stdin was closed or the client is gone.
    pub fn send_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("stdin of client {name} is already closed"));
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!(
                "cannot write to client {name}'s stdin: {e}; its stderr:\n{}",
                self.proc.stderr_report()
            );
        }
    }

    /// Closes stdin: end of input, so the client finishes sending, deregisters and exits 0.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Takes the client's stdin, for a sender thread to write to (dropping it closes it).
    ///
    /// # Panics
    /// When stdin was already taken or closed.
    pub fn take_stdin(&mut self) -> ChildStdin {
        let name = &self.name;
        self.stdin
            .take()
            .unwrap_or_else(|| panic!("stdin of client {name} is already taken or closed"))
    }

    /// Closes stdin, waits until the client exits and until its stdout reader has read
    /// everything, and returns the exit status: from then on [`Client::events_so_far`] is
    /// the client's whole output.
    ///
    /// # Panics
    /// When the client does not exit, or does not close its stdout, within `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        self.close_stdin();
        let status = self.proc.wait_exit(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events_rx.recv_timeout(left) {
                Ok(event) => self.pending.borrow_mut().push_back(event),
                Err(RecvTimeoutError::Disconnected) => return status,
                Err(RecvTimeoutError::Timeout) => self.fail(
                    "the end of its stdout",
                    &format!("it exited ({status}) but its stdout stayed open"),
                ),
            }
        }
    }

    /// Waits until this client has printed at least `count` messages from each of
    /// `senders`, polling its event log.
    ///
    /// # Panics
    /// After `timeout`, with each sender's seqs so far summarised (see [`describe_seqs`])
    /// and the client's stderr.
    pub fn wait_messages(&self, senders: &[&str], count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_so_far();
            let short: Vec<&str> = senders
                .iter()
                .copied()
                .filter(|s| message_seqs(&events, s).len() < count)
                .collect();
            if short.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = senders
                    .iter()
                    .map(|s| format!("from {s}: {}", describe_seqs(&message_seqs(&events, s))))
                    .collect();
                let other: Vec<String> = events
                    .iter()
                    .filter(|e| e["event"] != "message")
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "client {} did not print {count} messages from each of {senders:?} within \
                     {timeout:?}\nits messages:\n{}\nits other events:\n{}\nits stderr:\n{}",
                    self.name,
                    indent(&seen),
                    indent(&other),
                    self.proc.stderr_report()
                );
            }
            thread::sleep(POLL_PAUSE);
        }
    }

    /// Every event printed so far, in order (including those already matched).
    pub fn events_so_far(&self) -> Vec<Value> {
        self.timed_events_so_far()
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    /// [`Client::events_so_far`], each with the moment the test read it from the client's
    /// stdout (within a millisecond of the client printing it, on an idle machine).
    pub fn timed_events_so_far(&self) -> Vec<(Instant, Value)> {
        self.events_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blocks until an event satisfying `pred` arrives, and returns it. Events that do not
    /// match are set aside, not lost: a later call sees them first, in arrival order.
    ///
    /// # Panics
    /// After `timeout`, when the client closes its stdout (it exited), or when it prints a
    /// line that is not a JSON event; the message names `what` and shows every event and
    /// the stderr so far.
    pub fn expect_event(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        {
            let mut pending = self.pending.borrow_mut();
            if let Some(i) = pending.iter().position(&mut pred) {
                return pending.remove(i).expect("the index was just found");
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events_rx.recv_timeout(left) {
                Ok(event) if event["event"] == NOT_AN_EVENT => self.fail(
                    what,
                    &format!(
                        "printed a stdout line that is not a JSON event: {}",
                        event["line"]
                    ),
                ),
                Ok(event) if pred(&event) => return event,
                Ok(event) => self.pending.borrow_mut().push_back(event),
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(what, &format!("did not print it within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(what, "closed its stdout (exited?) first")
                }
            }
        }
    }

    fn fail(&self, what: &str, why: &str) -> ! {
        let events: Vec<String> = self.events_so_far().iter().map(Value::to_string).collect();
        panic!(
            "client {} was expected to print {what}, but {why}\nits events:\n{}\nits stderr:\n{}",
            self.name,
            indent(&events),
            self.proc.stderr_report()
        )
    }

    /// Waits for the `registered` event and returns its `server` field (`host:port`).
    pub fn wait_registered(&self) -> String {
        let event = self.expect_event("a `registered` event", TIMEOUT, |v| {
            v["event"] == "registered"
        });
        event["server"]
            .as_str()
            .unwrap_or_else(|| panic!("`registered` without a string `server`: {event}"))
            .to_string()
    }

    /// Waits for `count` `message` events from `from` and returns them in arrival order
    /// (other events are set aside for later calls).
    pub fn messages_from(&self, from: &str, count: usize) -> Vec<Value> {
        (1..=count)
            .map(|i| {
                self.expect_event(
                    &format!("message {i} of {count} from {from}"),
                    TIMEOUT,
                    |v| v["event"] == "message" && v["from"] == from,
                )
            })
            .collect()
    }

    /// Waits for `count` messages from `from` and returns their `text` fields.
    pub fn texts_from(&self, from: &str, count: usize) -> Vec<String> {
        self.messages_from(from, count)
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
