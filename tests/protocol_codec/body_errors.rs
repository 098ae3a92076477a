//! Body errors: every malformed body is refused by `Message::decode`, cheaply.

use super::*;

#[test]
fn unknown_type_byte_is_refused() {
    let known: Vec<u8> = sample_messages().iter().map(|m| body_of(m)[0]).collect();
    for type_byte in 0..=u8::MAX {
        if known.contains(&type_byte) {
            continue;
        }
        let reason = assert_protocol_error(
            Message::decode(&[type_byte, 0, 0, 0, 0, 0, 0, 0, 0]),
            &format!("type 0x{type_byte:02x}"),
        );
        assert!(reason.contains("unknown frame type"), "{reason}");
        assert_protocol_error(
            read_message(&mut Cursor::new(frame(&[type_byte]))),
            "framed unknown type",
        );
    }
}

#[test]
fn hello_with_bad_magic_is_refused() {
    for magic in [*b"dsys", *b"GET ", [0; 4], *b"DSYT"] {
        let body = [&[T_HELLO][..], &magic, &u16be(PROTOCOL_VERSION), &[1]].concat();
        let reason = assert_protocol_error(Message::decode(&body), "bad magic");
        assert!(reason.contains("magic"), "{reason}");
    }
}

#[test]
fn hello_with_unknown_role_is_refused() {
    // 6 was the probe's role up to version 3.
    for role in [0, 6, 8, 0x80, 0xff] {
        let body = [&[T_HELLO][..], &MAGIC, &u16be(PROTOCOL_VERSION), &[role]].concat();
        let reason = assert_protocol_error(Message::decode(&body), "unknown role");
        assert!(reason.contains("role"), "{reason}");
    }
}

/// Byte sequences that are not UTF-8: a lone continuation byte, a truncated sequence, an
/// overlong encoding of '/', an encoded surrogate, and bytes that never occur in UTF-8.
const NOT_UTF8: [&[u8]; 5] = [
    &[0x80],
    &[b'a', 0xe2, 0x82],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[0xff, 0xfe],
];

#[test]
fn invalid_utf8_in_a_string_is_refused() {
    for bad in NOT_UTF8 {
        // Register { name: <bad>, resume: None }
        let body = [
            &[T_REGISTER][..],
            &u16be(bad.len() as u16),
            bad,
            &[0], // no resume
        ]
        .concat();
        let reason = assert_protocol_error(Message::decode(&body), "bad name");
        assert!(reason.contains("UTF-8"), "{reason}");
        // And so is a name inside a list.
        let body = [
            &[T_HEARTBEAT][..],
            &u16be(0),
            &u64be(0),
            &u32be(1),
            &u16be(bad.len() as u16),
            bad,
        ]
        .concat();
        assert_protocol_error(Message::decode(&body), "bad client name in a list");
    }
}

/// `body` wrapped in a Publish, a Deliver and a Relay, named, for tests that check all three.
fn in_every_carrier(body: &[u8]) -> [(&'static str, Vec<u8>); 3] {
    let publish = [&[T_PUBLISH][..], &u64be(1), body].concat();
    let deliver = [
        &[T_DELIVER][..],
        &u16be(1),
        b"a",
        &u64be(1),
        &u64be(1),
        body,
    ]
    .concat();
    let relay = [
        &[T_RELAY][..],
        &u64be(1),
        &u16be(1),
        b"a",
        &u64be(1),
        &u64be(1),
        body,
    ]
    .concat();
    [("Publish", publish), ("Deliver", deliver), ("Relay", relay)]
}

#[test]
fn invalid_utf8_in_a_text_body_is_refused() {
    for bad in NOT_UTF8 {
        // Text { number 1, text <bad> }
        let text = [&[1][..], &u64be(1), &u32be(bad.len() as u32), bad].concat();
        for (what, bytes) in in_every_carrier(&text) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("UTF-8"), "{what}: {reason}");
        }
    }
    // The same bytes are fine as file data.
    for bad in NOT_UTF8 {
        let chunk = [&[4][..], &u32be(bad.len() as u32), bad].concat();
        for (what, bytes) in in_every_carrier(&chunk) {
            assert!(Message::decode(&bytes).is_ok(), "{what}: chunk {bad:?}");
        }
    }
}

#[test]
fn file_start_with_invalid_utf8_name_is_refused() {
    for bad in NOT_UTF8 {
        // FileStart { name <bad>, size 0 }
        let start = [&[3][..], &u16be(bad.len() as u16), bad, &u64be(0)].concat();
        for (what, bytes) in in_every_carrier(&start) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("UTF-8"), "{what}: {reason}");
        }
    }
}

