//! The encoding of every message: its type byte and the order of its fields, both ways.
//! [`Message::encode`] and [`Message::decode`] are two mirror tables with one arm per
//! variant, kept side by side so each field can be checked to be written and read in the same
//! order, and against `docs/protocol.md` (sections 3 and 5), the same table in prose.
//!
//! It sits between `mod.rs` (what each message means) and `codec.rs` (how a field is laid
//! out), and is called through them by every connection thread; `message_path.rs` builds the
//! hot frames with the same [`Writer`] methods. Pure functions: no I/O, no thread, no state.
//! Decoding trusts nothing: an unknown type byte, a bad flag or magic, or bytes left after the
//! last field is [`Error::Protocol`], and every count is checked by [`Reader`] before it sizes
//! a `Vec`. The one lenient field is a refusal's code, which a newer peer may send with values
//! this build does not know ([`Refusal::from_byte`]).

use super::codec::{Reader, Writer, framed, utf8};
use super::{Body, Departure, MAGIC, Message, Refusal, Resume, Role, ServerInfo};
use crate::error::{Error, Result};

// Type bytes. Grouped by connection kind; docs/protocol.md has the same table.
const T_HELLO: u8 = 0x01;
const T_ERROR: u8 = 0x02;
const T_CHALLENGE: u8 = 0x03;
const T_REGISTER: u8 = 0x10;
const T_REGISTERED: u8 = 0x11;
const T_REGISTER_REFUSED: u8 = 0x12;
const T_PUBLISH: u8 = 0x13;
pub(super) const T_DELIVER: u8 = 0x14;
const T_ACK: u8 = 0x15;
const T_KEEPALIVE: u8 = 0x16;
const T_DEREGISTER: u8 = 0x17;
const T_MOVE: u8 = 0x19;
const T_STANDBY: u8 = 0x1A;
const T_PEER_HELLO: u8 = 0x20;
const T_PEER_WELCOME: u8 = 0x21;
pub(super) const T_RELAY: u8 = 0x22;
const T_PEER_ACK: u8 = 0x23;
const T_PEER_SYNCED: u8 = 0x24;
const T_HEARTBEAT: u8 = 0x30;
const T_HEARTBEAT_REPLY: u8 = 0x31;
const T_FENCED: u8 = 0x32;
const T_LOCATE: u8 = 0x40;
const T_ASSIGN: u8 = 0x41;
const T_CLAIM: u8 = 0x42;
const T_CLAIM_REPLY: u8 = 0x43;
const T_STATUS_QUERY: u8 = 0x50;
const T_STATUS_REPORT: u8 = 0x51;

pub(super) const BODY_TEXT: u8 = 1;
const BODY_FILE_START: u8 = 3;
const BODY_FILE_CHUNK: u8 = 4;
const BODY_FILE_END: u8 = 5;

impl Departure {
    fn from_byte(byte: u8) -> Result<Departure> {
        Ok(match byte {
            0 => Departure::Staying,
            1 => Departure::Leaving,
            2 => Departure::Gone,
            other => return Err(Error::Protocol(format!("unknown departure {other}"))),
        })
    }
}

impl Role {
    fn from_byte(byte: u8) -> Result<Role> {
        Ok(match byte {
            1 => Role::Client,
            2 => Role::Peer,
            3 => Role::Heartbeat,
            4 => Role::Status,
            5 => Role::Locate,
            7 => Role::Claim,
            other => return Err(Error::Protocol(format!("unknown role {other}"))),
        })
    }
}

impl Refusal {
    /// The code `byte` stands for. Lenient on purpose, unlike every other field: a byte
    /// this build does not know was sent by a newer peer that added a code, so it reads as
    /// [`Refusal::Other`] and the refusal still reaches a person in the peer's words,
    /// instead of ending the connection as a protocol error. This is the one place where
    /// decoding and encoding again does not give back the bytes that came in.
    fn from_byte(byte: u8) -> Refusal {
        match byte {
            1 => Refusal::NoLiveServer,
            2 => Refusal::ServerFull,
            3 => Refusal::DeclaredDead,
            4 => Refusal::NotListedYet,
            _ => Refusal::Other,
        }
    }
}

impl Message {
    /// Encodes the message as one complete frame, length prefix included.
    ///
    /// # Panics
    /// If a field is longer than the protocol can express (a string over 65,535 bytes or a
    /// frame over [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN)). Callers check user input against
    /// [`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN) first, so this marks a bug, not bad input.
    pub fn encode(&self) -> Vec<u8> {
        framed(|out| self.encode_body(out))
    }

