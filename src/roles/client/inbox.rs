//! What a client receives: each sender's messages exactly once and in that sender's order,
//! every loss reported as a gap, files put together chunk by chunk and checked.
//!
//! **Who calls it.** The session thread: [`Inbox::deliver`] for each `Deliver` frame (it
//! passes on the events returned), [`Inbox::start_after`] at its first registration and
//! [`Inbox::seen`] when it resumes on another server. No thread and no socket here; the only
//! I/O is the download directory, through [`files::Incoming`].
//!
//! **When frames go missing** (a `seq` skipped: after a failover, no live server still held
//! them), a file in progress from that sender cannot be whole: it is dropped (its temporary
//! file deleted) and counts as one missed message. Missing texts show as a jump in the
//! message numbers at the next message from that sender.
//!
//! **How it stops.** Nothing to stop: dropping the inbox drops the files still incoming, and
//! each deletes its temporary file. The rest: docs/guarantees.md, "1. Exactly once, in order".

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::{Event, files};
use crate::protocol::Body;

/// The receiving side of a session, owned by the session thread.
pub(super) struct Inbox {
    /// Where received files are saved.
    download_dir: PathBuf,
    /// For each sender session, the highest `seq` delivered. A repeat is dropped. On
    /// failover the map is sent to the new server ([`Inbox::seen`]), which replays what is
    /// missing from its history window.
    seen: HashMap<u64, u64>,
    /// For each sender session, the last message number delivered (the `seq` of the
    /// events). A jump in it is reported as a `gap` event with the count.
    numbers: HashMap<u64, u64>,
    /// The file being received from each sender session; its chunks go straight into a
    /// temporary file.
    incoming: HashMap<u64, files::Incoming>,
    /// Sender sessions whose frames went missing since their last `FileStart`: a `FileEnd`
    /// without a file from them is a lost file, not one that started before we registered.
    damaged: HashSet<u64>,
}

impl Inbox {
    /// An inbox that has received nothing yet and saves files into `download_dir`.
    pub(super) fn new(download_dir: PathBuf) -> Inbox {
        Inbox {
            download_dir,
            seen: HashMap::new(),
            numbers: HashMap::new(),
            incoming: HashMap::new(),
            damaged: HashSet::new(),
        }
    }

    /// For each sender session, the highest `seq` delivered: what a resume tells the new
    /// server, so that it replays only what is missing.
    pub(super) fn seen(&self) -> Vec<(u64, u64)> {
        self.seen.iter().map(|(s, q)| (*s, *q)).collect()
    }

    /// Takes the server's watermarks at a first registration: everything up to them was
    /// sent before we registered, so it is neither ours to receive nor a gap.
    pub(super) fn start_after(&mut self, watermarks: Vec<(u64, u64)>) {
        self.seen.extend(watermarks);
    }

