//! Text from another process made safe to show on a terminal: [`visible`] turns every
//! character that a terminal would act on instead of showing (C0 and C1 controls, DEL, the
//! Unicode bidirectional overrides) into a visible escape, and leaves the rest as it is.
//!
//! **Who calls it.** The client's text output (`roles/client/output.rs`), the error lines
//! `main.rs` prints, and log lines that quote what a peer sent. JSON output does not: JSON
//! escapes controls itself, and a program wants the text unchanged.
//!
//! Why a terminal must never get these characters: `docs/security.md`, "Text from other
//! clients: shown, never obeyed".

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every character a terminal would act on replaced by a visible escape.
/// Borrows when there is nothing to escape, which is almost always.
///
/// Escaped: every C0 control (U+0000-U+001F, tab and newline included), DEL (U+007F), every
/// C1 control (U+0080-U+009F), and the bidirectional embeddings, overrides and isolates
/// (U+202A-U+202E, U+2066-U+2069). Tab, newline and CR show as `\t`, `\n`, `\r`; the other
/// C0 controls and DEL as `\xHH`; C1 and bidirectional characters as `\u{HHHH}`. Everything
/// else, backslash included, is shown as it is: the escapes are for reading, not a way back
/// to the bytes (`--output json` carries those).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => shown.push_str("\\t"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\0'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(shown, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Whether a terminal could take `c` as an order rather than a character to show.
fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// The Unicode bidirectional embeddings, overrides and isolates: they change the order in
/// which the text after them is shown ("Trojan Source", CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in [
            "hello",
            "",
            "naïve café ✓ 日本",
            "back\\slash",
            "~!@#$%^&*()",
        ] {
            assert!(matches!(visible(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn every_control_and_bidi_character_is_escaped() {
        assert_eq!(visible("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(visible("a\tb\nc\rd\x08e\x7f"), "a\\tb\\nc\\rd\\x08e\\x7f");
        assert_eq!(visible("\0"), "\\x00");
        assert_eq!(visible("\u{85}\u{9b}2J"), "\\u{85}\\u{9b}2J");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn nothing_a_terminal_acts_on_is_left() {
        let every: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = visible(&every);
        assert!(
            !shown.chars().any(needs_escape),
            "a control or bidi character survived"
        );
        // Neighbours of the escaped ranges stay as they are.
        for kept in [
            '\u{20}', '\u{7e}', '\u{a0}', '\u{2029}', '\u{202f}', '\u{206a}',
        ] {
            assert!(shown.contains(kept), "{kept:?} should be shown as it is");
        }
    }
}
