//! `dsys status`: asks the coordinator for its table of servers and prints it, as a table
//! for a human or as the JSON object of `CONTRACT.md`.
//!
//! One short-lived connection, no threads: connect, `StatusQuery`, the `StatusReport` in as
//! many parts as the client names need, print. How the report is cut into parts and joined
//! back is the protocol's (`protocol/status_report.rs`): the coordinator cuts it with
//! [`report_frames`](crate::protocol::report_frames), and [`query`] joins the parts with
//! [`join_report`].

use std::io::Write;
use std::time::Duration;

use crate::Output;
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::net;
use crate::protocol::{Message, Role, ServerInfo, join_report, read_message};
use crate::support::json;

/// How long `dsys status` waits for the coordinator before giving up with exit status 1.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Characters of client names the table shows on a server's line; beyond it the line ends
/// with how many more there are. A server may hold ten thousand clients: listing them all
/// on one line helps nobody, and `--clients` lists them one per line instead.
const NAMES_WIDTH: usize = 60;

/// How the text table shows client names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// A count per server and as many names as fit on its line.
    Summary,
    /// Every name, one per line under its server (`--clients`).
    All,
}

/// Asks the coordinator at `coordinator` for every server it knows.
///
/// # Errors
/// [`Error::Unreachable`] when the coordinator cannot be reached or does not answer (the
/// text says which); [`Error::Refused`] when it refuses (a missing secret);
/// [`Error::Protocol`] when it answers something else.
pub fn query(coordinator: &str, secret: Option<&Secret>) -> Result<Vec<ServerInfo>> {
    let mut stream = net::connect_as(coordinator, Role::Status, STATUS_TIMEOUT, secret)
        .map_err(|e| net::unreachable("coordinator", coordinator, e))?;
    let mut reply = net::request(&mut stream, &Message::StatusQuery)
        .map_err(|e| net::unreachable("coordinator", coordinator, e))?;
    let mut servers = Vec::new();
    while join_report(&mut servers, reply)? {
        reply = read_message(&mut stream)
            .map_err(|e| net::unreachable("coordinator", coordinator, e))?
            .ok_or_else(|| {
                Error::Protocol("the status report ended before its last part".into())
            })?;
    }
    Ok(servers)
}

/// What `dsys status` asks and how it prints it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The coordinator's address (`HOST:PORT`).
    pub coordinator: String,
    /// A table or the JSON object.
    pub output: Output,
    /// How the table shows client names (JSON always lists them all).
    pub names: Names,
    /// The cluster secret, when there is one.
    pub secret: Option<Secret>,
}

/// `dsys status`: prints the table (text) or one JSON object (json) on stdout.
///
/// # Errors
/// As [`query`].
pub fn run(config: &Config) -> Result<()> {
    let servers = query(&config.coordinator, config.secret.as_ref())?;
    let text = match config.output {
        Output::Json => format!("{}\n", to_json(&servers)),
        Output::Text => to_table(&servers, config.names),
    };
    // Not `print!`, which panics when stdout is a closed pipe.
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Failed(format!("cannot write the status to stdout: {e}")))
}

/// A server's state in a word: `alive`, `leaving` (a planned stop: moving its clients away;
/// still alive), `left` (it stopped on purpose) or `dead` (declared dead).
pub fn state(server: &ServerInfo) -> &'static str {
    match (server.alive, server.leaving) {
        (true, false) => "alive",
        (true, true) => "leaving",
        (false, true) => "left",
        (false, false) => "dead",
    }
}

/// The contract's object: `{"servers":[{"addr":..,"alive":..,"clients":[..]}, ...]}`, with
/// each server's [`state`] too.
pub fn to_json(servers: &[ServerInfo]) -> String {
    let rows = servers.iter().map(|s| {
        json::Object::new()
            .str("addr", &s.addr)
            .bool("alive", s.alive)
            .str("state", state(s))
            .num("epoch", s.epoch)
            .raw(
                "clients",
                &json::array(s.clients.iter().map(|c| json::string(c))),
            )
            .finish()
    });
    json::Object::new()
        .raw("servers", &json::array(rows))
        .finish()
}

