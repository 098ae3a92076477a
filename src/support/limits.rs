//! The process limits that decide how many clients a server can hold: the open-file limit
//! (`RLIMIT_NOFILE`, raised to the hard limit by [`raise_open_files_limit`]), the kernel's
//! limits on threads and memory maps, and a spare descriptor that lets a server at the
//! open-file limit still tell a newcomer why it is turned away ([`SpareDescriptor`]).
//!
//! **Who calls it.** The server's `run` at start (`roles/server/mod.rs`), the accept loop
//! when `accept` runs out of descriptors (`net/accept.rs`), the writer pool sizing its
//! thread budget (`roles/server/write/pool.rs`), and the capacity bench. No thread.
//!
//! `getrlimit` and `setrlimit` come from `sys.rs` (no `libc` crate). Each limit, what a
//! server does when it meets it and how to raise it: `docs/thread-per-connection.md`,
//! "The limits a server meets next, and how to raise them".

use std::fs::File;
use std::io;

#[cfg(target_os = "linux")]
use super::sys;

/// The open-file limits of this process after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force: descriptors this process may hold at once.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// `RLIMIT_NOFILE` on Linux (`<sys/resource.h>`).
#[cfg(target_os = "linux")]
const RLIMIT_NOFILE: i32 = 7;

/// Raises the soft open-file limit to the hard limit and returns both. Never lowers it.
///
/// # Errors
/// When the limits cannot be read or set (not on Linux: `Unsupported`).
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> io::Result<OpenFiles> {
    let mut limit = sys::getrlimit(RLIMIT_NOFILE)?;
    if limit.cur < limit.max {
        let raised = sys::RLimit {
            cur: limit.max,
            max: limit.max,
        };
        sys::setrlimit(RLIMIT_NOFILE, &raised)?;
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

/// `EMFILE`: this process holds as many descriptors as its limit allows.
const EMFILE: i32 = 24;
/// `ENFILE`: the whole system is out of descriptors. Both numbers are the same on every
/// Linux architecture and on the BSDs.
const ENFILE: i32 = 23;

/// True when `error` says that no descriptor is left to open (`EMFILE` for this process,
/// `ENFILE` for the system): what `accept` reports when a server holds as many
/// connections as its open-file limit allows. std has no `ErrorKind` for it.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
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
/// listen queue (the trick the libev documentation recommends; nginx instead stops
/// accepting for a moment, which the accept loop also does after each such refusal).
///
/// [`SpareDescriptor::release`] closes the spare, so that the next descriptor the process
/// opens (the accepted connection) may take its place; [`SpareDescriptor::take_back`]
/// opens it again, which fails for as long as the process is still at its limit. So
/// whether the spare comes back also tells whether the newcomer can be served after all.
///
/// Owned by the accept thread, the only one that uses it (`net/accept.rs`). Another
/// thread may take the freed descriptor first; the accept then fails like the one before
/// it, and the spare is taken back as soon as a descriptor is free again.
pub struct SpareDescriptor(Option<File>);

impl SpareDescriptor {
    /// Opens the spare (`/dev/null`). Without one, a newcomer at the limit waits in the
    /// listen queue until a descriptor is free, or until it gives up.
    pub fn new() -> SpareDescriptor {
        SpareDescriptor(File::open("/dev/null").ok())
    }

    /// Closes the spare, freeing its descriptor for the next one the process opens.
    pub fn release(&mut self) {
        drop(self.0.take());
    }

    /// Opens the spare again when it is not held, and returns whether it is held now:
    /// false while the process has no descriptor to spare.
    pub fn take_back(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
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
    fn only_emfile_and_enfile_mean_out_of_descriptors() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(EMFILE)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(ENFILE)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(11)));
        assert!(!is_out_of_descriptors(&io::Error::other("no os error")));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limits = raise_open_files_limit().expect("limits readable on Linux");
        assert_eq!(limits.soft, limits.hard);
        // A second call changes nothing.
        assert_eq!(raise_open_files_limit().expect("again"), limits);
    }
}
