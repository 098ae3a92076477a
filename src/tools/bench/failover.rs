//! The failover load: how long the clients of a killed server go without messages, and
//! proof that none were lost on the way.
//!
//! One publisher sends at a fixed rate from one server; the subscribers all sit on another.
//! A third of the way through, that server is killed (SIGKILL, a real process), and every
//! subscriber must move to a live server by itself. The figure is each subscriber's
//! **move gap**: from the kill to its first message after its `failover` event. Every
//! message is still checked, once and in order, across the move.
//!
//! Unlike the throughput loads ([`super::load`]), these clients are real `dsys client`
//! sessions, run in this process ([`session::start`]): the failover being measured is
//! theirs (asking the coordinator, resuming on the new server, taking what they missed
//! from its history), so a simplified client would measure the wrong thing. Each session
//! has a `bench-watch-<name>` thread that reads its events and checks them. The figures:
//! `docs/benchmarks.md`, "The failover load".

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::load::Progress;
use super::report::print_report;
use super::{Cluster, Plan, show_progress, start_cluster_watching, wait_for};
use crate::Output;
use crate::error::{Error, Result};
use crate::roles::client::session::{self, SessionConfig};
use crate::roles::client::{Command, Event};
use crate::support::histogram::Histogram;
use crate::support::json::Object;

/// How long the warm-up message may take to reach every subscriber.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands queued for the publisher's session, at most: the pacing loop waits when full.
const COMMAND_QUEUE: usize = 64;
/// The server the subscribers start on, and that is killed (index into the servers).
const DOOMED: usize = 0;
/// The server the publisher stays on.
const PUBLISHER_HOME: usize = 1;

/// One client session run by the bench. Dropping its `commands` ends its input: it waits
/// for its acks, deregisters and ends, which ends its watcher.
struct Member {
    commands: Sender<Command>,
    _stop: Sender<()>,
    session: JoinHandle<Result<()>>,
    watcher: JoinHandle<Watch>,
}

/// What one subscriber's watcher saw.
#[derive(Default)]
struct Watch {
    delivered: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Messages the client reported as unrecoverable (`gap` events).
    missed: u64,
    /// `failover` events.
    moves: u32,
    /// From the kill to the first message after the (first) `failover` event.
    move_gap: Option<Duration>,
    /// Pauses between two deliveries before the kill: what a subscriber sees when nothing
    /// fails, the reference for the move gap.
    calm: Histogram,
    errors: Vec<String>,
}

/// The figures of one failover run.
pub struct FailoverReport {
    plan: Plan,
    expected: u64,
    watch: Watch,
    /// Subscribers that moved at all, and those that moved more than once.
    moved: usize,
    moved_twice: usize,
    gaps: Histogram,
    publish_error: Option<String>,
}

/// Runs the failover load of `plan` on a cluster it starts, and prints the report.
///
/// # Errors
/// [`Error::Usage`] with fewer than two servers; when the cluster cannot start or a client
/// cannot register; [`Error::Failed`] (after the report) when anything was lost,
/// duplicated or reordered, or a subscriber did not move.
pub fn run(plan: &Plan, output: Output) -> Result<()> {
    if plan.servers < 2 {
        return Err(Error::Usage(
            "the failover load needs at least 2 servers: one to kill, one to move to".into(),
        ));
    }
    // No rebalancing: the subscribers stay on the doomed server until the kill, so that
    // every one of them fails over.
    let (mut cluster, _) = start_cluster_watching(plan.servers, &["--no-rebalance"], |_| None)?;
    let report = measure(plan, &mut cluster)?;
    let text = match output {
        Output::Json => report.to_json(),
        Output::Text => report.to_text(),
    };
    print_report(&text, report.failure())
}

