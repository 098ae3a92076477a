//! The process limits that decide how many clients a server can hold: the open-file limit
//! (`RLIMIT_NOFILE`), and a spare descriptor that lets a server at that limit still tell a
//! newcomer why it is turned away.
//!
//! A server needs one descriptor per client, so the soft limit a shell hands out (often
//! 1,024) would stop it long before `--max-clients`. The hard limit is what the
//! administrator allows; a process may raise its soft limit up to it without privileges, as
//! Go's runtime does for every program at start-up. [`raise_open_files_limit`] does that,
//! and the server logs what the result allows (`docs/thread-per-connection.md`).
//!
//! The runtime crates of dsys do not include `libc`, so the two C functions are declared
//! here by hand, as in `signals.rs`; std already links the C library they come from.

use std::fs::File;
use std::io;

/// The open-file limits of this process after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force: descriptors this process may hold at once.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to without privileges.
    pub hard: u64,
}

#[cfg(target_os = "linux")]
mod sys {
    /// `struct rlimit` on Linux: `rlim_t` is 64 bits wide on every Linux target Rust
    /// supports with std.
    #[repr(C)]
    pub struct RLimit {
        pub cur: u64,
        pub max: u64,
    }

    /// `RLIMIT_NOFILE` on Linux (`<sys/resource.h>`).
    pub const RLIMIT_NOFILE: i32 = 7;

    unsafe extern "C" {
        pub fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
        pub fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    }
}

/// Raises the soft open-file limit to the hard limit and returns both. Never lowers it.
///
/// # Errors
/// When the limits cannot be read or set (not on Linux: `Unsupported`).
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> io::Result<OpenFiles> {
    let mut limit = sys::RLimit { cur: 0, max: 0 };
    // SAFETY: getrlimit writes one `struct rlimit` into the valid pointer it is given.
    if unsafe { sys::getrlimit(sys::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.cur < limit.max {
        let raised = sys::RLimit {
            cur: limit.max,
            max: limit.max,
        };
        // SAFETY: setrlimit reads one valid `struct rlimit`.
        if unsafe { sys::setrlimit(sys::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.cur = limit.max;
    }
    Ok(OpenFiles {
        soft: limit.cur,
        hard: limit.max,
    })
}

/// Not on Linux: the limits stay as they are.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> io::Result<OpenFiles> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "raising the open-file limit is implemented for Linux only",
    ))
}

/// The system's limit on processes and threads together (`kernel.pid_max`), where it can
/// be read: every thread takes an id from this one pool.
pub fn pid_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many memory mappings one process may have (`vm.max_map_count`), where it can be
/// read. Each thread takes four, so this bounds threads per process.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One descriptor held in reserve, so that a server that ran out of descriptors can still
/// accept one connection to tell it why it is refused, instead of leaving it hanging in the
/// listen queue (the trick libev and nginx use).
///
/// [`SpareDescriptor::release_for`] closes the spare, runs the refusal (which may use the
/// freed descriptor), and takes the spare again.
///
/// Owned by the accept thread, the only one that uses it.
pub struct SpareDescriptor(Option<File>);

impl SpareDescriptor {
    /// Opens the spare (`/dev/null`). Without one, refusals at the limit are bare closes.
    pub fn new() -> SpareDescriptor {
        SpareDescriptor(File::open("/dev/null").ok())
    }

    /// Frees the spare descriptor for the duration of `refuse`, then takes it back.
    pub fn release_for(&mut self, refuse: impl FnOnce()) {
        drop(self.0.take());
        refuse();
        self.0 = File::open("/dev/null").ok();
    }
}

impl Default for SpareDescriptor {
    fn default() -> SpareDescriptor {
        SpareDescriptor::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limits = raise_open_files_limit().expect("limits readable on Linux");
        assert_eq!(limits.soft, limits.hard);
        // A second call changes nothing.
        assert_eq!(raise_open_files_limit().expect("again"), limits);
    }
}
