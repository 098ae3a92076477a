//! `dsys status`: asks the coordinator for its table of servers and prints it, as a table
//! for a human or as the JSON object of `CONTRACT.md`.
//!
//! One short-lived connection, no threads: connect, `StatusQuery`, `StatusReport`, print.

use std::time::Duration;

use crate::Output;
use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::json;
use crate::net;
use crate::protocol::{Message, Role, ServerInfo};

/// How long `dsys status` waits for the coordinator before giving up with exit status 1.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the coordinator at `coordinator` for every server it knows.
///
/// # Errors
/// [`Error::NoLiveServer`] when the coordinator cannot be reached; [`Error::Protocol`]
/// when it answers something else.
pub fn query(coordinator: &str, secret: Option<&Secret>) -> Result<Vec<ServerInfo>> {
    let mut stream = net::connect_as(coordinator, Role::Status, STATUS_TIMEOUT, secret)
        .map_err(|e| net::coordinator_unreachable(coordinator, e))?;
    let reply = net::request(&mut stream, &Message::StatusQuery)
        .map_err(|e| net::coordinator_unreachable(coordinator, e))?;
    match reply {
        Message::StatusReport { servers } => Ok(servers),
        other => Err(Error::Protocol(format!(
            "expected StatusReport, got {}",
            other.kind()
        ))),
    }
}

/// `dsys status`: prints the table (text) or one JSON object (json) on stdout.
///
/// # Errors
/// As [`query`].
pub fn run(coordinator: &str, output: Output, secret: Option<&Secret>) -> Result<()> {
    let servers = query(coordinator, secret)?;
    match output {
        Output::Json => println!("{}", to_json(&servers)),
        Output::Text => print!("{}", to_table(&servers)),
    }
    Ok(())
}

/// The contract's object: `{"servers":[{"addr":..,"alive":..,"clients":[..]}, ...]}`.
pub fn to_json(servers: &[ServerInfo]) -> String {
    let rows = servers.iter().map(|s| {
        json::Object::new()
            .str("addr", &s.addr)
            .bool("alive", s.alive)
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

/// A table for a human, one server a line.
pub fn to_table(servers: &[ServerInfo]) -> String {
    if servers.is_empty() {
        return "no servers known to the coordinator yet\n".to_string();
    }
    let mut out = format!("{:<22} {:<6} {:>7}  CLIENTS\n", "SERVER", "STATE", "COUNT");
    for s in servers {
        let mut names = s.clients.clone();
        names.sort();
        out.push_str(&format!(
            "{:<22} {:<6} {:>7}  {}\n",
            s.addr,
            if s.alive { "alive" } else { "dead" },
            s.clients.len(),
            names.join(", ")
        ));
    }
    out
}
