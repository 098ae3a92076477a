//! The worked examples in `docs/protocol.md`, byte for byte: the frames are read from the
//! document itself, so the document cannot drift from the encoder unseen.

use super::*;

/// The document the examples live in, read at compile time.
const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

/// Section 9 of the document: from its heading to the next section's.
fn section_9() -> &'static str {
    let start = PROTOCOL_DOC
        .find("\n## 9. ")
        .expect("docs/protocol.md has a section 9");
    let rest = &PROTOCOL_DOC[start + 1..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// What one fenced ```` ```text ```` block of hex in section 9 holds: its first line in the
/// document, its bytes, and the offset table that follows it (`(offset, bytes)` of every row
/// whose Bytes column is a single run of hex; rows such as `11` × 16 are left out).
struct Shown {
    line: usize,
    bytes: Vec<u8>,
    rows: Vec<(usize, Vec<u8>)>,
}

fn is_hex_run(text: &str) -> bool {
    let mut pairs = text.split_whitespace().peekable();
    pairs.peek().is_some() && pairs.all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// Every hex block of section 9, in the document's order, each with its offset table.
fn frames_shown() -> Vec<Shown> {
    let section = section_9();
    let first_line = PROTOCOL_DOC[..PROTOCOL_DOC.find(section).unwrap()]
        .lines()
        .count();
    let mut shown: Vec<Shown> = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in section.lines().enumerate() {
        let number = first_line + n + 1;
        match (&mut block, line.trim()) {
            (None, "```text") => block = Some((number + 1, String::new())),
            (Some((start, text)), "```") => {
                assert!(
                    is_hex_run(text),
                    "docs/protocol.md:{start}: a block in section 9 that is not hex"
                );
                shown.push(Shown {
                    line: *start,
                    bytes: unhex(text),
                    rows: Vec::new(),
                });
                block = None;
            }
            (Some((_, text)), hex_line) => {
                text.push(' ');
                text.push_str(hex_line);
            }
            (None, row) if row.starts_with('|') => {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let (Some(offset), Some(bytes)) = (cells.get(1), cells.get(2)) else {
                    continue;
                };
                let Ok(offset) = offset.parse::<usize>() else {
                    continue; // the header and the `---` line
                };
                let inner = bytes.strip_prefix('`').and_then(|b| b.strip_suffix('`'));
                if let Some(inner) = inner.filter(|b| !b.contains('`') && is_hex_run(b)) {
                    let last = shown.last_mut().expect("a table follows a frame");
                    last.rows.push((offset, unhex(inner)));
                }
            }
            _ => {}
        }
    }
    shown
}

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
    assert!(
        PROTOCOL_DOC.contains(&format!("`{}`", hex(hi_body))),
        "docs/protocol.md 3.1 does not show the Text body {}",
        hex(hi_body)
    );
    // The messages of section 9, in the order the document shows them.
    let examples = [
        Message::Challenge { nonce: [0x11; 16] },
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            proof: [0; 32],
        },
        Message::Register {
            name: "alice".into(),
            resume: None,
        },
        Message::Registered {
            session,
            token: 0x5d7c_9e01_a3b4_f268,
            keepalive_ms: 10_000,
            silence_ms: 2_500,
            watermarks: vec![],
        },
        Message::RegisterRefused {
            reason: "server full".into(),
            code: Refusal::ServerFull,
        },
        Message::Publish {
            seq: 1,
            body: hi.clone(),
        },
        Message::Deliver {
            from: "alice".into(),
            session,
            seq: 1,
            body: hi,
        },
        Message::Ack { seq: 1 },
        Message::Publish {
            seq: 2,
            body: Body::FileStart {
                name: "notes.txt".into(),
                size: 6,
            },
        },
        Message::Publish {
            seq: 3,
            body: Body::FileChunk {
                data: b"hello\n".to_vec(),
            },
        },
        Message::Publish {
            seq: 4,
            body: Body::FileEnd {
                number: 2,
                sha256: sha256::digest(b"hello\n"),
            },
        },
        Message::Keepalive,
        Message::Deregister,
    ];
    let shown = frames_shown();
    // 9.1 to 9.3 give each frame a table; 9.4's frames are too short to need one.
    let tables = shown.iter().filter(|s| !s.rows.is_empty()).count();
    assert_eq!(
        tables, 11,
        "the offset tables of section 9 were not all read"
    );
    assert_eq!(
        shown.len(),
        examples.len(),
        "docs/protocol.md section 9 shows {} frames; this test knows {}",
        shown.len(),
        examples.len()
    );
    for (message, doc) in examples.iter().zip(&shown) {
        let line = doc.line;
        assert_eq!(
            hex(&message.encode()),
            hex(&doc.bytes),
            "docs/protocol.md:{line}: the {} frame shown is not what the encoder writes",
            message.kind()
        );
        assert_eq!(&Message::decode(&doc.bytes[4..]).unwrap(), message);
        for (offset, bytes) in &doc.rows {
            assert_eq!(
                doc.bytes.get(*offset..offset + bytes.len()).map(hex),
                Some(hex(bytes)),
                "docs/protocol.md: the table under line {line} shows `{}` at offset {offset}",
                hex(bytes)
            );
        }
    }
    // The prose above the Hello frame and its table's meaning column name the version too.
    let hello = format!("`Hello{{version {PROTOCOL_VERSION}, role Client}}`");
    let row = format!("| version {PROTOCOL_VERSION} |");
    assert!(
        section_9().contains(&hello) && section_9().contains(&row),
        "docs/protocol.md section 9 does not say {hello} and {row}"
    );
}
