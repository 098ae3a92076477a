//! The server's `heartbeat` thread: every heartbeat interval it tells the coordinator that
//! this server is alive and which clients it has, and learns the live servers from the reply.
//!
//! It holds one connection to the coordinator and reconnects when it breaks. A coordinator
//! that is down costs only heartbeats: the last known peer list stays in force, so clients
//! keep sharing (guarantee 3). A `Fenced` reply means the coordinator declared this
//! incarnation dead while it was hung; the hub then forgets everything and the next
//! heartbeat joins as a new server. The thread ends when the server's stop channel
//! disconnects.

use std::net::TcpStream;
use std::time::Duration;

use crossbeam_channel::{select, tick};

use super::{Shared, peers};
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Message, Role};
use crate::support::memory::{self, Trimmer};

/// The loop of the `heartbeat` thread.
pub(super) fn heartbeat_loop(shared: Shared) {
    let ticker = tick(shared.heartbeat_interval);
    let mut connection: Option<TcpStream> = None;
    let mut coordinator_was_up = true;
    // Once an interval is also when the memory of departed clients is given back.
    let mut trimmer = Trimmer::default();
    loop {
        if trimmer.due(shared.hub.client_count()) {
            shared.hub.shrink_to_fit();
            memory::give_back_freed_memory();
        }
        match send_heartbeat(&shared, &mut connection) {
            Ok(()) => {
                if !coordinator_was_up {
                    log::info!("coordinator reachable again addr={}", shared.coordinator);
                }
                coordinator_was_up = true;
            }
            Err(e) => {
                connection = None;
                if coordinator_was_up {
                    match &e {
                        // It answered: this server is not welcome (a wrong or missing secret).
                        Error::Refused(why) => log::error!(
                            "the coordinator at {} refused this server: {why}",
                            shared.coordinator
                        ),
                        _ => log::warn!(
                            "coordinator unreachable addr={} reason={e}; keeping the current \
                             peers",
                            shared.coordinator
                        ),
                    }
                }
                coordinator_was_up = false;
            }
        }
        select! {
            recv(ticker) -> _ => {}
            recv(shared.stop_rx) -> _ => break,
        }
    }
    log::debug!("heartbeat thread stopped");
}

/// One heartbeat and its reply, over the existing connection or a new one.
fn send_heartbeat(shared: &Shared, connection: &mut Option<TcpStream>) -> Result<()> {
    // A reply slower than a few intervals is as good as none: the coordinator will have
    // declared us dead by then anyway.
    let timeout = (shared.heartbeat_interval * 3).max(Duration::from_millis(500));
    if connection.is_none() {
        *connection = Some(net::connect_as(
            &shared.coordinator,
            Role::Heartbeat,
            timeout,
            shared.secret.as_ref(),
        )?);
    }
    let stream = connection.as_mut().expect("connected just above");
    let heartbeat = Message::Heartbeat {
        addr: shared.addr.clone(),
        epoch: shared.hub.epoch(),
        clients: shared.hub.client_names(),
    };
    match net::request(stream, &heartbeat)? {
        Message::HeartbeatReply {
            epoch,
            complete,
            servers,
        } => {
            if shared.hub.epoch() != epoch {
                log::info!("joined the cluster addr={} epoch={epoch}", shared.addr);
                shared.hub.set_epoch(epoch);
            }
            for (addr, epoch, link_id) in shared.hub.set_peers(&servers, complete) {
                peers::start_peer_link(shared.clone(), addr, epoch, link_id);
            }
            Ok(())
        }
        Message::Fenced { reason } => {
            // The coordinator gave up on this server while it did not answer (hung, or cut
            // off), and moved its clients. Those whose connections have closed since are
            // gone already; the rest are dropped here, to resume where they were moved.
            let still_listed = shared.hub.client_names().len();
            log::warn!(
                "fenced by the coordinator ({reason}): this server stopped answering and its \
                 clients were moved; dropping the {still_listed} still connected and \
                 rejoining as a new incarnation"
            );
            shared.hub.reset_incarnation();
            Ok(())
        }
        other => Err(Error::Protocol(format!(
            "expected HeartbeatReply, got {}",
            other.kind()
        ))),
    }
}
