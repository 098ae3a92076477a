//! The wire protocol: every byte that crosses a dsys socket is defined in this folder.
//!
//! A connection carries *frames*: a 4-byte big-endian length `N`, then `N` bytes of body.
//! The body starts with one type byte that names a [`Message`] variant; the fields follow in a
//! fixed order. `docs/protocol.md` describes every frame byte by byte.
//!
//! Layering, bottom-up: [`read_frame`] turns bytes into a bounded body, [`Message::decode`]
//! turns a body into a typed message, [`Message::encode`] does the reverse. No role parses
//! bytes itself, so the frame-size cap and every check on untrusted input live in this
//! folder. `codec.rs` holds the bottom layer, bytes <-> frames: reading and writing frames
//! on a stream, the frame-size cap, and the field primitives a body is made of; it is the
//! only file that touches a socket. This file holds the messages and their encoding.
//!
//! Nothing a peer sends can make this module allocate more than [`MAX_FRAME_LEN`] bytes for
//! one frame: the length prefix is checked before the buffer is allocated, the buffer grows
//! only as the bytes arrive ([`read_frame`]), and every count inside a frame is checked
//! against the bytes that are actually left before a `Vec` is sized.
//!
//! Nothing here starts a thread or keeps state: every function runs on the caller's thread
//! and returns. A peer that breaks the protocol gets [`Error::Protocol`] back to the caller,
//! which closes that one connection.

mod codec;

pub use codec::{MAX_FRAME_LEN, read_frame, read_message, write_message};

use crate::error::{Error, Result};
use codec::{Reader, Writer, framed, utf8};

/// The protocol version carried in every [`Message::Hello`]. A peer that speaks another
/// version is refused with a clear [`Message::Error`] instead of being misread.
pub const PROTOCOL_VERSION: u16 = 2;

/// The four bytes that open every [`Message::Hello`], so that a stray connection (a browser,
/// a port scanner) is recognised at once instead of being parsed as a length.
pub const MAGIC: [u8; 4] = *b"DSYS";

/// The longest text or file payload that fits in one frame, leaving room for the headers.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN as usize - 4096;

/// Who is opening a connection: the first frame of every connection says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client that will register and then publish and receive messages (server port).
    Client = 1,
    /// A server relaying its clients' messages to another server (server port).
    Peer = 2,
    /// A server sending heartbeats (coordinator port).
    Heartbeat = 3,
    /// `dsys status` asking for the cluster table (coordinator port).
    Status = 4,
    /// A client asking which server to use (coordinator port).
    Locate = 5,
}

/// Bytes of a file carried by one [`Body::FileChunk`]: small enough that a text message
/// sent meanwhile waits for at most one chunk, large enough that framing costs nothing.
pub const FILE_CHUNK_LEN: usize = 256 * 1024;

/// What a published message carries.
///
/// Every body travels as its own frame with its own `seq` (the sender's frame counter,
/// which orders and deduplicates them). A file is several bodies: `FileStart`, any number
/// of `FileChunk`s, `FileEnd`; a sender may send `Text` between them. The number a user
/// sees (`seq` in the client's events) counts whole messages instead: each `Text` and each
/// complete `FileEnd` carries it. A file gets its number when its last byte is sent, so
/// numbers follow the order in which messages are complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One line of text (UTF-8).
    Text {
        /// The sender's message number: 1, 2, 3, ... over texts and files.
        number: u64,
        /// The text.
        text: String,
    },
    /// The start of a file.
    FileStart {
        /// The sender's file name, untrusted: receivers sanitise it before use.
        name: String,
        /// The file's length in bytes; the chunks that follow add up to it.
        size: u64,
    },
    /// The next bytes of the file being sent (at most [`FILE_CHUNK_LEN`]).
    FileChunk {
        /// The bytes.
        data: Vec<u8>,
    },
    /// The end of the file being sent.
    FileEnd {
        /// The sender's message number for the file, or 0 when the sender could not read
        /// the file to its end: the file is abandoned and receivers discard what they have.
        number: u64,
        /// SHA-256 of the file's bytes, checked by every receiver before it keeps the file.
        sha256: [u8; 32],
    },
}

impl Body {
    /// The payload bytes it carries: what the history window and the unacknowledged window
    /// count against their byte bounds.
    pub fn payload_len(&self) -> usize {
        match self {
            Body::Text { text, .. } => text.len(),
            Body::FileStart { name, .. } => name.len(),
            Body::FileChunk { data } => data.len(),
            Body::FileEnd { sha256, .. } => sha256.len(),
        }
    }
}