    fn encode_body(&self, out: &mut Writer) {
        match self {
            Message::Challenge { nonce } => {
                out.u8(T_CHALLENGE);
                out.fixed(&MAGIC);
                out.fixed(nonce);
            }
            Message::Hello {
                version,
                role,
                proof,
            } => {
                out.u8(T_HELLO);
                out.fixed(&MAGIC);
                out.u16(*version);
                out.u8(*role as u8);
                out.fixed(proof);
            }
            Message::Error { code, reason } => {
                out.u8(T_ERROR);
                out.refusal(*code, reason);
            }
            Message::Register { name, resume } => {
                out.u8(T_REGISTER);
                out.str(name);
                match resume {
                    None => out.u8(0),
                    Some(resume) => {
                        out.u8(1);
                        out.u64(resume.session);
                        out.u64(resume.token);
                        out.pairs(&resume.seen);
                    }
                }
            }
            Message::Registered {
                session,
                token,
                keepalive_ms,
                silence_ms,
                watermarks,
            } => {
                out.u8(T_REGISTERED);
                out.u64(*session);
                out.u64(*token);
                out.u32(*keepalive_ms);
                out.u32(*silence_ms);
                out.pairs(watermarks);
            }
            Message::RegisterRefused { code, reason } => {
                out.u8(T_REGISTER_REFUSED);
                out.refusal(*code, reason);
            }
            Message::Publish { seq, body } => {
                out.u8(T_PUBLISH);
                out.u64(*seq);
                out.body(body);
            }
            Message::Deliver {
                from,
                session,
                seq,
                body,
            } => out.deliver(from, *session, *seq, body),
            Message::Ack { seq } => {
                out.u8(T_ACK);
                out.u64(*seq);
            }
            Message::Keepalive => out.u8(T_KEEPALIVE),
            Message::Deregister => out.u8(T_DEREGISTER),
            Message::Move { server } => {
                out.u8(T_MOVE);
                out.str(server);
            }
            Message::Standby { server, spread_ms } => {
                out.u8(T_STANDBY);
                out.str(server);
                out.u32(*spread_ms);
            }
            Message::PeerHello { addr, epoch } => {
                out.u8(T_PEER_HELLO);
                out.str(addr);
                out.u64(*epoch);
            }
            Message::PeerWelcome {
                last_index,
                history,
            } => {
                out.u8(T_PEER_WELCOME);
                out.u64(*last_index);
                out.u8(*history as u8);
            }
            Message::Relay {
                index,
                from,
                session,
                seq,
                body,
            } => {
                out.u8(T_RELAY);
                out.u64(*index);
                out.deliver_fields(from, *session, *seq, body);
            }
            Message::PeerAck { index } => {
                out.u8(T_PEER_ACK);
                out.u64(*index);
            }
            Message::PeerSynced => out.u8(T_PEER_SYNCED),
            Message::Heartbeat {
                addr,
                epoch,
                clients,
                cut_off,
                departure,
            } => {
                out.u8(T_HEARTBEAT);
                out.str(addr);
                out.u64(*epoch);
                match clients {
                    None => out.u8(0),
                    Some(clients) => {
                        out.u8(1);
                        out.strs(clients);
                    }
                }
                out.strs(cut_off);
                out.u8(*departure as u8);
            }
            Message::HeartbeatReply {
                epoch,
                complete,
                servers,
                moves,
            } => {
                out.u8(T_HEARTBEAT_REPLY);
                out.u64(*epoch);
                out.u8(*complete as u8);
                out.servers(servers);
                out.u32(moves.len() as u32);
                for (client, server) in moves {
                    out.str(client);
                    out.str(server);
                }
            }
            Message::Fenced { reason } => {
                out.u8(T_FENCED);
                out.str(reason);
            }
            Message::Locate {
                name,
                suspect,
                unreachable,
            } => {
                out.u8(T_LOCATE);
                out.str(name);
                out.str(suspect);
                out.u8(*unreachable as u8);
            }
            Message::Assign { server } => {
                out.u8(T_ASSIGN);
                out.str(server);
            }
            Message::Claim { name, server } => {
                out.u8(T_CLAIM);
                out.str(name);
                out.str(server);
            }
            Message::ClaimReply { holder } => {
                out.u8(T_CLAIM_REPLY);
                out.str(holder);
            }
            Message::StatusQuery => out.u8(T_STATUS_QUERY),
            Message::StatusReport { servers, more } => {
                out.u8(T_STATUS_REPORT);
                out.servers(servers);
                out.u8(*more as u8);
            }
        }
    }

