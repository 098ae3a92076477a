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
//! keeps the latest standby server its server deals it, sends a keepalive when one is due
//! by its server's rule ([`Idle::keepalive_due`]), and gives up on its server in the two
//! ways a `dsys client` does: a server silent for the silence limit is taken for hung, a
//! connection that ends (closed or reset) for a crash. It then hands its name, session and
//! standby to the bench (`lost_tx`), which registers it elsewhere; after a crash, only once
//! its random part of the standby's spread has passed, as `dsys client` waits
//! (`Session::fail_over`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use dsys::protocol::Message;
use dsys::support::random::random_u64;

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
    /// Whether its connection ended (a crash) rather than fell silent (a hang).
    pub ended: bool,
    /// The standby its server dealt it last, if any.
    pub standby: Option<String>,
}

/// What the idle clients count, for the bench to wait on.
#[derive(Default)]
pub struct Tally {
    /// Clients that have received the whole burst.
    pub complete: AtomicUsize,
    /// Clients that hold a standby server.
    pub with_standby: AtomicUsize,
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
    /// The latest `Standby` server, if any.
    standby: Option<String>,
    /// Its latest `spread_ms`: after a crash the client waits a random part of it.
    spread: Duration,
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
    /// Starts the thread, with no client yet; counts in `tally` the clients that have
    /// received `burst` messages and those that hold a standby, and sends on `lost_tx` each
    /// client that takes its server for dead or hung.
    pub fn start(
        burst: usize,
        tally: Arc<Tally>,
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
                waiting: BinaryHeap::new(),
                lost_tx,
            };
            thread::Builder::new()
                .name("idle-clients".into())
                .spawn(move || serve(served, burst, &tally, &stop))?
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
/// client's index), where new ones come from, and the clients of a crashed server waiting
/// out their part of the spread (by when, and which) before they go to `lost_tx`.
struct Served {
    epoll: i32,
    idle: Vec<Idle>,
    joined_rx: Receiver<BenchClient>,
    waiting: BinaryHeap<Reverse<(Instant, usize)>>,
    lost_tx: Sender<Lost>,
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
                standby: None,
                spread: Duration::ZERO,
                lost: false,
            });
        }
    }

    /// Gives up on client `index`'s server: closes the connection (which takes it out of
    /// the epoll set) and hands the client to the bench, at once after a silence, after a
    /// random part of its standby's spread when the connection ended.
    fn give_up(&mut self, index: usize, ended: bool) {
        let client = &mut self.idle[index];
        client.lost = true;
        client.stream = None;
        let noticed = Instant::now();
        if ended && client.standby.is_some() {
            // As `dsys client` draws its wait (`Session::wait_for_my_turn`).
            let wait = client.spread.mul_f64(random_u64() as f64 / u64::MAX as f64);
            self.waiting.push(Reverse((noticed + wait, index)));
        } else {
            self.hand_over(index, noticed, ended);
        }
    }

    /// Sends client `index` to the bench to be registered elsewhere.
    fn hand_over(&self, index: usize, noticed: Instant, ended: bool) {
        let client = &self.idle[index];
        let _ = self.lost_tx.send(Lost {
            name: client.name.clone(),
            session: client.session,
            token: client.token,
            noticed,
            ended,
            standby: client.standby.clone(),
        });
    }

    /// Hands over the waiting clients whose turn has come; returns how long until the next
    /// one's, if any waits.
    fn hand_over_due(&mut self) -> Option<Duration> {
        while let Some(Reverse((due, index))) = self.waiting.peek().copied() {
            let now = Instant::now();
            if due > now {
                return Some(due - now);
            }
            self.waiting.pop();
            // `noticed` is when its turn came: the wait was the client's own choice.
            self.hand_over(index, now, true);
        }
        None
    }
}

/// The thread: waits for readable sockets, reads and counts their frames, gives up on a
/// server whose connection ended, and every tenth of a second sends keepalives where they
/// are due and gives up on silent servers. Ends when `stop` is set.
fn serve(mut served: Served, burst: usize, tally: &Tally, stop: &AtomicBool) {
    let keepalive_frame = Message::Keepalive.encode();
    let mut events = vec![EpollEvent { events: 0, data: 0 }; 1024];
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        served.take_in_new();
        let next_turn = served.hand_over_due().unwrap_or(Duration::from_millis(100));
        // Rounded up: a turn less than a millisecond away would otherwise spin the thread.
        let timeout = next_turn
            .min(Duration::from_millis(100))
            .as_micros()
            .div_ceil(1000) as i32;
        // SAFETY: `events` has room for the 1,024 events asked for.
        let ready = unsafe { epoll_wait(served.epoll, events.as_mut_ptr(), 1024, timeout) };
        for event in events.iter().take(ready.max(0) as usize) {
            let index = event.data as usize;
            let Some(client) = served.idle.get_mut(index) else {
                continue;
            };
            if read_available(client, burst, tally) == Connection::Ended && !client.lost {
                served.give_up(index, true);
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(100) {
            last_sweep = Instant::now();
            for index in 0..served.idle.len() {
                let client = &mut served.idle[index];
                if client.lost {
                    continue;
                }
                if client.last_heard.elapsed() >= client.silence_limit() {
                    served.give_up(index, false);
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

/// What a read of a socket found of its connection.
#[derive(PartialEq)]
enum Connection {
    /// Still open: all it had is read, for now.
    Open,
    /// The end of the stream, or an error: the server closed or reset the connection.
    Ended,
}

/// Reads what one socket has, counts the whole `Deliver` frames in it and keeps the latest
/// `Standby`; says whether the connection ended.
fn read_available(client: &mut Idle, burst: usize, tally: &Tally) -> Connection {
    let mut chunk = [0u8; 4096];
    let mut ended = false;
    loop {
        let Some(mut stream) = client.stream.as_ref() else {
            return Connection::Open;
        };
        match stream.read(&mut chunk) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => client.buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                ended = true;
                break;
            }
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
                    tally.complete.fetch_add(1, Ordering::AcqRel);
                }
            }
            Ok(Message::Standby { server, spread_ms }) => {
                if client.standby.is_none() && !server.is_empty() {
                    tally.with_standby.fetch_add(1, Ordering::AcqRel);
                }
                client.standby = (!server.is_empty()).then_some(server);
                client.spread = Duration::from_millis(u64::from(spread_ms));
            }
            _ => {}
        }
        start += 4 + len;
    }
    client.buffer.drain(..start);
    if ended {
        Connection::Ended
    } else {
        Connection::Open
    }
}