/// One server as the coordinator sees it, in heartbeat replies and status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The address clients and peers connect to (`host:port`).
    pub addr: String,
    /// The server's incarnation, assigned by the coordinator (see `docs/guarantees.md`).
    pub epoch: u64,
    /// Whether the coordinator currently considers it alive.
    pub alive: bool,
    /// The names of the clients registered on it, as of its last heartbeat.
    pub clients: Vec<String>,
}

/// Every frame dsys sends. The comment on each variant says who sends it to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Accepting side → connecting side: the first frame of every connection, before
    /// anything is read (see `auth.rs`).
    Challenge {
        /// Fresh random bytes the connecting side proves the cluster secret against.
        nonce: [u8; 16],
    },
    /// Connecting side → accepting side: the answer to the [`Message::Challenge`], and what
    /// the connection is for.
    Hello {
        /// [`PROTOCOL_VERSION`] of the sender.
        version: u16,
        /// What the connection is for.
        role: Role,
        /// HMAC-SHA256 of the challenge and role under the cluster secret; all zeros when
        /// the sender has no secret (`auth::proof`).
        proof: [u8; 32],
    },
    /// Any side, just before closing: why the connection is being refused or closed.
    Error {
        /// A sentence for a human.
        reason: String,
    },

    /// Client → server: join as `name`. A client that fails over sets `resume` to prove it
    /// is the same session and to say which messages it has already delivered.
    Register {
        /// The name to register.
        name: String,
        /// Present when resuming an earlier session on a new server.
        resume: Option<Resume>,
    },
    /// Server → client: registration accepted.
    Registered {
        /// The session id: stamped on every message this client sends.
        session: u64,
        /// A secret proving ownership of `session` when resuming.
        token: u64,
        /// How often the server sends [`Message::Keepalive`] when it has nothing else to say.
        keepalive_ms: u32,
        /// The sender sessions the server holds history for, with their latest `seq`:
        /// messages up to these are "before the client registered".
        watermarks: Vec<(u64, u64)>,
    },
    /// Server → client: registration refused (name taken, invalid, server full, ...).
    RegisterRefused {
        /// A sentence for a human.
        reason: String,
    },
    /// Client → server: broadcast this message, the client's `seq`-th.
    Publish {
        /// The sender's own counter: 1, 2, 3, ...
        seq: u64,
        /// What is sent.
        body: Body,
    },
    /// Server → client: a message from another client.
    Deliver {
        /// The sender's registered name (stamped by the sender's server, never by the sender).
        from: String,
        /// The sender's session id.
        session: u64,
        /// The sender's `seq` for this message.
        seq: u64,
        /// What was sent.
        body: Body,
    },
    /// Server → client: every message up to and including `seq` is safe (stored on every
    /// live server), so the client may forget it.
    Ack {
        /// Highest acknowledged `seq`.
        seq: u64,
    },
    /// Server → client: "I am alive" when there is nothing else to send.
    Keepalive,
    /// Client → server: leaving on purpose.
    Deregister,

    /// Server → server: the first frame after `Hello{Peer}`.
    PeerHello {
        /// The sender's advertised address.
        addr: String,
        /// The sender's incarnation.
        epoch: u64,
    },
    /// Server → server: reply to [`Message::PeerHello`], "resume your relay after this index".
    PeerWelcome {
        /// The highest relay index already received from this incarnation (0: none).
        last_index: u64,
        /// True when the answering server is new (not ready yet) and wants the relaying
        /// server's history first: its stored messages as `Deliver` frames, then
        /// [`Message::PeerSynced`].
        history: bool,
    },
    /// Server → server: one message published by a client of the sending server.
    Relay {
        /// The sender's relay log position, 1, 2, 3, ... per incarnation.
        index: u64,
        /// Sender name.
        from: String,
        /// Sender session.
        session: u64,
        /// Sender seq.
        seq: u64,
        /// The message.
        body: Body,
    },
    /// Server → server: every relay up to `index` has been stored.
    PeerAck {
        /// Highest stored relay index.
        index: u64,
    },
    /// Server → server: the history asked for in [`Message::PeerWelcome`] is complete.
    PeerSynced,

    /// Server → coordinator: "I am alive, and these clients are mine".
    Heartbeat {
        /// The address clients and peers should use.
        addr: String,
        /// The server's incarnation, 0 when it has none yet.
        epoch: u64,
        /// Names of the registered clients.
        clients: Vec<String>,
    },
    /// Coordinator → server: the heartbeat is accepted; here are the live servers.
    HeartbeatReply {
        /// The incarnation the server is to use (assigned when it sent 0).
        epoch: u64,
        /// False while a restarted coordinator is still relearning the cluster (for one
        /// heartbeat timeout after it starts): `servers` may then miss live servers, so a
        /// server only adds peers from it and removes none.
        complete: bool,
        /// Every live server, including the one addressed.
        servers: Vec<ServerInfo>,
    },
    /// Coordinator → server: that incarnation was declared dead; start again as a new one.
    Fenced {
        /// A sentence for a human.
        reason: String,
    },

    /// Client → coordinator: which server should `name` use? `suspect` names a server the
    /// client just lost (empty when none), so the coordinator can check it at once.
    Locate {
        /// The client's name.
        name: String,
        /// The server the client could no longer reach, or "".
        suspect: String,
    },
    /// Coordinator → client: use this server.
    Assign {
        /// The server's address.
        server: String,
    },

    /// `dsys status` → coordinator.
    StatusQuery,
    /// Coordinator → `dsys status`: every known server.
    StatusReport {
        /// Known servers, alive or recently dead.
        servers: Vec<ServerInfo>,
    },
}

