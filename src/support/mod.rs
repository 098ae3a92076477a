//! Support code that the story of dsys leans on but does not tell: a first reading may skip
//! this folder.
//!
//! - `sha256.rs`: the digest that checks every received file end to end, and HMAC;
//! - `json.rs`: the JSON Lines writer for client events and status;
//! - `signals.rs`: SIGINT and SIGTERM as a channel that disconnects;
//! - `limits.rs`: the open-file limit, raised at start, and a spare descriptor;
//! - `memory.rs`: giving freed memory back after many clients have left;
//! - `cpu.rs`: the CPU time a process has used, for the benchmarks;
//! - `histogram.rs`: latencies counted in fixed buckets, for the benchmarks;
//! - `random.rs`: random identifiers;
//! - `sys.rs`: every C function the crate calls, each behind a safe wrapper;
//! - `visible.rs`: text from another process made safe to print on a terminal.

pub mod cpu;
pub mod histogram;
pub mod json;
pub mod limits;
pub mod memory;
pub mod random;
pub mod sha256;
pub mod signals;
pub mod sys;
pub mod visible;