    /// Exactly once, in each sender's order: repeats are dropped, missing messages reported
    /// as gaps, files assembled and checked. Returns what to show the user, in order.
    pub(super) fn deliver(
        &mut self,
        from: String,
        session: u64,
        seq: u64,
        body: Body,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        match self.seen.get(&session) {
            Some(&last) if seq <= last => return events, // a repeat after failover
            Some(&last) if seq > last + 1 => {
                // Frames are missing: a file in progress from this sender cannot be whole.
                // The gap itself is counted in message numbers, at the next one.
                self.incoming.remove(&session);
                self.damaged.insert(session);
            }
            _ => {}
        }
        self.seen.insert(session, seq);
        match body {
            Body::Text { number, text } => {
                self.note_number(&from, session, number, &mut events);
                events.push(Event::Message {
                    from,
                    seq: number,
                    text,
                });
            }
            Body::FileStart { name, size } => {
                self.damaged.remove(&session);
                match files::Incoming::start(&self.download_dir, &name, size) {
                    Ok(incoming) => {
                        self.incoming.insert(session, incoming);
                    }
                    Err(e) => events.push(Event::Error {
                        message: format!("cannot receive file {name:?} from {from}: {e}"),
                    }),
                }
            }
            Body::FileChunk { data } => {
                if let Some(incoming) = self.incoming.get_mut(&session)
                    && let Err(e) = incoming.write(&data)
                {
                    self.incoming.remove(&session);
                    events.push(Event::Error {
                        message: format!("cannot receive a file from {from}: {e}"),
                    });
                }
            }
            // The sender could not read its file to the end: discard what arrived.
            Body::FileEnd { number: 0, .. } => {
                self.incoming.remove(&session);
            }
            Body::FileEnd { number, sha256 } => {
                self.note_number(&from, session, number, &mut events);
                match self.incoming.remove(&session) {
                    Some(incoming) => events.push(match incoming.finish(&sha256) {
                        Ok((path, size)) => Event::File {
                            from,
                            seq: number,
                            name: path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            size,
                            path: path.display().to_string(),
                        },
                        Err(why) => Event::Error {
                            message: format!("{why} (from {from}, discarded)"),
                        },
                    }),
                    // Its start was lost with missing frames.
                    None if self.damaged.remove(&session) => {
                        events.push(Event::Gap { from, missed: 1 });
                    }
                    // It started before this client registered: not ours to receive.
                    None => {}
                }
            }
        }
        events
    }

    /// Records message `number` from `session`, reporting the numbers skipped since the
    /// last one as a gap.
    fn note_number(&mut self, from: &str, session: u64, number: u64, events: &mut Vec<Event>) {
        let last = self.numbers.insert(session, number);
        if let Some(last) = last
            && number > last + 1
        {
            events.push(Event::Gap {
                from: from.to_string(),
                missed: number - last - 1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(number: u64) -> Body {
        Body::Text {
            number,
            text: format!("text {number}"),
        }
    }

    fn message(number: u64) -> Event {
        Event::Message {
            from: "alice".into(),
            seq: number,
            text: format!("text {number}"),
        }
    }

    /// An inbox whose download directory is never written: these tests send no file.
    fn inbox() -> Inbox {
        Inbox::new(PathBuf::from("/nonexistent/dsys-inbox-test"))
    }

    #[test]
    fn a_repeat_after_failover_is_dropped() {
        let mut inbox = inbox();
        assert_eq!(inbox.deliver("alice".into(), 7, 1, text(1)), [message(1)]);
        assert_eq!(inbox.deliver("alice".into(), 7, 1, text(1)), []);
        assert_eq!(inbox.seen(), [(7, 1)]);
    }

    #[test]
    fn messages_sent_before_registering_are_not_a_gap_and_not_delivered() {
        let mut inbox = inbox();
        inbox.start_after(vec![(7, 5)]);
        assert_eq!(inbox.deliver("alice".into(), 7, 5, text(5)), []);
        // The first message number seen from a sender is never a gap.
        assert_eq!(inbox.deliver("alice".into(), 7, 6, text(6)), [message(6)]);
    }

    #[test]
    fn skipped_numbers_are_reported_as_one_gap_before_the_next_message() {
        let mut inbox = inbox();
        inbox.deliver("alice".into(), 7, 1, text(1));
        let gap = Event::Gap {
            from: "alice".into(),
            missed: 2,
        };
        assert_eq!(
            inbox.deliver("alice".into(), 7, 4, text(4)),
            [gap, message(4)]
        );
    }

    #[test]
    fn a_file_whose_start_was_lost_is_reported_as_one_missed_message() {
        let mut inbox = inbox();
        inbox.deliver("alice".into(), 7, 1, text(1));
        // seq 2 (the FileStart) never arrives; its chunk and its end do.
        let chunk = Body::FileChunk { data: vec![1, 2] };
        assert_eq!(inbox.deliver("alice".into(), 7, 3, chunk), []);
        let end = Body::FileEnd {
            number: 2,
            sha256: [0; 32],
        };
        let lost = Event::Gap {
            from: "alice".into(),
            missed: 1,
        };
        assert_eq!(inbox.deliver("alice".into(), 7, 4, end), [lost]);
    }
}
