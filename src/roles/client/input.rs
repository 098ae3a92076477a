//! The client's input: what each line of stdin becomes, read with bounded memory.
//!
//! **The rules** are [`HELP`] (the tail of `dsys client --help` too): a line is one text
//! message, sent as it is; a line that starts with a single `/` is a command (`/file PATH`,
//! `/help`), never text, and `//text` sends `/text`; a line that cannot be sent (not UTF-8,
//! too long, an unknown command) becomes one `error` event, and the next lines go on.
//!
//! **Who calls it.** [`read_input`] runs on the client's `stdin` thread and feeds the
//! session's bounded command channel, so a session waiting for acks slows the reader down. A
//! line is read ([`read_line`]) into at most one message ([`MAX_PAYLOAD_LEN`]) plus a byte;
//! the rest of a longer line is only counted, so a line of gigabytes costs about 1 MiB.
//!
//! **How it stops.** End of stdin (or a read error, reported first) returns and drops the
//! command sender, which tells the session that input is over; a session that has ended
//! makes the next send fail, and the reader returns too. The rest: docs/architecture.md.

use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crossbeam_channel::Sender;

use super::Command;
use crate::protocol::MAX_PAYLOAD_LEN;

/// What `/help` prints, and the tail of `dsys client --help`.
pub const HELP: &str = "\
Input: each line of stdin is one message to every other client.
  /file PATH   send the file at PATH
  /help        print this help on stderr (nothing is sent)
  //TEXT       send a line that starts with '/' (the first '/' is dropped)
A line that starts with a single '/' is a command, never sent as text: an unknown one is
refused with an error, as is a line that is not UTF-8 or is longer than one message
(1,044,480 bytes); the next lines go on. At the end of input (Ctrl-D) the client waits until
everything it sent is acknowledged, then leaves: exit status 0, or 1 if it refused any line
or file (its last line on stderr says how many). To receive only, use --listen.";

/// Longest piece of an unknown command word quoted back in the error.
const MAX_QUOTED: usize = 32;

/// One line of input, without its line end.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The whole line: at most the cap it was read with.
    Fits(Vec<u8>),
    /// A line longer than the cap; only its length is kept.
    TooLong(usize),
}

/// What one line of input asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this.
    Send(Command),
    /// Print [`HELP`]; send nothing.
    Help,
    /// Send nothing and report why, as an `error` event.
    Refuse(String),
}

/// Reads one line from `reader` into memory, at most `cap` bytes of it; a longer line is
/// read to its end and discarded, and only its length is returned. A last line without a
/// line end counts as a line. Blocks until a whole line (or the end of input) is in.
///
/// Returns `None` at the end of input.
///
/// # Errors
/// A read error of `reader` (other than `Interrupted`, which is retried).
pub fn read_line(reader: &mut impl BufRead, cap: usize) -> io::Result<Option<Line>> {
    let mut kept: Vec<u8> = Vec::new();
    let mut len = 0; // bytes in the line so far, line end excluded
    let mut last = None; // its last byte, to drop the '\r' of a "\r\n"
    let mut started = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(started.then(|| finish(kept, len, last, cap)));
        }
        started = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        // Keep one byte beyond the cap: a line of exactly `cap` bytes plus '\r' still fits.
        let room = (cap + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&part[..part.len().min(room)]);
        len += part.len();
        last = part.last().copied().or(last);
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(finish(kept, len, last, cap)));
        }
    }
}

fn finish(mut kept: Vec<u8>, mut len: usize, last: Option<u8>, cap: usize) -> Line {
    if last == Some(b'\r') {
        len -= 1;
        if kept.len() > len {
            kept.truncate(len);
        }
    }
    if len > cap {
        Line::TooLong(len)
    } else {
        Line::Fits(kept)
    }
}

/// What the line numbered `number` (from 1) asks for ([the rules](self)).
pub fn parse(line: Line, number: u64) -> Input {
    let bytes = match line {
        Line::TooLong(len) => return Input::Refuse(too_long(&format!("line {number}"), len)),
        Line::Fits(bytes) => bytes,
    };
    if bytes.starts_with(b"//") {
        return text(bytes[1..].to_vec(), number);
    }
    let Some(command) = bytes.strip_prefix(b"/") else {
        return text(bytes, number);
    };
    let word_end = command
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(command.len());
    let (word, rest) = command.split_at(word_end);
    let argument = rest.trim_ascii();
    match word {
        b"file" if argument.is_empty() => Input::Refuse(format!(
            "line {number}: /file needs a path: /file PATH sends the file at PATH; nothing \
             was sent"
        )),
        // A path is bytes on Linux: one that is not UTF-8 is still a path.
        b"file" => Input::Send(Command::File {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(argument)),
            line: Some(number),
        }),
        b"help" => Input::Help,
        _ => {
            let shown = String::from_utf8_lossy(&word[..word.len().min(MAX_QUOTED)]);
            Input::Refuse(format!(
                "line {number}: unknown command /{shown}; nothing was sent. Commands are \
                 /file PATH and /help; to send a line that starts with '/', double it: \
                 //{shown}..."
            ))
        }
    }
}

/// A text line, if it is UTF-8.
fn text(bytes: Vec<u8>, number: u64) -> Input {
    match String::from_utf8(bytes) {
        Ok(text) => Input::Send(Command::Text(text)),
        Err(e) => Input::Refuse(format!(
            "line {number} is not UTF-8 text (invalid byte at position {}); it was not sent",
            e.utf8_error().valid_up_to() + 1
        )),
    }
}