/// What a resuming client proves and remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The session id it was given at first registration.
    pub session: u64,
    /// The token it was given with it.
    pub token: u64,
    /// For each sender session it knows, the highest `seq` it has delivered.
    pub seen: Vec<(u64, u64)>,
}

impl Message {
    /// A short name for logs ("Publish", "Heartbeat", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Challenge { .. } => "Challenge",
            Message::Hello { .. } => "Hello",
            Message::Error { .. } => "Error",
            Message::Register { .. } => "Register",
            Message::Registered { .. } => "Registered",
            Message::RegisterRefused { .. } => "RegisterRefused",
            Message::Publish { .. } => "Publish",
            Message::Deliver { .. } => "Deliver",
            Message::Ack { .. } => "Ack",
            Message::Keepalive => "Keepalive",
            Message::Deregister => "Deregister",
            Message::PeerHello { .. } => "PeerHello",
            Message::PeerWelcome { .. } => "PeerWelcome",
            Message::Relay { .. } => "Relay",
            Message::PeerAck { .. } => "PeerAck",
            Message::PeerSynced => "PeerSynced",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatReply { .. } => "HeartbeatReply",
            Message::Fenced { .. } => "Fenced",
            Message::Locate { .. } => "Locate",
            Message::Assign { .. } => "Assign",
            Message::StatusQuery => "StatusQuery",
            Message::StatusReport { .. } => "StatusReport",
        }
    }
}

// Type bytes. Grouped by connection kind; docs/protocol.md has the same table.
const T_HELLO: u8 = 0x01;
const T_ERROR: u8 = 0x02;
const T_CHALLENGE: u8 = 0x03;
const T_REGISTER: u8 = 0x10;
const T_REGISTERED: u8 = 0x11;
const T_REGISTER_REFUSED: u8 = 0x12;
const T_PUBLISH: u8 = 0x13;
const T_DELIVER: u8 = 0x14;
const T_ACK: u8 = 0x15;
const T_KEEPALIVE: u8 = 0x16;
const T_DEREGISTER: u8 = 0x17;
const T_PEER_HELLO: u8 = 0x20;
const T_PEER_WELCOME: u8 = 0x21;
const T_RELAY: u8 = 0x22;
const T_PEER_ACK: u8 = 0x23;
const T_PEER_SYNCED: u8 = 0x24;
const T_HEARTBEAT: u8 = 0x30;
const T_HEARTBEAT_REPLY: u8 = 0x31;
const T_FENCED: u8 = 0x32;
const T_LOCATE: u8 = 0x40;
const T_ASSIGN: u8 = 0x41;
const T_STATUS_QUERY: u8 = 0x50;
const T_STATUS_REPORT: u8 = 0x51;

const BODY_TEXT: u8 = 1;
const BODY_FILE_START: u8 = 3;
const BODY_FILE_CHUNK: u8 = 4;
const BODY_FILE_END: u8 = 5;

impl Role {
    fn from_byte(byte: u8) -> Result<Role> {
        Ok(match byte {
            1 => Role::Client,
            2 => Role::Peer,
            3 => Role::Heartbeat,
            4 => Role::Status,
            5 => Role::Locate,
            other => return Err(Error::Protocol(format!("unknown role {other}"))),
        })
    }
}

