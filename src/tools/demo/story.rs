//! What the demo watches and counts: the [`Story`] of client events and the coordinator's
//! log lines, which it narrates as they come and sums up at the end.
//!
//! **Threads.** None of its own: the demo's main thread waits on the [`Story`]'s channels.
//! The other ends are held by the `events-<client>` threads (each client's events, tagged
//! with its name) and the `log-<child>` threads (the children's story lines, chosen by
//! [`is_story_line`]). Every wait ends at [`STEP_TIMEOUT`] or on Ctrl-C (the stop channel),
//! with an error that says what did not happen.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crossbeam_channel::{Receiver, select};

use super::STEP_TIMEOUT;
use crate::error::{Error, Result};
use crate::roles::client::Event;

/// What the demo waits on: client events, the interesting log lines of the children, and
/// the stop signal.
pub(super) struct Story {
    pub(super) events_rx: Receiver<(String, Event)>,
    pub(super) narration_rx: Receiver<String>,
    pub(super) stop_rx: Receiver<()>,
    /// Every text delivery seen: (receiver, sender, seq).
    pub(super) delivered: Vec<(String, String, u64)>,
    pub(super) failovers: Vec<(String, String, String)>,
    /// Every `moved` event (rebalancing): (client, from, to).
    pub(super) moves: Vec<(String, String, String)>,
    /// The source of every `redistribution plan` line the coordinator printed.
    pub(super) plans: Vec<String>,
}

/// The coordinator's log lines that tell the story of a failure.
fn is_story_line(line: &str) -> bool {
    [
        "server up",
        "unreachable",
        "heartbeat missed",
        "declared dead",
        "redistribution plan",
        "rebalance plan",
    ]
    .iter()
    .any(|needle| line.contains(needle))
}

/// A child's log line as the demo narrates it (without its prefix), if it is a story line.
pub(super) fn story_line(line: &str) -> Option<String> {
    is_story_line(line).then(|| strip_log_prefix(line))
}

/// `[time LEVEL module] text` → `text`.
fn strip_log_prefix(line: &str) -> String {
    line.split_once("] ")
        .map_or(line, |(_, text)| text)
        .to_string()
}

