//! How client events look on stdout: a line for a human, or one JSON object per line with
//! the fields `CONTRACT.md` pins. Everything else the client says goes to stderr as logs.
//!
//! **Who calls it.** The printer on the client's main thread, [`print()`] for each event
//! of the session, and `dsys demo`, which shows its sessions' events with [`to_text`]. No
//! thread and no state, so nothing to stop: a write that fails is returned, and the printer
//! then ends the client (exit status 1).
//!
//! **Text from other processes.** Message texts, names, file names and refusal reasons come
//! from other clients and servers, and any of them may carry terminal control sequences.
//! Every line text mode prints, on stdout or stderr, goes through [`visible`] first, so such
//! characters show as escapes and never reach the terminal as orders. JSON output carries the
//! text unchanged: JSON escapes controls itself. The rest: docs/security.md, "Text from other
//! clients: shown, never obeyed".

use std::io::{self, Write};

use super::Event;
use crate::Output;
use crate::support::json::Object;
use crate::support::visible::visible;

/// Prints one event on stdout. In text mode, errors, refusals and warnings go to stderr
/// as one line, where a human sees them without mixing them into the conversation;
/// acknowledgements are not shown, and a fatal error is left to `main`, which prints every
/// role's failure on stderr the same way.
///
/// # Errors
/// When stdout cannot be written (a closed pipe, a full disk): the caller stops, since
/// nobody sees the events any more. A failure to write stderr is ignored.
pub fn print(event: &Event, output: Output) -> io::Result<()> {
    let line = match (output, event) {
        (Output::Json, event) => to_json(event),
        (Output::Text, Event::Acked { .. } | Event::Fatal { .. }) => return Ok(()),
        (Output::Text, Event::Error { .. } | Event::Refused { .. } | Event::Warning { .. }) => {
            let _ = writeln!(io::stderr().lock(), "{}", visible(&to_text(event)));
            return Ok(());
        }
        (Output::Text, other) => visible(&to_text(other)).into_owned(),
    };
    // Not `println!`: it panics when stdout is a closed pipe.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// The event as one line of text.
pub fn to_text(event: &Event) -> String {
    match event {
        Event::Registered { name, server } => {
            format!("Registration successful! name={name} server={server}")
        }
        Event::Message { from, seq, text } => format!("[{from} #{seq}] {text}"),
        Event::File {
            from,
            seq,
            name,
            size,
            path,
        } => format!("[{from} #{seq}] file {name} ({size} bytes) saved to {path}"),
        Event::Failover { from, to } => format!("failover: {from} -> {to}"),
        Event::Moved { from, to } => {
            format!("moved: {from} -> {to} (rebalancing, or a planned stop)")
        }
        Event::Reconnected { server } => format!("reconnected to {server}"),
        Event::Gap { from, missed } => {
            format!("gap: {missed} messages from {from} could not be recovered")
        }
        Event::Error { message } | Event::Refused { message } | Event::Fatal { message } => {
            format!("error: {message}")
        }
        Event::Warning { message } => format!("warning: {message}"),
        Event::Acked { seq } => format!("acknowledged up to #{seq}"),
    }
}

/// The event as one JSON object.
pub fn to_json(event: &Event) -> String {
    match event {
        Event::Registered { name, server } => Object::new()
            .str("event", "registered")
            .str("name", name)
            .str("server", server),
        Event::Message { from, seq, text } => Object::new()
            .str("event", "message")
            .str("from", from)
            .num("seq", *seq)
            .str("text", text),
        Event::File {
            from,
            seq,
            name,
            size,
            path,
        } => Object::new()
            .str("event", "file")
            .str("from", from)
            .num("seq", *seq)
            .str("name", name)
            .num("size", *size)
            .str("path", path),
        Event::Failover { from, to } => Object::new()
            .str("event", "failover")
            .str("from", from)
            .str("to", to),
        Event::Moved { from, to } => Object::new()
            .str("event", "moved")
            .str("from", from)
            .str("to", to),
        Event::Reconnected { server } => Object::new()
            .str("event", "reconnected")
            .str("server", server),
        Event::Gap { from, missed } => Object::new()
            .str("event", "gap")
            .str("from", from)
            .num("missed", *missed),
        Event::Error { message } => error(message, false),
        Event::Refused { message } => error(message, false).bool("refused", true),
        Event::Fatal { message } => error(message, true),
        Event::Warning { message } => Object::new()
            .str("event", "warning")
            .str("message", message),
        Event::Acked { seq } => Object::new().str("event", "acked").num("seq", *seq),
    }
    .finish()
}

/// The `error` event: `fatal` says whether it is the last one before exit status 1.
fn error(message: &str, fatal: bool) -> Object {
    Object::new()
        .str("event", "error")
        .str("message", message)
        .bool("fatal", fatal)
}
