//! Framing: bytes <-> frames, and the field primitives a frame body is made of. It reads
//! frames off a stream ([`read_frame`]), writes messages to one ([`write_message`]), puts the
//! length prefix in front of a body ([`framed`]), enforces the cap ([`MAX_FRAME_LEN`]) on both
//! sides, and gives [`Writer`] and [`Reader`] for the field types; which fields a message has
//! is `encoding.rs`'s business.
//!
//! It is the only file of the protocol that touches a `Read` or a `Write`. Every role's
//! connection threads call it on their own stream; it starts no thread, keeps no state, and
//! blocks as that stream does. A clean close between frames is `Ok(None)`; a close inside a
//! frame is [`Error::ClosedInsideFrame`], saying how many bytes had arrived; a length the
//! cap refuses is [`Error::Protocol`]. The rules: `docs/protocol.md`, sections 2 and 3.

use std::io::{self, Read, Write};

use super::Message;
use crate::error::{Error, Result};

/// The largest frame body accepted or produced: 1 MiB.
///
/// Why this value: large enough for a long text line or a file chunk of 256 KiB with its
/// headers, small enough that a connection thread's buffer is cheap even with thousands of
/// connections. What happens at the bound: a length prefix above it is a protocol error; the
/// reader closes that one connection (logging the reason) and allocates nothing.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

/// Reads one frame body from `reader`, blocking until it is complete.
///
/// Returns `Ok(None)` when the peer closed the connection cleanly between frames (an
/// expected event, not an error).
///
/// # Errors
/// [`Error::Protocol`] for a zero or oversized length prefix (checked before anything is
/// allocated) or for a connection closed in the middle of a frame; [`Error::Io`] for socket
/// errors, including a read timeout (`WouldBlock`/`TimedOut`) set by the caller.
///
/// The body's buffer grows with the bytes that actually arrive, doubling from
/// [`FIRST_READ`] up to the length: a peer that sends a length prefix and then little or
/// nothing costs little or nothing, not the frame cap.
pub fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    Ok(read_frame_into(reader, &mut body)?.then_some(body))
}

/// [`read_frame`] into a buffer the caller keeps from frame to frame, so that a reader of
/// many small frames allocates once, not per frame. Returns `Ok(false)` at a clean end of
/// the stream; `body` then holds nothing.
///
/// # Errors
/// As [`read_frame`].
pub fn read_frame_into(reader: &mut impl Read, body: &mut Vec<u8>) -> Result<bool> {
    body.clear();
    let mut prefix = [0u8; 4];
    match fill(reader, &mut prefix) {
        Ok(0) => return Ok(false),
        Ok(4) => {}
        Ok(arrived) => return Err(torn_frame(arrived, "of the 4 bytes of its length")),
        Err((e, 0)) => return Err(e.into()),
        Err((e, arrived)) => return Err(inside_a_frame(e, arrived, "of its length")),
    }
    let len = u32::from_be_bytes(prefix);
    if len == 0 {
        return Err(Error::Protocol("empty frame".into()));
    }
    if len > MAX_FRAME_LEN {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte cap"
        )));
    }
    let len = len as usize;
    // Both counts include the length prefix, so that they add up to what the peer sent.
    let of_the_frame = || format!("of its {} bytes", 4 + len);
    while body.len() < len {
        let filled = body.len();
        let grow = (len - filled).min(filled.max(FIRST_READ));
        body.reserve_exact(grow);
        body.resize(filled + grow, 0);
        match fill(reader, &mut body[filled..]) {
            Ok(n) if n == grow => {}
            Ok(n) => return Err(torn_frame(4 + filled + n, &of_the_frame())),
            Err((e, n)) => return Err(inside_a_frame(e, 4 + filled + n, &of_the_frame())),
        }
    }
    Ok(true)
}

/// How the error of a peer that closed the connection inside a frame starts, in the logs
/// ([`Error::ClosedInsideFrame`]).
pub const CLOSED_INSIDE_A_FRAME: &str = "connection closed inside a frame";

/// The peer closed the connection when `arrived` bytes of a frame were in; `of_what` says
/// of how many ("of its 30 bytes").
fn torn_frame(arrived: usize, of_what: &str) -> Error {
    Error::ClosedInsideFrame(format!(
        "{CLOSED_INSIDE_A_FRAME}: {arrived} {of_what} had arrived"
    ))
}

/// A socket error (a reset, a timeout) inside a frame, with how far the frame had got. The
/// kind stays, so that callers still tell a reset from a timeout
/// ([`Error::is_closed_by_peer`], [`Error::is_timeout`]).
fn inside_a_frame(e: io::Error, arrived: usize, of_what: &str) -> Error {
    Error::Io(io::Error::new(
        e.kind(),
        format!("{e}, inside a frame: {arrived} {of_what} had arrived"),
    ))
}

/// The first piece of a frame body that [`read_frame`] makes room for (see there).
const FIRST_READ: usize = 4096;

/// Whether `buffered`, bytes read ahead of the next frame, hold that whole frame: then
/// reading it will not wait on the socket. A thread that must do something before it
/// blocks in a read (a server's connection thread writing what it queued) asks this of its
/// reader's buffer. A length the cap refuses counts as whole: reading it fails at once.
pub fn holds_whole_frame(buffered: &[u8]) -> bool {
    let Some(prefix) = buffered.first_chunk::<4>() else {
        return false;
    };
    let len = u32::from_be_bytes(*prefix);
    len == 0 || len > MAX_FRAME_LEN || buffered.len() - 4 >= len as usize
}

