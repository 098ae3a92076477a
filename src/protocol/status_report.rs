//! The status reply, cut into frames and joined back: a coordinator may know ten thousand
//! client names, more than one frame may carry, so a `StatusReport` goes in as many parts
//! as the names need, each with `more` set but the last.
//!
//! Both sides are here, so they can be read against each other: the coordinator cuts its
//! table with [`report_frames`]; whoever asked (`dsys status`, and a client on `--server`
//! checking that a coordinator runs) joins the parts with [`join_report`]. Pure functions,
//! no I/O: the caller reads and writes the frames. The bytes: `docs/protocol.md`, section 6.5.

use super::{MAX_FRAME_LEN, Message, ServerInfo};
use crate::error::{Error, Result};

/// The bytes of client names one `StatusReport` frame carries at most: half the frame cap,
/// which leaves ample room for the addresses and the framing around them.
const REPORT_PART_BYTES: usize = MAX_FRAME_LEN as usize / 2;

/// The coordinator's side: `servers` as `StatusReport` frames that each fit the frame cap.
/// Servers go in order; one whose names would overflow the current frame is cut, and the
/// rest of its names start the next frame under the same address and epoch, which
/// [`join_report`] puts back together. The last frame says `more: false`.
pub fn report_frames(servers: Vec<ServerInfo>) -> Vec<Message> {
    // What an entry costs besides its names: its address, epoch, flags and list count.
    const ENTRY_BYTES: usize = 17;
    let mut parts: Vec<Vec<ServerInfo>> = vec![Vec::new()];
    let mut bytes = 0;
    for server in servers {
        let ServerInfo {
            addr,
            epoch,
            alive,
            leaving,
            clients,
        } = server;
        let entry = |clients| ServerInfo {
            addr: addr.clone(),
            epoch,
            alive,
            leaving,
            clients,
        };
        bytes += addr.len() + ENTRY_BYTES;
        let mut names = Vec::new();
        for name in clients {
            let cost = name.len() + 2;
            if bytes + cost > REPORT_PART_BYTES {
                // This frame is full: it ends with the names of this server so far.
                let current = parts.last_mut().expect("parts starts with one");
                current.push(entry(std::mem::take(&mut names)));
                parts.push(Vec::new());
                bytes = addr.len() + ENTRY_BYTES;
            }
            bytes += cost;
            names.push(name);
        }
        parts
            .last_mut()
            .expect("parts starts with one")
            .push(entry(names));
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, servers)| Message::StatusReport {
            servers,
            more: i < last,
        })
        .collect()
}

/// The asking side: adds one reply of a status report to the parts that came before, and
/// says whether more parts follow. A server that continues from the previous part (the same
/// address and epoch) gets the rest of its names.
///
/// # Errors
/// [`Error::Protocol`] when `reply` is not a `StatusReport`.
pub fn join_report(servers: &mut Vec<ServerInfo>, reply: Message) -> Result<bool> {
    let Message::StatusReport {
        servers: part,
        more,
    } = reply
    else {
        return Err(Error::Protocol(format!(
            "expected StatusReport, got {}",
            reply.kind()
        )));
    };
    for server in part {
        match servers.last_mut() {
            Some(last) if last.addr == server.addr && last.epoch == server.epoch => {
                last.clients.extend(server.clients);
            }
            _ => servers.push(server),
        }
    }
    Ok(more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_too_large_for_one_frame_goes_in_parts_that_join_back_whole() {
        let names = |server: usize| -> Vec<String> {
            (0..10_000)
                .map(|i| {
                    format!("server{server}-client-{i:05}-padded-to-32-bytes")[..32].to_string()
                })
                .collect()
        };
        let servers: Vec<ServerInfo> = (0..4)
            .map(|i| ServerInfo {
                addr: format!("127.0.0.1:{}", 8080 + i),
                epoch: i as u64 + 1,
                alive: i != 2,
                leaving: i == 3,
                clients: names(i),
            })
            .collect();
        let frames = report_frames(servers.clone());
        assert!(frames.len() > 1, "1.3 MB of names cannot go in one frame");
        let mut joined = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let encoded = frame.encode();
            assert!(
                encoded.len() <= MAX_FRAME_LEN as usize,
                "part {i} is too large"
            );
            let more = join_report(&mut joined, Message::decode(&encoded[4..]).unwrap())
                .unwrap_or_else(|e| panic!("part {i}: {e}"));
            assert_eq!(
                more,
                i + 1 < frames.len(),
                "only the last part says no more"
            );
        }
        assert_eq!(joined, servers);
    }

    #[test]
    fn a_small_report_is_one_frame() {
        let servers = vec![ServerInfo {
            addr: "127.0.0.1:8080".into(),
            epoch: 1,
            alive: true,
            leaving: false,
            clients: vec!["alice".into(), "bob".into()],
        }];
        let frames = report_frames(servers.clone());
        assert_eq!(
            frames,
            vec![Message::StatusReport {
                servers,
                more: false
            }]
        );
        assert_eq!(
            report_frames(Vec::new()).len(),
            1,
            "no servers is one empty report"
        );
    }
}
