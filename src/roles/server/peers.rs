//! Peer links: how servers relay their clients' messages to each other directly (the
//! coordinator is never on the data path). Every pair of live servers has two links, one
//! each way.
//!
//! **Threads.** On the sending side, `peer-<addr>` ([`start_peer_link`], started by the
//! `heartbeat` thread) connects, learns from `PeerWelcome` where the peer stands, and writes
//! the hub's outbound log from there; `acks-<addr>` reads the peer's `PeerAck`s into the hub.
//! On the receiving side, the connection thread ([`serve_peer`]) accepts a link only from a
//! peer incarnation the coordinator lists as live, hands each relay to the hub and acks:
//! each time it has read all that arrived, and at least once a heartbeat interval while the
//! link stays busy ([`Answer`]), so that a congested link is never taken for a cut.
//!
//! **Failures and stopping.** A broken link is retried every heartbeat interval for as long
//! as the coordinator lists the peer, and resumes where the peer left off. A link ends when
//! the peer leaves the list or the server's stop channel disconnects. The conversation:
//! `docs/protocol.md`, section 6.2; why it loses nothing: `docs/guarantees.md`, section 1.

use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::write::{Flow, Frame, OutboxReceiver, Pens, WRITE_BUFFER, WhenIdle, write_frames};
use super::{Shared, THREAD_STACK};
use crate::error::{Error, Refusal, Result};
use crate::net;
use crate::protocol::{Body, Message, Role, holds_whole_frame, read_message, write_message};

use super::hub::{Hub, Origin, Published};

/// Starts the `peer-<addr>` thread for one link.
pub(super) fn start_peer_link(shared: Shared, addr: String, epoch: u64, link_id: u64) {
    let spawned = thread::Builder::new()
        .name(format!("peer-{addr}"))
        .stack_size(THREAD_STACK)
        .spawn(move || peer_link_loop(shared, addr, epoch, link_id));
    if let Err(e) = spawned {
        log::warn!("cannot start a peer thread: {e}");
    }
}

/// Keeps the link to one peer up for as long as the hub wants it.
fn peer_link_loop(shared: Shared, addr: String, epoch: u64, link_id: u64) {
    while shared.hub.peer_wanted(&addr, link_id) {
        match relay_to_peer(&shared, &addr, link_id) {
            Ok(()) => log::debug!("peer link ended addr={addr}"),
            Err(Error::Refused(Refusal::DeclaredDead, _)) => fence_ourselves(&shared, &addr),
            // Every join starts so: this server's heartbeat reply listed the peer before the
            // peer's reply listed this server.
            Err(Error::Refused(Refusal::NotListedYet, _)) => log::info!(
                "peer link waits addr={addr} epoch={epoch}: the peer has not heard of this \
                 server from the coordinator yet; trying again in one heartbeat interval"
            ),
            // The peer's words are quoted escaped, as any remote text.
            Err(e) => log::info!(
                "peer link down addr={addr} epoch={epoch} reason={:?}",
                e.to_string()
            ),
        }
        // Retry after one interval, unless the server is stopping.
        select! {
            recv(shared.stop_rx) -> _ => break,
            default(shared.heartbeat_interval) => {}
        }
    }
    log::debug!("peer thread stopped addr={addr}");
}

/// How long a link may go without a word from its peer before the peer counts as cut off
/// from this server: three heartbeat intervals (the peer acks every keepalive, sent once an
/// interval), and never less than the stall timeout plus an interval. The second bound is
/// what keeps a busy peer from looking cut off: a peer that is pacing its publishers
/// (backpressure) reads nothing on the link while it waits for room, and that wait ends
/// within the stall timeout (`State::has_room`). A peer not heard from for that long is
/// listed in this server's heartbeats (`cut_off`), and the coordinator decides
/// (`coordinator/registry/cuts.rs`).
pub(super) fn link_silence_limit(
    heartbeat_interval: Duration,
    stall_timeout: Duration,
) -> Duration {
    (heartbeat_interval * 3).max(stall_timeout + heartbeat_interval)
}

