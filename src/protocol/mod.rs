//! The wire protocol: every byte that crosses a dsys socket is defined in this folder, and no
//! role parses bytes itself, so the frame-size cap ([`MAX_FRAME_LEN`]) and every check on
//! untrusted input live here. This file owns the messages: each [`Message`] variant, what it
//! means, and who sends it to whom. Read it first; the other files are how it becomes bytes:
//!
//! - `codec.rs`: frames on a stream ([`read_frame`]), the cap, the field primitives;
//! - `encoding.rs`: each message's type byte and field order ([`Message::encode`],
//!   [`Message::decode`]);
//! - `message_path.rs`: the `Deliver` and `Relay` frames, built without extra copies;
//! - `status_report.rs`: the status reply cut into frames and joined back;
//! - `names.rs`: the name rule, for client, server and coordinator alike.
//!
//! Every role's connection threads call into it. Nothing here starts a thread or keeps
//! state; a peer that breaks the protocol gets [`Error::Protocol`](crate::Error::Protocol)
//! back to the caller, which closes that one connection. Every byte: `docs/protocol.md`.

mod codec;
mod encoding;
mod message_path;
mod names;
mod status_report;

pub use crate::error::Refusal;
pub use codec::{
    CLOSED_INSIDE_A_FRAME, MAX_FRAME_LEN, holds_whole_frame, read_frame, read_frame_into,
    read_message, write_message,
};
pub use encoding::RELAY_INDEX_BYTES;
pub use message_path::{DeliverRef, deliver_frame, deliver_frames, relay_frame};
pub use names::{MAX_NAME_LEN_LIMIT, valid_name};
pub use status_report::{join_report, report_frames};