fn measure(plan: &Plan, cluster: &mut Cluster) -> Result<FailoverReport> {
    let progress = Arc::new(Progress::default());
    let killed_at = Arc::new(OnceLock::new());
    let publisher_name = "bench-pub-0".to_string();
    let mut subscribers = Vec::new();
    for i in 0..plan.subscribers {
        let name = format!("bench-sub-{i}");
        let watch = {
            let (progress, killed_at) = (progress.clone(), killed_at.clone());
            let publisher = publisher_name.clone();
            move |events| watch(&events, &publisher, &progress, &killed_at)
        };
        subscribers.push(Member::start(cluster, DOOMED, &name, watch)?);
    }
    let publisher = Member::start(cluster, PUBLISHER_HOME, &publisher_name, |events| {
        events.iter().for_each(drop); // a publisher's own events are not checked
        Watch::default()
    })?;

    // The warm-up message: once every subscriber has it, every link is up.
    publisher.send("warm-up")?;
    let warm_up = plan.subscribers as u64;
    wait_for(&progress, warm_up, WARM_UP_TIMEOUT).map_err(|got| {
        Error::Failed(format!(
            "the warm-up message reached {got} of {warm_up} subscribers in {WARM_UP_TIMEOUT:?}"
        ))
    })?;

    let started = Instant::now();
    let interval = Duration::from_secs(1) / plan.pace.rate.unwrap_or(1_000).max(1) as u32;
    let kill_after = plan.messages / 3;
    let mut publish_error = None;
    for n in 1..=plan.messages {
        thread::sleep((started + interval * n as u32).saturating_duration_since(Instant::now()));
        if n == kill_after + 1 {
            let _ = killed_at.set(Instant::now());
            cluster.kill_server(DOOMED);
        }
        if let Err(e) = publisher.send(&format!("message {n}")) {
            publish_error = Some(e.to_string());
            break;
        }
    }
    if let Err(e) = publisher.finish().0 {
        publish_error.get_or_insert(e.to_string());
    }
    let expected = warm_up * (plan.messages + 1);
    show_progress(&progress, warm_up, expected, started);

    let mut report = FailoverReport {
        plan: plan.clone(),
        expected: expected - warm_up,
        watch: Watch::default(),
        moved: 0,
        moved_twice: 0,
        gaps: Histogram::default(),
        publish_error,
    };
    for subscriber in subscribers {
        let (result, watch) = subscriber.finish();
        if let Err(e) = result {
            report.watch.errors.push(e.to_string());
        }
        report.add(watch);
    }
    report.watch.delivered = report.watch.delivered.saturating_sub(warm_up);
    Ok(report)
}

impl Member {
    /// Registers `name` on the cluster's server `home` and starts its session and its
    /// watcher, which runs `watch` on the session's events.
    fn start(
        cluster: &Cluster,
        home: usize,
        name: &str,
        watch: impl FnOnce(Receiver<Event>) -> Watch + Send + 'static,
    ) -> Result<Member> {
        let (commands, commands_rx) = bounded(COMMAND_QUEUE);
        let (stop, stop_rx) = bounded(0);
        // Unbounded as in `dsys client`: the watcher never waits on the network.
        let (events_tx, events_rx) = unbounded();
        let config = SessionConfig {
            coordinator: cluster.coordinator.clone(),
            server: Some(cluster.servers[home].clone()),
            name: name.to_string(),
            download_dir: std::env::temp_dir(),
            max_file_size: 0,
            secret: None,
        };
        let session = session::start(config, commands_rx, events_tx, stop_rx)?;
        let watcher = thread::Builder::new()
            .name(format!("bench-watch-{name}"))
            .spawn(move || watch(events_rx))?;
        Ok(Member {
            commands,
            _stop: stop,
            session,
            watcher,
        })
    }

    fn send(&self, text: &str) -> Result<()> {
        self.commands
            .send(Command::Text(text.to_string()))
            .map_err(|_| Error::Failed("a bench session ended early".into()))
    }

    /// Ends its input, waits until everything it sent is acknowledged and it has left, and
    /// returns how the session ended and what its watcher saw.
    fn finish(self) -> (Result<()>, Watch) {
        drop(self.commands);
        let result = self
            .session
            .join()
            .unwrap_or_else(|_| Err(Error::Failed("a bench session panicked".into())));
        (result, self.watcher.join().unwrap_or_default())
    }
}

/// A subscriber's watcher: checks every message from `publisher`, once and in order, and
/// times the first one after a move from the kill. Ends when the session does.
fn watch(
    events: &Receiver<Event>,
    publisher: &str,
    progress: &Progress,
    killed_at: &OnceLock<Instant>,
) -> Watch {
    let mut seen = Watch::default();
    let mut last_seq = 0;
    let mut last_delivery: Option<Instant> = None;
    for event in events {
        match event {
            Event::Message { from, seq, .. } if from == publisher => {
                if seq <= last_seq {
                    seen.duplicated += 1;
                    continue;
                }
                if seq != last_seq + 1 {
                    seen.out_of_order += 1;
                }
                last_seq = seq;
                seen.delivered += 1;
                progress.delivered.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if let Some(last) = last_delivery.filter(|_| killed_at.get().is_none()) {
                    seen.calm.record(now - last);
                }
                last_delivery = Some(now);
                if seen.moves > 0 && seen.move_gap.is_none() {
                    seen.move_gap = killed_at.get().map(|kill| now - *kill);
                }
            }
            Event::Failover { .. } => seen.moves += 1,
            Event::Gap { missed, .. } => seen.missed += missed,
            Event::Error { message } => seen.errors.push(message),
            _ => {}
        }
    }
    seen
}