impl Message {
    /// Encodes the message as one complete frame, length prefix included.
    ///
    /// # Panics
    /// If a field is longer than the protocol can express (a string over 65,535 bytes or a
    /// frame over [`MAX_FRAME_LEN`]). Callers check user input against
    /// [`MAX_PAYLOAD_LEN`] first, so this marks a bug, not bad input.
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
            Message::Error { reason } => {
                out.u8(T_ERROR);
                out.str(reason);
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
                watermarks,
            } => {
                out.u8(T_REGISTERED);
                out.u64(*session);
                out.u64(*token);
                out.u32(*keepalive_ms);
                out.pairs(watermarks);
            }
            Message::RegisterRefused { reason } => {
                out.u8(T_REGISTER_REFUSED);
                out.str(reason);
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
            } => {
                out.u8(T_HEARTBEAT);
                out.str(addr);
                out.u64(*epoch);
                out.strs(clients);
            }
            Message::HeartbeatReply {
                epoch,
                complete,
                servers,
            } => {
                out.u8(T_HEARTBEAT_REPLY);
                out.u64(*epoch);
                out.u8(*complete as u8);
                out.servers(servers);
            }
            Message::Fenced { reason } => {
                out.u8(T_FENCED);
                out.str(reason);
            }
            Message::Locate { name, suspect } => {
                out.u8(T_LOCATE);
                out.str(name);
                out.str(suspect);
            }
            Message::Assign { server } => {
                out.u8(T_ASSIGN);
                out.str(server);
            }
            Message::StatusQuery => out.u8(T_STATUS_QUERY),
            Message::StatusReport { servers } => {
                out.u8(T_STATUS_REPORT);
                out.servers(servers);
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
            T_ERROR => Message::Error { reason: r.str()? },
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
                watermarks: r.pairs()?,
            },
            T_REGISTER_REFUSED => Message::RegisterRefused { reason: r.str()? },
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
                clients: r.strs()?,
            },
            T_HEARTBEAT_REPLY => Message::HeartbeatReply {
                epoch: r.u64()?,
                complete: r.flag("complete")?,
                servers: r.servers()?,
            },
            T_FENCED => Message::Fenced { reason: r.str()? },
            T_LOCATE => Message::Locate {
                name: r.str()?,
                suspect: r.str()?,
            },
            T_ASSIGN => Message::Assign { server: r.str()? },
            T_STATUS_QUERY => Message::StatusQuery,
            T_STATUS_REPORT => Message::StatusReport {
                servers: r.servers()?,
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

/// Encodes a [`Message::Deliver`] frame from borrowed parts, so a server can build the one
/// copy that all recipients share without first cloning the payload into a `Message`.
pub fn deliver_frame(from: &str, session: u64, seq: u64, body: &Body) -> Vec<u8> {
    framed(|out| out.deliver(from, session, seq, body))
}

/// Encodes a [`Message::Relay`] frame from borrowed parts (see [`deliver_frame`]).
pub fn relay_frame(index: u64, from: &str, session: u64, seq: u64, body: &Body) -> Vec<u8> {
    framed(|out| {
        out.u8(T_RELAY);
        out.u64(index);
        out.deliver_fields(from, session, seq, body);
    })
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
    fn deliver(&mut self, from: &str, session: u64, seq: u64, body: &Body) {
        self.u8(T_DELIVER);
        self.deliver_fields(from, session, seq, body);
    }
    /// The fields a Deliver and a Relay share, in the same order.
    fn deliver_fields(&mut self, from: &str, session: u64, seq: u64, body: &Body) {
        self.str(from);
        self.u64(session);
        self.u64(seq);
        self.body(body);
    }
    fn servers(&mut self, servers: &[ServerInfo]) {
        self.u32(servers.len() as u32);
        for server in servers {
            self.str(&server.addr);
            self.u64(server.epoch);
            self.u8(server.alive as u8);
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
    fn servers(&mut self) -> Result<Vec<ServerInfo>> {
        // addr length (2) + epoch (8) + alive (1) + client count (4)
        let count = self.count(15)?;
        (0..count)
            .map(|_| {
                Ok(ServerInfo {
                    addr: self.str()?,
                    epoch: self.u64()?,
                    alive: self.flag("alive")?,
                    clients: self.strs()?,
                })
            })
            .collect()
    }
}
