//! Registering a session with a server: the first time, again after its server failed
//! (failover), and on another when its server says move; each time resending what the new
//! server may lack.
//!
//! **Who calls it.** These are methods of the session, run on the thread that calls them:
//! the caller of [`start`](super::start) for the first registration, the `session-<name>`
//! thread for [`Session::fail_over`] and [`Session::move_to`]. The first two ask the
//! coordinator where to go ([`locate`]); each opens a [`Connection`] to the server chosen.
//!
//! **How it stops.** The first registration tries up to [`FIRST_REGISTER_ATTEMPTS`] servers,
//! then fails with one sentence that says what failed (exit status 1). A failover never gives
//! up: it asks again every [`FAILOVER_RETRY`], trying the old server when the coordinator is
//! down too, until it succeeds or the session is stopped. A move that fails leaves the session
//! where it was. The rest: docs/heartbeats-and-failover.md, "Client failover".

use std::time::Duration;

use crossbeam_channel::select;

use super::{Connection, Error, Event, Message, Result, SEND_QUEUE, Session, Standby};
use crate::auth::Secret;
use crate::net;
use crate::protocol::{Resume, Role, join_report, read_message};
use crate::roles::client::locate::locate;
use crate::support::random::random_u64;

/// How long the first registration may take before the client gives up (exit status 1).
const FIRST_REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Servers tried for the first registration when the coordinator chooses: one, and two
/// more should it name servers that died since their last heartbeat.
const FIRST_REGISTER_ATTEMPTS: usize = 3;
/// How long a registration during failover may take. Short, because the server may be hung
/// (its kernel accepts the connection but nobody answers); the session then asks the
/// coordinator again.
const FAILOVER_REGISTER_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a registration on a standby may take. Longer than after asking the coordinator:
/// a standby is not suspected of anything, and when a crowded server crashes, thousands of
/// its clients arrive at once at each standby, which starts a thread for each; giving up
/// sooner would send them on to the coordinator in a second crowd.
const STANDBY_REGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client waits, to connect and then for the first frame, when it checks
/// whether its lost server is gone before it goes to its standby. A crashed server's port
/// refuses at once; a live one sends its challenge in well under this.
const GONE_CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause between failover attempts, so a client does not hammer a coordinator that has no
/// live server to offer yet.
const FAILOVER_RETRY: Duration = Duration::from_millis(100);

impl Session {
    /// Asks the coordinator which server to use ([`locate`]), naming `suspect`, the server
    /// just lost (empty at the start).
    fn ask_where_to_go(&self, suspect: &str, unreachable: bool) -> Result<String> {
        let config = &self.config;
        locate(
            &config.coordinator,
            config.secret.as_ref(),
            &config.name,
            suspect,
            unreachable,
        )
    }

    /// Registers for the first time: on `--server`, or where the coordinator says. The
    /// server the coordinator names may have died since its last heartbeat; then the
    /// coordinator is asked again, naming it as lost (it checks, and plans around it), up
    /// to [`FIRST_REGISTER_ATTEMPTS`] times. A server that refuses (the name is taken, it
    /// is full) is an answer, not a failure to retry.
    pub(super) fn first_registration(&mut self) -> Result<Connection> {
        let mut suspect = String::new();
        let mut attempts = 0;
        let (server, connection) = loop {
            let server = match &self.config.server {
                Some(server) => server.clone(),
                None => self.ask_where_to_go(&suspect, !suspect.is_empty())?,
            };
            attempts += 1;
            match self.register(&server, FIRST_REGISTER_TIMEOUT) {
                Ok(connection) => break (server, connection),
                Err(e)
                    if self.config.server.is_none()
                        && attempts < FIRST_REGISTER_ATTEMPTS
                        && !matches!(e, Error::Refused(..)) =>
                {
                    log::info!(
                        "server {server} did not take the registration ({e}); asking the \
                         coordinator again"
                    );
                    suspect = server;
                }
                Err(e) => return Err(net::unreachable("server", &server, e)),
            }
        };
        log::info!("registered name={} server={server}", self.config.name);
        self.emit(Event::Registered {
            name: self.config.name.clone(),
            server: server.clone(),
        });
        if self.config.server.is_some() {
            self.warn_without_coordinator(&server);
        }
        Ok(connection)
    }

    /// On `--server` the coordinator was not asked, so nothing has shown that it is there.
    /// The server registers clients without one, checking the name on itself only, and
    /// without one nobody can find this client another server when its server fails: the
    /// user is told (a `warning` event; a line on stderr in text mode). One status query,
    /// bounded by its own timeout; the session has not started, so nothing waits on it.
    fn warn_without_coordinator(&self, server: &str) {
        let coordinator = &self.config.coordinator;
        if let Err(e) = ask_status(coordinator, self.config.secret.as_ref()) {
            self.emit(Event::Warning {
                message: format!(
                    "registered on {server} without a coordinator ({e}): the name was checked \
                     on {server} only, and should {server} fail, no failover is possible \
                     until a coordinator runs at {coordinator}"
                ),
            });
        }
    }

