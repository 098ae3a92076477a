//! The one error type of dsys.
//!
//! Its variants are the outcomes a caller treats differently, not every way a call can fail:
//! a connection thread closes its connection on `Protocol`, a client fails over on `Io`,
//! `main` prints `NoLiveServer` and `Refused` as the one-line message of exit status 1.

use std::fmt;
use std::io;

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The socket or file system failed (includes timeouts and resets).
    Io(io::Error),
    /// The peer sent something that is not valid dsys protocol: close that connection.
    Protocol(String),
    /// The peer understood us and said no (registration refused, fenced, ...).
    Refused(String),
    /// No server can take a client right now.
    NoLiveServer(String),
    /// The user asked for something impossible (a missing file, a bad address).
    Usage(String),
}

/// `Result` with [`Error`]: every fallible dsys function returns it, so `?` carries a
/// failure up to the one place (a connection thread's spawn closure, or `main`) that
/// decides what it costs.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::Refused(why) => write!(f, "refused: {why}"),
            Error::NoLiveServer(why) => write!(f, "no live server: {why}"),
            Error::Usage(why) => write!(f, "{why}"),
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
}
