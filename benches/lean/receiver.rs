//! The receiving side of the lean generator: a few threads (one per core, not one per
//! connection), each reading many connections through one epoll set into one big buffer,
//! and handing the bytes to the protocol's scanner ([`Wire::scan`]), which finds whole
//! frames where they lie and calls the connection's [`Sink`] for each one that matters.
//!
//! Why this can keep up with a server at tens of millions of deliveries a second: one
//! `recv` brings up to [`READ_BUFFER`] bytes (over a thousand deliveries at saturation),
//! the clock is read once per `recv`, the shared progress count is added to once per
//! epoll round, and nothing is allocated or copied per frame; only the tail of a frame cut
//! by the end of a read is kept aside ([`Conn::leftover`]) and put in front of the next.
//!
//! **Neighbours.** `mod.rs` builds the [`Conn`]s (after each protocol's handshake) and
//! starts and stops these threads; acknowledgements found here go to the publisher's
//! [`Credits`] (`publisher.rs`). A receiver writes only to connections no publisher
//! writes to: dsys keepalives and NATS `PONG`s on subscribers' sockets. A peer that closes
//! ends its connection here (what it missed is counted as lost); bytes that are not the
//! protocol are a panic naming the connection.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lean::Wire;
use crate::lean::check::Check;
use crate::lean::publisher::Credits;
use crate::lean::sys::{Epoll, EpollEvent};

/// Bytes one `recv` may bring: a loopback socket's receive buffer holds a few hundred KiB
/// at saturation, and reading it in one call is what makes a receiver cheap per delivery.
pub const READ_BUFFER: usize = 256 * 1024;
/// The longest frame a connection may leave unfinished at the end of a read; a longer
/// one is a broken peer (every frame of these loads is under 200 bytes).
const MAX_LEFTOVER: usize = 64 * 1024;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 128;
/// How long a receiver waits for events before looking at the stop flag and the
/// keepalive clock.
const WAIT_MS: i32 = 20;

/// What a scanner reports for one connection, besides deliveries.
pub struct Sink {
    pub check: Check,
    /// The credits of the publisher whose acknowledgements arrive here, if any.
    credits: Option<Arc<Credits>>,
    /// The highest `seq` acknowledged, as far as this connection has read.
    acked: u64,
    /// Acknowledgement replies seen (NATS `PONG`), to find what each one covers.
    pongs: u64,
    /// Requests for a reply the server made (NATS `PING`), not answered yet.
    pings: u64,
}

impl Sink {
    pub fn new(check: Check, credits: Option<Arc<Credits>>) -> Sink {
        Sink {
            check,
            credits,
            acked: 0,
            pongs: 0,
            pings: 0,
        }
    }

    /// One message delivered (see [`Check::deliver`]); one of the connection's own
    /// publisher's acknowledges it and everything before it.
    #[inline]
    pub fn deliver(&mut self, payload: &[u8], frame_seq: Option<u64>) {
        if let Some(own_seq) = self.check.deliver(payload, frame_seq) {
            self.acked_upto(own_seq);
        }
    }

    /// Every message up to `seq` is acknowledged (dsys's cumulative `Ack`).
    pub fn acked_upto(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
    }

    /// The next message is acknowledged (Redis answers each `PUBLISH` in order).
    pub fn acked_one(&mut self) {
        self.acked += 1;
    }

    /// The next acknowledgement request was answered (a NATS `PONG`).
    pub fn pong(&mut self) {
        self.pongs += 1;
        if let Some(credits) = &self.credits {
            self.acked = credits.request_end(self.pongs);
        }
    }

    /// The server asked for a reply (a NATS `PING`).
    pub fn ping(&mut self) {
        self.pings += 1;
    }
}

/// One connection a receiver reads.
pub struct Conn {
    pub stream: TcpStream,
    pub label: String,
    /// The unfinished frame the last read ended in, bounded by [`MAX_LEFTOVER`].
    pub leftover: Vec<u8>,
    pub sink: Sink,
    /// Whether the peer closed it before the run was over.
    pub closed: bool,
}

