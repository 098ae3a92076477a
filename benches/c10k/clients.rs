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
//! Each client behaves as `dsys client` does on an idle connection: it reads whatever comes,
//! sends a keepalive when one is due by its server's rule ([`Idle::keepalive_due`]), and
//! takes a server that has been silent for its silence limit for dead or hung: it then
//! hands its name and session to the bench (`lost_tx`), which registers it elsewhere.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
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

/// A client the bench registered: its connection and what `Registered` told it.
pub struct BenchClient {
    pub stream: TcpStream,
    pub name: String,
    pub session: u64,
    pub token: u64,
    /// The keepalive interval its server announced.
    pub keepalive: Duration,
    /// The silence limit its server announced.
    pub silence: Duration,
}

/// A client that took its server for dead or hung: what registering elsewhere takes.
pub struct Lost {
    pub name: String,
    pub session: u64,
    pub token: u64,
    /// When it gave up on its server.
    pub noticed: Instant,
}

/// One idle client's state on the bench side.
struct Idle {
    /// `None` once the client has given up on its server: its descriptor is closed then,
    /// and the bench has room to register it elsewhere.
    stream: Option<TcpStream>,
    name: String,
    session: u64,
    token: u64,
    keepalive: Duration,
    silence: Duration,
    /// Bytes read and not yet parsed into frames.
    buffer: Vec<u8>,
    last_heard: Instant,
    last_sent: Instant,
    delivered: usize,
    /// Set once the client has taken its server for dead or hung.
    lost: bool,
}

impl Idle {
    /// The server's rule for an idle client: a keepalive when the client has sent nothing
    /// for its keepalive interval.
    fn keepalive_due(&self) -> bool {
        self.last_sent.elapsed() >= self.keepalive
    }

    /// How long the server may be silent before the client takes it for dead or hung: the
    /// silence limit it announced, as `dsys client` does.
    fn silence_limit(&self) -> Duration {
        self.silence
    }
}

/// The idle clients and their one thread, which serves each client from the moment it is
/// added: a client registered early is kept alive while the others register, however long
/// that takes. Dropping it stops the thread, which shuts every socket down as it ends.
pub struct IdleClients {
    /// New clients for the thread ([`IdleClients::add`]).
    joined_tx: Sender<BenchClient>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IdleClients {
    /// Starts the thread, with no client yet; counts in `complete` the clients that have
    /// received `burst` messages, and sends on `lost_tx` each client that takes its server
    /// for dead or hung.
    pub fn start(
        burst: usize,
        complete: Arc<AtomicUsize>,
        lost_tx: Sender<Lost>,
    ) -> std::io::Result<IdleClients> {
        // SAFETY: epoll_create1 takes a flag word and returns a descriptor or -1.
        let epoll = unsafe { epoll_create1(0) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (joined_tx, joined_rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let served = Served {
                epoll,
                idle: Vec::new(),
                joined_rx,
            };
            thread::Builder::new()
                .name("idle-clients".into())
                .spawn(move || serve(served, burst, &complete, &lost_tx, &stop))?
        };
        Ok(IdleClients {
            joined_tx,
            stop,
            thread: Some(thread),
        })
    }

    /// Hands a registered client to the thread, which serves it from its next round (at
    /// most a tenth of a second).
    pub fn add(&self, client: BenchClient) {
        let _ = self.joined_tx.send(client);
    }
}

impl Drop for IdleClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the thread serves: its epoll set, the clients in it (an event's data is the
/// client's index), and where new ones come from.
struct Served {
    epoll: i32,
    idle: Vec<Idle>,
    joined_rx: Receiver<BenchClient>,
}

impl Served {
    /// Adds the clients handed over since the last look.
    fn take_in_new(&mut self) {
        for client in self.joined_rx.try_iter() {
            let stream = client.stream;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut event = EpollEvent {
                events: EPOLLIN,
                data: self.idle.len() as u64,
            };
            // SAFETY: both descriptors are open; the event is a valid epoll_event.
            if unsafe { epoll_ctl(self.epoll, EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) } < 0 {
                continue;
            }
            self.idle.push(Idle {
                stream: Some(stream),
                name: client.name,
                session: client.session,
                token: client.token,
                keepalive: client.keepalive,
                silence: client.silence,
                buffer: Vec::new(),
                last_heard: Instant::now(),
                last_sent: Instant::now(),
                delivered: 0,
                lost: false,
            });
        }
    }
}

/// The thread: waits for readable sockets, reads and counts their frames, and every tenth of
/// a second sends keepalives where they are due and gives up on silent servers. Ends when
/// `stop` is set.
fn serve(
    mut served: Served,
    burst: usize,
    complete: &AtomicUsize,
    lost_tx: &Sender<Lost>,
    stop: &AtomicBool,
) {
    let keepalive_frame = Message::Keepalive.encode();
    let mut events = vec![EpollEvent { events: 0, data: 0 }; 1024];
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        served.take_in_new();
        let Served { epoll, idle, .. } = &mut served;
        // SAFETY: `events` has room for the 1,024 events asked for.
        let ready = unsafe { epoll_wait(*epoll, events.as_mut_ptr(), 1024, 100) };
        for event in events.iter().take(ready.max(0) as usize) {
            let index = event.data as usize;
            if let Some(client) = idle.get_mut(index) {
                read_available(client, burst, complete);
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(100) {
            last_sweep = Instant::now();
            for client in idle.iter_mut().filter(|c| !c.lost) {
                if client.last_heard.elapsed() >= client.silence_limit() {
                    client.lost = true;
                    client.stream = None; // closed: out of the epoll set too
                    let _ = lost_tx.send(Lost {
                        name: client.name.clone(),
                        session: client.session,
                        token: client.token,
                        noticed: Instant::now(),
                    });
                } else if client.keepalive_due() {
                    // A full socket buffer would mean the server sends a lot: then no
                    // keepalive is needed anyway.
                    if let Some(mut stream) = client.stream.as_ref() {
                        let _ = stream.write(&keepalive_frame);
                    }
                    client.last_sent = Instant::now();
                }
            }
        }
    }
    for client in &served.idle {
        if let Some(stream) = &client.stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    // SAFETY: the descriptor was returned by epoll_create1 and is closed once.
    unsafe { close(served.epoll) };
}

/// Reads what one socket has, and counts the whole `Deliver` frames in it.
fn read_available(client: &mut Idle, burst: usize, complete: &AtomicUsize) {
    let mut chunk = [0u8; 4096];
    loop {
        let Some(mut stream) = client.stream.as_ref() else {
            return;
        };
        match stream.read(&mut chunk) {
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
        if let Ok(Message::Deliver { .. }) = Message::decode(body) {
            client.delivered += 1;
            if client.delivered == burst {
                complete.fetch_add(1, Ordering::AcqRel);
            }
        }
        start += 4 + len;
    }
    client.buffer.drain(..start);
}