    /// Decodes one frame body (without its length prefix).
    ///
    /// # Errors
    /// [`Error::Protocol`] for an unknown type byte, a truncated field, invalid UTF-8, a
    /// count larger than the bytes left, or bytes left over after the last field.
    pub fn decode(body: &[u8]) -> Result<Message> {
        let mut r = Reader::new(body);
        let message = match r.u8()? {
            T_HELLO => {
                r.magic()?;
                Message::Hello {
                    version: r.u16()?,
                    role: Role::from_byte(r.u8()?)?,
                    proof: r.array()?,
                }
            }
            T_CHALLENGE => {
                r.magic()?;
                Message::Challenge { nonce: r.array()? }
            }
            T_ERROR => {
                let (code, reason) = r.refusal()?;
                Message::Error { code, reason }
            }
            T_REGISTER => Message::Register {
                name: r.str()?,
                resume: match r.u8()? {
                    0 => None,
                    1 => Some(Resume {
                        session: r.u64()?,
                        token: r.u64()?,
                        seen: r.pairs()?,
                    }),
                    other => return Err(Error::Protocol(format!("bad resume flag {other}"))),
                },
            },
            T_REGISTERED => Message::Registered {
                session: r.u64()?,
                token: r.u64()?,
                keepalive_ms: r.u32()?,
                silence_ms: r.u32()?,
                watermarks: r.pairs()?,
            },
            T_REGISTER_REFUSED => {
                let (code, reason) = r.refusal()?;
                Message::RegisterRefused { code, reason }
            }
            T_PUBLISH => Message::Publish {
                seq: r.u64()?,
                body: r.body()?,
            },
            T_DELIVER => Message::Deliver {
                from: r.str()?,
                session: r.u64()?,
                seq: r.u64()?,
                body: r.body()?,
            },
            T_ACK => Message::Ack { seq: r.u64()? },
            T_KEEPALIVE => Message::Keepalive,
            T_DEREGISTER => Message::Deregister,
            T_MOVE => Message::Move { server: r.str()? },
            T_STANDBY => Message::Standby {
                server: r.str()?,
                spread_ms: r.u32()?,
            },
            T_PEER_HELLO => Message::PeerHello {
                addr: r.str()?,
                epoch: r.u64()?,
            },
            T_PEER_WELCOME => Message::PeerWelcome {
                last_index: r.u64()?,
                history: r.flag("history")?,
            },
            T_RELAY => Message::Relay {
                index: r.u64()?,
                from: r.str()?,
                session: r.u64()?,
                seq: r.u64()?,
                body: r.body()?,
            },
            T_PEER_ACK => Message::PeerAck { index: r.u64()? },
            T_PEER_SYNCED => Message::PeerSynced,
            T_HEARTBEAT => Message::Heartbeat {
                addr: r.str()?,
                epoch: r.u64()?,
                clients: match r.flag("clients")? {
                    false => None,
                    true => Some(r.strs()?),
                },
                cut_off: r.strs()?,
                departure: Departure::from_byte(r.u8()?)?,
            },
            T_HEARTBEAT_REPLY => Message::HeartbeatReply {
                epoch: r.u64()?,
                complete: r.flag("complete")?,
                servers: r.servers()?,
                moves: {
                    let count = r.count(4)?; // two string lengths
                    (0..count)
                        .map(|_| Ok((r.str()?, r.str()?)))
                        .collect::<Result<_>>()?
                },
            },
            T_FENCED => Message::Fenced { reason: r.str()? },
            T_LOCATE => Message::Locate {
                name: r.str()?,
                suspect: r.str()?,
                unreachable: r.flag("unreachable")?,
            },
            T_ASSIGN => Message::Assign { server: r.str()? },
            T_CLAIM => Message::Claim {
                name: r.str()?,
                server: r.str()?,
            },
            T_CLAIM_REPLY => Message::ClaimReply { holder: r.str()? },
            T_STATUS_QUERY => Message::StatusQuery,
            T_STATUS_REPORT => Message::StatusReport {
                servers: r.servers()?,
                more: r.flag("more")?,
            },
            other => return Err(Error::Protocol(format!("unknown frame type 0x{other:02x}"))),
        };
        if r.left() != 0 {
            return Err(Error::Protocol(format!(
                "{} unexpected bytes after {}",
                r.left(),
                message.kind()
            )));
        }
        Ok(message)
    }
}