/// The protocol version carried in every [`Message::Hello`]. A peer that speaks another
/// version is refused with a clear [`Message::Error`] instead of being misread. Version 7
/// added the [`Refusal`] code to `Error` and `RegisterRefused`; version 8 the server's
/// keepalives (`Registered.silence_ms`, and no more frame that changed a client's keepalive
/// interval); version 9 the client's standby server ([`Message::Standby`]).
pub const PROTOCOL_VERSION: u16 = 9;

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
    // 6 was `Probe` up to version 3; a probe now reads the `Challenge` and closes.
    /// A server claiming a client's name before it registers the client (coordinator
    /// port): names are unique across the cluster.
    Claim = 7,
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

    /// The sender's message number this frame completes: a text's, or a whole file's on
    /// its last frame; 0 for the other frames of a file and for an abandoned file.
    pub fn number(&self) -> u64 {
        match self {
            Body::Text { number, .. } | Body::FileEnd { number, .. } => *number,
            Body::FileStart { .. } | Body::FileChunk { .. } => 0,
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
    /// Whether the coordinator currently considers it alive (a server that is leaving is
    /// alive until it has left).
    pub alive: bool,
    /// Whether it is stopping on purpose (a planned stop, [`Departure`]): alive and
    /// leaving, it is moving its clients away and takes no new ones; no longer alive and
    /// leaving, it has left, where a server that is not leaving was declared dead.
    pub leaving: bool,
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
        /// What the refusal means to the receiving program; [`Refusal::Other`] for most.
        code: Refusal,
        /// A sentence for a human. No program branches on it: that is what `code` is for.
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
        /// The client's keepalive interval: the client sends a [`Message::Keepalive`] when
        /// it has sent nothing for this long, so that the server never takes it for gone.
        keepalive_ms: u32,
        /// The client's silence limit: the server writes to the client well within it (a
        /// [`Message::Keepalive`] when it has nothing else), so the client takes this long
        /// without a frame for a dead or hung server.
        silence_ms: u32,
        /// The sender sessions the server holds history for, with their latest `seq`:
        /// messages up to these are "before the client registered".
        watermarks: Vec<(u64, u64)>,
    },
    /// Server → client: registration refused (name taken, invalid, server full, ...).
    RegisterRefused {
        /// What the refusal means to the client: [`Refusal::ServerFull`] or
        /// [`Refusal::Other`].
        code: Refusal,
        /// A sentence for a human. No program branches on it: that is what `code` is for.
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
    /// Either way: "I am alive". A server sends it to a client it has written nothing to
    /// for a while, a client to its server when it has sent nothing for its keepalive
    /// interval; neither is answered. (Between servers, and to a probe, see the protocol
    /// chapter.)
    Keepalive,
    /// Client → server: leaving on purpose.
    Deregister,
    /// Server → client: move to `server` (the coordinator is rebalancing, or this server is
    /// leaving: a planned stop). The client
    /// registers there with its session, as after a failover, and only then leaves this
    /// server; if it cannot, it stays.
    Move {
        /// The server to move to.
        server: String,
    },
    /// Server → client: should this server be gone (its port refuses, or resets before it
    /// speaks), register on `server` without asking the coordinator, after a random wait
    /// of up to `spread_ms`; `server` is empty when there is no other server. Sent after
    /// `Registered`, whenever the live servers change, and as the server's clients double
    /// or halve. The client keeps the latest one (`docs/heartbeats-and-failover.md`,
    /// "Standby servers").
    Standby {
        /// The server to fail over to, or empty.
        server: String,
        /// The longest wait before going there: the server's clients would all arrive
        /// at once otherwise. Grows with the number of clients the server holds.
        spread_ms: u32,
    },

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
        /// Names of the registered clients, or `None` when they are the same as in the
        /// last `Heartbeat` on this connection (a server of ten thousand clients would
        /// otherwise send ten thousand names every interval to say nothing new).
        clients: Option<Vec<String>>,
        /// Peers this server has not heard from for longer than its link silence limit (a
        /// cut between servers, which only they can see).
        cut_off: Vec<String>,
        /// Whether it is staying, leaving (a planned stop: move its clients away), or gone
        /// (this is its last heartbeat).
        departure: Departure,
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
        /// Clients of the addressed server to move, each with the server it is to move to
        /// (rebalancing; usually empty).
        moves: Vec<(String, String)>,
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
        /// True when the client was sent to `suspect` and could not register there: the
        /// coordinator may reach it, but this client cannot (a one-way or partial network
        /// cut), so it must be placed elsewhere.
        unreachable: bool,
    },
    /// Coordinator → client: use this server.
    Assign {
        /// The server's address.
        server: String,
    },

    /// Server → coordinator: a client asks to register as `name` here; is the name free
    /// across the cluster? The coordinator records the claim, so that a second server
    /// asking before the next heartbeats is refused.
    Claim {
        /// The name the client asks for.
        name: String,
        /// The claiming server's advertised address.
        server: String,
    },
    /// Coordinator → server: the answer to a [`Message::Claim`].
    ClaimReply {
        /// The server that has the name (lists it, or claimed it first); empty when the
        /// name is this server's to give.
        holder: String,
    },

    /// `dsys status` → coordinator.
    StatusQuery,
    /// Coordinator → `dsys status`: every known server, over as many frames as the client
    /// names need (ten thousand names on each of a few servers would not fit in one).
    StatusReport {
        /// Known servers, alive or recently dead. A server whose names did not fit in one
        /// frame comes again at the start of the next, with the rest of its names.
        servers: Vec<ServerInfo>,
        /// Whether another `StatusReport` follows.
        more: bool,
    },
}

/// Where a server stands with its planned stop, in every [`Message::Heartbeat`]
/// (`docs/shutdown.md`, "A planned stop").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Serving as usual.
    Staying = 0,
    /// Stopping on purpose, after its clients have moved: the coordinator gives it no new
    /// client and orders every one it has moved to the other servers.
    Leaving = 1,
    /// Its last heartbeat before it exits: the coordinator records it as left (not dead),
    /// and plans the clients it still lists (a drain cut short) as after a failure.
    Gone = 2,
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
            Message::Move { .. } => "Move",
            Message::Standby { .. } => "Standby",
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
            Message::Claim { .. } => "Claim",
            Message::ClaimReply { .. } => "ClaimReply",
            Message::StatusQuery => "StatusQuery",
            Message::StatusReport { .. } => "StatusReport",
        }
    }
}
