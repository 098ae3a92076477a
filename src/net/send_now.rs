//! Sending without blocking on a blocking socket: [`send_now`].
//!
//! Every dsys socket is blocking, with timeouts (`net.rs`). A server thread that writes for
//! a client it does not own (`roles/server/write/through.rs`) must never wait on that client: a
//! slow reader would stall everyone behind it. `TcpStream::set_nonblocking` would switch
//! the whole socket, and the client's connection thread, which reads it blocking at that
//! moment, would see its reads fail. `send(2)` with `MSG_DONTWAIT` makes this one call
//! non-blocking and leaves the socket as it is. std has no such call; the C library's is
//! declared in `support/sys.rs`, with the crate's other C functions.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;

use crate::support::sys;

/// Do not block in this call (Linux's value).
const MSG_DONTWAIT: i32 = 0x40;
/// Do not raise SIGPIPE when the peer has gone; the error comes back as `EPIPE` instead.
const MSG_NOSIGNAL: i32 = 0x4000;

/// Sends as much of `bytes` as the socket's send buffer takes right now, and returns how
/// much that was (all, some, or nothing).
///
/// # Errors
/// `WouldBlock` when the buffer takes nothing; any other error of the connection
/// (`ECONNRESET`, `EPIPE`, ...) as it is.
pub fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match sys::send(stream.as_fd(), bytes, MSG_DONTWAIT | MSG_NOSIGNAL) {
            // A signal came before anything was sent: nothing happened, so try again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            sent => return sent,
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