impl Conn {
    /// Whether this receiver may write on the socket: nobody else does (no publisher).
    fn may_write(&self) -> bool {
        self.sink.credits.is_none()
    }
}

/// A receiver thread's body: reads `conns` until `stop`, adding each round's deliveries to
/// `progress`, and writing `W::KEEPALIVE` every `keepalive` on the connections it may
/// write to. Returns the connections, with what their checks counted.
pub fn receive<W: Wire>(
    mut conns: Vec<Conn>,
    progress: &AtomicU64,
    stop: &AtomicBool,
    keepalive: Duration,
) -> Vec<Conn> {
    let epoll = Epoll::new().expect("create an epoll set");
    for (token, conn) in conns.iter().enumerate() {
        epoll
            .add(conn.stream.as_raw_fd(), token)
            .expect("watch a connection");
    }
    let mut buf = vec![0u8; READ_BUFFER].into_boxed_slice();
    let mut events = [EpollEvent::EMPTY; EVENTS];
    let mut last_keepalive = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let ready = epoll.wait(&mut events, WAIT_MS).expect("epoll_wait");
        let mut delivered = 0;
        for event in &events[..ready] {
            let conn = &mut conns[event.token()];
            let before = conn.sink.check.tally.delivered;
            if !read_once::<W>(conn, &mut buf) {
                conn.closed = true;
                epoll.remove(conn.stream.as_raw_fd());
            }
            delivered += conn.sink.check.tally.delivered - before;
        }
        if delivered > 0 {
            progress.fetch_add(delivered, Ordering::Relaxed);
        }
        if let Some(bytes) = W::KEEPALIVE
            && last_keepalive.elapsed() >= keepalive
        {
            last_keepalive = Instant::now();
            for conn in conns.iter_mut().filter(|c| c.may_write() && !c.closed) {
                let _ = conn.stream.write_all(bytes);
            }
        }
    }
    conns
}

/// One `recv` on `conn` and the scan of what it brought (after the leftover of the last
/// one). Returns false when the connection has ended.
fn read_once<W: Wire>(conn: &mut Conn, buf: &mut [u8]) -> bool {
    let kept = conn.leftover.len();
    buf[..kept].copy_from_slice(&conn.leftover);
    let read = match crate::lean::sys::recv_nowait(conn.stream.as_raw_fd(), &mut buf[kept..]) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return true;
        }
        Err(_) => return false,
    };
    conn.sink.check.read_at(Instant::now());
    let bytes = &buf[..kept + read];
    let used = W::scan(bytes, &mut conn.sink).unwrap_or_else(|why| {
        let at = &bytes[..bytes.len().min(200)];
        panic!(
            "{}: {why}; the bytes: {:?}",
            conn.label,
            String::from_utf8_lossy(at)
        )
    });
    let rest = &bytes[used..];
    assert!(
        rest.len() <= MAX_LEFTOVER,
        "{}: a frame of over {MAX_LEFTOVER} bytes",
        conn.label
    );
    conn.leftover.clear();
    conn.leftover.extend_from_slice(rest);
    settle(conn, W::PING_REPLY);
    true
}

/// Passes on what the scan found besides deliveries: credits to the publisher, replies
/// the server asked for (written here when no publisher writes on this socket, else left
/// to the publisher, the socket's only writer).
fn settle(conn: &mut Conn, ping_reply: &[u8]) {
    let sink = &mut conn.sink;
    if let Some(credits) = &sink.credits {
        credits.ack(sink.acked);
        if sink.pings > 0 {
            credits.owe(sink.pings);
        }
    } else {
        for _ in 0..sink.pings {
            let _ = conn.stream.write_all(ping_reply);
        }
    }
    sink.pings = 0;
}
