//! Every C function the crate calls, declared in this one place (`mod c`) for review, and
//! each wrapped in a safe function of the same name with a line saying why the call is
//! sound. The rest of the crate calls the wrappers and keeps its own logic (which flags,
//! what a failure means); no other file of `src/` declares a C function.
//!
//! The runtime crates of dsys do not include `libc`, and std already links the C library
//! these come from, so each is declared by hand with the C types of its manual page
//! (`std::ffi::c_int` and friends; `size_t` and `ssize_t` are `usize` and `isize`). A
//! wrong type in a declaration is undefined behaviour that no compiler catches, which is
//! why they are kept together. `prctl` is variadic in C, so it is declared variadic, and
//! wrapped for its one use only ([`set_parent_death_signal`]): other options take pointers.
//! These are the calls std lacks:
//!
//! - `send(2)` with flags, for one send that never blocks (`net/send_now.rs`);
//! - `listen(2)` once more, for an accept backlog wider than std's 128 (`net.rs`);
//! - `signal(2)` and `write(2)`, for the self-pipe of SIGINT and SIGTERM, and `prctl(2)`
//!   for a parent-death signal (`signals.rs`);
//! - `getrlimit(2)` and `setrlimit(2)`, for the open-file limit (`limits.rs`);
//! - glibc's `mallopt(3)` and `malloc_trim(3)`, for giving memory back (`memory.rs`);
//! - `sysconf(3)`, for the unit of the CPU times in `/proc` (`cpu.rs`);
//! - `setpriority(2)`, for the storm bench's client processes, which stand for clients on
//!   other machines and so must not outrank the servers for the CPU
//!   (`tools/bench/storm_part.rs`).
//!
//! No thread, no state.

use std::ffi::{c_int, c_long, c_ulong};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The declarations, apart from the wrappers that share their names.
mod c {
    use std::ffi::{c_int, c_long};

    #[cfg(target_os = "linux")]
    use super::RLimit;

    unsafe extern "C" {
        pub fn send(fd: c_int, buf: *const u8, len: usize, flags: c_int) -> isize;
        pub fn listen(fd: c_int, backlog: c_int) -> c_int;
        pub fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
        pub fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
        pub fn prctl(option: c_int, ...) -> c_int;
        pub fn sysconf(name: c_int) -> c_long;
        pub fn setpriority(which: c_int, who: c_int, prio: c_int) -> c_int;
    }

