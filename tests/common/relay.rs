//! [`Relay`]: a TCP relay that a test puts between a server and its coordinator and can
//! hold, so that the server's heartbeats arrive late while the server itself answers
//! everyone who connects to it directly, the coordinator's probe included.
//!
//! **Threads.** `relay-accept` accepts connections and, for each, connects to the target
//! and starts two `relay-pump` threads, one per direction. A pump reads, waits while the
//! relay is held (the bytes stay in the pump and the kernel's buffers: late, never lost),
//! then writes; the end of either side ends both.
//!
//! **Stopping.** Dropping the relay releases it, sets its stop flag, wakes `accept` with a
//! connection to itself, shuts every socket down and joins every thread.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

/// A relay from [`Relay::addr`] to a target address.
pub struct Relay {
    /// Where to connect instead of the target.
    pub addr: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// What the relay's threads share.
#[derive(Default)]
struct Shared {
    /// True while the relay holds every byte; pumps wait on `released` for it to be false.
    held: Mutex<bool>,
    released: Condvar,
    /// Set on drop; `relay-accept` looks at it after every connection.
    stopping: AtomicBool,
    /// A handle on every socket, to shut them all down on drop (which ends the pumps).
    sockets: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays every connection to `target`.
    ///
    /// # Panics
    /// When it cannot listen or start its thread.
    pub fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address").to_string();
        let shared = Arc::new(Shared::default());
        let accept = {
            let (shared, target) = (shared.clone(), target.to_string());
            thread::Builder::new()
                .name("relay-accept".into())
                .spawn(move || accept_loop(listener, &target, &shared))
                .expect("start the relay's accept thread")
        };
        Relay {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Holds every byte, both ways, until [`Relay::release`].
    pub fn hold(&self) {
        *lock(&self.shared.held) = true;
    }

    /// Lets the held bytes through, in order, and everything after them.
    pub fn release(&self) {
        *lock(&self.shared.held) = false;
        self.shared.released.notify_all();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.release();
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in lock(&self.shared.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let pumps: Vec<JoinHandle<()>> = lock(&self.shared.pumps).drain(..).collect();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: &str, shared: &Arc<Shared>) {
    for inbound in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let (Ok(inbound), Ok(outbound)) = (inbound, TcpStream::connect(target)) else {
            continue; // the caller sees its connection closed, as if the target were down
        };
        let mut sockets = lock(&shared.sockets);
        let mut pumps = lock(&shared.pumps);
        for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let shared = shared.clone();
            let pump = thread::Builder::new()
                .name("relay-pump".into())
                .spawn(move || pump(from, to, &shared));
            pumps.extend(pump.ok());
        }
        sockets.push(inbound);
        sockets.push(outbound);
    }
}

/// Copies `from` to `to`, waiting while the relay is held. Ends at the end of either side
/// and shuts both down, so the other pump of the pair ends too.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let held = lock(&shared.held);
        let held = shared.released.wait_while(held, |held| *held);
        drop(held.unwrap_or_else(|p| p.into_inner()));
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
