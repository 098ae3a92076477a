//! Sending without blocking on a blocking socket: [`send_now`].
//!
//! Every dsys socket is blocking, with timeouts (`net.rs`). A server thread that writes for
//! a client it does not own (`roles/server/write/through.rs`) must never wait on that client: a
//! slow reader would stall everyone behind it. `TcpStream::set_nonblocking` would switch
//! the whole socket, and the client's connection thread, which reads it blocking at that
//! moment, would see its reads fail. `send(2)` with `MSG_DONTWAIT` makes this one call
//! non-blocking and leaves the socket as it is. std has no such call, so this file
//! declares the C library's `send` itself, as `support/signals.rs` does for `signal`.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Do not block in this call (Linux's value).
const MSG_DONTWAIT: i32 = 0x40;
/// Do not raise SIGPIPE when the peer has gone; the error comes back as `EPIPE` instead.
const MSG_NOSIGNAL: i32 = 0x4000;

unsafe extern "C" {
    fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
}

/// Sends as much of `bytes` as the socket's send buffer takes right now, and returns how
/// much that was (all, some, or nothing).
///
/// # Errors
/// `WouldBlock` when the buffer takes nothing; any other error of the connection
/// (`ECONNRESET`, `EPIPE`, ...) as it is.
pub fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the descriptor is open for as long as `stream` is borrowed, and the
        // pointer and length describe `bytes`, which the kernel only reads.
        let sent = unsafe {
            send(
                stream.as_raw_fd(),
                bytes.as_ptr(),
                bytes.len(),
                MSG_DONTWAIT | MSG_NOSIGNAL,
            )
        };
        if let Ok(sent) = usize::try_from(sent) {
            return Ok(sent);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_full_socket_takes_what_fits_then_would_block_instead_of_waiting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 64 * 1024];
        // Nobody reads: the buffers fill, and the send that finds them full returns.
        let mut total = 0;
        let error = loop {
            match send_now(&sender, &chunk) {
                Ok(sent) => total += sent,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(total > 0);
        let mut first = [0u8; 4];
        receiver.read_exact(&mut first).unwrap();
        assert_eq!(first, [7; 4], "what was sent arrives");
    }
}