impl FailoverReport {
    /// Adds one subscriber's figures.
    fn add(&mut self, watch: Watch) {
        let total = &mut self.watch;
        total.delivered += watch.delivered;
        total.duplicated += watch.duplicated;
        total.out_of_order += watch.out_of_order;
        total.missed += watch.missed;
        total.errors.extend(watch.errors);
        total.calm.merge(&watch.calm);
        if watch.moves > 0 {
            self.moved += 1;
        }
        if watch.moves > 1 {
            self.moved_twice += 1;
        }
        if let Some(gap) = watch.move_gap {
            self.gaps.record(gap);
        }
    }

    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.watch.delivered)
    }

    /// Why the run does not count, if it does not.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = &self.publish_error {
            return Some(format!("the publisher stopped: {why}"));
        }
        let w = &self.watch;
        if self.lost() > 0 || w.duplicated > 0 || w.out_of_order > 0 || w.missed > 0 {
            return Some(format!(
                "{} deliveries lost, {} duplicated, {} out of order, {} reported missing",
                self.lost(),
                w.duplicated,
                w.out_of_order,
                w.missed
            ));
        }
        (self.moved < self.plan.subscribers).then(|| {
            format!(
                "{} of {} subscribers moved off the killed server",
                self.moved, self.plan.subscribers
            )
        })
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let plan = &self.plan;
        let mut lines = vec![format!(
            "dsys bench failover: 1 publisher at {} a second, {} subscribers on the server \
             killed after {} of {} messages, {} servers",
            plan.pace.rate.unwrap_or_default(),
            plan.subscribers,
            plan.messages / 3,
            plan.messages,
            plan.servers
        )];
        if let Some(why) = self.failure() {
            lines.push(format!("  FAILED: {why}"));
        } else {
            lines.push(format!(
                "  delivered {} of {}: nothing lost, duplicated or reordered",
                self.watch.delivered, self.expected
            ));
        }
        lines.push(format!(
            "  {} subscribers moved ({} more than once); move gap p50 {:.1?}, p99 {:.1?}, \
             max {:.1?}",
            self.moved,
            self.moved_twice,
            self.gaps.quantile(0.5),
            self.gaps.quantile(0.99),
            self.gaps.max()
        ));
        let calm = &self.watch.calm;
        lines.push(format!(
            "  before the kill, pauses between deliveries p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            calm.quantile(0.5),
            calm.quantile(0.99),
            calm.max()
        ));
        lines.extend(self.watch.errors.iter().map(|e| format!("  error: {e}")));
        lines.join("\n")
    }

    /// The report for scripts: one JSON object, times in microseconds.
    pub fn to_json(&self) -> String {
        let us = |d: Duration| d.as_micros() as u64;
        let mut object = Object::new()
            .str("load", "failover")
            .num("subscribers", self.plan.subscribers as u64)
            .num("servers", self.plan.servers as u64)
            .num("messages", self.plan.messages)
            .num("rate", self.plan.pace.rate.unwrap_or_default())
            .num("expected", self.expected)
            .num("delivered", self.watch.delivered)
            .num("lost", self.lost())
            .num("duplicated", self.watch.duplicated)
            .num("gaps", self.watch.out_of_order + self.watch.missed)
            .num("moved", self.moved as u64)
            .num("moved_twice", self.moved_twice as u64)
            .bool("ok", self.failure().is_none())
            .num("gap_p50_us", us(self.gaps.quantile(0.5)))
            .num("gap_p99_us", us(self.gaps.quantile(0.99)))
            .num("gap_max_us", us(self.gaps.max()))
            .num("calm_pause_p99_us", us(self.watch.calm.quantile(0.99)))
            .num("calm_pause_max_us", us(self.watch.calm.max()));
        if let Some(why) = self.failure() {
            object = object.str("failure", &why);
        }
        object.finish()
    }
}
