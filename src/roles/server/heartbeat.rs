//! The server's `heartbeat` thread ([`heartbeat_loop`]): every heartbeat interval it tells
//! the coordinator that this server lives and which clients it has, learns from the reply
//! the live servers (the peer links and the clients' standbys are made from them) and which
//! clients to move, and
//! says when the coordinator cannot be reached ([`CoordinatorWatch`]). It waits on nothing
//! but the hub's lock, briefly, and the coordinator: a late heartbeat is how a busy server
//! gets taken for a dead one, so slow work such as a trim runs elsewhere.
//!
//! **Failures.** It reconnects when its connection breaks; a coordinator that is down costs
//! only heartbeats, and the last known peers stay in force. A `Fenced` reply makes the hub
//! forget everything, and the next heartbeat joins as a new server. During a planned stop
//! (`leave.rs`) it heartbeats `Leaving`, passes the moves on, and tells the main thread when
//! the drain is over.
//!
//! **Stopping.** It ends when the server's stop channel disconnects, after one last
//! heartbeat (`Gone` when leaving). The whole story: `docs/heartbeats-and-failover.md`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, tick};

use super::leave::Drained;
use super::metrics::Metrics;
use super::{Shared, peers};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Departure, Message, Role};

/// How often a heartbeat lists the clients in full even when they have not changed: a
/// safety net, so that a coordinator that somehow missed a list (and keeps an older one)
/// learns the right one within this many heartbeats.
const FULL_LIST_EVERY: u32 = 20;

/// Heartbeat intervals between two reminders that the coordinator is still out of reach:
/// 30 s at the default interval of 500 ms. Often enough that an operator who looks at the
/// log's tail sees it, rarely enough that a long outage does not fill the log.
const REMINDER_HEARTBEATS: u32 = 60;

/// What the server says about the coordinator's absence, and when ([`REMINDER_HEARTBEATS`]).
struct CoordinatorWatch {
    /// The coordinator's address, for the log lines.
    coordinator: String,
    /// The time between two reminders.
    remind_every: Duration,
    /// Since when heartbeats have failed, while they do.
    missing_since: Option<Instant>,
    /// When the absence was last logged.
    last_said: Instant,
    /// Heartbeats missed since `missing_since`.
    missed: u64,
}

impl CoordinatorWatch {
    fn new(coordinator: &str, heartbeat_interval: Duration) -> CoordinatorWatch {
        CoordinatorWatch {
            coordinator: coordinator.to_string(),
            remind_every: heartbeat_interval * REMINDER_HEARTBEATS,
            missing_since: None,
            last_said: Instant::now(),
            missed: 0,
        }
    }

    /// A heartbeat got its reply.
    fn reached(&mut self) {
        if let Some(since) = self.missing_since.take() {
            log::info!(
                "coordinator reachable again addr={} after {:.1}s without it (missed={}): \
                 names are checked across the cluster again, and failover works again",
                self.coordinator,
                since.elapsed().as_secs_f64(),
                self.missed
            );
        }
        self.missed = 0;
    }

    /// A heartbeat failed with `error`: logged at the first miss and then as a reminder
    /// every `remind_every`. A coordinator that answers with a refusal (a wrong or missing
    /// secret) is a mistake to fix rather than an outage to wait out: an ERROR the first
    /// time.
    fn missed(&mut self, error: &Error) {
        self.missed += 1;
        let now = Instant::now();
        let since = *self.missing_since.get_or_insert(now);
        let first = self.missed == 1;
        if !first && now.duration_since(self.last_said) < self.remind_every {
            return;
        }
        self.last_said = now;
        // A refusal carries the coordinator's own words: escaped, as any remote text.
        let reason = error.to_string();
        let consequences = "new clients' names are checked on this server only, and no \
                            failover is possible for its clients; keeping the current peers";
        match error {
            Error::Refused(..) if first => log::error!(
                "the coordinator at {} refused this server reason={reason:?}; {consequences}",
                self.coordinator
            ),
            _ if first => log::warn!(
                "coordinator unreachable addr={} reason={reason:?}; {consequences}",
                self.coordinator
            ),
            _ => log::warn!(
                "coordinator still unreachable addr={} for {:.1}s (missed={}) reason={reason:?}; \
                 {consequences}",
                self.coordinator,
                now.duration_since(since).as_secs_f64(),
                self.missed
            ),
        }
    }
}

/// The connection to the coordinator, and which client names it has been told.
struct Link {
    stream: TcpStream,
    /// The version of the names last listed on this connection
    /// ([`Hub::client_names_since`](super::hub::Hub::client_names_since)), if any.
    listed: Option<u64>,
    /// Heartbeats since the names were last listed in full.
    since_listed: u32,
}

/// What one heartbeat's reply told, for a server that is leaving.
struct Heard {
    /// The heartbeat listed the clients, and there were none.
    listed_none: bool,
    /// How many other live servers take clients, when the reply lists the whole cluster.
    others: Option<usize>,
}

