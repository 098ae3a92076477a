//! The metrics port: `GET /metrics` over plain HTTP/1.1, answered in Prometheus's text
//! exposition format (version 0.0.4), for `dsys server --metrics` and `dsys coordinator
//! --metrics`. This file owns the port and the text format ([`Exposition`]) and knows
//! nothing of either role: what each counts is in its own `metrics.rs`.
//!
//! **Threads.** [`MetricsPort::start`] runs the accept loop every dsys port runs
//! ([`AcceptLoop::start_plain`]): the `metrics` thread accepts, and each connection gets a
//! `metrics-<peer>` thread that reads one request, answers it and closes (no keep-alive).
//! It is bounded like every port: at most [`MAX_CONNECTIONS`] at once (the next gets
//! `503`), a head within the handshake timeout and under [`MAX_HEAD`], `GET /metrics`
//! only, and every write within [`WRITE_TIMEOUT`].
//!
//! **Stopping.** [`MetricsPort::stop`] (or dropping it) stops the accept loop as
//! [`AcceptLoop::stop`] does; a connection thread ends with its one request. The metrics
//! and the bounds in full: `docs/heartbeats-and-failover.md`, "Metrics: what a monitoring
//! system sees".

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{AcceptLoop, ReadBefore};
use crate::error::Result;

/// Connections to the metrics port served at once. A scraper makes one at a time; this
/// leaves room for a few scrapers and a person with `curl`, and bounds what a flood costs.
pub const MAX_CONNECTIONS: usize = 16;
/// The largest request head read: far more than any scraper's few headers.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long one write of the answer may block: a scraper reads at once.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, at most, the thread reads what a client sent beyond the head before it
/// closes: closing with unread bytes would reset the connection, and the client could lose
/// the answer before reading it. A scraper closes as soon as it has read; a hostile client
/// costs this long at most.
const LINGER: Duration = Duration::from_millis(500);
/// Stack of a connection thread: it holds the head buffer on the heap.
const THREAD_STACK: usize = 128 * 1024;
/// The `Content-Type` of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running metrics port.
pub struct MetricsPort {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    accept: AcceptLoop,
}

impl MetricsPort {
    /// Listens on `addr` and answers `GET /metrics` with what `render` writes, called once
    /// per scrape on the connection's thread. A request head must be in within
    /// `head_timeout`.
    ///
    /// # Errors
    /// As [`super::listen`] when `addr` cannot be bound; [`crate::Error::Io`] when the
    /// thread cannot start.
    pub fn start<R>(addr: &str, head_timeout: Duration, render: R) -> Result<MetricsPort>
    where
        R: Fn(&mut Exposition) + Clone + Send + Sync + 'static,
    {
        let listener = super::listen(addr)?;
        let bound = listener.local_addr()?;
        let accept = AcceptLoop::start_plain(
            listener,
            "metrics",
            refuse_busy,
            MAX_CONNECTIONS,
            THREAD_STACK,
            move |stream| serve(stream, Instant::now() + head_timeout, &render),
        )?;
        log::info!("metrics listening on http://{bound}/metrics");
        Ok(MetricsPort {
            addr: bound,
            accept,
        })
    }

    /// Stops accepting and joins the `metrics` thread.
    pub fn stop(&mut self) {
        self.accept.stop();
    }
}

/// Answers a connection over [`MAX_CONNECTIONS`] with a `503`, from the accept thread: the
/// write must not block, so it is non-blocking, and a peer whose buffer is full gets only
/// the close.
fn refuse_busy(stream: TcpStream, reason: String) {
    let _ = stream.set_nonblocking(true);
    let _ =
        (&stream).write_all(response("503 Service Unavailable", "text/plain", &reason).as_bytes());
}

/// One connection: one request, one answer, then the close.
fn serve(stream: TcpStream, deadline: Instant, render: &impl Fn(&mut Exposition)) -> Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let answer = match read_head(&stream, deadline)? {
        Head::TooLarge => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            &format!("the request head is limited to {MAX_HEAD} bytes"),
        ),
        Head::Closed => return Ok(()),
        Head::Complete(head) => answer(&head, render),
    };
    (&stream).write_all(answer.as_bytes())?;
    let _ = stream.shutdown(Shutdown::Write);
    linger(&stream);
    Ok(())
}

