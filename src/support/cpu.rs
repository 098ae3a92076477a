//! The CPU time a process has used, as the kernel counts it in `/proc/PID/stat`: what
//! `dsys bench` reports per delivery for the servers it started (`tools/bench/mod.rs`), and
//! what the benches in `benches/` measure. No thread, no state.
//!
//! `sysconf` comes from `sys.rs`, as every C function of the crate does (no `libc` crate).
//! The figures it yields: `docs/benchmarks.md`.

use std::time::Duration;

use super::sys;

/// User plus system CPU time that process `pid` has used so far; zero when it cannot be
/// read (it has ended, or this is not Linux).
pub fn cpu_time(pid: u32) -> Duration {
    cpu_time_in(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU time that thread `tid` of process `pid` has used so far
/// (`/proc/PID/task/TID/stat`; `/proc/TID/stat` would count the whole process); zero when
/// it cannot be read. The storm bench leaves its watcher threads' time out of its clients'
/// figure this way, and the c10k bench splits a server's idle CPU by thread.
pub fn thread_cpu_time(pid: u32, tid: u32) -> Duration {
    cpu_time_in(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// The CPU time in a `stat` file of `/proc`.
fn cpu_time_in(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // The command name, in parentheses, may hold spaces: count fields after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, the 12th and 13th after the name.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ticks = field(11).unwrap_or(0) + field(12).unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// The unit of the times in `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn ticks_per_second() -> u64 {
    /// `_SC_CLK_TCK` (unistd.h).
    const SC_CLK_TCK: i32 = 2;
    sys::sysconf(SC_CLK_TCK).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_has_used_cpu_time_and_a_missing_one_none() {
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(cpu_time(std::process::id()) > Duration::ZERO);
        assert_eq!(cpu_time(u32::MAX), Duration::ZERO);
    }
}
