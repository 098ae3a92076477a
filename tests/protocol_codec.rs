//! The frame codec of `src/protocol/`, tested through the public API only.
//!
//! What is covered:
//! - every [`Message`] variant and every [`Body`] kind survives `encode` → `decode` and
//!   `write_message` → `read_message` unchanged, and `holds_whole_frame` tells a buffer
//!   that holds a whole frame from one that does not;
//! - every malformed input we could think of is refused with [`Error::Protocol`]: empty
//!   input, bad length prefixes, truncation at every byte, unknown type bytes, bad magic,
//!   unknown roles, unknown body kinds (including the retired single-frame file, kind 2),
//!   invalid UTF-8, forged counts and lengths, a cut file digest, trailing bytes, bad flags;
//! - absurd length prefixes and counts are refused *before* anything is allocated. A
//!   timing check cannot show this (a 4 GiB zeroed `Vec` is a lazy `mmap` and costs
//!   nothing), so this file installs a global allocator that records the largest single
//!   allocation made by the current thread;
//! - a seeded random mutation of valid frames never panics the decoder nor makes it allocate
//!   beyond what the input's bytes could fill, and whatever the decoder accepts re-encodes
//!   to the same bytes (the encoding is canonical), but for a refusal code it does not know,
//!   which it reads as `Refusal::Other` on purpose;
//! - every refusal code travels as the one byte `docs/protocol.md` gives it, a code from a
//!   newer peer reads as `Refusal::Other`, and a refusal of code `Other` keeps the layout
//!   of version 6;
//! - the worked examples in `docs/protocol.md`, read from the document itself, match the
//!   encoder byte for byte.
//!
//! Everything runs in memory (`std::io::Cursor` and small hand-written readers), with no
//! sockets, threads or sleeps.
//!
//! One file per part, in `tests/protocol_codec/`: `alloc_tracking.rs` (the allocator and
//! the "refused cheaply" check), `samples.rs` (helpers and a sample of every variant),
//! then the tests: `round_trips.rs`, `framing_errors.rs`, `body_errors.rs`, `mutation.rs`,
//! `refusals.rs` and `worked_examples.rs`. The imports below are shared by all of them (`use super::*`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::panic;
use std::time::{Duration, Instant};

use dsys::Error;
use dsys::protocol::{
    Body, Departure, FILE_CHUNK_LEN, MAGIC, MAX_FRAME_LEN, Message, PROTOCOL_VERSION,
    RELAY_INDEX_BYTES, Refusal, Resume, Role, ServerInfo, deliver_frame, holds_whole_frame,
    read_frame, read_message, relay_frame, write_message,
};
use dsys::support::sha256;

#[path = "protocol_codec/alloc_tracking.rs"]
mod alloc_tracking;
#[path = "protocol_codec/body_errors.rs"]
mod body_errors;
#[path = "protocol_codec/framing_errors.rs"]
mod framing_errors;
#[path = "protocol_codec/mutation.rs"]
mod mutation;
#[path = "protocol_codec/refusals.rs"]
mod refusals;
#[path = "protocol_codec/round_trips.rs"]
mod round_trips;
#[path = "protocol_codec/samples.rs"]
mod samples;
#[path = "protocol_codec/worked_examples.rs"]
mod worked_examples;

use alloc_tracking::*;
use samples::*;
