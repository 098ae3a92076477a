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
//!
//! A peer's refusal carries a [`Refusal`] code next to its words: programs branch on the
//! code, people read the words, so rewording a refusal changes what a log says and never
//! what a process does.

use std::fmt;
use std::io;

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The socket or file system failed (includes timeouts and resets).
    Io(io::Error),
    /// The peer sent something that is not valid dsys protocol: close that connection.
    Protocol(String),
    /// The peer closed the connection in the middle of a frame, as a process killed while
    /// it writes does: what did arrive is dropped, and the text says how much that was.
    /// Told apart from [`Error::Protocol`] because it is no misbehaviour: a server logs it
    /// at INFO, and the client's own resend covers the message.
    ClosedInsideFrame(String),
    /// The peer closed the connection or fell silent: not a misbehaviour, a failure to act
    /// on (a client fails over, a server forgets the connection). The text says which.
    PeerGone(String),
    /// The peer understood us and said no (registration refused, fenced, ...): what it
    /// means to this program, and the peer's words for a person.
    Refused(Refusal, String),
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

/// What a refusal means to the process that receives it: the part of a refusal that a
/// program may act on, where the words that come with it are for people only (logs, the
/// client's `error` events) and may be reworded freely.
///
/// It travels as one byte in every `Error` and `RegisterRefused` frame (the discriminants
/// below; `docs/protocol.md`, 6.8). A refusal gets a code of its own only when some
/// receiver treats it apart from the others; every other refusal is [`Refusal::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing for a program to act on: a broken rule, a missing secret, another protocol
    /// version, a name taken; the words say which. A code this build does not know (sent
    /// by a newer peer) reads as this one, so a new code never breaks an older receiver.
    Other = 0,
    /// The coordinator knows no live server to offer (the answer to a `Locate`). The client
    /// says so as [`Error::NoLiveServer`], "start one with `dsys server`", instead of
    /// calling the coordinator unreachable.
    NoLiveServer = 1,
    /// The server already holds `--max-clients` clients (the answer to a `Register`). The
    /// server logs that refusal as a WARN, the operator's business, where a name refused
    /// is the client's and an INFO.
    ServerFull = 2,
    /// The peer saw the coordinator drop this server's incarnation (the answer to a
    /// `PeerHello`): it was declared dead. A server that could not hear it from the
    /// coordinator learns it so, drops its clients so they fail over, and rejoins as a new
    /// incarnation (`peers.rs`, `fence_ourselves`).
    DeclaredDead = 3,
    /// The peer has not heard of this incarnation from the coordinator yet (the answer to
    /// a `PeerHello`): a normal step of every join, so the link logs that it waits, at
    /// INFO, and tries again one heartbeat interval later.
    NotListedYet = 4,
}

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
            Error::ClosedInsideFrame(why) => write!(f, "{why}"),
            Error::Refused(_, why) => write!(f, "refused: {why}"),
            Error::NoLiveServer(why) => write!(f, "no live server: {why}"),
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
    /// The code that tells a peer what this error means to it, when the error is the
    /// reason for refusing that peer: a refusal passed on keeps its code, no live server
    /// has its own, and anything else is [`Refusal::Other`].
    pub fn refusal(&self) -> Refusal {
        match self {
            Error::Refused(code, _) => *code,
            Error::NoLiveServer(_) => Refusal::NoLiveServer,
            _ => Refusal::Other,
        }
    }

    /// True when the error is a read or write timeout set on the socket.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
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
