//! The server speaks first: keepalives to the clients it has written nothing to for a
//! while, so that a client hears from a live server within a short, fixed time and takes
//! silence for a hang ([`ClientTimers`]), however many clients the server holds.
//!
//! **Threads.** `keepalives` ([`keepalive_loop`]), one per server: every
//! [`ClientTimers::tick`] it asks the hub for the clients written nothing for
//! [`ClientTimers::quiet`] (`Hub::quiet_clients`, under the lock, no I/O there) and writes
//! each a pre-encoded `Keepalive` through its pen, without blocking, with the send the
//! fan-out writes a delivery with (`write::send_through`, which says what a full socket or
//! a failed send does with the pen): no client's thread wakes, and a client being written
//! to is skipped.
//!
//! **Stopping.** The loop ends when the server's stop channel disconnects. What it costs
//! and buys: `docs/heartbeats-and-failover.md`, "Client keepalives".

use std::time::Duration;

use crossbeam_channel::{select, tick};

use super::Shared;
use super::write::{Pool, WriteSide, send_through};
use crate::protocol::Message;

/// Heartbeat intervals a client may go unwritten before the server writes it a keepalive:
/// two (1 s with the default 500 ms). The thread looks once an interval, and a client
/// written a moment after one look is a moment short of two intervals quiet at the look
/// after next, so it is written at the third: every 1.5 s, about 6,700 keepalives a second
/// from an idle server with 10,000 clients (counted). Each is one `send` of 5 bytes and no
/// other system call, about 9 us of the server's CPU over loopback, nearly half of it the
/// receiving socket's side, which a real network moves to the client's machine: about 6 %
/// of a core in all (`docs/heartbeats-and-failover.md` has the measurement, and the trade:
/// a longer interval costs less and needs a longer silence limit or a thinner margin).
const QUIET_INTERVALS: u32 = 2;

/// Heartbeat intervals a client may hear nothing before it takes its server for dead or
/// hung: five (2.5 s by default). A client hears from a live server at least every
/// [`QUIET_INTERVALS`] plus one tick (an interval), three intervals; the other two are
/// the margin for a server slowed down by load. So a hang is noticed within 2.5 s, the
/// coordinator's `--heartbeat-timeout` (1.5 s) plus 1 s, leaving time to register
/// elsewhere.
const SILENCE_INTERVALS: u32 = 5;

/// The shortest silence limit, whatever the heartbeat interval: below this a scheduling
/// hiccup of a loaded machine would make clients leave a live server.
const MIN_SILENCE: Duration = Duration::from_millis(300);

/// How long a client may send nothing before it sends a keepalive, as a share of
/// `--idle-timeout`: a third (10 s of the default 30 s), so a client whose check is late by
/// a whole interval is still not cut off. Each costs the server a wake-up of the client's
/// thread and a read, about 15 us (no answer: the server's own keepalives already go), so
/// 10,000 idle clients cost 1,000 of those a second, about 1.5 % of a core (measured: the
/// server's idle CPU less its `keepalives` thread's). They cannot go: `--idle-timeout`
/// closes a client that says nothing for that long.
const CLIENT_KEEPALIVE_SHARE: u32 = 3;

/// The timers of a client connection, from the server's flags; the client is told
/// [`ClientTimers::silence`] and [`ClientTimers::client_keepalive`] in `Registered`.
/// Neither depends on how many clients the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimers {
    /// How long a client may go unwritten before the server writes it a keepalive.
    pub quiet: Duration,
    /// How often the `keepalives` thread looks for such clients.
    pub tick: Duration,
    /// How long a client may hear nothing before it takes the server for dead or hung.
    pub silence: Duration,
    /// How long a client may send nothing before it sends a keepalive.
    pub client_keepalive: Duration,
}

impl ClientTimers {
    /// The timers of a server with these flags.
    pub fn new(heartbeat_interval: Duration, idle_timeout: Duration) -> ClientTimers {
        let silence = (heartbeat_interval * SILENCE_INTERVALS).max(MIN_SILENCE);
        // With the minimum silence in force, the writes follow it, in the same shares as
        // with the default flags.
        let interval = silence / SILENCE_INTERVALS;
        ClientTimers {
            quiet: interval * QUIET_INTERVALS,
            // Each look costs a read of every client's last send (cache misses, with ten
            // thousand clients): once an interval is often enough.
            tick: interval,
            silence,
            client_keepalive: (idle_timeout / CLIENT_KEEPALIVE_SHARE)
                .max(Duration::from_millis(10)),
        }
    }
}

/// The `keepalives` thread (see the module doc). Blocks until the server stops.
pub(super) fn keepalive_loop(shared: Shared) {
    let timers = shared.client_timers;
    let keepalive = Message::Keepalive.encode();
    let ticker = tick(timers.tick);
    loop {
        select! {
            recv(ticker) -> _ => {
                for side in shared.hub.quiet_clients(timers.quiet) {
                    write_keepalive(&side, &keepalive, &shared.pool);
                }
            }
            recv(shared.stop_rx) -> _ => break, // disconnected: the server is stopping
        }
    }
    log::debug!("keepalives stopped server={}", shared.addr);
}

/// Writes `keepalive` to one quiet client, if nobody is writing to it. Never blocks: what
/// its socket does not take goes with the pen to the pool's writer.
fn write_keepalive(side: &WriteSide, keepalive: &[u8], pool: &Pool) {
    // Held by someone else: frames are on their way, which is all a keepalive says.
    let Some(pen) = side.take_pen() else {
        return;
    };
    // A full socket or a failed send: `send_through` has dealt with the pen.
    let Some(pen) = send_through(pen, keepalive, pool) else {
        return;
    };
    // All on the socket, so nothing is buffered and putting the pen down writes nothing
    // and cannot fail. Frames queued meanwhile: the pen goes to a writer with them.
    if let Ok(Some(pen)) = pen.put_down() {
        pool.hand_over(pen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_timers_follow_the_heartbeat_not_the_clients() {
        let ms = Duration::from_millis;
        let timers = ClientTimers::new(ms(500), ms(30_000));
        assert_eq!(
            timers,
            ClientTimers {
                quiet: ms(1_000),
                tick: ms(500),
                silence: ms(2_500),
                client_keepalive: ms(10_000),
            }
        );
        // A keepalive reaches a client of a live server within three fifths of its silence
        // limit.
        assert!(timers.quiet + timers.tick <= timers.silence * 3 / 5);
        // A very short heartbeat interval: the silence limit has a floor, and the writes
        // keep their share of it.
        let short = ClientTimers::new(ms(20), ms(900));
        assert_eq!(short.silence, ms(300));
        assert_eq!((short.quiet, short.tick), (ms(120), ms(60)));
        assert_eq!(short.client_keepalive, ms(300));
    }
}