/// Where the relay index sits in an encoded [`Message::Relay`] frame: after the 4-byte
/// length and the type byte. A server encodes the frame outside its lock and writes the
/// index in here under the lock, so the lock is never held while a payload is copied.
pub const RELAY_INDEX_BYTES: std::ops::Range<usize> = 5..13;

/// The fields made of several primitives, which only messages know about.
impl Writer {
    fn body(&mut self, body: &Body) {
        match body {
            Body::Text { number, text } => {
                self.u8(BODY_TEXT);
                self.u64(*number);
                self.bytes(text.as_bytes());
            }
            Body::FileStart { name, size } => {
                self.u8(BODY_FILE_START);
                self.str(name);
                self.u64(*size);
            }
            Body::FileChunk { data } => {
                self.u8(BODY_FILE_CHUNK);
                self.bytes(data);
            }
            Body::FileEnd { number, sha256 } => {
                self.u8(BODY_FILE_END);
                self.u64(*number);
                self.fixed(sha256);
            }
        }
    }
    pub(super) fn deliver(&mut self, from: &str, session: u64, seq: u64, body: &Body) {
        self.u8(T_DELIVER);
        self.deliver_fields(from, session, seq, body);
    }
    /// The fields a Deliver and a Relay share, in the same order.
    pub(super) fn deliver_fields(&mut self, from: &str, session: u64, seq: u64, body: &Body) {
        self.str(from);
        self.u64(session);
        self.u64(seq);
        self.body(body);
    }
    /// A refusal's words, then its code, left out when it is [`Refusal::Other`]. An
    /// `Error` of code `Other` is then laid out as in versions 1 to 6, and the refusal of
    /// a peer that speaks another version, which is always `Other`, reads clearly on either
    /// side of version 7 (`docs/protocol.md`, 6.8).
    fn refusal(&mut self, code: Refusal, reason: &str) {
        self.str(reason);
        if code != Refusal::Other {
            self.u8(code as u8);
        }
    }
    fn servers(&mut self, servers: &[ServerInfo]) {
        self.u32(servers.len() as u32);
        for server in servers {
            self.str(&server.addr);
            self.u64(server.epoch);
            self.u8(server.alive as u8);
            self.u8(server.leaving as u8);
            self.strs(&server.clients);
        }
    }
}

/// The fields made of several primitives, mirroring the [`Writer`] ones above.
impl Reader<'_> {
    /// The four [`MAGIC`] bytes that open a `Challenge` and a `Hello`.
    fn magic(&mut self) -> Result<()> {
        if self.array::<4>()? != MAGIC {
            return Err(Error::Protocol("bad magic: not a dsys peer".into()));
        }
        Ok(())
    }
    fn body(&mut self) -> Result<Body> {
        match self.u8()? {
            BODY_TEXT => Ok(Body::Text {
                number: self.u64()?,
                text: utf8(self.bytes()?)?,
            }),
            BODY_FILE_START => Ok(Body::FileStart {
                name: self.str()?,
                size: self.u64()?,
            }),
            BODY_FILE_CHUNK => Ok(Body::FileChunk {
                data: self.bytes()?.to_vec(),
            }),
            BODY_FILE_END => Ok(Body::FileEnd {
                number: self.u64()?,
                sha256: self.array()?,
            }),
            other => Err(Error::Protocol(format!("unknown body kind {other}"))),
        }
    }
    /// A refusal's words and code: [`Refusal::Other`] when no byte follows the words.
    fn refusal(&mut self) -> Result<(Refusal, String)> {
        let reason = self.str()?;
        let code = if self.left() > 0 {
            Refusal::from_byte(self.u8()?)
        } else {
            Refusal::Other
        };
        Ok((code, reason))
    }
    fn servers(&mut self) -> Result<Vec<ServerInfo>> {
        // addr length (2) + epoch (8) + alive (1) + leaving (1) + client count (4)
        let count = self.count(16)?;
        (0..count)
            .map(|_| {
                Ok(ServerInfo {
                    addr: self.str()?,
                    epoch: self.u64()?,
                    alive: self.flag("alive")?,
                    leaving: self.flag("leaving")?,
                    clients: self.strs()?,
                })
            })
            .collect()
    }
}