/// A peer says this incarnation was declared dead: the coordinator fenced it while it could
/// not tell us (a server cut off from the coordinator alone). Its clients have been planned
/// elsewhere, but they are still here and cannot reach the rest of the cluster through a
/// server its peers refuse: so drop them, as a `Fenced` reply would, and they fail over.
fn fence_ourselves(shared: &Shared, peer: &str) {
    log::warn!(
        "peer {peer} says this server was declared dead (it cannot have heard it from the \
         coordinator); dropping the {} clients still connected, so they fail over, and \
         rejoining as a new incarnation",
        shared.hub.client_count()
    );
    shared.hub.reset_incarnation();
}

/// One connection's life on the sending side.
fn relay_to_peer(shared: &Shared, addr: &str, link_id: u64) -> Result<()> {
    let mut stream = net::connect_as(
        addr,
        Role::Peer,
        shared.limits.idle_timeout,
        shared.secret.as_ref(),
    )?;
    let hello = Message::PeerHello {
        addr: shared.addr.clone(),
        epoch: shared.hub.epoch(),
    };
    let (last_index, history) = match net::request(&mut stream, &hello)? {
        Message::PeerWelcome {
            last_index,
            history,
        } => (last_index, history),
        other => {
            return Err(Error::Protocol(format!(
                "expected PeerWelcome, got {}",
                other.kind()
            )));
        }
    };
    let Some((queue_rx, backlog)) = shared
        .hub
        .subscribe_peer(addr, link_id, last_index, history)
    else {
        return Ok(()); // the peer left the list meanwhile
    };
    log::info!(
        "peer link up addr={addr} resume_after={last_index} backlog={}",
        backlog.len()
    );
    // The peer acks every keepalive too, so even a quiet link hears from it once an
    // interval; silence beyond the limit means the peer cannot be reached on this link.
    // (Socket options are shared by `try_clone`d handles; the write half reads nothing, so
    // this is safe for both.)
    let silence = shared.link_silence;
    stream.set_read_timeout(Some(silence))?;

    let acks = {
        let stream = stream.try_clone()?;
        let hub = shared.hub.clone();
        let addr = addr.to_string();
        // The acks' senders are written to from there, as a publisher's connection thread
        // writes to the clients its messages reach (`write/through.rs`).
        let pens = Pens::new(shared.pool.clone());
        thread::Builder::new()
            .name(format!("acks-{addr}"))
            .stack_size(THREAD_STACK)
            .spawn(move || read_acks(stream, &hub, &addr, link_id, pens, silence))?
    };
    let result = write_relays(&stream, backlog, &queue_rx, shared);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = acks.join();
    result
}

/// The `acks-<addr>` thread of one connection of a link: reads the peer's `PeerAck`s into
/// the hub, which acknowledges the senders, and writes for the pens those acks took.
///
/// Blocks reading `stream`, the read half of the link. Returns when [`relay_to_peer`] shuts
/// the socket down (its writer has ended), or the peer closes it, or the peer is silent for
/// `silence`: then it shuts the link down itself, which ends the writer, and the link is
/// tried again.
fn read_acks(
    mut stream: TcpStream,
    hub: &Hub,
    addr: &str,
    link_id: u64,
    mut pens: Pens,
    silence: Duration,
) {
    loop {
        match read_message(&mut stream) {
            Ok(Some(Message::PeerAck { index })) => {
                hub.peer_acked(addr, link_id, index, &mut pens);
                pens.write_now();
            }
            Err(e) if e.is_timeout() => {
                log::warn!(
                    "peer silent addr={addr} for {}ms: restarting the link",
                    silence.as_millis()
                );
                let _ = stream.shutdown(Shutdown::Both);
                break;
            }
            _ => break,
        }
    }
}

