//! The frames of the message path: the `Deliver` and `Relay` frames a server makes for every
//! message, and a `Deliver` read in place. The encoding is `encoding.rs`'s (the same `Writer`
//! methods, so the bytes cannot differ); this file only does it without extra copies, because
//! it runs once per message or once per delivery. The server's hub calls it
//! (`roles/server/hub/`); the bench's load clients read with [`DeliverRef`]. Pure functions.
//!
//! - [`deliver_frame`] and [`relay_frame`] encode from borrowed parts, into a buffer allocated
//!   once at its final size ([`deliver_fields_len`]);
//! - [`deliver_frames`] puts the messages one publisher sent back to back into one buffer, so
//!   each recipient can be sent them as one run;
//! - [`DeliverRef`] reads a `Deliver` without copying its name and text out of the frame.

use super::Body;
use super::codec::{Reader, append_framed, framed_with_room};
use super::encoding::{BODY_TEXT, T_DELIVER, T_RELAY};
use crate::error::Result;

/// Encodes a [`Message::Deliver`](super::Message::Deliver) frame from borrowed parts, so a server can build the one
/// copy that all recipients share without first cloning the payload into a `Message`.
pub fn deliver_frame(from: &str, session: u64, seq: u64, body: &Body) -> Vec<u8> {
    let len = 4 + 1 + deliver_fields_len(from, body);
    framed_with_room(len, |out| out.deliver(from, session, seq, body))
}

/// The `Deliver` frames of `messages` (each `(seq, body)`), all from `from` speaking for
/// `session`, encoded back to back into one buffer made at its final size, and where each
/// one ends in it: the frames of message `i` are `ends[i - 1]..ends[i]` (from 0 for the
/// first).
pub fn deliver_frames(from: &str, session: u64, messages: &[(u64, Body)]) -> (Vec<u8>, Vec<usize>) {
    let total = messages
        .iter()
        .map(|(_, body)| 4 + 1 + deliver_fields_len(from, body))
        .sum();
    let mut bytes = Vec::with_capacity(total);
    let mut ends = Vec::with_capacity(messages.len());
    for (seq, body) in messages {
        append_framed(&mut bytes, |out| out.deliver(from, session, *seq, body));
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// Bytes of the fields a `Deliver` and a `Relay` share (`Writer::deliver_fields`).
fn deliver_fields_len(from: &str, body: &Body) -> usize {
    let body_len = match body {
        Body::Text { text, .. } => 1 + 8 + 4 + text.len(),
        Body::FileStart { name, .. } => 1 + 2 + name.len() + 8,
        Body::FileChunk { data } => 1 + 4 + data.len(),
        Body::FileEnd { .. } => 1 + 8 + 32,
    };
    2 + from.len() + 8 + 8 + body_len
}

/// A [`Message::Deliver`](super::Message::Deliver) read in place: its fields borrowed from the frame body instead
/// of copied into a `Message`, for a receiver that only looks at them (the bench's clients
/// read millions a second). Of the body, only a `Text` is read; for the parts of a file
/// `text` is `None` and the rest of the frame is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverRef<'a> {
    /// The sender's name.
    pub from: &'a str,
    /// The sender's session.
    pub session: u64,
    /// The sender's frame counter.
    pub seq: u64,
    /// The bytes of a `Text` body (not checked for UTF-8).
    pub text: Option<&'a [u8]>,
}

impl<'a> DeliverRef<'a> {
    /// Reads `body` (one frame body, as [`read_frame`](super::read_frame) returns it) as a
    /// `Deliver`; `Ok(None)` when it is another message.
    ///
    /// # Errors
    /// [`Error::Protocol`](crate::Error::Protocol) when a `Deliver` is cut short or its name is not UTF-8.
    pub fn decode(body: &'a [u8]) -> Result<Option<DeliverRef<'a>>> {
        let mut r = Reader::new(body);
        if r.u8()? != T_DELIVER {
            return Ok(None);
        }
        let (from, session, seq) = (r.str_ref()?, r.u64()?, r.u64()?);
        let text = match r.u8()? {
            BODY_TEXT => {
                r.u64()?; // the message number
                Some(r.bytes()?)
            }
            _ => None,
        };
        Ok(Some(DeliverRef {
            from,
            session,
            seq,
            text,
        }))
    }
}

/// Encodes a [`Message::Relay`](super::Message::Relay) frame from borrowed parts (see [`deliver_frame`]).
pub fn relay_frame(index: u64, from: &str, session: u64, seq: u64, body: &Body) -> Vec<u8> {
    let len = 4 + 1 + 8 + deliver_fields_len(from, body);
    framed_with_room(len, |out| {
        out.u8(T_RELAY);
        out.u64(index);
        out.deliver_fields(from, session, seq, body);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One body of each kind.
    fn bodies() -> Vec<Body> {
        vec![
            Body::Text {
                number: 3,
                text: "héllo".into(),
            },
            Body::FileStart {
                name: "a.txt".into(),
                size: 10,
            },
            Body::FileChunk { data: vec![7; 300] },
            Body::FileEnd {
                number: 4,
                sha256: [9; 32],
            },
        ]
    }

    #[test]
    fn the_frames_are_made_at_their_final_size() {
        for body in bodies() {
            let deliver = deliver_frame("carol", 1, 2, &body);
            assert_eq!(deliver.len(), 4 + 1 + deliver_fields_len("carol", &body));
            assert_eq!(deliver.len(), deliver.capacity(), "{body:?}: no spare room");
            let relay = relay_frame(5, "carol", 1, 2, &body);
            assert_eq!(relay.len(), relay.capacity(), "{body:?}: no spare room");
        }
    }

    #[test]
    fn frames_encoded_back_to_back_are_each_the_frame_encoded_alone() {
        let messages: Vec<(u64, Body)> = (1..).zip(bodies()).collect();
        let (bytes, ends) = deliver_frames("carol", 9, &messages);
        assert_eq!(bytes.len(), bytes.capacity(), "made at its final size");
        let mut start = 0;
        for ((seq, body), end) in messages.iter().zip(ends) {
            assert_eq!(bytes[start..end], deliver_frame("carol", 9, *seq, body));
            start = end;
        }
        assert_eq!(start, bytes.len());
    }
}
