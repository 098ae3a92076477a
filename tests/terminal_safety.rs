//! Another client's text never reaches a terminal as orders: a text-mode client prints every
//! control character (C0, DEL, C1) and every Unicode bidirectional override that came from
//! another process as a visible escape, and a JSON-mode client carries the text unchanged
//! (docs/security.md, "Text from other clients").
//!
//! The check is on the bytes of the text-mode client's stdout, as a terminal would get them,
//! and on a server's log line that quotes a name a stranger sent.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, channel};
use std::thread;

use common::{Client, Cluster, Proc, RawClient, TIMEOUT, TempDir, dsys, run_dsys};

/// A message that holds every kind of character a terminal acts on: ESC starting a colour
/// sequence, BEL, CR, backspace, tab, newline, DEL, a C1 control (CSI, U+009B), and the
/// right-to-left override U+202E and isolate U+2066.
const HOSTILE: &str =
    "\x1b[31mred\x07bell\rcr\x08bs\ttab\nnl\x7fdel\u{9b}2Jcsi\u{202e}desrever\u{2066}iso";

/// A `dsys client --output text --listen` whose stdout lines arrive, as raw bytes, on a
/// channel; the process is killed on drop like every [`Proc`].
struct TextListener {
    proc: Proc,
    lines: Receiver<Vec<u8>>,
    _downloads: TempDir,
}

impl TextListener {
    fn start(name: &str, cluster: &Cluster) -> TextListener {
        let downloads = TempDir::new(&format!("text-{name}"));
        let mut cmd = dsys();
        cmd.args(["client", "--output", "text", "--listen", "--name", name])
            .args(["--coordinator", cluster.coordinator()])
            .args(["--server", cluster.addr(0)])
            .arg("--download-dir")
            .arg(downloads.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(format!("client {name}"), cmd);
        let stdout = proc.take_stdout().expect("stdout was set to piped above");
        let (lines_tx, lines) = channel();
        thread::Builder::new()
            .name(format!("stdout-{name}"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if lines_tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("cannot start a stdout reader thread");
        TextListener {
            proc,
            lines,
            _downloads: downloads,
        }
    }

    /// The next stdout line, with its line end, that starts with `prefix`.
    fn expect_line(&self, prefix: &str) -> Vec<u8> {
        loop {
            let line = self.lines.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
                panic!(
                    "no stdout line starting with {prefix:?}; stderr:\n{}",
                    self.proc.stderr_report()
                )
            });
            if line.starts_with(prefix.as_bytes()) {
                return line;
            }
        }
    }
}

/// Sends `text` from a client named `name` with `--send`, and waits until it has left.
fn send_from(cluster: &Cluster, name: &str, text: &str) {
    let done = run_dsys(
        &[
            "client",
            "--name",
            name,
            "--coordinator",
            cluster.coordinator(),
            "--server",
            cluster.addr(0),
            "--send",
            text,
        ],
        &[],
        TIMEOUT,
    );
    assert_eq!(done.code(), Some(0), "the sender: {:?}", done.stderr);
}

#[test]
fn a_text_mode_client_shows_control_and_bidi_characters_from_others_as_escapes() {
    let cluster = Cluster::start(1);
    let viewer = TextListener::start("viewer", &cluster);
    viewer.expect_line("Registration successful!");
    send_from(&cluster, "esc", HOSTILE);

    let line = viewer.expect_line("[esc #1] ");
    let (end, shown) = line.split_last().expect("a line has its line end");
    assert_eq!(*end, b'\n', "one line, ended by its own newline");
    // Raw bytes first: no C0 control and no DEL anywhere in what the terminal gets.
    let raw: Vec<u8> = shown
        .iter()
        .copied()
        .filter(|b| *b < 0x20 || *b == 0x7f)
        .collect();
    assert!(
        raw.is_empty(),
        "raw control bytes {raw:02x?} reached stdout: {:?}",
        String::from_utf8_lossy(shown)
    );
    // Then characters: no C1 control and no bidirectional override or isolate.
    let text = std::str::from_utf8(shown).expect("stdout stays UTF-8");
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            matches!(c, '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{bad:?} reached stdout: {text:?}");
    // And each one is there as an escape the reader can see, the text around it intact.
    assert_eq!(
        text,
        "[esc #1] \\x1b[31mred\\x07bell\\rcr\\x08bs\\ttab\\nnl\\x7fdel\\u{9b}2Jcsi\\u{202e}\
         desrever\\u{2066}iso"
    );

    viewer.proc.terminate();
    let mut viewer = viewer;
    assert!(viewer.proc.wait_exit(TIMEOUT).success());
}

#[test]
fn a_json_client_receives_control_characters_unchanged() {
    let cluster = Cluster::start(1);
    let reader = Client::start_on("reader", cluster.coordinator(), cluster.addr(0));
    reader.wait_registered();
    send_from(&cluster, "esc", HOSTILE);
    let message = reader.expect_event("the hostile text", TIMEOUT, |v| {
        v["event"] == "message" && v["from"] == "esc"
    });
    assert_eq!(
        message["text"].as_str(),
        Some(HOSTILE),
        "JSON carries the text as it was sent"
    );
}

/// Whether a terminal could take `c` as an order: a C0 or C1 control, DEL, or a
/// bidirectional embedding, override or isolate.
fn acts_on_a_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[test]
fn a_log_line_that_quotes_a_strangers_name_shows_its_controls_as_escapes() {
    let cluster = Cluster::start(1);
    let hostile_name = "\x1b]0;owned\x07\u{202e}evil";
    let refused = RawClient::register(cluster.addr(0), hostile_name);
    assert!(refused.is_err(), "such a name is refused");
    let line = cluster
        .server(0)
        .wait_for_stderr("registration refused", TIMEOUT);
    assert!(
        !line.chars().any(acts_on_a_terminal),
        "the log line carries the raw characters: {line:?}"
    );
    assert!(line.contains("owned"), "the name is still shown: {line:?}");
}