#[test]
fn file_end_cut_inside_its_digest_is_refused() {
    let digest = sha256::digest(b"hello\n");
    for cut in 0..digest.len() {
        // FileEnd { number 2, the first `cut` digest bytes }, framed correctly.
        let end = [&[5][..], &u64be(2), &digest[..cut]].concat();
        for (what, bytes) in in_every_carrier(&end) {
            let what = format!("{what} with {cut} of 32 digest bytes");
            let reason = assert_protocol_error(Message::decode(&bytes), &what);
            assert!(reason.contains("truncated"), "{what}: {reason}");
            assert_protocol_error(read_message(&mut Cursor::new(frame(&bytes))), &what);
        }
    }
    // A 33rd byte is not part of the digest: it is left over.
    let end = [&[5][..], &u64be(2), &digest, &[0]].concat();
    for (what, bytes) in in_every_carrier(&end) {
        let reason = assert_protocol_error(Message::decode(&bytes), what);
        assert!(reason.contains("unexpected bytes"), "{what}: {reason}");
    }
}

#[test]
fn string_length_beyond_the_frame_is_refused() {
    // Register { name: claims 65535 bytes, 3 present }
    let body = [&[T_REGISTER][..], &u16be(u16::MAX), b"abc"].concat();
    assert_refused_cheaply("long string", || Message::decode(&body));
}

#[test]
fn byte_string_length_beyond_the_frame_is_refused_before_allocating() {
    // Publish { seq 1, Text { number 1, text claims 4 GiB, 2 bytes present } }
    let text = [
        &[T_PUBLISH][..],
        &u64be(1),
        &[1],
        &u64be(1),
        &u32be(u32::MAX),
        b"hi",
    ]
    .concat();
    assert_refused_cheaply("huge text length", || Message::decode(&text));
    // Publish { seq 1, FileChunk { data claims 4 GiB, 2 bytes present } }
    let chunk = [&[T_PUBLISH][..], &u64be(1), &[4], &u32be(u32::MAX), b"hi"].concat();
    assert_refused_cheaply("huge chunk length", || Message::decode(&chunk));
}

/// Bodies that each announce `count` items in one list but carry none of them.
fn bodies_with_forged_count(count: u32) -> Vec<(&'static str, Vec<u8>)> {
    let count = u32be(count);
    vec![
        (
            "Registered.watermarks",
            [
                &[T_REGISTERED][..],
                &u64be(1),
                &u64be(2),
                &u32be(10_000),
                &u32be(2_500),
                &count,
            ]
            .concat(),
        ),
        (
            "Register.resume.seen",
            [
                &[T_REGISTER][..],
                &u16be(1),
                b"a",
                &[1],
                &u64be(1),
                &u64be(2),
                &count,
            ]
            .concat(),
        ),
        (
            "Heartbeat.clients",
            [&[T_HEARTBEAT][..], &u16be(0), &u64be(0), &[1], &count].concat(),
        ),
        (
            "HeartbeatReply.servers",
            [&[T_HEARTBEAT_REPLY][..], &u64be(1), &[1], &count].concat(),
        ),
        (
            "StatusReport.servers",
            [&[T_STATUS_REPORT][..], &count].concat(),
        ),
        (
            "StatusReport.servers[0].clients",
            [
                &[T_STATUS_REPORT][..],
                &u32be(1),
                &u16be(0),
                &u64be(1),
                &[1], // alive
                &[0], // not leaving
                &count,
            ]
            .concat(),
        ),
    ]
}

#[test]
fn huge_list_count_is_refused_before_allocating() {
    // 0xFFFFFFFF is the absurd case. 2^20 comes first: a decoder that sized its `Vec` from
    // the count would get memory for it, so the tracker reports the mistake clearly, before
    // 0xFFFFFFFF could abort the whole test process on a failed 64 GiB allocation.
    for count in [1 << 20, u32::MAX] {
        for (what, body) in bodies_with_forged_count(count) {
            let what = format!("{what} with count {count}");
            // Some padding, so that the check has to compare the count with what is left.
            let mut padded = body.clone();
            padded.extend([0u8; 64]);
            for reason in [
                assert_refused_cheaply(&what, || Message::decode(&body)),
                assert_refused_cheaply(&what, || Message::decode(&padded)),
                assert_refused_cheaply(&what, || read_message(&mut Cursor::new(frame(&padded)))),
            ] {
                // Refused by the count check itself, before any item is read.
                assert!(reason.contains("count"), "{what}: {reason}");
            }
        }
    }
}