/// Writes the backlog, then the queue, batched, with a keepalive when idle (the one writer
/// loop, [`write_frames`]). Returns when the hub drops the queue (peer removed, or its queue
/// overflowed: the caller reconnects).
fn write_relays(
    stream: &TcpStream,
    backlog: Vec<Frame>,
    queue_rx: &OutboxReceiver,
    shared: &Shared,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, stream);
    for frame in &backlog {
        out.write_all(frame)?;
    }
    let keepalive = Message::Keepalive.encode();
    write_frames(
        &mut out,
        queue_rx,
        shared.heartbeat_interval,
        WhenIdle::Keepalive(&keepalive),
        |_| Ok(Flow::Continue),
    )?;
    Ok(())
}

/// Bytes the receiving side of a link reads at once. A link carries frames back to back,
/// and a server has a few links, not thousands: a buffer the size of the writer's costs
/// little and turns a burst of relays into a few reads instead of two per frame.
const READ_BUFFER: usize = WRITE_BUFFER;

/// The receiving side of a link, on its connection thread.
///
/// `PeerAck` is cumulative, so one covers every relay taken in so far. It is sent when the
/// buffered input runs out, just before the thread would wait for more: a burst of relays
/// costs one ack (and one round of the hub's lock on the relaying side), not one each, and
/// no ack waits for a frame that has not arrived. And it is sent at least once a heartbeat
/// interval while the link is busy ([`Answer`]), even while a slow reader here holds the
/// relays back: the peer takes a link it has not heard from for long for a cut.
pub(super) fn serve_peer(stream: TcpStream, shared: &Shared, deadline: Instant) -> Result<()> {
    let first = net::read_opening(&stream, deadline)?;
    let Some(Message::PeerHello { addr, epoch }) = first else {
        return net::refuse(&stream, "expected PeerHello");
    };
    // The address goes into the log and the hub's peer table: anything but an address is
    // not a dsys server speaking.
    if !net::is_plausible_addr(&addr) {
        return net::refuse(&stream, "a PeerHello names the server's HOST:PORT");
    }
    let Some((mut last_index, history)) = shared.hub.accept_peer(&addr, epoch) else {
        // Part of every join: a new server links in as soon as its heartbeat reply lists
        // this one, which learns of it only from its own next reply; and an incarnation
        // declared dead is turned away for good. Neither is a fault, so the peer is told
        // why (it retries, or learns it was fenced) and the connection ends without an
        // error, which the accept loop would log as a WARN.
        let (code, reason) = shared.hub.peer_refusal(&addr, epoch);
        log::info!("peer link turned away from={addr} epoch={epoch} reason={reason:?}");
        net::turn_away(&stream, code, &reason);
        return Ok(());
    };
    write_message(
        &mut &stream,
        &Message::PeerWelcome {
            last_index,
            history,
        },
    )?;
    // A peer removed from the list meanwhile (it left, or was declared dead): the end of
    // its link is a consequence of what the coordinator logged, not a fault of its own.
    let stale = |stream: &TcpStream| {
        let reason = "this peer incarnation is no longer live";
        log::info!("peer link closed from={addr} epoch={epoch} reason={reason:?}");
        net::turn_away(stream, Refusal::Other, reason);
        Ok(())
    };
    stream.set_read_timeout(Some(shared.limits.idle_timeout))?;
    log::debug!("peer link accepted from={addr} epoch={epoch}");
    let mut input = BufReader::with_capacity(READ_BUFFER, &stream);
    let mut answer = Answer::new(&stream, last_index, shared.heartbeat_interval);
    // The pens of the clients the relays reach, written for when the input runs dry, as a
    // client's connection thread does (`write/through.rs`).
    let mut pens = Pens::new(shared.pool.clone());
    // Relays read and not yet taken in: the ones the buffer holds go into the hub together,
    // as a client's publishes do (`Hub::publish`), before any ack says they arrived.
    let mut relays = Relays::default();
    let link = Link {
        addr: &addr,
        epoch,
        shared,
    };
    while let Some(message) = read_message(&mut input)? {
        if !matches!(message, Message::Relay { .. })
            && !relays.take_in(&link, &mut pens, &mut answer)?
        {
            pens.write_now();
            return stale(&stream);
        }
        match message {
            Message::Relay {
                index,
                from,
                session,
                seq,
                body,
            } => {
                if index > last_index {
                    if !relays.follows(&from, session)
                        && !relays.take_in(&link, &mut pens, &mut answer)?
                    {
                        pens.write_now();
                        return stale(&stream);
                    }
                    relays.push(from, session, index, seq, body);
                    last_index = index;
                }
                answer.owed = true;
            }
            // History is only accepted when this server asked for it.
            Message::Deliver {
                from,
                session,
                seq,
                body,
            } if history => {
                let origin = Origin::PeerHistory {
                    addr: addr.clone(),
                    epoch,
                };
                // One message, which may wait for room: the peer hears from this link
                // meanwhile, as it does while relays wait.
                let message = [(seq, body)];
                let live = publish_answering(
                    &shared.hub,
                    origin,
                    &from,
                    session,
                    &message,
                    &mut pens,
                    &mut answer,
                )?;
                if !live {
                    pens.write_now();
                    return stale(&stream);
                }
            }
            Message::PeerSynced if history => {
                log::info!("history received from={addr} epoch={epoch}");
                shared.hub.peer_synced(&addr, epoch);
            }
            // An idle link checks that its peer is still live, so that a peer declared
            // dead hears it (on its next connect: `peer_refusal`) without sending anything;
            // a live one gets an ack, so that it hears from us at least once an interval.
            Message::Keepalive if !shared.hub.is_live_peer(&addr, epoch) => {
                pens.write_now();
                return stale(&stream);
            }
            Message::Keepalive => answer.owed = true,
            other => {
                pens.write_now();
                return net::refuse(
                    &stream,
                    &format!("unexpected {} on a peer link", other.kind()),
                );
            }
        }
        let more = holds_whole_frame(input.buffer());
        // A busy link still answers once an interval: what is read so far goes in first,
        // so that the ack covers it.
        let due = answer.is_due();
        if (!more || due || relays.messages.len() >= MAX_RELAYS_AT_ONCE)
            && !relays.take_in(&link, &mut pens, &mut answer)?
        {
            pens.write_now();
            return stale(&stream);
        }
        if !more || due {
            pens.write_now();
        }
        if answer.owed && (input.buffer().is_empty() || due) {
            answer.send()?;
        }
    }
    Ok(())
}

