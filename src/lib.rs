//! dsys: a small distributed messaging system built from std threads and blocking sockets.
//!
//! One coordinator tracks servers by their heartbeats and tells clients which server to use;
//! servers accept clients (one thread per connection) and relay every message to each other;
//! clients register, share text and files, and move to a live server by themselves when
//! theirs fails. `docs/architecture.md` tells the whole story; this page is the map.
//!
//! # Layout
//!
//! The folders are the picture: `roles/` is the system, one folder per role, and in each
//! role one file per thread or per idea; `tools/` is what runs a cluster for you and is
//! not part of it. Read `roles/` first; `tools/` and `support/` can wait. Every file of
//! `src/` is below, in reading order.
//!
//! ```text
//! main.rs                    the CLI: parse, start the logger, run a role or a tool, exit
//!                            status
//! lib.rs                     this map
//! protocol/                  every byte on the wire
//!   mod.rs                   the messages: who sends what to whom
//!   encoding.rs              Message <-> frame body, field by field
//!   codec.rs                 frames on a stream, the frame-size cap
//!   message_path.rs          the Deliver and Relay frames, built without extra copies
//!   names.rs                 the name rule (valid_name), for client, server and
//!                            coordinator alike
//!   status_report.rs         the status reply cut into frames (report_frames) and joined
//!                            back (join_report)
//! net.rs                     connecting with deadlines, the opening handshake, refuse
//! net/accept.rs              AcceptLoop: the accept thread, a thread per connection, the
//!                            connection limit, and how it stops
//! net/send_now.rs            one send that never blocks, on a blocking socket
//! net/metrics_http.rs        --metrics: GET /metrics over HTTP/1.1 in Prometheus's text
//!                            format, bounded like every port (what is counted: each
//!                            role's metrics.rs)
//! auth.rs                    who may join: the cluster secret and the challenge proving it
//! error.rs                   the one error type, a variant per outcome callers tell apart
//! roles/mod.rs               the three roles, and nothing else
//! roles/coordinator/
//!   mod.rs                   threads and sockets: heartbeats in, status, the watchdog
//!                            thread
//!   registry.rs              the decisions, no sockets: handle_heartbeat,
//!                            redistribute_clients, assign, claim_name
//!   watchdog.rs              the failure detector: check_server_statuses, the probe of a
//!                            late server, the watchdog's own lateness
//!   probe.rs                 asking a server whether it still answers
//!   locate.rs                a client's "which server?"
//!   claims.rs                names being registered that no heartbeat lists yet
//!   cuts.rs                  two servers that both heartbeat but cannot reach each other
//!   rebalance.rs             moving clients when the counts drift
//!   metrics.rs               its counters for --metrics, and the servers by state
//! roles/server/
//!   mod.rs                   start_server and stop; what every server thread shares
//!   client.rs                one client: register_client, its read loop, keepalives
//!   claim.rs                 a fresh name claimed at the coordinator, and where that stops
//!   peers.rs                 one peer link, each way
//!   heartbeat.rs             the heartbeat thread
//!   leave.rs                 a planned stop: clients moved away first
//!   trim.rs                  the trim thread: memory of departed clients given back
//!   metrics.rs               its counters for --metrics (atomics, counted where the
//!                            event happens), and the gauges read from the hub
//!   hub/                     the shared state: mod.rs (lock, publish), locked.rs (the
//!                            lock's guard), incarnation.rs (epoch, readiness, the fence),
//!                            history.rs, relay.rs, clients.rs, delivery.rs
//!   write/                   the write path, below the hub: mod.rs (who writes a
//!                            client's socket), outbox.rs (a bounded queue to one
//!                            writer), pen.rs (the right to write a client's socket),
//!                            through.rs (writing without blocking), pool.rs
//!                            (a client's writer thread, only while frames wait, and the
//!                            pool thread that starts them within the thread budget),
//!                            writer_loop.rs (the one writer loop)
//! roles/client/
//!   mod.rs                   the CLI client: stdin in, events out
//!   input.rs                 stdin lines and commands, each with a clear answer
//!   session.rs               send, ack; session/register.rs: register, fail over
//!   connection.rs            one connection and its two threads
//!   inbox.rs                 exactly once, in order: what a session delivers
//!   locate.rs, files.rs, output.rs
//! tools/mod.rs               what runs a cluster for you, not part of it
//! tools/status.rs            `dsys status`: ask, print
//! tools/demo/                `dsys demo`: mod.rs runs it, story.rs watches and counts
//! tools/bench/               `dsys bench`: mod.rs (the loads, the steps), load.rs (its
//!                            clients), failover.rs, storm.rs (a crowded server killed),
//!                            histogram.rs, report.rs
//! tools/children.rs          coordinators and servers as child processes (demo, bench)
//! support/                   skip on a first reading: mod.rs, sha256 (files, HMAC), json,
//!                            signals (SIGINT/SIGTERM as a channel), limits (open files,
//!                            threads), memory (given back), random ids, visible
//!                            (remote text made safe to print on a terminal), cpu (a
//!                            process's CPU time, for bench)
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
pub mod net;
pub mod protocol;
pub mod roles;
pub mod support;
pub mod tools;

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
