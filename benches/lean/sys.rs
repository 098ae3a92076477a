//! The few Linux calls the lean generator needs that std does not offer: an epoll set
//! ([`Epoll`]) and a read that never blocks ([`recv_nowait`]). Declared by hand with
//! `extern "C"`, as `src/support/sys.rs` declares the library's, so the benches add no
//! dependency. Nothing here knows about protocols or threads: `receiver.rs` owns the
//! epoll sets and calls these.

use std::io;
use std::os::fd::RawFd;

/// `struct epoll_event` on x86-64, where the kernel's layout is packed (12 bytes).
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
pub struct EpollEvent {
    events: u32,
    data: u64,
}

impl EpollEvent {
    /// What a zeroed slot of the events buffer holds before `epoll_wait` fills it.
    pub const EMPTY: EpollEvent = EpollEvent { events: 0, data: 0 };

    /// The token given to [`Epoll::add`].
    pub fn token(&self) -> usize {
        self.data as usize
    }
}

unsafe extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, max: i32, timeout_ms: i32) -> i32;
    fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
    fn close(fd: i32) -> i32;
}

const EPOLL_CLOEXEC: i32 = 0o2000000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLLIN: u32 = 0x001;
const EPOLLRDHUP: u32 = 0x2000;
const MSG_DONTWAIT: i32 = 0x40;
const EINTR: i32 = 4;

/// An epoll set, closed when dropped.
pub struct Epoll(RawFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointer is passed; the result is checked.
        let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    /// Watches `fd` for input (level-triggered); its events carry `token`.
    pub fn add(&self, fd: RawFd, token: usize) -> io::Result<()> {
        let mut event = EpollEvent {
            events: EPOLLIN | EPOLLRDHUP,
            data: token as u64,
        };
        // SAFETY: `event` lives across the call, which copies it.
        if unsafe { epoll_ctl(self.0, EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (a connection that ended: level-triggered, it would fire for
    /// ever).
    pub fn remove(&self, fd: RawFd) {
        let mut unused = EpollEvent::EMPTY;
        // SAFETY: as in `add`; an error (fd already closed) leaves nothing to undo.
        unsafe { epoll_ctl(self.0, EPOLL_CTL_DEL, fd, &mut unused) };
    }

    /// Waits up to `timeout_ms` for events, into `events`; returns how many it filled.
    pub fn wait(&self, events: &mut [EpollEvent], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `max` events into `events`.
        let n = unsafe { epoll_wait(self.0, events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd is this value's own and closed once.
        unsafe { close(self.0) };
    }
}

/// Reads what `fd` has into `buf` without blocking, even though the socket is in blocking
/// mode (a publisher's thread writes to it with blocking writes): `Ok(0)` is the end of the
/// stream, `WouldBlock` is nothing there yet.
pub fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { recv(fd, buf.as_mut_ptr(), buf.len(), MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