/// A table for a human, one server a line: its address, state, client count and the
/// names that fit in [`NAMES_WIDTH`]; with [`Names::All`], every name follows on its own
/// line.
pub fn to_table(servers: &[ServerInfo], names: Names) -> String {
    if servers.is_empty() {
        return "no servers known to the coordinator yet\n".to_string();
    }
    let mut out = format!("{:<22} {:<7} {:>7}  CLIENTS\n", "SERVER", "STATE", "COUNT");
    for s in servers {
        let mut sorted = s.clients.clone();
        sorted.sort();
        let shown = match names {
            Names::Summary => names_that_fit(&sorted),
            Names::All => String::new(),
        };
        out.push_str(&format!(
            "{:<22} {:<7} {:>7}  {shown}\n",
            s.addr,
            state(s),
            s.clients.len(),
        ));
        if names == Names::All {
            for name in &sorted {
                out.push_str(&format!("    {name}\n"));
            }
        }
    }
    out.push_str(&spread_line(servers));
    out
}

/// How evenly the live servers share the clients, in one line: the counts, and whether
/// they differ by more than the one that rebalancing leaves (guarantee 7). A leaving server
/// is left out: its clients are on their way elsewhere.
fn spread_line(servers: &[ServerInfo]) -> String {
    let counts: Vec<usize> = servers
        .iter()
        .filter(|s| s.alive && !s.leaving)
        .map(|s| s.clients.len())
        .collect();
    let (Some(&fewest), Some(&most)) = (counts.iter().min(), counts.iter().max()) else {
        return "spread: no live server\n".to_string();
    };
    let shown: Vec<String> = counts.iter().map(usize::to_string).collect();
    let verdict = if most - fewest <= 1 {
        "even".to_string()
    } else {
        format!(
            "uneven by {}: clients are being moved, a few at a time (unless the coordinator \
             runs with --no-rebalance)",
            most - fewest
        )
    };
    format!(
        "spread: {} over {} live server(s), {verdict}\n",
        shown.join("/"),
        counts.len()
    )
}

/// The names, comma-separated, as many as fit in [`NAMES_WIDTH`], then how many are left.
fn names_that_fit(sorted: &[String]) -> String {
    let mut line = String::new();
    for (shown, name) in sorted.iter().enumerate() {
        let separator = if line.is_empty() { "" } else { ", " };
        if line.len() + separator.len() + name.len() > NAMES_WIDTH {
            let more = sorted.len() - shown;
            return format!("{line}, ... ({more} more; --clients lists all)");
        }
        line.push_str(separator);
        line.push_str(name);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(clients: usize) -> ServerInfo {
        ServerInfo {
            addr: "127.0.0.1:8080".into(),
            epoch: 1,
            alive: true,
            leaving: false,
            clients: (0..clients).map(|i| format!("client-{i:05}")).collect(),
        }
    }

    #[test]
    fn a_few_clients_are_named_on_their_server_line() {
        let table = to_table(&[server(3)], Names::Summary);
        assert!(table.contains("      3  client-00000, client-00001, client-00002\n"));
    }

    #[test]
    fn thousands_of_clients_keep_the_line_short_and_say_how_many_more() {
        let table = to_table(&[server(10_000)], Names::Summary);
        let line = table.lines().nth(1).expect("a server line");
        assert!(line.len() < 150, "{line}");
        assert!(line.contains("  10000  client-00000, "), "{line}");
        assert!(line.ends_with("more; --clients lists all)"), "{line}");
    }

    #[test]
    fn clients_flag_lists_every_name_on_its_own_line() {
        let table = to_table(&[server(1_000)], Names::All);
        assert_eq!(
            table.lines().count(),
            2 + 1_000 + 1,
            "header, server, names, spread"
        );
        assert!(table.contains("\n    client-00999\n"));
    }

    #[test]
    fn the_last_line_says_how_evenly_the_live_servers_share_the_clients() {
        let dead = ServerInfo {
            alive: false,
            ..server(0)
        };
        let even = to_table(&[server(4), server(3), dead.clone()], Names::Summary);
        assert!(
            even.ends_with("spread: 4/3 over 2 live server(s), even\n"),
            "{even}"
        );
        let uneven = to_table(&[server(6), server(6), server(0)], Names::Summary);
        assert!(
            uneven.contains("spread: 6/6/0 over 3 live server(s), uneven by 6"),
            "{uneven}"
        );
        let none = to_table(&[dead], Names::Summary);
        assert!(none.ends_with("spread: no live server\n"), "{none}");
    }
}