/// Reads and decodes one message: [`read_frame`] then [`Message::decode`].
///
/// # Errors
/// As [`read_frame`] and [`Message::decode`].
pub fn read_message(reader: &mut impl Read) -> Result<Option<Message>> {
    match read_frame(reader)? {
        None => Ok(None),
        Some(body) => Message::decode(&body).map(Some),
    }
}

/// Encodes and writes one message. Blocks until the kernel has taken all its bytes.
///
/// # Errors
/// [`Error::Io`] when the socket fails or a write timeout fires.
pub fn write_message(writer: &mut impl Write, message: &Message) -> Result<()> {
    writer.write_all(&message.encode())?;
    Ok(())
}

/// Reads until `buf` is full or the stream ends, and returns how many bytes it read: all of
/// `buf`, or fewer when the stream ended first (0 at a clean end between frames). A socket
/// error comes with the bytes read before it, so the caller can say whether it broke a
/// frame.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::result::Result<usize, (io::Error, usize)> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, filled)),
        }
    }
    Ok(filled)
}

/// One complete frame: `fill` writes the body, then the length prefix is set in front of it.
///
/// # Panics
/// If the body is over [`MAX_FRAME_LEN`]: callers bound what they put in a frame, so this
/// marks a bug, not bad input.
pub(super) fn framed(fill: impl FnOnce(&mut Writer)) -> Vec<u8> {
    framed_in(Vec::new(), fill)
}

/// [`framed`] into a buffer made with room for `len` bytes: for the frames a server makes
/// for every message, whose size is known before they are written, so that the buffer is
/// allocated once instead of growing (and moving) several times as fields are added.
pub(super) fn framed_with_room(len: usize, fill: impl FnOnce(&mut Writer)) -> Vec<u8> {
    framed_in(Vec::with_capacity(len), fill)
}

fn framed_in(buffer: Vec<u8>, fill: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut buffer = buffer;
    append_framed(&mut buffer, fill);
    buffer
}

/// Appends one frame, filled by `fill`, after what `buffer` already holds: how a server
/// encodes the messages of one read back to back into one buffer (`message_path.rs`).
pub(super) fn append_framed(buffer: &mut Vec<u8>, fill: impl FnOnce(&mut Writer)) {
    let start = buffer.len();
    let mut out = Writer(std::mem::take(buffer));
    out.0.extend_from_slice(&[0; 4]); // the length, filled in below
    fill(&mut out);
    let len = out.0.len() - start - 4;
    assert!(
        len <= MAX_FRAME_LEN as usize,
        "frame of {len} bytes exceeds the cap"
    );
    out.0[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    *buffer = out.0;
}

/// Appends big-endian fields to a frame under construction.
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Bytes of a size the message fixes (magic, nonce, proof, digest): no length on the
    /// wire, the reader knows how many to take.
    pub(super) fn fixed(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// A string: u16 length, then UTF-8 bytes.
    pub(super) fn str(&mut self, s: &str) {
        let len = u16::try_from(s.len()).expect("strings on the wire are under 64 KiB");
        self.u16(len);
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A byte string: u32 length, then the bytes.
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).expect("payloads are under 4 GiB"));
        self.0.extend_from_slice(b);
    }
    pub(super) fn strs(&mut self, items: &[String]) {
        self.u32(items.len() as u32);
        items.iter().for_each(|s| self.str(s));
    }
    pub(super) fn pairs(&mut self, items: &[(u64, u64)]) {
        self.u32(items.len() as u32);
        for (a, b) in items {
            self.u64(*a);
            self.u64(*b);
        }
    }
}

/// Takes big-endian fields off the front of a frame body, refusing to read past its end.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over one frame body (without its length prefix).
    pub(super) fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }
    /// The bytes not taken yet: a decoded message must leave none.
    pub(super) fn left(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(Error::Protocol(format!(
                "truncated frame: wanted {n} more bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(super) fn str(&mut self) -> Result<String> {
        self.str_ref().map(str::to_owned)
    }
    /// A `str` field borrowed from the frame body, not copied.
    pub(super) fn str_ref(&mut self) -> Result<&'a str> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| Error::Protocol("invalid UTF-8 in a string".into()))
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A count of items, each at least `min_item_len` bytes: refused when the frame cannot
    /// possibly hold that many, so a forged count never sizes an allocation.
    pub(super) fn count(&mut self, min_item_len: usize) -> Result<usize> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_len) > self.rest.len() {
            return Err(Error::Protocol(format!(
                "count {count} does not fit in the {} bytes left",
                self.rest.len()
            )));
        }
        Ok(count)
    }
    pub(super) fn strs(&mut self) -> Result<Vec<String>> {
        let count = self.count(2)?;
        (0..count).map(|_| self.str()).collect()
    }
    pub(super) fn pairs(&mut self) -> Result<Vec<(u64, u64)>> {
        let count = self.count(16)?;
        (0..count).map(|_| Ok((self.u64()?, self.u64()?))).collect()
    }
    pub(super) fn flag(&mut self, what: &str) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::Protocol(format!("bad {what} flag {other}"))),
        }
    }
}

/// The bytes of a `str` or a text body as a `String`, refused when they are not UTF-8.
pub(super) fn utf8(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::Protocol("invalid UTF-8 in a string".into()))
}
