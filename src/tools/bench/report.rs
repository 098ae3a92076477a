//! What a bench run measured, and how it is printed: a few lines of text for people, one
//! JSON object for scripts (`--output json`). A run that lost, duplicated or reordered
//! anything prints those counts and no throughput: a fast run that loses is not a result.

use std::time::Duration;

use super::{Load, Plan};
use crate::error::{Error, Result};
use crate::support::histogram::Histogram;
use crate::support::json::Object;

/// Prints a load's report (its `text`, already rendered as `--output` asks), then turns
/// what went wrong, if anything, into [`Error::Failed`] (exit status 1). The figures come
/// first, so that a failed run still shows them. Every load ends here.
pub fn print_report(text: &str, failure: Option<String>) -> Result<()> {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    match failure {
        Some(why) => Err(Error::Failed(why)),
        None => Ok(()),
    }
}

/// The figures of one run. Warm-up messages are not counted.
pub struct Report {
    /// The load that ran.
    pub plan: Plan,
    /// Deliveries that should have happened.
    pub expected: u64,
    /// Deliveries that happened, each in order and once.
    pub delivered: u64,
    /// Deliveries of a message the receiver already had.
    pub duplicated: u64,
    /// Times a receiver saw a sender's `seq` jump ahead (messages missing or out of order).
    pub gaps: u64,
    /// From the start signal to the last delivery.
    pub elapsed: Duration,
    /// From each message's send time to its delivery.
    pub latency: Histogram,
    /// CPU time the servers used while the load ran (when the bench started them).
    pub server_cpu: Option<Duration>,
    /// Why a publisher stopped early, if one did.
    pub publish_error: Option<String>,
}

impl Report {
    /// Deliveries that did not happen.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Why the run does not count, if it does not.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = &self.publish_error {
            return Some(format!("a publisher stopped: {why}"));
        }
        (self.lost() > 0 || self.duplicated > 0 || self.gaps > 0).then(|| {
            format!(
                "{} deliveries lost, {} duplicated, {} gaps in a sender's order",
                self.lost(),
                self.duplicated,
                self.gaps
            )
        })
    }

    /// Deliveries a second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload bytes delivered a second, in MiB.
    fn mib_per_second(&self) -> f64 {
        self.rate() * self.plan.pace.size as f64 / (1024.0 * 1024.0)
    }

    /// The servers' CPU time per delivery, and their CPU use in cores.
    fn cpu(&self) -> Option<(Duration, f64)> {
        let cpu = self.server_cpu?;
        let per_delivery = cpu.as_secs_f64() / self.delivered.max(1) as f64;
        let cores = cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9);
        Some((Duration::from_secs_f64(per_delivery), cores))
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let plan = &self.plan;
        let mut lines = vec![format!(
            "dsys bench {}: {} publisher(s) and {} more subscriber(s) on {} server(s), \
             {} messages of {} bytes per publisher{}",
            load_name(plan.load),
            plan.publishers,
            plan.subscribers,
            plan.servers,
            plan.messages,
            plan.pace.size,
            plan.pace
                .rate
                .map_or(String::new(), |r| format!(" at {r} a second")),
        )];
        if let Some(why) = self.failure() {
            lines.push(format!("  FAILED: {why}"));
            lines.push(format!(
                "  delivered {} of {}",
                self.delivered, self.expected
            ));
            return lines.join("\n");
        }
        lines.push(format!(
            "  delivered {} in {:.2} s: {:.0} msgs/s, {:.1} MiB/s; nothing lost, duplicated \
             or reordered",
            self.delivered,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.mib_per_second()
        ));
        let q = |q: f64| format!("{:.2?}", self.latency.quantile(q));
        lines.push(format!(
            "  latency p50 {}, p99 {}, p99.9 {}, max {:.2?}",
            q(0.5),
            q(0.99),
            q(0.999),
            self.latency.max()
        ));
        if let Some((per_delivery, cores)) = self.cpu() {
            lines.push(format!(
                "  servers' CPU {cores:.2} cores, {per_delivery:.0?} per delivery"
            ));
        }
        lines.extend(
            self.latency
                .bars()
                .into_iter()
                .map(|bar| format!("  {bar}")),
        );
        lines.join("\n")
    }

    /// The report for scripts: one JSON object. Times are in microseconds (latency) and
    /// nanoseconds (CPU per delivery).
    pub fn to_json(&self) -> String {
        let plan = &self.plan;
        let us = |d: Duration| d.as_micros() as u64;
        let mut object = Object::new()
            .str("load", load_name(plan.load))
            .num("publishers", plan.publishers as u64)
            .num("subscribers", plan.subscribers as u64)
            .num("servers", plan.servers as u64)
            .num("size", plan.pace.size as u64)
            .num("messages", plan.messages)
            .num("expected", self.expected)
            .num("delivered", self.delivered)
            .num("lost", self.lost())
            .num("duplicated", self.duplicated)
            .num("gaps", self.gaps)
            .bool("ok", self.failure().is_none())
            .raw("elapsed_s", &format!("{:.4}", self.elapsed.as_secs_f64()))
            .raw("msgs_per_s", &format!("{:.0}", self.rate()))
            .raw("mib_per_s", &format!("{:.2}", self.mib_per_second()))
            .num("p50_us", us(self.latency.quantile(0.5)))
            .num("p99_us", us(self.latency.quantile(0.99)))
            .num("p999_us", us(self.latency.quantile(0.999)))
            .num("max_us", us(self.latency.max()));
        if let Some(rate) = plan.pace.rate {
            object = object.num("rate", rate);
        }
        if let Some((per_delivery, cores)) = self.cpu() {
            object = object
                .num("server_cpu_ns_per_delivery", per_delivery.as_nanos() as u64)
                .raw("server_cpu_cores", &format!("{cores:.3}"));
        }
        if let Some(why) = self.failure() {
            object = object.str("failure", &why);
        }
        object.finish()
    }
}

/// The load's name in `docs/benchmarks.md`.
pub fn load_name(load: Load) -> &'static str {
    match load {
        Load::S1 => "S1",
        Load::S2w => "S2w",
        Load::S3 => "S3",
        Load::S4a => "S4a",
        Load::Failover => "failover",
        Load::Storm => "storm",
    }
}
