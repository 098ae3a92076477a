//! server
use crate::Result;
use std::time::Duration;
/// d
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// d
pub const DEFAULT_HISTORY_MESSAGES: usize = 10_000;
/// d
pub const DEFAULT_HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// Config.
pub struct Config {
    /// x
    pub bind: String,
    /// x
    pub advertise: Option<String>,
    /// x
    pub coordinator: String,
    /// x
    pub heartbeat_interval: Duration,
    /// x
    pub max_clients: usize,
    /// x
    pub history_messages: usize,
    /// x
    pub history_bytes: usize,
}
/// run
pub fn run(_c: Config) -> Result<()> {
    todo!()
}
