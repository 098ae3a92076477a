//! The figures of one run of the lean generator ([`Figures`], from its [`Outcome`]), and how
//! the benches print them: one line per run, then Markdown tables of medians and of
//! dsys's ratios to each other system.
//!
//! A run that lost, duplicated or reordered anything, or whose publisher stopped, is not
//! clean: its line shows what went wrong and no rate, and the medians leave it out; the
//! table counts its losses. Pure formatting: no thread, no socket.

use crate::lean::Outcome;

/// What one run measured.
#[derive(Clone, Default)]
pub struct Figures {
    /// Deliveries a second, from the start signal to the last delivery.
    pub rate: f64,
    /// Latency quantiles, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The broker's (or dsys servers') CPU time per delivery, nanoseconds.
    pub cpu_ns: f64,
    /// The same CPU time over the measured window: cores kept busy.
    pub cores: f64,
    /// The generator's own CPU time per delivery, nanoseconds.
    pub generator_ns: f64,
    pub lost: u64,
    pub duplicated: u64,
    /// Times a receiver saw a publisher's `seq` jump ahead, or a payload that did not
    /// read back.
    pub reordered: u64,
    /// Subscribers the broker disconnected during the run.
    pub cut_off: usize,
    /// Why the publisher stopped early, if it did.
    pub failure: Option<String>,
}

impl Figures {
    /// The figures of one run.
    pub fn from_outcome(outcome: &Outcome) -> Figures {
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        let cpu = outcome.server_cpu.as_secs_f64();
        let deliveries = outcome.delivered.max(1) as f64;
        let us = |q: f64| outcome.latency.quantile(q).as_secs_f64() * 1e6;
        Figures {
            rate: outcome.delivered as f64 / secs,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            cpu_ns: cpu * 1e9 / deliveries,
            cores: cpu / secs,
            generator_ns: outcome.generator_cpu.as_secs_f64() * 1e9 / deliveries,
            lost: outcome.lost(),
            duplicated: outcome.duplicated,
            reordered: outcome.jumps + outcome.corrupt,
            cut_off: outcome.cut_off,
            failure: outcome.publish_error.clone(),
        }
    }

    /// Whether everything arrived, once and in order.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.failure.is_none()
    }

    /// One line for people.
    pub fn line(&self) -> String {
        if !self.clean() {
            let mut line = format!(
                "NOT VALID: lost {}, duplicated {}, reordered {}",
                self.lost, self.duplicated, self.reordered
            );
            if self.cut_off > 0 {
                line += &format!(", {} subscribers disconnected by the broker", self.cut_off);
            }
            if let Some(why) = &self.failure {
                line += &format!(", {why}");
            }
            return line;
        }
        format!(
            "{:>9.0}/s  p50 / p99 / p99.9 {}  server {:.0} ns/delivery, {:.2} cores; generator {:.0} ns/delivery",
            self.rate,
            latencies(self),
            self.cpu_ns,
            self.cores,
            self.generator_ns
        )
    }
}

/// Medians over a system's runs of one load: of the clean runs only, each figure taken
/// separately; `None` when no run was clean. Also the runs' losses, all of them.
pub struct Summary {
    pub median: Option<Figures>,
    pub clean_runs: usize,
    pub runs: usize,
    pub lost: u64,
}

impl Summary {
    pub fn of(runs: &[Figures]) -> Summary {
        let clean: Vec<&Figures> = runs.iter().filter(|f| f.clean()).collect();
        let median = |pick: fn(&Figures) -> f64| {
            let mut values: Vec<f64> = clean.iter().map(|f| pick(f)).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Summary {
            median: (!clean.is_empty()).then(|| Figures {
                rate: median(|f| f.rate),
                p50_us: median(|f| f.p50_us),
                p99_us: median(|f| f.p99_us),
                p999_us: median(|f| f.p999_us),
                cpu_ns: median(|f| f.cpu_ns),
                cores: median(|f| f.cores),
                generator_ns: median(|f| f.generator_ns),
                ..Figures::default()
            }),
            clean_runs: clean.len(),
            runs: runs.len(),
            lost: runs
                .iter()
                .map(|f| f.lost + f.duplicated + f.reordered)
                .sum(),
        }
    }
}

/// `p50 / p99 / p99.9` in milliseconds.
fn latencies(f: &Figures) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms",
        f.p50_us / 1e3,
        f.p99_us / 1e3,
        f.p999_us / 1e3
    )
}

/// A load's name as `docs/benchmarks.md` writes it: `s4a` is S4a.
fn title(load: &str) -> String {
    load[..1].to_uppercase() + &load[1..]
}

/// The table of medians: one row per load and system.
pub fn print_medians(rows: &[(&str, &str, Summary)]) {
    println!(
        "\n| load | system | clean runs | deliveries/s | p50 / p99 / p99.9 | server CPU ns/delivery | server cores | generator CPU ns/delivery | lost, duplicated or reordered (all runs) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (load, system, summary) in rows {
        let figures = match &summary.median {
            Some(m) => format!(
                "{:.0} | {} | {:.0} | {:.2} | {:.0}",
                m.rate,
                latencies(m),
                m.cpu_ns,
                m.cores,
                m.generator_ns
            ),
            None => "no clean run | - | - | - | -".to_string(),
        };
        println!(
            "| {} | {system} | {}/{} | {figures} | {} |",
            title(load),
            summary.clean_runs,
            summary.runs,
            summary.lost
        );
    }
}

/// The table of dsys's ratios to each broker, from the medians of the same sitting: above
/// 1 means dsys has more of it (for the rate, better; for latency and CPU, worse).
pub fn print_ratios(rows: &[(&str, &str, Summary)]) {
    println!(
        "\n| load | vs | dsys / it, deliveries/s | dsys / it, p50 | dsys / it, p99 | dsys / it, p99.9 | dsys / it, CPU per delivery |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (load, system, summary) in rows.iter().filter(|(_, s, _)| *s != "dsys") {
        let dsys = rows
            .iter()
            .find(|(l, s, _)| l == load && *s == "dsys")
            .and_then(|(_, _, d)| d.median.as_ref());
        let ratio = |pick: fn(&Figures) -> f64| match (dsys, &summary.median) {
            (Some(d), Some(it)) if pick(it) > 0.0 => format!("{:.2}", pick(d) / pick(it)),
            _ => "-".to_string(),
        };
        println!(
            "| {} | {system} | {} | {} | {} | {} | {} |",
            title(load),
            ratio(|f| f.rate),
            ratio(|f| f.p50_us),
            ratio(|f| f.p99_us),
            ratio(|f| f.p999_us),
            ratio(|f| f.cpu_ns)
        );
    }
}
