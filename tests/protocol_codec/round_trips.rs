//! Round trips: every message and body survives encoding and decoding, over any reads.

use super::*;

#[test]
fn samples_cover_every_message_variant() {
    let mut seen = [false; VARIANT_COUNT];
    for message in sample_messages() {
        seen[variant_index(&message)] = true;
    }
    let missing: Vec<usize> = (0..VARIANT_COUNT).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants without a sample: {missing:?}");
}

#[test]
fn samples_cover_every_body_kind() {
    let mut seen = [false; BODY_KIND_COUNT];
    for body in sample_bodies() {
        seen[body_index(&body)] = true;
    }
    let missing: Vec<usize> = (0..BODY_KIND_COUNT).filter(|&i| !seen[i]).collect();
    assert!(
        missing.is_empty(),
        "body kinds without a sample: {missing:?}"
    );
    // The edge cases the file protocol depends on are among them.
    let bodies = sample_bodies();
    for (what, present) in [
        (
            "an empty chunk",
            bodies.contains(&Body::FileChunk { data: vec![] }),
        ),
        (
            "a full chunk",
            bodies
                .iter()
                .any(|b| matches!(b, Body::FileChunk { data } if data.len() == FILE_CHUNK_LEN)),
        ),
        (
            "a chunk that is not UTF-8",
            bodies.iter().any(
                |b| matches!(b, Body::FileChunk { data } if std::str::from_utf8(data).is_err()),
            ),
        ),
        (
            "an abandoned file",
            bodies
                .iter()
                .any(|b| matches!(b, Body::FileEnd { number: 0, .. })),
        ),
    ] {
        assert!(present, "no sample body is {what}");
    }
}

#[test]
fn every_message_round_trips_through_encode_and_decode() {
    for message in sample_messages() {
        let encoded = message.encode();
        let prefix = u32::from_be_bytes(encoded[..4].try_into().unwrap());
        assert_eq!(
            prefix as usize,
            encoded.len() - 4,
            "{message:?}: the prefix counts the body"
        );
        let decoded = Message::decode(&encoded[4..])
            .unwrap_or_else(|e| panic!("{message:?} does not decode: {e}"));
        assert_eq!(decoded, message);
    }
}

#[test]
fn back_to_back_frames_are_read_one_message_at_a_time() {
    let messages = sample_messages();
    let mut stream = Vec::new();
    for message in &messages {
        write_message(&mut stream, message).unwrap();
    }
    let mut reader = Cursor::new(stream);
    for message in &messages {
        assert_eq!(read_message(&mut reader).unwrap().as_ref(), Some(message));
    }
    // The stream ends cleanly between two frames: that is `Ok(None)`, not an error.
    assert!(read_message(&mut reader).unwrap().is_none());
}

#[test]
fn a_buffer_holds_a_whole_frame_only_once_its_last_byte_is_in() {
    let frame = Message::Keepalive.encode();
    for cut in 0..frame.len() {
        assert!(
            !holds_whole_frame(&frame[..cut]),
            "{cut} of {} bytes",
            frame.len()
        );
    }
    assert!(holds_whole_frame(&frame));
    let mut two = frame.clone();
    two.extend_from_slice(&frame[..2]);
    assert!(holds_whole_frame(&two), "the first frame is whole");
    // A length the reader refuses needs no more bytes to be refused.
    assert!(holds_whole_frame(&[0, 0, 0, 0]));
    assert!(holds_whole_frame(&(MAX_FRAME_LEN + 1).to_be_bytes()));
}

#[test]
fn write_message_writes_exactly_the_encoded_frame() {
    for message in sample_messages() {
        let mut written = Vec::new();
        write_message(&mut written, &message).unwrap();
        assert_eq!(written, message.encode());
    }
}

/// A reader that hands out one byte per call and fails with `Interrupted` every other
/// call, like a slow socket hit by signals.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    interrupt_next: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt_next = !self.interrupt_next;
        if self.interrupt_next {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.pos == self.data.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.data[self.pos];
        self.pos += 1;
        Ok(1)
    }
}

#[test]
fn frame_split_into_single_bytes_and_interrupted_reads_is_reassembled() {
    let messages = sample_messages();
    let mut data = Vec::new();
    for message in &messages {
        data.extend(message.encode());
    }
    let mut reader = Trickle {
        data,
        pos: 0,
        interrupt_next: false,
    };
    for message in &messages {
        assert_eq!(read_message(&mut reader).unwrap().as_ref(), Some(message));
    }
    assert!(read_message(&mut reader).unwrap().is_none());
}