/// The peer incarnation a link comes from, and this server: where its relays go.
struct Link<'a> {
    addr: &'a str,
    epoch: u64,
    shared: &'a Shared,
}

/// [`Hub::publish`] for a link: takes `messages`, one sender session's, into the hub from
/// `origin` (a batch of relays, or one message of the peer's history), and answers the peer
/// at least once an interval while a slow reader here holds them back ([`Answer`]). Each
/// time `Hub::publish_until` gives up waiting for room at the ack's time, the pens taken so
/// far are written for, an ack goes for the relays taken in so far, and the rest are passed
/// again. Returns `false` when the peer incarnation is no longer live; what was taken in
/// before stays taken in.
///
/// # Errors
/// When an ack cannot be written: the link is broken.
fn publish_answering(
    hub: &Hub,
    origin: Origin,
    from: &str,
    session: u64,
    messages: &[(u64, Body)],
    pens: &mut Pens,
    answer: &mut Answer,
) -> Result<bool> {
    // Once the first `done` are taken in, every relay up to the last of them is stored
    // here. A message of history is no relay, and no ack counts it.
    let count_taken = |answer: &mut Answer, done: usize| {
        if let Some(last) = origin.relay_index_taken(messages.len(), done) {
            answer.taken = answer.taken.max(last);
        }
    };
    let mut done = 0;
    while done < messages.len() {
        let rest = &messages[done..];
        let until = Some(answer.due());
        match hub.publish_until(origin.clone(), from, session, rest, pens, until) {
            Published::All => done = messages.len(),
            Published::Paused(taken_in) => {
                done += taken_in;
                count_taken(answer, done);
                pens.write_now();
                answer.send()?;
            }
            Published::Stale => return Ok(false),
        }
    }
    if !messages.is_empty() {
        count_taken(answer, done);
    }
    Ok(true)
}