impl Story {
    /// The next client event, printing children's story lines meanwhile.
    pub(super) fn next_event(&mut self) -> Result<(String, Event)> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            select! {
                recv(self.events_rx) -> event => {
                    let event = event.map_err(|_| Error::Failed("clients ended".into()))?;
                    return Ok(event);
                }
                recv(self.narration_rx) -> line => {
                    if let Ok(line) = line {
                        self.narrate(line);
                    }
                }
                recv(self.stop_rx) -> _ => {
                    return Err(Error::Failed("interrupted".into()));
                }
                default(deadline.saturating_duration_since(Instant::now())) => {
                    return Err(Error::Failed("the demo timed out waiting".into()));
                }
            }
        }
    }

    /// Prints story lines until `count` of them satisfy `matches`.
    pub(super) fn narrate_until(
        &mut self,
        matches: impl Fn(&str) -> bool,
        count: usize,
    ) -> Result<()> {
        let mut seen = 0;
        let deadline = Instant::now() + STEP_TIMEOUT;
        while seen < count {
            select! {
                recv(self.narration_rx) -> line => {
                    let line = line.map_err(|_| Error::Failed("children ended".into()))?;
                    if matches(&line) {
                        seen += 1;
                    }
                    self.narrate(line);
                }
                recv(self.stop_rx) -> _ => return Err(Error::Failed("interrupted".into())),
                default(deadline.saturating_duration_since(Instant::now())) => {
                    return Err(Error::Failed("servers did not come up".into()));
                }
            }
        }
        Ok(())
    }

    pub(super) fn narrate_pending(&mut self) {
        while let Ok(line) = self.narration_rx.try_recv() {
            self.narrate(line);
        }
    }

    /// Prints one of the coordinator's story lines, noting a redistribution plan.
    pub(super) fn narrate(&mut self, line: String) {
        say!("      coordinator: {line}");
        if line.contains("redistribution plan") {
            self.plans.push(line);
        }
    }

    /// Waits until the coordinator has printed its redistribution plan for `server`.
    ///
    /// # Errors
    /// When it does not within [`STEP_TIMEOUT`]: the demo exists to show it.
    pub(super) fn wait_for_plan(&mut self, server: &str) -> Result<()> {
        let from = format!("from={server} ");
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !self.plans.iter().any(|plan| plan.contains(&from)) {
            select! {
                recv(self.narration_rx) -> line => match line {
                    Ok(line) => self.narrate(line),
                    Err(_) => break, // every child has ended: no plan can come
                },
                recv(self.stop_rx) -> _ => return Err(Error::Failed("interrupted".into())),
                default(deadline.saturating_duration_since(Instant::now())) => break,
            }
        }
        if self.plans.iter().any(|plan| plan.contains(&from)) {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "the coordinator printed no redistribution plan for {server}"
            )))
        }
    }

    pub(super) fn record(&mut self, receiver: String, event: Event) {
        match event {
            Event::Message { from, seq, .. } => self.delivered.push((receiver, from, seq)),
            Event::Failover { from, to } => {
                say!("      {receiver:<6} failover: {from} -> {to}");
                self.failovers.push((receiver, from, to));
            }
            Event::Moved { from, to } => {
                say!("      {receiver:<6} moved: {from} -> {to} (rebalancing)");
                self.moves.push((receiver, from, to));
            }
            Event::Gap { from, missed } => {
                say!("      {receiver:<6} gap: {missed} messages from {from} lost");
            }
            Event::Error { message } => say!("      {receiver:<6} error: {message}"),
            _ => {}
        }
    }

    pub(super) fn wait_for_deliveries(&mut self, total: usize) -> Result<()> {
        while self.delivered.len() < total {
            let (receiver, event) = self.next_event()?;
            self.record(receiver, event);
        }
        Ok(())
    }

    pub(super) fn wait_for_failovers(&mut self, total: usize) -> Result<()> {
        while self.failovers.len() < total {
            let (receiver, event) = self.next_event()?;
            self.record(receiver, event);
        }
        Ok(())
    }

    pub(super) fn wait_for_moves(&mut self, total: usize) -> Result<()> {
        while self.moves.len() < total {
            let (receiver, event) = self.next_event()?;
            self.record(receiver, event);
        }
        Ok(())
    }

    pub(super) fn duplicates(&self) -> usize {
        let unique: HashSet<&(String, String, u64)> = self.delivered.iter().collect();
        self.delivered.len() - unique.len()
    }

    /// Deliveries that did not follow the previous one from the same sender to the same
    /// receiver by exactly one `seq`.
    pub(super) fn out_of_order(&self) -> usize {
        let mut last: HashMap<(&str, &str), u64> = HashMap::new();
        let mut wrong = 0;
        for (receiver, sender, seq) in &self.delivered {
            let previous = last.insert((receiver.as_str(), sender.as_str()), *seq);
            if previous.is_some_and(|p| p + 1 != *seq) {
                wrong += 1;
            }
        }
        wrong
    }

    pub(super) fn lost_or_duplicated(&self, expected: usize) -> bool {
        self.duplicates() > 0 || self.out_of_order() > 0 || self.delivered.len() < expected
    }

    pub(super) fn summary(&self, sent: usize, expected: usize) -> String {
        let duplicated = self.duplicates();
        let unique = self.delivered.len() - duplicated;
        let mut targets: HashMap<&str, usize> = HashMap::new();
        for (_, _, to) in &self.failovers {
            *targets.entry(to.as_str()).or_default() += 1;
        }
        let mut spread: Vec<String> = targets.iter().map(|(s, n)| format!("{n} to {s}")).collect();
        spread.sort();
        format!(
            "Summary: sent {sent} messages; delivered {unique} of {expected} expected; \
             lost {}; duplicated {duplicated}; out of order {}.\n\
             One server killed; {} clients failed over ({}). It came back; {} clients \
             moved back to it.",
            expected.saturating_sub(unique),
            self.out_of_order(),
            self.failovers.len(),
            spread.join(", "),
            self.moves.len()
        )
    }
}
