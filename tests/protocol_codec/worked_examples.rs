//! The worked examples in `docs/protocol.md`, byte for byte.

use super::*;

/// The document the examples live in, read at compile time.
const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

#[test]
fn worked_examples_in_docs_match_encoder() {
    let session = 0x8f3a_1c5e_7b20_d4e1;
    let hi = Body::Text {
        number: 1,
        text: "hi".into(),
    };
    // Section 3.1 shows this body on its own: the Publish frame without length, type and seq.
    let hi_body = &body_of(&Message::Publish {
        seq: 1,
        body: hi.clone(),
    })[9..];
    assert_eq!(hex(hi_body), "01 00 00 00 00 00 00 00 01 00 00 00 02 68 69");
    assert!(
        PROTOCOL_DOC.contains(&format!("`{}`", hex(hi_body))),
        "docs/protocol.md 3.1 does not show the Text body {}",
        hex(hi_body)
    );
    let examples = [
        (
            Message::Challenge { nonce: [0x11; 16] },
            "00 00 00 15 03 44 53 59 53 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11",
        ),
        (
            Message::Hello {
                version: 2,
                role: Role::Client,
                proof: [0; 32],
            },
            "00 00 00 28 01 44 53 59 53 00 02 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
        ),
        (
            Message::Register {
                name: "alice".into(),
                resume: None,
            },
            "00 00 00 09 10 00 05 61 6c 69 63 65 00",
        ),
        (
            Message::Registered {
                session,
                token: 0x5d7c_9e01_a3b4_f268,
                keepalive_ms: 500,
                watermarks: vec![],
            },
            "00 00 00 19 11 8f 3a 1c 5e 7b 20 d4 e1 5d 7c 9e 01 a3 b4 f2 68 00 00 01 f4 \
             00 00 00 00",
        ),
        (
            Message::Publish {
                seq: 1,
                body: hi.clone(),
            },
            "00 00 00 18 13 00 00 00 00 00 00 00 01 01 00 00 00 00 00 00 00 01 00 00 \
             00 02 68 69",
        ),
        (
            Message::Deliver {
                from: "alice".into(),
                session,
                seq: 1,
                body: hi,
            },
            "00 00 00 27 14 00 05 61 6c 69 63 65 8f 3a 1c 5e 7b 20 d4 e1 00 00 00 00 \
             00 00 00 01 01 00 00 00 00 00 00 00 01 00 00 00 02 68 69",
        ),
        (
            Message::Ack { seq: 1 },
            "00 00 00 09 15 00 00 00 00 00 00 00 01",
        ),
        (
            Message::Publish {
                seq: 2,
                body: Body::FileStart {
                    name: "notes.txt".into(),
                    size: 6,
                },
            },
            "00 00 00 1d 13 00 00 00 00 00 00 00 02 03 00 09 6e 6f 74 65 73 2e 74 78 \
             74 00 00 00 00 00 00 00 06",
        ),
        (
            Message::Publish {
                seq: 3,
                body: Body::FileChunk {
                    data: b"hello\n".to_vec(),
                },
            },
            "00 00 00 14 13 00 00 00 00 00 00 00 03 04 00 00 00 06 68 65 6c 6c 6f 0a",
        ),
        (
            Message::Publish {
                seq: 4,
                body: Body::FileEnd {
                    number: 2,
                    sha256: sha256::digest(b"hello\n"),
                },
            },
            "00 00 00 32 13 00 00 00 00 00 00 00 04 05 00 00 00 00 00 00 00 02 58 91 \
             b5 b5 22 d5 df 08 6d 0f f0 b1 10 fb d9 d2 1b b4 fc 71 63 af 34 d0 82 86 \
             a2 e8 46 f6 be 03",
        ),
        (Message::Keepalive, "00 00 00 01 16"),
        (Message::Deregister, "00 00 00 01 17"),
        (
            Message::KeepaliveEvery { ms: 6000 },
            "00 00 00 05 18 00 00 17 70",
        ),
    ];
    // The doc may wrap a frame over several lines; compare with whitespace normalised.
    let doc_words: String = PROTOCOL_DOC
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (message, expected) in examples {
        let expected = unhex(expected);
        assert_eq!(
            hex(&message.encode()),
            hex(&expected),
            "{} encodes differently from the doc",
            message.kind()
        );
        assert_eq!(Message::decode(&expected[4..]).unwrap(), message);
        assert!(
            doc_words.contains(&hex(&expected)),
            "docs/protocol.md does not show the {} frame {}",
            message.kind(),
            hex(&expected)
        );
    }
}