    /// Connects to `server` and registers (resuming when this session has registered before),
    /// then takes the session id, token and watermarks the server gives.
    fn register(&mut self, server: &str, timeout: Duration) -> Result<Connection> {
        let resume = (self.id != 0).then(|| Resume {
            session: self.id,
            token: self.token,
            seen: self.inbox.seen(),
        });
        let first = resume.is_none();
        let (connection, registered) = Connection::open(
            server,
            &self.config.name,
            self.config.secret.as_ref(),
            resume,
            timeout,
            SEND_QUEUE,
        )?;
        self.id = registered.session;
        self.token = registered.token;
        // The new server names its own standby; the old one's may be this very server.
        self.standby = None;
        if first {
            // Everything up to these marks was sent before we registered.
            self.inbox.start_after(registered.watermarks);
        }
        Ok(connection)
    }

    /// Finds a live server and registers there again, then sends every unacknowledged
    /// message again: on the standby the server named, when the server is gone, else where
    /// the coordinator says. Keeps trying until it succeeds or the session is stopped
    /// (`None`).
    pub(super) fn fail_over(&mut self, mut lost: Connection, reason: Error) -> Option<Connection> {
        let old = lost.server.clone();
        // Its threads end while we find a new server; joining them (dropping `lost`) waits
        // until we have one.
        lost.abandon();
        log::info!(
            "lost server name={} server={old} reason=\"{reason}\"; failing over",
            self.config.name
        );
        if let Some(standby) = self.standby_for_a_gone_server(&old, &reason) {
            // Nothing to go back to: the lost connection's threads are joined now, before
            // this client starts two more (ten thousand clients at once would otherwise
            // hold both pairs).
            drop(lost);
            if !self.wait_for_my_turn(&standby) {
                return None;
            }
            if let Some((connection, resent)) = self.go_to_standby(&standby.server) {
                self.failed_over(&old, &standby.server, resent);
                return Some(connection);
            }
            return self.ask_until_placed(old);
        }
        let placed = self.ask_until_placed(old);
        drop(lost);
        placed
    }

    /// The loop of [`Session::fail_over`] that asks the coordinator (see there).
    fn ask_until_placed(&mut self, old: String) -> Option<Connection> {
        // The server to ask about, and whether this client failed to register there after
        // the coordinator named it (then the coordinator must place it elsewhere, even if
        // the server looks fine from where the coordinator is: a one-way cut).
        let (mut suspect, mut unreachable) = (old.clone(), false);
        let mut coordinator_error_shown = false;
        // The server whose failure was last logged: a retry that fails the same way is
        // logged at DEBUG only, or a cluster with no live server would fill the log ten
        // lines a second until one comes back.
        let mut last_logged: Option<String> = None;
        loop {
            // Ask the coordinator; if it is down too, try the old server again (the
            // connection may have broken while the server is fine).
            let target = match self.ask_where_to_go(&suspect, unreachable) {
                Ok(target) => target,
                Err(e) => {
                    log::debug!("locate failed: {e}");
                    if !coordinator_error_shown {
                        // Said once per failover, so a long outage is not silent.
                        self.emit(Event::Error {
                            message: format!(
                                "lost server {old}, and cannot ask the coordinator for \
                                 another ({e}); trying the old server until one answers"
                            ),
                        });
                        coordinator_error_shown = true;
                    }
                    old.clone()
                }
            };
            match self.register(&target, FAILOVER_REGISTER_TIMEOUT) {
                Ok(mut connection) => match self.resend(&mut connection) {
                    Ok(resent) => {
                        self.failed_over(&old, &target, resent);
                        return Some(connection);
                    }
                    Err(e) => log::debug!("resending to {target} failed: {e}"),
                },
                Err(Error::Refused(_, why)) => {
                    let level = log_level_for(&mut last_logged, &target, log::Level::Warn);
                    log::log!(level, "failover refused by {target}: {why}");
                }
                Err(e) => {
                    let level = log_level_for(&mut last_logged, &target, log::Level::Info);
                    log::log!(
                        level,
                        "cannot reach server {target} ({e}); asking the coordinator for \
                         another name={}",
                        self.config.name
                    );
                    (suspect, unreachable) = (target, true);
                }
            }
            select! {
                recv(self.stop_rx) -> _ => return None,
                default(FAILOVER_RETRY) => {}
            }
        }
    }

    /// The standby to go to without asking the coordinator, if this client holds one and
    /// its server is gone: the connection ended (closed or reset, not silent) and the
    /// server's port says so ([`net::is_gone`]). A crashed server's ten thousand clients then
    /// fail over without ten thousand `Locate`s, while a connection that broke on its own
    /// goes back to its live server, and a hung server is left to the coordinator's
    /// heartbeats, as before. `docs/heartbeats-and-failover.md`, "Standby servers", tells
    /// why.
    fn standby_for_a_gone_server(&mut self, old: &str, reason: &Error) -> Option<Standby> {
        let standby = self
            .standby
            .take()
            .filter(|standby| standby.server != old)?;
        (!reason.is_timeout() && net::is_gone(old, GONE_CHECK_TIMEOUT)).then_some(standby)
    }