/// The loop of the `heartbeat` thread.
pub(super) fn heartbeat_loop(shared: Shared) {
    let ticker = tick(shared.heartbeat_interval);
    let mut link: Option<Link> = None;
    let mut watch = CoordinatorWatch::new(&shared.coordinator, shared.heartbeat_interval);
    let mut started = shared.leave.started.clone();
    loop {
        let leaving = shared.leave.is_leaving();
        let departure = if leaving {
            Departure::Leaving
        } else {
            Departure::Staying
        };
        match send_heartbeat(&shared, &mut link, departure) {
            Ok(heard) => {
                watch.reached();
                if leaving {
                    drain_news(&shared, &heard);
                }
            }
            Err(e) => {
                link = None;
                watch.missed(&e);
                if leaving && shared.hub.client_count() == 0 {
                    // Nothing to move, and nobody to hear it: waiting for a coordinator
                    // would only make the stop take the whole --drain-timeout.
                    shared.leave.done(Drained::Empty);
                }
            }
        }
        select! {
            recv(ticker) -> _ => {}
            // The drain started: say so now rather than at the next tick.
            recv(started) -> _ => started = never(),
            recv(shared.stop_rx) -> _ => break,
        }
    }
    if shared.leave.is_leaving() && shared.hub.epoch() != 0 {
        match send_heartbeat(&shared, &mut link, Departure::Gone) {
            Ok(_) => log::info!("told the coordinator this server has left"),
            Err(e) => log::warn!(
                "could not tell the coordinator this server has left ({e}); it will be \
                 declared dead instead"
            ),
        }
    }
    log::debug!("heartbeat thread stopped");
}

/// Tells the main thread that the drain is over, if this heartbeat shows it.
fn drain_news(shared: &Shared, heard: &Heard) {
    if heard.listed_none {
        shared.leave.done(Drained::Empty);
    } else if heard.others == Some(0) {
        shared.leave.done(Drained::Nowhere {
            clients: shared.hub.client_count(),
        });
    }
}

/// One heartbeat and its reply, over the existing connection or a new one. The client
/// names go only when they changed since they were last listed on this connection (a new
/// connection always lists them), and at least every [`FULL_LIST_EVERY`] heartbeats; a
/// server that is leaving lists them every time, so that an empty list says it is done.
fn send_heartbeat(shared: &Shared, link: &mut Option<Link>, departure: Departure) -> Result<Heard> {
    // A reply slower than a few intervals is as good as none: the coordinator will have
    // declared us dead by then anyway.
    let timeout = (shared.heartbeat_interval * 3).max(Duration::from_millis(500));
    if link.is_none() {
        let stream = net::connect_as(
            &shared.coordinator,
            Role::Heartbeat,
            timeout,
            shared.secret.as_ref(),
        )?;
        *link = Some(Link {
            stream,
            listed: None,
            since_listed: 0,
        });
    }
    let link = link.as_mut().expect("connected just above");
    let since = link
        .listed
        .filter(|_| link.since_listed < FULL_LIST_EVERY && departure == Departure::Staying);
    let (version, clients) = shared.hub.client_names_since(since);
    let listing = clients.is_some();
    let listed_none = clients.as_ref().is_some_and(Vec::is_empty);
    let heartbeat = Message::Heartbeat {
        addr: shared.addr.clone(),
        epoch: shared.hub.epoch(),
        clients,
        cut_off: shared.hub.cut_off_peers(shared.link_silence),
        departure,
    };
    match net::request(&mut link.stream, &heartbeat)? {
        Message::HeartbeatReply {
            epoch,
            complete,
            servers,
            moves,
        } => {
            if listing {
                link.listed = Some(version);
                link.since_listed = 0;
            } else {
                link.since_listed += 1;
            }
            if shared.hub.epoch() != epoch {
                log::info!("joined the cluster addr={} epoch={epoch}", shared.addr);
                shared.hub.set_epoch(epoch);
            }
            for (addr, epoch, link_id) in shared.hub.set_peers(&servers, complete) {
                peers::start_peer_link(shared.clone(), addr, epoch, link_id);
            }
            shared.hub.set_standbys(&servers, complete);
            let why = if departure == Departure::Staying {
                "rebalancing"
            } else {
                "planned stop"
            };
            for (client, to) in moves {
                if shared.hub.order_move(&client, &to) {
                    Metrics::add(&shared.metrics.moves_out, 1);
                    log::info!("told client to move name={client} to={to} ({why})");
                }
            }
            let others = complete.then(|| {
                servers
                    .iter()
                    .filter(|s| s.addr != shared.addr && s.alive && !s.leaving)
                    .count()
            });
            Ok(Heard {
                listed_none,
                others,
            })
        }
        Message::Fenced { reason } => {
            // The coordinator gave up on this server while it did not answer (hung, or cut
            // off), and moved its clients. Those whose connections have closed since are
            // gone already; the rest are dropped here, to resume where they were moved.
            log::warn!(
                "fenced by the coordinator reason={reason:?}: this server stopped answering and its \
                 clients were moved; dropping the {} still connected and rejoining as a new \
                 incarnation",
                shared.hub.client_count()
            );
            shared.hub.reset_incarnation();
            // The new incarnation lists its clients afresh.
            link.listed = None;
            Ok(Heard {
                listed_none: false,
                others: None,
            })
        }
        other => Err(Error::Protocol(format!(
            "expected HeartbeatReply, got {}",
            other.kind()
        ))),
    }
}
