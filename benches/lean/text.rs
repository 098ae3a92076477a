//! What the two text protocols (`redis.rs`, `nats.rs`) share: connecting with deadlines,
//! reading a handshake's reply, and finding lines and numbers in bytes without building a
//! string. Blocking, on the main thread, before the receivers take the connection over.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting, and each read of a handshake, may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a handshake may read before its reply is whole.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// Connects to `addr` with Nagle off and a read deadline for the handshake.
///
/// # Panics
/// When the broker cannot be reached: the run cannot go on without it.
pub fn connect(addr: &str, label: &str) -> TcpStream {
    let socket: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("{label}: bad address {addr}: {e}"));
    let stream = TcpStream::connect_timeout(&socket, HANDSHAKE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{label}: cannot connect to {addr}: {e}"));
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .unwrap_or_else(|e| panic!("{label}: cannot set up the socket to {addr}: {e}"));
    stream
}

/// Reads from `stream` into `buf` until `parse` finds what `what` names at its front;
/// removes those bytes and returns what was found. What came after stays in `buf`.
///
/// # Panics
/// On a timeout, an end of stream, bytes `parse` refuses, or more than [`MAX_HANDSHAKE`]
/// bytes without it.
pub fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    label: &str,
    what: &str,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, String>,
) -> T {
    let mut chunk = [0u8; 4096];
    loop {
        match parse(buf) {
            Ok(Some((found, len))) => {
                buf.drain(..len);
                return found;
            }
            Ok(None) => {}
            Err(why) => panic!("{label}: {why} while waiting for {what}"),
        }
        assert!(
            buf.len() < MAX_HANDSHAKE,
            "{label}: no {what} in {MAX_HANDSHAKE} bytes"
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("{label}: the broker closed the connection before {what}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{label}: no {what}: {e}"),
        }
    }
}

/// The handshake is over: no deadline on reads any more.
pub fn done(stream: &TcpStream, label: &str) {
    stream
        .set_read_timeout(None)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
}

/// The number that `digits` spell in decimal, in at most 9 digits.
pub fn read_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
    })
}

/// Where the line that starts at `from` ends: the index of its `\r\n`; `None` while it is
/// incomplete.
///
/// # Errors
/// A `\n` without a `\r` before it: neither protocol sends that.
pub fn line_end(bytes: &[u8], from: usize) -> Result<Option<usize>, String> {
    let Some(newline) = bytes
        .get(from..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    else {
        return Ok(None);
    };
    let at = from + newline;
    if at == from || bytes[at - 1] != b'\r' {
        return Err("a line that does not end with \\r\\n".into());
    }
    Ok(Some(at - 1))
}
