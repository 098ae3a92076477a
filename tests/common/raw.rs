//! [`RawClient`]: a client that speaks the protocol from the test process itself, without a
//! `dsys client` process (three threads each), for tests that need many clients at once.
//! It registers, can publish, and reads nothing: what the server sends it waits in the
//! socket buffers, which a few messages do not fill. Dropping it closes the connection, and
//! the server sees the client leave.

use std::io::Write;
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
}