#[test]
fn message_of_exactly_max_frame_len_is_accepted() {
    // Publish = type (1) + seq (8) + body kind (1) + number (8) + text length (4) + text.
    let text = "x".repeat(MAX_FRAME_LEN as usize - 22);
    let message = Message::Publish {
        seq: 1,
        body: Body::Text { number: 1, text },
    };
    let encoded = message.encode();
    assert_eq!(encoded.len(), 4 + MAX_FRAME_LEN as usize);
    let (read, largest) = largest_allocation_during(|| read_message(&mut Cursor::new(&encoded)));
    assert_eq!(read.unwrap(), Some(message));
    // This also shows that the allocation tracker works: the frame buffer is seen.
    assert!(largest >= MAX_FRAME_LEN as usize);
}

#[test]
#[should_panic(expected = "exceeds the cap")]
fn encoding_a_frame_over_the_cap_panics() {
    // One byte more than the previous test: `encode` treats this as a caller's bug.
    let text = "x".repeat(MAX_FRAME_LEN as usize - 21);
    Message::Publish {
        seq: 1,
        body: Body::Text { number: 1, text },
    }
    .encode();
}

#[test]
fn hello_decodes_any_version_so_the_receiver_can_say_which_it_speaks() {
    // The version is checked by the receiver (`net::expect_hello`), not by the codec.
    let body = [
        &[T_HELLO][..],
        &MAGIC,
        &u16be(1),
        &[Role::Client as u8],
        &[0; 32],
    ]
    .concat();
    assert_eq!(
        Message::decode(&body).unwrap(),
        Message::Hello {
            version: 1,
            role: Role::Client,
            proof: [0; 32],
        }
    );
}

#[test]
fn file_chunk_data_may_hold_any_bytes() {
    // Every byte value, NULs and sequences that are not UTF-8: chunk data is never checked.
    for data in [
        (0..=255).rev().collect::<Vec<u8>>(),
        BINARY.to_vec(),
        vec![0; 17],
    ] {
        let message = Message::Publish {
            seq: 3,
            body: Body::FileChunk { data },
        };
        assert_eq!(Message::decode(&body_of(&message)).unwrap(), message);
    }
}

#[test]
fn full_file_chunk_fits_in_a_relay_frame() {
    // A chunk of FILE_CHUNK_LEN bytes, re-wrapped by a server with a long sender name and
    // the largest numbers, is still far below the frame cap.
    let body = Body::FileChunk {
        data: vec![0xa5; FILE_CHUNK_LEN],
    };
    let name = "n".repeat(32);
    let frame = relay_frame(u64::MAX, &name, u64::MAX, u64::MAX, &body);
    assert!(frame.len() - 4 <= MAX_FRAME_LEN as usize);
    assert_eq!(
        Message::decode(&frame[4..]).unwrap(),
        Message::Relay {
            index: u64::MAX,
            from: name,
            session: u64::MAX,
            seq: u64::MAX,
            body,
        }
    );
}

#[test]
fn file_end_carries_the_digest_as_32_raw_bytes() {
    // kind 5, number, then the digest with no length prefix: 1 + 8 + 32 bytes of body.
    let sha256 = sha256::digest(b"hello\n");
    let message = Message::Publish {
        seq: 4,
        body: Body::FileEnd { number: 2, sha256 },
    };
    let expected = [&[T_PUBLISH][..], &u64be(4), &[5], &u64be(2), &sha256].concat();
    assert_eq!(body_of(&message), expected);
    assert_eq!(Message::decode(&expected).unwrap(), message);
}

#[test]
fn borrowed_frame_builders_match_message_encode() {
    // The hub builds Deliver and Relay frames from borrowed parts; they must be the very
    // frames `Message::encode` would give.
    for body in sample_bodies() {
        let deliver = Message::Deliver {
            from: "alice".into(),
            session: 7,
            seq: 3,
            body: body.clone(),
        };
        assert_eq!(deliver_frame("alice", 7, 3, &body), deliver.encode());
        let index = 0x0102_0304_0506_0708;
        let relay = Message::Relay {
            index,
            from: "alice".into(),
            session: 7,
            seq: 3,
            body: body.clone(),
        };
        assert_eq!(relay_frame(index, "alice", 7, 3, &body), relay.encode());
    }
}

#[test]
fn relay_index_bytes_locate_the_index_in_an_encoded_relay() {
    // The hub encodes a Relay with index 0 and writes the real index into these bytes.
    let body = Body::Text {
        number: 1,
        text: "hi".into(),
    };
    let mut frame = relay_frame(0, "alice", 7, 3, &body);
    let index: u64 = 0x1122_3344_5566_7788;
    frame[RELAY_INDEX_BYTES].copy_from_slice(&index.to_be_bytes());
    assert_eq!(
        Message::decode(&frame[4..]).unwrap(),
        Message::Relay {
            index,
            from: "alice".into(),
            session: 7,
            seq: 3,
            body,
        }
    );
}
