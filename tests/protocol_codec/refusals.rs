//! Refusal codes on the wire (`docs/protocol.md`, 6.8): each code is the one byte after a
//! refusal's words, left out for `Other`; a byte this build does not know reads as `Other`.

use super::*;

/// The body of an `Error` (type `0x02`) or `RegisterRefused` (type `0x12`) with the words
/// "why", then `code` when there is one.
fn refusal_body(type_byte: u8, code: Option<u8>) -> Vec<u8> {
    let mut body = vec![type_byte, 0x00, 0x03, b'w', b'h', b'y'];
    body.extend(code);
    body
}

/// Checks that `code` travels as `byte` (none for `Other`) in both refusal frames, and
/// comes back as itself.
#[track_caller]
fn assert_round_trip(code: Refusal, byte: Option<u8>) {
    let reason = "why".to_string();
    for (message, type_byte) in [
        (
            Message::Error {
                code,
                reason: reason.clone(),
            },
            0x02,
        ),
        (
            Message::RegisterRefused {
                code,
                reason: reason.clone(),
            },
            0x12,
        ),
    ] {
        let body = refusal_body(type_byte, byte);
        assert_eq!(hex(&body_of(&message)), hex(&body), "{message:?}");
        assert_eq!(Message::decode(&body).unwrap(), message);
    }
}

#[test]
fn refusal_other_round_trips_without_a_code_byte() {
    assert_round_trip(Refusal::Other, None);
}

#[test]
fn refusal_no_live_server_round_trips_as_byte_1() {
    assert_round_trip(Refusal::NoLiveServer, Some(1));
}

#[test]
fn refusal_server_full_round_trips_as_byte_2() {
    assert_round_trip(Refusal::ServerFull, Some(2));
}

#[test]
fn refusal_declared_dead_round_trips_as_byte_3() {
    assert_round_trip(Refusal::DeclaredDead, Some(3));
}

#[test]
fn refusal_not_listed_yet_round_trips_as_byte_4() {
    assert_round_trip(Refusal::NotListedYet, Some(4));
}

/// A newer peer may send a code this build has never heard of: the refusal still arrives,
/// in the peer's words, as `Other`, instead of ending the connection as a protocol error.
/// A code 0 written out reads the same way.
#[test]
fn an_unknown_refusal_code_reads_as_other() {
    for byte in [0, 5, 0x7f, 0xff] {
        for type_byte in [0x02, 0x12] {
            let body = refusal_body(type_byte, Some(byte));
            match Message::decode(&body) {
                Ok(Message::Error { code, reason } | Message::RegisterRefused { code, reason }) => {
                    assert_eq!((code, reason.as_str()), (Refusal::Other, "why"), "{byte}")
                }
                other => panic!("code byte {byte} in {}: {other:?}", hex(&body)),
            }
        }
    }
    // A second byte after the code is still a byte too many.
    let mut body = refusal_body(0x02, Some(1));
    body.push(0);
    assert_protocol_error(Message::decode(&body), "two bytes after the words");
}

/// Up to version 6 an `Error` was its words alone. A refusal of code `Other`, which is what
/// the refusal of another protocol version always is, still has that layout, so a peer of
/// either version reads the other's refusal of its `Hello` clearly.
#[test]
fn an_error_of_code_other_keeps_the_layout_of_version_6() {
    let reason = format!("protocol version 6, this build speaks {PROTOCOL_VERSION}");
    let mut version_6 = vec![0x02];
    version_6.extend_from_slice(&u16be(reason.len() as u16));
    version_6.extend_from_slice(reason.as_bytes());
    let refusal = Message::Error {
        code: Refusal::Other,
        reason,
    };
    assert_eq!(hex(&body_of(&refusal)), hex(&version_6));
    assert_eq!(Message::decode(&version_6).unwrap(), refusal);
}
