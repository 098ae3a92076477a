//! How client events look on stdout: a line for a human, or one JSON object per line with
//! the fields `CONTRACT.md` pins. Everything else the client says goes to stderr as logs.

use std::io::{self, Write};

use super::Event;
use crate::Output;
use crate::support::json::Object;

/// Prints one event on stdout (errors in text mode go to stderr, as one line, where a human
/// sees them without mixing them into the conversation).
///
/// # Errors
/// When stdout cannot be written (a closed pipe, a full disk): the caller stops, since
/// nobody sees the events any more. A failure to write stderr is ignored.
pub fn print(event: &Event, output: Output) -> io::Result<()> {
    let line = match (output, event) {
        (Output::Json, event) => to_json(event),
        (Output::Text, Event::Error { message }) => {
            let _ = writeln!(io::stderr().lock(), "error: {message}");
            return Ok(());
        }
        (Output::Text, other) => to_text(other),
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
        Event::Moved { from, to } => format!("moved: {from} -> {to} (rebalancing)"),
        Event::Reconnected { server } => format!("reconnected to {server}"),
        Event::Gap { from, missed } => {
            format!("gap: {missed} messages from {from} could not be recovered")
        }
        Event::Error { message } => format!("error: {message}"),
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
        Event::Error { message } => Object::new().str("event", "error").str("message", message),
    }
    .finish()
}