    #[cfg(target_os = "linux")]
    unsafe extern "C" {
        pub fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
        pub fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe extern "C" {
        pub fn mallopt(param: c_int, value: c_int) -> c_int;
        pub fn malloc_trim(pad: usize) -> c_int;
    }
}

/// `-1` from a system call means failure, and `errno` says which.
fn check(rc: isize) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// `send(2)`: sends what the socket's buffer takes of `bytes`, with `flags` (`MSG_*`), and
/// returns how much that was.
///
/// # Errors
/// The OS error, as it is (`WouldBlock`, `Interrupted`, a reset connection, ...).
pub fn send(socket: BorrowedFd<'_>, bytes: &[u8], flags: c_int) -> io::Result<usize> {
    // SAFETY: `socket` is an open descriptor for as long as it is borrowed, and the pointer
    // and length describe `bytes`, which the kernel only reads; no flag makes it write.
    check(unsafe { c::send(socket.as_raw_fd(), bytes.as_ptr(), bytes.len(), flags) })
}

/// `listen(2)` again on a socket that already listens: Linux then changes its backlog, the
/// connections the kernel completes and holds for `accept()`.
///
/// # Errors
/// The OS error, as it is.
pub fn listen(socket: BorrowedFd<'_>, backlog: c_int) -> io::Result<()> {
    // SAFETY: `socket` is an open descriptor for as long as it is borrowed; the call reads
    // no memory of ours.
    check(unsafe { c::listen(socket.as_raw_fd(), backlog) } as isize).map(drop)
}

/// `write(2)`: writes what the descriptor takes of `bytes`. Async-signal-safe: a signal
/// handler may call it (signal-safety(7)), and it allocates nothing on its way.
///
/// # Errors
/// The OS error, as it is.
pub fn write(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: as for `send`: an open descriptor, and a buffer the kernel only reads.
    check(unsafe { c::write(fd.as_raw_fd(), bytes.as_ptr(), bytes.len()) })
}

/// A signal handler that does only what a handler may: call async-signal-safe functions
/// (signal-safety(7)), and read only atomics and what was set before it was installed. Whoever makes one vouches for that, through the
/// `unsafe` of [`SignalHandler::new`]; [`signal`] can then be safe.
#[derive(Clone, Copy)]
pub struct SignalHandler(extern "C" fn(c_int));

impl SignalHandler {
    /// Wraps `handler`.
    ///
    /// # Safety
    /// `handler` must call only async-signal-safe functions, and share with the rest of
    /// the program only atomics and what was set before it was installed: it runs in the
    /// middle of whatever the thread it interrupts was doing, a `malloc` or a lock included.
    pub const unsafe fn new(handler: extern "C" fn(c_int)) -> SignalHandler {
        SignalHandler(handler)
    }
}

/// `signal(2)`: `handler` runs whenever the process receives `signum`.
///
/// # Errors
/// When `signum` is not a signal that can be caught (`EINVAL`).
pub fn signal(signum: c_int, handler: SignalHandler) -> io::Result<()> {
    /// `SIG_ERR`, `(sighandler_t) -1`.
    const SIG_ERR: usize = usize::MAX;
    // SAFETY: a `SignalHandler` is async-signal-safe by its constructor's contract, and
    // `signal` only records it.
    match unsafe { c::signal(signum, handler.0) } {
        SIG_ERR => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// `prctl(PR_SET_PDEATHSIG, signum)`: the kernel sends `signum` to this process when the
/// thread that started it ends. Async-signal-safe, so it may run between `fork` and
/// `exec` (`Command::pre_exec`).
///
/// # Errors
/// When `signum` is not a signal (`EINVAL`).
pub fn set_parent_death_signal(signum: c_int) -> io::Result<()> {
    /// `PR_SET_PDEATHSIG` (`<linux/prctl.h>`).
    const PR_SET_PDEATHSIG: c_int = 1;
    // SAFETY: this option takes one more argument, an `unsigned long` by value, and
    // touches no memory of the process; passing it as `c_ulong` gives the variadic call
    // the width the kernel reads.
    match unsafe { c::prctl(PR_SET_PDEATHSIG, signum as c_ulong) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `setpriority(PRIO_PROCESS, 0, nice)`: gives the calling thread the nice value `nice`
/// (higher is a smaller share of the CPU). On Linux the nice value is a thread's, and
/// threads started afterwards inherit it, so calling it first thing covers the process.
///
/// # Errors
/// When `nice` may not be set (`EACCES`: lowering it needs a privilege).
pub fn set_nice(nice: c_int) -> io::Result<()> {
    /// `PRIO_PROCESS` (`<sys/resource.h>`).
    const PRIO_PROCESS: c_int = 0;
    // SAFETY: setpriority takes three integers by value and touches no memory.
    match unsafe { c::setpriority(PRIO_PROCESS, 0, nice) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `sysconf(3)`: the system's value for the setting `name` (`_SC_*`), or -1 when it has
/// none.
pub fn sysconf(name: c_int) -> c_long {
    // SAFETY: sysconf takes an integer by value and only reads the system's configuration.
    unsafe { c::sysconf(name) }
}

/// `struct rlimit` on Linux: `rlim_t` is 64 bits wide on every Linux target Rust
/// supports with std.
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RLimit {
    /// The soft limit, in force.
    pub cur: u64,
    /// The hard limit, the ceiling of the soft one.
    pub max: u64,
}

/// `getrlimit(2)`: the limits of `resource` (`RLIMIT_*`).
///
/// # Errors
/// When `resource` is not one (`EINVAL`).
#[cfg(target_os = "linux")]
pub fn getrlimit(resource: c_int) -> io::Result<RLimit> {
    let mut limit = RLimit { cur: 0, max: 0 };
    // SAFETY: getrlimit writes one `struct rlimit`, which `RLimit` lays out exactly, into
    // the valid pointer it is given.
    match unsafe { c::getrlimit(resource, &mut limit) } {
        0 => Ok(limit),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `setrlimit(2)`: sets the limits of `resource` (`RLIMIT_*`) to `limit`.
///
/// # Errors
/// When `resource` is not one, or `limit` asks for more than the process may take.
#[cfg(target_os = "linux")]
pub fn setrlimit(resource: c_int, limit: &RLimit) -> io::Result<()> {
    // SAFETY: setrlimit reads one valid `struct rlimit` through the pointer.
    match unsafe { c::setrlimit(resource, limit) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// glibc's `mallopt(3)`: sets the allocator's tunable `param` (`M_*`) to `value`. Returns
/// whether glibc took it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn mallopt(param: c_int, value: c_int) -> bool {
    // SAFETY: mallopt takes two integers and only changes the allocator's settings, which
    // it guards with its own lock.
    unsafe { c::mallopt(param, value) == 1 }
}

/// glibc's `malloc_trim(3)`: gives the free pages of every arena back to the system,
/// keeping `pad` bytes at the top of the heap. Returns whether any memory was given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_trim(pad: usize) -> bool {
    // SAFETY: malloc_trim takes a byte count and touches only the allocator's own state,
    // under the arenas' locks.
    unsafe { c::malloc_trim(pad) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn a_write_arrives_whole_and_a_closed_reader_is_an_error() {
        let (mut reader, writer) = std::io::pipe().unwrap();
        assert_eq!(write(writer.as_fd(), b"x").unwrap(), 1);
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        drop(reader);
        // SIGPIPE is ignored in Rust programs, so the error comes back as EPIPE.
        let error = write(writer.as_fd(), b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_number_that_is_no_signal_is_refused_with_the_os_error() {
        extern "C" fn never(_: c_int) {}
        // SAFETY: `never` does nothing at all.
        let handler = unsafe { SignalHandler::new(never) };
        let einval = Some(22);
        assert_eq!(signal(999, handler).unwrap_err().raw_os_error(), einval);
        let error = set_parent_death_signal(999).unwrap_err();
        assert_eq!(error.raw_os_error(), einval);
    }

    #[test]
    fn the_clock_ticks_and_the_open_file_limit_are_readable() {
        /// `_SC_CLK_TCK`.
        const SC_CLK_TCK: c_int = 2;
        assert!(sysconf(SC_CLK_TCK) > 0);
        #[cfg(target_os = "linux")]
        {
            /// `RLIMIT_NOFILE`.
            const RLIMIT_NOFILE: c_int = 7;
            let limit = getrlimit(RLIMIT_NOFILE).unwrap();
            assert!(limit.cur <= limit.max);
            // Setting the limits they already have changes nothing and is always allowed.
            setrlimit(RLIMIT_NOFILE, &limit).unwrap();
            assert_eq!(getrlimit(RLIMIT_NOFILE).unwrap(), limit);
        }
    }
}