/// The reason a text of `len` bytes is not sent: over [`MAX_PAYLOAD_LEN`], what one message
/// may carry (a frame must fit in `MAX_FRAME_LEN`, and servers refuse bigger payloads).
pub fn too_long(what: &str, len: usize) -> String {
    format!(
        "{what} is {len} bytes, over the {MAX_PAYLOAD_LEN}-byte limit of one message; it was \
         not sent (send long text as a file: /file PATH)"
    )
}

/// The `stdin` thread: first the `initial` commands (`--send`, `--send-file`), then one
/// command per line of `reader`, until the end of input or until the session is gone.
/// Lines that cannot be sent go to the session as [`Command::Unsendable`], so their
/// `error` events come in order with everything else.
pub fn read_input(initial: Vec<Command>, mut reader: impl BufRead, commands_tx: Sender<Command>) {
    for command in initial {
        if commands_tx.send(command).is_err() {
            return;
        }
    }
    let mut number = 0;
    loop {
        let command = match read_line(&mut reader, MAX_PAYLOAD_LEN) {
            Ok(Some(line)) => {
                number += 1;
                match parse(line, number) {
                    Input::Send(command) => command,
                    Input::Help => {
                        eprintln!("{HELP}");
                        continue;
                    }
                    Input::Refuse(why) => Command::Unsendable(why),
                }
            }
            Ok(None) => return,
            Err(e) => {
                let why = format!("cannot read stdin: {e}; taking it as the end of input");
                let _ = commands_tx.send(Command::Unsendable(why));
                return;
            }
        };
        if commands_tx.send(command).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input`, read with `cap`, through a reader that hands out `chunk` bytes
    /// at a time (so lines straddle buffer refills).
    fn lines(input: &[u8], cap: usize, chunk: usize) -> Vec<Line> {
        let mut reader = io::BufReader::with_capacity(chunk, input);
        std::iter::from_fn(|| read_line(&mut reader, cap).expect("reading a slice")).collect()
    }

    fn fits(s: &str) -> Line {
        Line::Fits(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_end_at_newlines_and_lose_their_line_end() {
        for chunk in [1, 2, 3, 64] {
            assert_eq!(
                lines(b"a\r\nbb\n\nlast", 10, chunk),
                [fits("a"), fits("bb"), fits(""), fits("last")]
            );
            assert_eq!(lines(b"", 10, chunk), []);
            assert_eq!(lines(b"\n", 10, chunk), [fits("")]);
        }
    }

    #[test]
    fn a_line_over_the_cap_is_measured_not_kept() {
        for chunk in [1, 4, 64] {
            assert_eq!(
                lines(b"12345\n123456\n1234567\nok", 6, chunk),
                [fits("12345"), fits("123456"), Line::TooLong(7), fits("ok")]
            );
            // The '\r' of a "\r\n" does not count against the cap.
            assert_eq!(lines(b"123456\r\nx", 6, chunk), [fits("123456"), fits("x")]);
            assert_eq!(lines(b"1234567\r\n", 6, chunk), [Line::TooLong(7)]);
        }
    }

    #[test]
    fn a_huge_line_costs_at_most_the_cap() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nnext\n");
        let mut reader = io::BufReader::new(&input[..]);
        assert_eq!(
            read_line(&mut reader, 100).unwrap(),
            Some(Line::TooLong(1 << 20))
        );
        assert_eq!(read_line(&mut reader, 100).unwrap(), Some(fits("next")));
    }

    fn parse_str(line: &[u8]) -> Input {
        parse(Line::Fits(line.to_vec()), 7)
    }

    #[test]
    fn lines_become_texts_files_help_or_refusals() {
        let text = |s: &str| Input::Send(Command::Text(s.into()));
        assert_eq!(parse_str(b"hello"), text("hello"));
        assert_eq!(parse_str(b""), text(""));
        assert_eq!(parse_str(b" /file x"), text(" /file x"));
        assert_eq!(parse_str(b"//file x"), text("/file x"));
        assert_eq!(parse_str(b"//"), text("/"));
        assert_eq!(
            parse_str(b"/file  my notes.txt "),
            Input::Send(Command::File {
                path: "my notes.txt".into(),
                line: Some(7)
            })
        );
        assert_eq!(parse_str(b"/help"), Input::Help);
        for refused in [
            &b"/file"[..],
            b"/file   ",
            b"/",
            b"/nope x",
            b"/filex",
            b"\xff",
        ] {
            assert!(
                matches!(parse_str(refused), Input::Refuse(why) if why.contains("line 7")),
                "{:?} should be refused, naming its line",
                String::from_utf8_lossy(refused)
            );
        }
        let Input::Refuse(why) = parse_str(b"/nope") else {
            panic!("an unknown command is refused");
        };
        assert!(why.contains("//nope"), "says how to send it as text: {why}");
        let Input::Refuse(why) = parse(Line::TooLong(2_000_000), 3) else {
            panic!("a long line is refused");
        };
        assert!(why.contains("2000000") && why.contains(&MAX_PAYLOAD_LEN.to_string()));
    }

    #[test]
    fn the_help_states_the_real_limit() {
        assert_eq!(MAX_PAYLOAD_LEN, 1_044_480, "update HELP with the new limit");
        assert!(HELP.contains("1,044,480 bytes"));
    }
}
