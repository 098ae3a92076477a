//! The bench's idle clients: N registered connections served by one thread with `epoll`,
//! so that the bench itself costs the machine one thread, not N.
//!
//! Why not a thread per client, like the server? The machine's thread limit (`pid_max`,
//! 32,768 here) is shared by everyone: ten thousand bench threads beside the server's ten
//! to twenty thousand would leave the server short, and the measurement would be of the
//! bench. The server under test keeps its thread per connection; only the load generator
//! multiplexes. `epoll` is declared by hand (no `libc` crate), as `src/support` does for
//! the few C functions dsys needs.
//!
//! Each client behaves as `dsys client` does on an idle connection: it reads whatever comes
//! and sends a keepalive when it has heard nothing for the interval its server announced
//! (in `Registered`, then in `KeepaliveEvery` when it changes).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dsys::protocol::Message;

/// `struct epoll_event`: packed on x86_64, as the kernel's own definition.
#[repr(C)]
#[cfg_attr(target_arch = "x86_64", repr(packed))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

const EPOLLIN: u32 = 0x001;
const EPOLL_CTL_ADD: i32 = 1;

unsafe extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
    fn close(fd: i32) -> i32;
}

/// One idle client's state on the bench side.
struct Idle {
    stream: Arc<TcpStream>,
    keepalive: Duration,
    /// Bytes read and not yet parsed into frames.
    buffer: Vec<u8>,
    last_heard: Instant,
    delivered: usize,
}

/// The idle clients and their one thread. Dropping it shuts every socket down and joins
/// the thread.
pub struct IdleClients {
    streams: Vec<Arc<TcpStream>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IdleClients {
    /// Takes over `clients` (registered streams, each with its keepalive interval); counts in
    /// `complete` the clients that have received `burst` messages.
    pub fn start(
        clients: Vec<(TcpStream, Duration)>,
        burst: usize,
        complete: Arc<AtomicUsize>,
    ) -> std::io::Result<IdleClients> {
        // SAFETY: epoll_create1 takes a flag word and returns a descriptor or -1.
        let epoll = unsafe { epoll_create1(0) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut idle = Vec::with_capacity(clients.len());
        for (index, (stream, keepalive)) in clients.into_iter().enumerate() {
            stream.set_nonblocking(true)?;
            let mut event = EpollEvent {
                events: EPOLLIN,
                data: index as u64,
            };
            // SAFETY: both descriptors are open; the event is a valid epoll_event.
            if unsafe { epoll_ctl(epoll, EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            idle.push(Idle {
                stream: Arc::new(stream),
                keepalive,
                buffer: Vec::new(),
                last_heard: Instant::now(),
                delivered: 0,
            });
        }
        let streams = idle.iter().map(|c| c.stream.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("idle-clients".into())
                .spawn(move || serve(epoll, idle, burst, &complete, &stop))?
        };
        Ok(IdleClients {
            streams,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for IdleClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for stream in &self.streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits for readable sockets, reads and counts their frames, and every tenth of
/// a second sends keepalives where they are due. Ends when `stop` is set.
fn serve(epoll: i32, mut idle: Vec<Idle>, burst: usize, complete: &AtomicUsize, stop: &AtomicBool) {
    let keepalive_frame = Message::Keepalive.encode();
    let mut events = vec![EpollEvent { events: 0, data: 0 }; 1024];
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: `events` has room for the 1,024 events asked for.
        let ready = unsafe { epoll_wait(epoll, events.as_mut_ptr(), 1024, 100) };
        for event in events.iter().take(ready.max(0) as usize) {
            let index = event.data as usize;
            if let Some(client) = idle.get_mut(index) {
                read_available(client, burst, complete);
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(100) {
            last_sweep = Instant::now();
            for client in &mut idle {
                if client.last_heard.elapsed() >= client.keepalive {
                    // A full socket buffer would mean the server sends a lot: then no
                    // keepalive is needed anyway.
                    let _ = (&*client.stream).write(&keepalive_frame);
                    client.last_heard = Instant::now();
                }
            }
        }
    }
    // SAFETY: the descriptor was returned by epoll_create1 and is closed once.
    unsafe { close(epoll) };
}

/// Reads what one socket has, and counts the whole `Deliver` frames in it.
fn read_available(client: &mut Idle, burst: usize, complete: &AtomicUsize) {
    let mut chunk = [0u8; 4096];
    loop {
        match (&*client.stream).read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => client.buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return,
        }
    }
    client.last_heard = Instant::now();
    let mut start = 0;
    while client.buffer.len() - start >= 4 {
        let len = u32::from_be_bytes(client.buffer[start..start + 4].try_into().unwrap()) as usize;
        if client.buffer.len() - start - 4 < len {
            break;
        }
        let body = &client.buffer[start + 4..start + 4 + len];
        match Message::decode(body) {
            Ok(Message::Deliver { .. }) => {
                client.delivered += 1;
                if client.delivered == burst {
                    complete.fetch_add(1, Ordering::AcqRel);
                }
            }
            Ok(Message::KeepaliveEvery { ms }) => {
                client.keepalive = Duration::from_millis(u64::from(ms));
            }
            _ => {}
        }
        start += 4 + len;
    }
    client.buffer.drain(..start);
}