/// What the receiving side of a link owes its peer: a `PeerAck` for the relays it has taken
/// in, at least once every `every` while the link carries anything. The peer hears nothing
/// else on this link, so it counts the time since the last ack as the link's silence
/// (`PeerLink::heard`), and a silence beyond its limit is reported as a cut. Acks that
/// waited for the input to run dry, or for a slow reader here to make room, once stayed
/// away for as long as the congestion lasted, and a live server was declared dead.
struct Answer<'a> {
    stream: &'a TcpStream,
    /// The highest relay index taken into the hub: every relay up to it is stored here.
    taken: u64,
    /// Whether something came in since the last ack (a relay, or a keepalive).
    owed: bool,
    /// When the last ack went out (or the link was accepted).
    last: Instant,
    /// How often a busy link answers, at least: this server's heartbeat interval, well
    /// within the peer's silence limit of three intervals or more (`link_silence_limit`).
    every: Duration,
}

impl<'a> Answer<'a> {
    fn new(stream: &'a TcpStream, taken: u64, every: Duration) -> Answer<'a> {
        Answer {
            stream,
            taken,
            owed: false,
            last: Instant::now(),
            every,
        }
    }

    /// When the next ack is due, whatever the input holds.
    fn due(&self) -> Instant {
        self.last + self.every
    }

    /// Whether an ack is due now.
    fn is_due(&self) -> bool {
        Instant::now() >= self.due()
    }

    /// Writes a `PeerAck` for every relay taken in so far.
    ///
    /// # Errors
    /// When the write fails: the link is broken.
    fn send(&mut self) -> Result<()> {
        write_message(&mut &*self.stream, &Message::PeerAck { index: self.taken })?;
        self.owed = false;
        self.last = Instant::now();
        Ok(())
    }
}

/// Relays taken into the hub at once, at most (the read buffer bounds them already; this
/// bounds the batch's bookkeeping whatever the frames).
const MAX_RELAYS_AT_ONCE: usize = 1024;

/// Relays read from a link and not yet taken into the hub: consecutive ones from one
/// sender session, which `Hub::publish` takes in together.
#[derive(Default)]
struct Relays {
    from: String,
    session: u64,
    /// The relay index of the last of them.
    last_index: u64,
    messages: Vec<(u64, Body)>,
}

impl Relays {
    /// Whether a relay from `from`'s `session` may join these.
    fn follows(&self, from: &str, session: u64) -> bool {
        self.messages.is_empty() || (self.session == session && self.from == from)
    }

    /// Adds a relay; the caller checked that it [`follows`](Self::follows).
    fn push(&mut self, from: String, session: u64, index: u64, seq: u64, body: Body) {
        if self.messages.is_empty() {
            (self.from, self.session) = (from, session);
        }
        self.last_index = index;
        self.messages.push((seq, body));
    }

    /// Takes these relays into the hub, from the peer incarnation of `link`, and empties
    /// the batch. The link answers its peer meanwhile ([`publish_answering`]). Returns
    /// `false` when that incarnation is no longer live.
    ///
    /// # Errors
    /// When an ack cannot be written: the link is broken.
    fn take_in(&mut self, link: &Link, pens: &mut Pens, answer: &mut Answer) -> Result<bool> {
        let origin = Origin::Peer {
            addr: link.addr.to_string(),
            epoch: link.epoch,
            index: self.last_index,
        };
        let hub = &link.shared.hub;
        let (from, session) = (&self.from, self.session);
        let live = publish_answering(hub, origin, from, session, &self.messages, pens, answer)?;
        self.messages.clear();
        Ok(live)
    }
}