    /// Waits a random part of the standby's spread: the server's other clients are on
    /// their way too, and all at once they would starve the servers that take them. False
    /// when the session was stopped meanwhile.
    fn wait_for_my_turn(&self, standby: &Standby) -> bool {
        let wait = standby
            .spread
            .mul_f64(random_u64() as f64 / u64::MAX as f64);
        select! {
            recv(self.stop_rx) -> _ => false,
            default(wait) => true,
        }
    }

    /// Registers on `standby`, resending what it may lack. `None` when it did not take the
    /// client (it died too, is full, is stopping); the coordinator is asked then.
    fn go_to_standby(&mut self, standby: &str) -> Option<(Connection, usize)> {
        match self.resume_on(standby, STANDBY_REGISTER_TIMEOUT) {
            Ok(resumed) => Some(resumed),
            Err(e) => {
                log::info!(
                    "standby {standby} did not take the client ({e}); asking the coordinator \
                     name={}",
                    self.config.name
                );
                None
            }
        }
    }

    /// Says that the session is registered again, on `target`, after losing `old`, having
    /// sent `resent` messages again: `reconnected` when it is the same server, `failover`
    /// when it is another.
    fn failed_over(&self, old: &str, target: &str, resent: usize) {
        log::info!(
            "failover name={} from={old} to={target} resent={resent}",
            self.config.name
        );
        if target == old {
            self.emit(Event::Reconnected {
                server: target.to_string(),
            });
        } else {
            self.emit(Event::Failover {
                from: old.to_string(),
                to: target.to_string(),
            });
        }
    }

    /// Moves to `target` because the server said so (the coordinator is rebalancing, or the
    /// server is stopping on purpose):
    /// registers there with this session, sends again what the new server lacks, and only
    /// then leaves `current`, so nothing falls between the two: what `current` delivered
    /// is in `seen`, and the new server replays what came after it. If `target` cannot
    /// take the client, it stays on `current`; the coordinator, seeing it stay, may order
    /// another move later.
    pub(super) fn move_to(&mut self, mut current: Connection, target: &str) -> Connection {
        let from = current.server.clone();
        if target == from {
            return current;
        }
        match self.resume_on(target, FAILOVER_REGISTER_TIMEOUT) {
            Ok((connection, _)) => {
                current.abandon();
                drop(current);
                log::info!(
                    "moved name={} from={from} to={target} (the server asked)",
                    self.config.name
                );
                self.emit(Event::Moved {
                    from,
                    to: target.to_string(),
                });
                connection
            }
            Err(e) => {
                log::warn!(
                    "could not move to {target} ({e}); staying on {from} name={}",
                    self.config.name
                );
                current
            }
        }
    }

    /// Registers on `server` with this session and sends again what it may lack (a move,
    /// or a failover to a standby): the new connection and how many messages it was sent
    /// again.
    fn resume_on(&mut self, server: &str, timeout: Duration) -> Result<(Connection, usize)> {
        let mut connection = self.register(server, timeout)?;
        let resent = self.resend(&mut connection)?;
        Ok((connection, resent))
    }

    /// After a resume: sends again the recent messages the new server does not hold, then
    /// every unacknowledged one (even those it holds: their acks are still owed). Servers
    /// and receivers drop what they already have, so nothing is delivered twice. Returns
    /// how many were sent.
    fn resend(&self, connection: &mut Connection) -> Result<usize> {
        let missing = self
            .recent
            .iter()
            .filter(|(seq, _)| *seq > connection.server_has);
        let mut count = 0;
        for (seq, body) in missing.chain(&self.unacked) {
            let publish = Message::Publish {
                seq: *seq,
                body: body.clone(),
            };
            connection.send(&publish)?;
            count += 1;
        }
        Ok(count)
    }
}

/// How long the check for a coordinator waits for its answer, as `dsys status` does.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// One status query to the coordinator at `coordinator`, read to its last part: `Ok` when a
/// coordinator answers as one does. (`dsys status` asks the same question and prints the
/// answer; both join the parts with the protocol's [`join_report`].)
fn ask_status(coordinator: &str, secret: Option<&Secret>) -> Result<()> {
    let unreachable = |e| net::unreachable("coordinator", coordinator, e);
    let mut stream =
        net::connect_as(coordinator, Role::Status, STATUS_TIMEOUT, secret).map_err(unreachable)?;
    let mut reply = net::request(&mut stream, &Message::StatusQuery).map_err(unreachable)?;
    let mut servers = Vec::new();
    while join_report(&mut servers, reply)? {
        reply = read_message(&mut stream)
            .map_err(unreachable)?
            .ok_or_else(|| {
                Error::Protocol("the status report ended before its last part".into())
            })?;
    }
    Ok(())
}

/// `level` for the first failure at `target` in a row, DEBUG for the ones that repeat it
/// (see `last_logged` in [`Session::fail_over`]).
fn log_level_for(last_logged: &mut Option<String>, target: &str, level: log::Level) -> log::Level {
    if last_logged.as_deref() == Some(target) {
        return log::Level::Debug;
    }
    *last_logged = Some(target.to_string());
    level
}
