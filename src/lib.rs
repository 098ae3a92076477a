//! dsys: a small distributed messaging system built from std threads and blocking sockets.
//!
//! One coordinator tracks servers by their heartbeats and tells clients which server to use;
//! servers accept clients (one thread per connection) and relay every message to each other;
//! clients register, share text and files, and move to a live server by themselves when
//! theirs fails. `docs/architecture.md` tells the whole story; this page is the map.
//!
//! # Layout
//!
//! ```text
//! main.rs              the CLI: parse, start the logger, run a role, map errors to exit codes
//! lib.rs               this map
//! auth.rs              who may join: the cluster secret and the challenge that proves it
//! error.rs             the one error type, one variant per outcome a caller treats differently
//! json.rs              the JSON Lines writer for client events and status
//! protocol.rs          frames and messages: bytes <-> Message, the frame-size cap
//! net.rs               the accept loop and its limits, connecting with deadlines, the
//!                      handshake, random ids
//! sha256.rs            the digest that checks every received file end to end, and HMAC
//! signals.rs           SIGINT/SIGTERM as a channel that disconnects
//! roles/coordinator.rs registry, handle_heartbeat, watchdog (check_server_statuses),
//!                      redistribute_clients, the "which server?" answer, status
//! roles/server/        start_server, register_client, the hub (history, fan-out, acks),
//!                      peer links, heartbeats
//! roles/client/        the session (register, send, ack, failover), output, files in chunks
//! roles/status.rs      `dsys status`
//! roles/demo.rs        `dsys demo`
//! ```
//!
//! ```text
//!                 heartbeats (every interval)        Locate / Assign
//!   server A ───────────────────────────►  coordinator ◄──────────────── client
//!      │  ▲                                   ▲  (watchdog thread)           │
//!      │  │ Relay / PeerAck (peer links)      │                              │ Publish / Deliver / Ack
//!      ▼  │                                   │                              ▼
//!   server B ─────────────────────────────────┘                          server A
//! ```
#![warn(missing_docs)]
// The docs are read as a course, and they link to private items as freely as to public
// ones; `cargo doc --document-private-items` renders every such link.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
pub mod error;
pub mod json;
pub mod net;
pub mod protocol;
pub mod roles;
pub mod sha256;
pub mod signals;
pub mod support;

pub use error::{Error, Result};

/// Where the coordinator listens unless told otherwise, and where every role looks for it.
pub const DEFAULT_COORDINATOR: &str = "127.0.0.1:7000";

/// How a command prints its results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lines for a human.
    Text,
    /// JSON Lines for a program (`CONTRACT.md`).
    Json,
}