#[test]
fn list_count_one_more_than_the_items_present_is_refused() {
    // Registered with 2 watermarks announced and 1 present.
    let body = [
        &[T_REGISTERED][..],
        &u64be(1),
        &u64be(2),
        &u32be(10_000),
        &u32be(2_500),
        &u32be(2),
        &u64be(7),
        &u64be(3),
    ]
    .concat();
    assert_protocol_error(Message::decode(&body), "short pair list");
    // Heartbeat with 3 clients announced and 2 present.
    let body = [
        &[T_HEARTBEAT][..],
        &u16be(0),
        &u64be(0),
        &u32be(3),
        &u16be(1),
        b"a",
        &u16be(1),
        b"b",
    ]
    .concat();
    assert_protocol_error(Message::decode(&body), "short string list");
}

#[test]
fn trailing_bytes_after_a_valid_message_are_refused() {
    for message in sample_messages() {
        for extra in [&[0u8][..], &[0xff], &[0; 9]] {
            // One byte after a refusal of code `Other` is a code: read as `Other` too.
            if refusal_code(&message) == Some(Refusal::Other) && extra.len() == 1 {
                continue;
            }
            let mut body = body_of(&message);
            body.extend_from_slice(extra);
            let reason = assert_protocol_error(
                Message::decode(&body),
                &format!("{} + {} bytes", message.kind(), extra.len()),
            );
            assert!(reason.contains("unexpected bytes"), "{reason}");
        }
    }
}

#[test]
fn bad_resume_flag_is_refused() {
    for flag in [2, 0x80, 0xff] {
        // Register { name "a", resume flag <bad>, then what a resume would carry }
        let body = [
            &[T_REGISTER][..],
            &u16be(1),
            b"a",
            &[flag],
            &u64be(1),
            &u64be(2),
            &u32be(0),
        ]
        .concat();
        let reason = assert_protocol_error(Message::decode(&body), "resume flag");
        assert!(reason.contains("resume"), "{reason}");
    }
}

#[test]
fn unknown_body_kind_is_refused() {
    for kind in [0, 2, 6, 0x80, 0xff] {
        let body = [&[kind][..], &u64be(1), &u32be(2), b"hi"].concat();
        for (what, bytes) in in_every_carrier(&body) {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains("body kind"), "{what}: {reason}");
        }
    }
}

#[test]
fn retired_single_frame_file_kind_2_is_refused() {
    // The old layout exactly: kind 2, name "a.txt", data "hi". Files now travel as
    // FileStart, FileChunk, FileEnd (kinds 3, 4, 5); kind 2 is unknown.
    let old_file = [&[2][..], &u16be(5), b"a.txt", &u32be(2), b"hi"].concat();
    for (what, bytes) in in_every_carrier(&old_file) {
        let reason = assert_protocol_error(Message::decode(&bytes), what);
        assert_eq!(reason, "unknown body kind 2", "{what}");
        assert_protocol_error(read_message(&mut Cursor::new(frame(&bytes))), what);
    }
}

#[test]
fn bad_alive_or_leaving_flag_is_refused() {
    for (alive, leaving, named) in [(2, 0, "alive"), (0xff, 1, "alive"), (1, 2, "leaving")] {
        let server = [
            &u16be(3)[..],
            b"a:1",
            &u64be(1),
            &[alive],
            &[leaving],
            &u32be(0),
        ]
        .concat();
        let report = [&[T_STATUS_REPORT][..], &u32be(1), &server].concat();
        let reply = [
            &[T_HEARTBEAT_REPLY][..],
            &u64be(1),
            &[1],
            &u32be(1),
            &server,
        ]
        .concat();
        for (what, bytes) in [("StatusReport", report), ("HeartbeatReply", reply)] {
            let reason = assert_protocol_error(Message::decode(&bytes), what);
            assert!(reason.contains(named), "{what}: {reason}");
        }
    }
}

#[test]
fn unknown_departure_is_refused() {
    for departure in [3, 0xff] {
        // Heartbeat { addr "a:1", epoch 1, no list, no cut_off, departure <bad> }
        let body = [
            &[T_HEARTBEAT][..],
            &u16be(3),
            b"a:1",
            &u64be(1),
            &[0],
            &u32be(0),
            &[departure],
        ]
        .concat();
        let reason = assert_protocol_error(Message::decode(&body), "departure");
        assert!(reason.contains("departure"), "{reason}");
    }
}
