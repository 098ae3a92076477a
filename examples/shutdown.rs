//! Stopping threads: by disconnecting a channel, by waking a blocked `accept()` with a
//! connection to ourselves, and by shutting down a socket under a blocked `read`; then
//! joining every thread, in a documented order.
//!
//! Run it with `cargo run --example shutdown`. It starts four threads that each wait in a
//! different way (`ticker` in `select!`, `waiter` in `recv`, `accept` in `accept()`, and a
//! `conn-<peer>` thread in `read`), lets them run a moment, and stops them in four steps.
//!
//! What to look for in its output: each `joined` line says what woke that thread. Both
//! channel waiters woke with `Disconnected` although nothing was ever sent; `accept` was woken
//! by a connection and then saw the flag; the reader saw end of stream. Every thread is joined,
//! so nothing is left running when `main` returns.
//!
//! The grown-up version: `ServerHandle::stop` in `src/roles/server/mod.rs` (and
//! `CoordinatorHandle::stop` in `src/roles/coordinator/mod.rs`), `AcceptLoop::stop` in `src/net/accept.rs`,
//! which checks its `stopping` flag after every accept, and `stop_on_signal` in
//! `src/support/signals.rs`, which turns Ctrl-C into a channel that disconnects. `docs/shutdown.md`
//! walks through the order for every role.

use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, select, tick, unbounded};

fn main() -> io::Result<()> {
    // Nothing is ever sent on this channel. Dropping its only Sender is the stop signal: every
    // `recv` and `select!` on any clone of the Receiver then wakes with `Disconnected`.
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let ticker = {
        let stop_rx = stop_rx.clone(); // fine to clone: only the disconnect matters
        spawn("ticker", move || {
            let (ticker, mut ticks) = (tick(Duration::from_millis(10)), 0);
            let woke = loop {
                select! {
                    recv(ticker) -> _ => ticks += 1,
                    recv(stop_rx) -> r => break r,
                }
            };
            format!("select! woke with {woke:?} after {ticks} ticks")
        })
    };
    let waiter = spawn("waiter", move || {
        format!("recv() returned {:?}", stop_rx.recv())
    });

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    // The accept thread hands over each connection's thread and a clone of its socket, as a
    // dsys server's hub keeps a clone of every client's socket to shut it down.
    let (conns_tx, conns_rx) = unbounded();
    let accept = {
        let stopping = stopping.clone();
        spawn("accept", move || {
            accept_loop(listener, &stopping, &conns_tx)
        })
    };
    let _client = TcpStream::connect(addr)?; // stays open: its `conn-` thread blocks in read
    let (socket, conn) = conns_rx.recv().expect("the accept thread hands it over");
    let conn_name = conn.thread().name().unwrap_or("unnamed").to_string();
    println!("running: ticker, waiter, accept on {addr}, {conn_name} blocked in read");
    thread::sleep(Duration::from_millis(50)); // let everything run a moment

    println!("1. drop the only stop Sender: every recv and select! on it wakes");
    drop(stop_tx);
    // A flag alone wakes nobody: `accept()` returns only for a connection. Skip the connect
    // and the join of `accept` below waits forever. The flag goes first: the other way round
    // the loop could take the wake-up connection for a client and block again.
    println!("2. set `stopping`, then connect to {addr} to wake accept()");
    stopping.store(true, Ordering::SeqCst);
    drop(TcpStream::connect(addr)?);
    println!("3. shut down every connection's socket: a blocked read returns end of stream");
    socket.shutdown(Shutdown::Both)?;

    println!("4. join, in the order they were stopped");
    for thread in [ticker, waiter, accept, conn] {
        let name = thread.thread().name().unwrap_or("unnamed").to_string();
        let story = thread.join().expect("no thread panics");
        println!("   joined {name}: {story}");
    }
    println!("every thread joined: nothing is left running");
    Ok(())
}

/// What the accept thread hands over for each connection: a clone of its socket, to shut it
/// down, and its thread, to join it.
type Conn = (TcpStream, JoinHandle<String>);

/// Accepts until `stopping` is set, checked after every accept; each connection gets a
/// `conn-<peer>` thread, handed to `conns_tx` with a clone of its socket.
fn accept_loop(listener: TcpListener, stopping: &AtomicBool, conns_tx: &Sender<Conn>) -> String {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return "woken by a connection, saw `stopping`, returned".into();
        }
        let Ok(stream) = stream else { continue };
        let (Ok(peer), Ok(socket)) = (stream.peer_addr(), stream.try_clone()) else {
            continue;
        };
        let conn = spawn(&format!("conn-{peer}"), move || read_until_closed(&stream));
        let _ = conns_tx.send((socket, conn));
    }
    "the listener failed".into() // `incoming()` never ends by itself
}

/// Reads until end of stream or an error: a thread blocked here notices no flag or channel.
fn read_until_closed(mut stream: &TcpStream) -> String {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return "read() returned end of stream".into(),
            Ok(_) => continue,
            Err(e) => return format!("read() failed: {e}"),
        }
    }
}

/// Starts a named thread; the name shows up in panic messages and debuggers.
fn spawn(name: &str, f: impl FnOnce() -> String + Send + 'static) -> JoinHandle<String> {
    let builder = thread::Builder::new().name(name.to_string());
    builder.spawn(f).expect("cannot start a thread")
}
