//! The one error type of dsys.
//!
//! Its variants are the outcomes a caller treats differently, not every way a call can fail:
//! a connection thread closes its connection on `Protocol`, a client fails over on `Io` or
//! `PeerGone`, `main` prints every variant as the one-line message of exit status 1, except
//! `Usage` (exit status 2).
//!
//! `Display` is what a user or a log reader sees, so each variant's text says what happened
//! in words: a read timeout is "timed out", not `Resource temporarily unavailable`, and only
//! a peer that broke the protocol is called a "protocol error".

use std::fmt;
use std::io;

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The socket or file system failed (includes timeouts and resets).
    Io(io::Error),
    /// The peer sent something that is not valid dsys protocol: close that connection.
    Protocol(String),
    /// The peer closed the connection or fell silent: not a misbehaviour, a failure to act
    /// on (a client fails over, a server forgets the connection). The text says which.
    PeerGone(String),
    /// The peer understood us and said no (registration refused, fenced, ...).
    Refused(String),
    /// No server can take a client right now (the coordinator knows none that is alive).
    NoLiveServer(String),
    /// A coordinator or server could not be reached at all: nothing listens at the address,
    /// the name does not resolve, or nothing answered in time. The text names the address
    /// and what to check.
    Unreachable(String),
    /// What was asked cannot be done, though nothing broke: a file to send is missing, a name
    /// breaks the naming rule, a step of the demo did not happen in time. Exit status 1, with
    /// the text as the line that says what to do.
    Failed(String),
    /// The command line asks for something impossible that only shows after parsing (clap
    /// rejects the rest itself): exit status 2.
    Usage(String),
}

/// How [`Error::NoLiveServer`] starts when shown. The coordinator sends that text in an
/// `Error` frame when it has no server to offer, and a client recognises it by this start.
pub const NO_LIVE_SERVER: &str = "no live server";

/// `Result` with [`Error`]: every fallible dsys function returns it, so `?` carries a
/// failure up to the one place (a connection thread's spawn closure, or `main`) that
/// decides what it costs.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A socket timeout surfaces as EAGAIN ("Resource temporarily unavailable"),
            // which names neither the timeout nor the peer's silence.
            Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock => f.write_str(
                "timed out: the peer sent nothing, or took nothing, for longer than the \
                 socket's timeout",
            ),
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::Refused(why) => write!(f, "refused: {why}"),
            Error::NoLiveServer(why) => write!(f, "{NO_LIVE_SERVER}: {why}"),
            Error::PeerGone(why)
            | Error::Unreachable(why)
            | Error::Failed(why)
            | Error::Usage(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl Error {
    /// True when the error is a read or write timeout set on the socket.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// True when the peer closed the connection in the middle of a frame
    /// ([`CLOSED_INSIDE_A_FRAME`](crate::protocol::CLOSED_INSIDE_A_FRAME)): it stopped
    /// mid-message, as a process killed while it writes does. A reset that came inside a
    /// frame is [`Error::is_closed_by_peer`] instead, and says so in its text.
    pub fn is_closed_inside_a_frame(&self) -> bool {
        matches!(self, Error::Protocol(why) if why.starts_with(crate::protocol::CLOSED_INSIDE_A_FRAME))
    }

    /// True when the peer closed the connection under us (a reset, a broken pipe): what a
    /// write to a peer that has already gone, or a read after one, runs into.
    pub fn is_closed_by_peer(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_timeout_reads_as_a_timeout() {
        let timeout = Error::Io(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(timeout.to_string().starts_with("timed out"), "{timeout}");
        let deadline = Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "the handshake deadline passed",
        ));
        assert_eq!(deadline.to_string(), "the handshake deadline passed");
        let gone = Error::PeerGone("server closed the connection".into());
        assert_eq!(gone.to_string(), "server closed the connection");
    }
}