/// What came in on a connection.
enum Head {
    /// The request line and headers, up to the blank line.
    Complete(Vec<u8>),
    /// More than [`MAX_HEAD`] bytes without the blank line.
    TooLarge,
    /// The peer closed before a whole head.
    Closed,
}

/// Reads until the blank line that ends the head, [`MAX_HEAD`] bytes or `deadline`.
///
/// # Errors
/// [`crate::Error::Io`] when the deadline passes or the read fails.
fn read_head(stream: &TcpStream, deadline: Instant) -> Result<Head> {
    let mut reader = ReadBefore::new(stream, deadline);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        // Look for the end across the seam of the last chunk.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end(&head[from..]) {
            head.truncate(from + end);
            return Ok(Head::Complete(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from a lenient client), if it does.
fn find_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer to a complete head: the metrics for `GET /metrics`, an error otherwise.
fn answer(head: &[u8], render: &impl Fn(&mut Exposition)) -> String {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", "text/plain", "not an HTTP request line");
    };
    if !version.starts_with("HTTP/1.") {
        return response(
            "400 Bad Request",
            "text/plain",
            "only HTTP/1.x is spoken here",
        );
    }
    if method != "GET" {
        return response(
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics is served",
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return response("404 Not Found", "text/plain", "only GET /metrics is served");
    }
    let mut exposition = Exposition::default();
    render(&mut exposition);
    response("200 OK", CONTENT_TYPE, &exposition.text)
}

/// A whole HTTP/1.1 response that closes the connection. A `405` says what is allowed.
fn response(status: &str, content_type: &str, body: &str) -> String {
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let body = if content_type == "text/plain" {
        format!("{body}\n")
    } else {
        body.to_string()
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads and drops what the client still sends, for at most [`LINGER`] and 64 KiB, so that
/// the close that follows is an orderly one (see [`LINGER`]).
fn linger(stream: &TcpStream) {
    let until = Instant::now() + LINGER;
    let mut reader = ReadBefore::new(stream, until);
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The text exposition format, family by family: each with its `# HELP` and `# TYPE`
/// lines, then its samples. Names follow Prometheus's conventions: `dsys_*` first, base
/// units (bytes, seconds) in the name, `_total` on counters.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// The kind of a family, for its `# TYPE` line.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Only goes up (until the process restarts); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Exposition {
    /// A family without labels: one sample.
    pub fn one(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<f64>) {
        self.family(name, kind, help, &[("", value.into())]);
    }

    /// A family with samples told apart by their labels, each written as in the format
    /// (`state="live"`), or empty for none.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(&str, f64)]) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.text, "{name} {value}");
            } else {
                let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
            }
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition() -> Exposition {
        let mut e = Exposition::default();
        e.one("dsys_x_total", Kind::Counter, "Things.", 3u32);
        e.family(
            "dsys_y",
            Kind::Gauge,
            "Servers.",
            &[("state=\"live\"", 2.0), ("state=\"dead\"", 0.0)],
        );
        e
    }

    #[test]
    fn families_are_written_with_help_type_and_samples() {
        assert_eq!(
            exposition().text(),
            "# HELP dsys_x_total Things.\n# TYPE dsys_x_total counter\ndsys_x_total 3\n\
             # HELP dsys_y Servers.\n# TYPE dsys_y gauge\ndsys_y{state=\"live\"} 2\n\
             dsys_y{state=\"dead\"} 0\n"
        );
    }

    #[test]
    fn only_get_metrics_is_served() {
        let render = |e: &mut Exposition| e.one("dsys_x", Kind::Gauge, "X.", 1u32);
        let status = |head: &str| answer(head.as_bytes(), &render)[..12].to_string();
        assert_eq!(status("GET /metrics HTTP/1.1\r\nHost: a"), "HTTP/1.1 200");
        assert_eq!(status("GET /metrics?x=1 HTTP/1.0"), "HTTP/1.1 200");
        assert_eq!(status("GET / HTTP/1.1"), "HTTP/1.1 404");
        assert_eq!(status("POST /metrics HTTP/1.1"), "HTTP/1.1 405");
        assert_eq!(status("\u{1}\u{2} garbage"), "HTTP/1.1 400");
        assert_eq!(status("GET /metrics SPDY/3"), "HTTP/1.1 400");
    }

    #[test]
    fn the_end_of_a_head_is_found_with_either_line_ending() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
