//! Polling for state that has no event to await: [`wait_until`] and [`poll_until`] retry
//! every [`POLL_PAUSE`] until a deadline, then fail saying what they waited for.

use std::thread;
use std::time::{Duration, Instant};

use super::POLL_PAUSE;

/// Polls `cond` every [`POLL_PAUSE`] until it holds. Only for state that cannot be awaited
/// as an event, a log line or an exit.
///
/// # Panics
/// After `timeout`, saying what was waited for.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    poll_until(what, timeout, || {
        if cond() { Ok(()) } else { Err(String::new()) }
    })
}

/// Polls `attempt` every [`POLL_PAUSE`] until it returns `Ok`, and returns that value.
///
/// # Panics
/// After `timeout`, saying what was waited for and the last `Err` (the last observation).
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for: {what}\n{last}")
            }
            Err(_) => thread::sleep(POLL_PAUSE),
        }
    }
}
