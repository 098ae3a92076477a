//! An accept loop that gives every connection its own named thread, up to a limit, and
//! refuses the connection over the limit with its reason.
//!
//! Run it with `cargo run --example accept_loop`. It listens on 127.0.0.1 (port 0: the system
//! picks a free port), allows two connections at once, and plays four clients against itself,
//! one after the other.
//!
//! What to look for in its output:
//! - clients 1 and 2 are each greeted by a thread of their own, named after the peer
//!   (`conn-127.0.0.1:PORT`);
//! - client 3 comes while both places are taken: the accept thread itself tells it why and
//!   closes it (`end of stream`); it never gets a thread;
//! - client 1 leaves, its thread gives its place back, and client 4 is served.
//!
//! The grown-up version: `accept_loop`, `OpenSlot` and `refuse_busy` in `src/net/accept.rs`,
//! with `ConnectionLimits` in `src/net.rs`, started by `start_server` in
//! `src/roles/server/mod.rs`. There the greeting is
//! a `Challenge` frame, the refusal an `Error` frame, sockets have timeouts, and a handshake
//! deadline bounds how long a silent stranger holds a thread (`docs/security.md`).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// Connections served at once. Without a bound, whoever opens connections decides how many
/// threads this process starts; at the bound the next one is refused, never queued.
const MAX_CONNECTIONS: usize = 2;

fn main() -> io::Result<()> {
    // Bound before the thread starts, so `addr` is usable at once: no sleep, no retry.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}, at most {MAX_CONNECTIONS} connections at once");
    // Not joined: the process exit ends it. examples/shutdown.rs shows how to stop it.
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(listener))?;

    let mut client1 = connect(1, addr)?;
    let _client2 = connect(2, addr)?;
    let mut client3 = connect(3, addr)?; // over the limit
    println!("client 3 then got: {}", read_line(&mut client3)?);
    // Client 1 says goodbye and waits for the close: by then its place is free again.
    client1.get_mut().write_all(b"bye\n")?;
    println!("client 1 said bye, then got: {}", read_line(&mut client1)?);
    let _client4 = connect(4, addr)?;
    Ok(())
}

/// Accepts forever; each connection gets a `conn-<peer>` thread while fewer than
/// `MAX_CONNECTIONS` are open, and a refusal otherwise.
fn accept_loop(listener: TcpListener) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        // A failed accept is mostly "too many open files"; src/net/accept.rs pauses before retrying.
        let Ok(stream) = stream else { continue };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        // Counted by the one thread that accepts, before its next accept: it never lags.
        if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            println!("  [accept] {MAX_CONNECTIONS} open: refusing {peer} without a thread");
            // The write does not block: the accept thread must never wait on a stranger, and
            // a fresh socket's buffer takes one line. Dropping the stream closes it.
            let _ = stream.set_nonblocking(true);
            let reason = format!("too many connections ({MAX_CONNECTIONS} open); try again later");
            let _ = writeln!(&mut &stream, "refused: {reason}");
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(open.clone());
        let spawned = thread::Builder::new()
            .name(format!("conn-{peer}"))
            .spawn(move || {
                // An error costs this connection only; the accept loop never sees it.
                let result = serve(&stream);
                // The place is given back before the peer sees the close, so a client that
                // waits for the close finds it free. A panic in `serve` gives it back too.
                drop(slot);
                drop(stream);
                if let Err(e) = result {
                    println!("  [conn-{peer}] closed: {e}");
                }
            });
        if let Err(e) = spawned {
            println!("  [accept] cannot start a thread: {e}"); // the slot went with the closure
        }
    }
}

/// One of the `MAX_CONNECTIONS` places, held by a connection thread, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection, top to bottom, on its own thread: plain blocking code, no callbacks.
fn serve(stream: &TcpStream) -> io::Result<()> {
    let name = thread::current().name().unwrap_or("unnamed").to_string();
    writeln!(&mut &*stream, "served by thread {name}")?;
    for line in BufReader::new(stream).lines() {
        if line? == "bye" {
            break;
        }
    }
    Ok(())
}

/// Connects as client `n` and prints the first line the server sends.
fn connect(n: u32, addr: SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let mut client = BufReader::new(TcpStream::connect(addr)?);
    println!("client {n} got: {}", read_line(&mut client)?);
    Ok(client)
}

/// The next line without its newline, or "end of stream" once the server has closed.
fn read_line(client: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    client.read_line(&mut line)?;
    let s = line.trim_end();
    Ok(if s.is_empty() { "end of stream" } else { s }.to_string())
}
