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
//! `src/` is below, one a line, in reading order; `tests/docs.rs` fails when a file is
//! missing here or this map names one that is gone.
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
//! net/
//!   accept.rs                AcceptLoop: the accept thread, a thread per connection, the
//!                            connection limit, and how it stops
//!   send_now.rs              one send that never blocks, on a blocking socket
//!   metrics_http.rs          --metrics: GET /metrics over HTTP/1.1 in Prometheus's text
//!                            format, bounded like every port (what is counted: each
//!                            role's metrics.rs)
//! auth.rs                    who may join: the cluster secret and the challenge proving it
//! error.rs                   the one error type, a variant per outcome callers tell apart,
//!                            and the code a refusal carries (Refusal)
//! roles/                     the system
//!   mod.rs                   the three roles, and nothing else
//!   coordinator/
//!     mod.rs                 the Coordinator handle, its threads (accept, watchdog) and
//!                            how they stop
//!     serve.rs               conn-<peer>: every socket handler (heartbeat, locate, status,
//!                            claim)
//!     locate.rs              a client's "which server?", and the wait on a suspect
//!     probe.rs               asking a server whether it still answers
//!     metrics.rs             its counters for --metrics, and the servers by state
//!     registry/              the decisions, with `now` passed in and no socket
//!       mod.rs               Registry: handle_heartbeat, assign, declare_dead, and
//!                            Registry::tick, one watchdog round in order
//!       watchdog.rs          the failure detector: check_server_statuses, the probe of a
//!                            late server, the watchdog's own lateness
//!       cuts.rs              two servers that both heartbeat but cannot reach each other
//!       rebalance.rs         plans: redistribute_clients, rebalancing, draining
//!       claims.rs            claim_name: a name given once across the cluster
//!   server/
//!     mod.rs                 start_server and stop; what every server thread shares
//!     client.rs              one client: register_client, its read loop
//!     keepalive.rs           the keepalives thread: the server writes to quiet clients
//!     claim.rs               a fresh name claimed at the coordinator, and where that stops
//!     peers.rs               one peer link, each way
//!     heartbeat.rs           the heartbeat thread
//!     leave.rs               a planned stop: clients moved away first
//!     trim.rs                the trim thread: memory of departed clients given back
//!     metrics.rs             its counters for --metrics (atomics, counted where the
//!                            event happens), and the gauges read from the hub
//!     hub/                   the shared state, one file per rule
//!       mod.rs               the one way in (publish), and the lock around the state
//!       locked.rs            the lock's guard, which hands the pens taken under it to
//!                            writers as it is released
//!       incarnation.rs       epoch, readiness, the fence
//!       history.rs           rules 1 and 2: which messages are new, the history window
//!       relay.rs             rules 3 and 4: the outbound log to the peers, the acks
//!       clients.rs           who is registered: register, resume, leave, move, cut off
//!       delivery.rs          what the local clients are sent: fan-out, acks, catch-up
//!       standby.rs           where each client goes should this server be gone
//!     write/                 the write path, below the hub
//!       mod.rs               who writes a client's socket, and when
//!       outbox.rs            a bounded queue of frames to one writer, and Frame
//!       pen.rs               the pen: the right to write a client's socket, as a type
//!       through.rs           writing for the clients a publish reached, without
//!                            blocking
//!       pool.rs              a client's writer thread, only while frames wait, and the
//!                            pool thread that starts them within the thread budget
//!       writer_loop.rs       the one writer loop, for clients and peer links
//!   client/
//!     mod.rs                 the CLI client: stdin in, events out
//!     input.rs               stdin lines and commands, each with a clear answer
//!     session/
//!       mod.rs               a session's thread: send, ack, receive, stop
//!       register.rs          register, fail over (to the standby, or where the
//!                            coordinator says), move
//!       connection.rs        one connection to a server and its two threads
//!     inbox.rs               exactly once, in order: what a session delivers
//!     locate.rs              asking the coordinator which server to use
//!     files.rs               a file streamed out in chunks, one taken in safely
//!     output.rs              how events look on stdout: text or JSON Lines
//! tools/                     what runs a cluster for you, not part of it
//!   mod.rs                   the tools, one module each
//!   status.rs                `dsys status`: ask, print
//!   demo/
//!     mod.rs                 `dsys demo`: runs the whole story
//!     story.rs               what the demo watches, narrates and counts
//!   bench/
//!     mod.rs                 `dsys bench`: the loads, the steps of a run
//!     load.rs                its clients, speaking the client protocol directly
//!     failover.rs            the failover load: what a crash costs the moved clients
//!     storm.rs               the storm load: a crowded server killed, its clients back
//!     storm_part.rs          a part of the storm's clients, in a child process
//!     storm_clients.rs       the storm's client sessions, started and watched, in either
//!                            process
//!     report.rs              what a run measured, as text or JSON
//!   children.rs              coordinators and servers as child processes (demo, bench)
//! support/                   skip on a first reading
//!   mod.rs                   what the story leans on but does not tell
//!   sys.rs                   every C function the crate calls, each behind a safe wrapper
//!   sha256.rs                SHA-256 (files) and HMAC-SHA256 (the secret)
//!   json.rs                  the JSON writer of the JSON Lines output
//!   signals.rs               SIGINT/SIGTERM as a channel, the parent-death signal
//!   limits.rs                the open-file limit, and the spare descriptor at it
//!   memory.rs                freed memory given back to the system
//!   random.rs                random ids, tokens and nonces
//!   visible.rs               remote text made safe to print on a terminal
//!   cpu.rs                   a process's CPU time, for `dsys bench` and the c10k bench
//!   histogram.rs             the latency histogram, for `dsys bench` and benches/
//! ```
//!
//! ```text
//!                heartbeats (every interval)              Locate / Assign
//!   server A ─────────────────────────────►  coordinator ◄──────────────────── client
//!      │  ▲                                     ▲  (watchdog thread)              │
//!      │  │ Relay / PeerAck                     │ heartbeats                      │
//!      ▼  │ (a peer link each way)              │                                 │
//!   server B ───────────────────────────────────┘                                 │
//!      ▲                                                                          │
//!      └──────────────────── Register / Publish / Deliver / Ack ──────────────────┘
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
