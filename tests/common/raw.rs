//! [`RawClient`]: a client that speaks the protocol from the test process itself, without a
//! `dsys client` process (three threads each), for tests that need many clients at once.
//! It registers, can publish, and reads only when told to ([`RawClient::read_some`]): what
//! the server sends it waits in the socket buffers, which a few messages do not fill.
//! Dropping it closes the connection, and the server sees the client leave.

use std::io::{Read, Write};
use std::net::TcpStream;

use dsys::protocol::{Body, Message, Role};

use super::TIMEOUT;

/// A registered client with no process of its own.
pub struct RawClient {
    /// The name it registered under.
    pub name: String,
    stream: TcpStream,
    /// The `seq` of its next publish.
    next_seq: u64,
}

impl RawClient {
    /// Connects to `server` and registers as `name`, as `dsys client` does.
    ///
    /// # Errors
    /// As `dsys::net::connect_as` (`Refused` when the server turns the connection away
    /// before its challenge), or `Refused` with the reason when it refuses the name.
    pub fn register(server: &str, name: &str) -> dsys::Result<RawClient> {
        let mut stream = dsys::net::connect_as(server, Role::Client, TIMEOUT, None)?;
        let register = Message::Register {
            name: name.to_string(),
            resume: None,
        };
        match dsys::net::request(&mut stream, &register)? {
            Message::Registered { .. } => Ok(RawClient {
                name: name.to_string(),
                stream,
                next_seq: 1,
            }),
            Message::RegisterRefused { code, reason } => Err(dsys::Error::Refused(code, reason)),
            other => Err(dsys::Error::Protocol(format!(
                "expected Registered, got {}",
                other.kind()
            ))),
        }
    }

    /// Broadcasts `text` as this client's next message.
    ///
    /// # Panics
    /// When the write fails.
    pub fn publish_text(&mut self, text: &str) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let publish = Message::Publish {
            seq,
            body: Body::Text {
                number: seq,
                text: text.to_string(),
            },
        };
        self.stream
            .write_all(&publish.encode())
            .unwrap_or_else(|e| panic!("raw client {} cannot publish: {e}", self.name));
    }

    /// Reads once, at most `len` bytes of whatever the server sent, and returns how many
    /// arrived: 0 once the connection has ended (closed or reset by either side). A test
    /// that calls it at a pace of its own makes a reader that is slow but keeps reading.
    pub fn read_some(&mut self, len: usize) -> usize {
        let mut buf = vec![0; len];
        self.stream.read(&mut buf).unwrap_or(0)
    }

    /// Shuts this client's connection down from another thread: a [`read_some`] blocked
    /// there returns 0, and the server sees the client leave.
    ///
    /// [`read_some`]: RawClient::read_some
    ///
    /// # Panics
    /// When the socket cannot be cloned.
    pub fn hang_up_handle(&self) -> HangUp {
        HangUp(self.stream.try_clone().expect("a socket clones"))
    }
}

/// Hangs a [`RawClient`] up from another thread (see [`RawClient::hang_up_handle`]).
pub struct HangUp(TcpStream);

impl HangUp {
    /// Shuts the connection down both ways.
    pub fn hang_up(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}
