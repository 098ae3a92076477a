//! Reading frames without copying them, through the public API: `read_frame_into` reuses
//! one buffer for frame after frame and reads exactly what `read_frame` reads, and
//! `DeliverRef::decode` sees in a `Deliver` frame the same fields as `Message::decode`,
//! while refusing a cut one as `Message::decode` does. In memory, no sockets.

use std::io::Cursor;

use dsys::protocol::{
    Body, DeliverRef, Message, deliver_frame, read_frame, read_frame_into, write_message,
};

/// Three frames of different sizes, back to back.
fn three_frames() -> (Vec<u8>, Vec<Message>) {
    let messages = vec![
        Message::Ack { seq: 7 },
        Message::Deliver {
            from: "alice".into(),
            session: 3,
            seq: 9,
            body: Body::Text {
                number: 9,
                text: "x".repeat(5_000),
            },
        },
        Message::Keepalive,
    ];
    let mut bytes = Vec::new();
    for message in &messages {
        write_message(&mut bytes, message).expect("write to a Vec");
    }
    (bytes, messages)
}

#[test]
fn read_frame_into_reads_what_read_frame_reads_in_one_reused_buffer() {
    let (bytes, _) = three_frames();
    let mut expected = Vec::new();
    let mut plain = Cursor::new(&bytes);
    while let Some(body) = read_frame(&mut plain).expect("valid frames") {
        expected.push(body);
    }
    let mut reused = Cursor::new(&bytes);
    let mut buffer = Vec::new();
    let mut got = Vec::new();
    while read_frame_into(&mut reused, &mut buffer).expect("valid frames") {
        got.push(buffer.clone());
    }
    assert_eq!(got, expected);
    assert!(
        buffer.is_empty(),
        "at the end of the stream the buffer holds nothing"
    );
    assert!(
        buffer.capacity() >= 5_000,
        "the buffer kept its room for the next frames"
    );
}

#[test]
fn deliver_ref_sees_the_fields_message_decode_sees() {
    let body = Body::Text {
        number: 41,
        text: "hello there".into(),
    };
    let frame = deliver_frame("bob", 12, 42, &body);
    let deliver = DeliverRef::decode(&frame[4..])
        .expect("a valid frame")
        .expect("a Deliver");
    assert_eq!(
        deliver,
        DeliverRef {
            from: "bob",
            session: 12,
            seq: 42,
            text: Some(b"hello there".as_slice()),
        }
    );
    let Message::Deliver {
        from, session, seq, ..
    } = Message::decode(&frame[4..]).expect("a valid frame")
    else {
        panic!("not a Deliver");
    };
    assert_eq!((from.as_str(), session, seq), ("bob", 12, 42));
}

#[test]
fn deliver_ref_passes_over_other_messages_and_files() {
    let ack = Message::Ack { seq: 1 }.encode();
    assert_eq!(DeliverRef::decode(&ack[4..]).expect("valid"), None);
    let chunk = deliver_frame(
        "bob",
        1,
        2,
        &Body::FileChunk {
            data: vec![1, 2, 3],
        },
    );
    let deliver = DeliverRef::decode(&chunk[4..])
        .expect("valid")
        .expect("a Deliver");
    assert_eq!((deliver.seq, deliver.text), (2, None));
}

#[test]
fn deliver_ref_refuses_a_cut_deliver_at_every_length() {
    let body = Body::Text {
        number: 1,
        text: "abc".into(),
    };
    let frame = deliver_frame("carol", 1, 1, &body);
    let body = &frame[4..];
    for len in 1..body.len() {
        assert!(
            DeliverRef::decode(&body[..len]).is_err(),
            "a Deliver cut to {len} of {} bytes is refused",
            body.len()
        );
    }
}
