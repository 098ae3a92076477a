//! A minimal JSON writer for the JSON Lines that `CONTRACT.md` pins: the client's events
//! (`roles/client/output.rs`), the status object (`tools/status.rs`) and the bench report
//! (`tools/bench/`). dsys only ever *writes* JSON, and serde is not among its runtime crates,
//! so this is the whole of it: objects, strings, numbers, booleans and arrays.

use std::fmt::Write;

/// Builds one JSON object, field by field, in the order given.
#[derive(Default)]
pub struct Object {
    out: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_string(&mut self.out, key);
        self.out.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        push_string(&mut self.out, value);
        self
    }

    /// Adds a number field.
    pub fn num(mut self, key: &str, value: u64) -> Object {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds a field whose value is already JSON (an array or object built elsewhere).
    pub fn raw(mut self, key: &str, json: &str) -> Object {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// The finished object.
    pub fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// A JSON array of already-encoded values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

/// A JSON string literal for `s`.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let line = Object::new().str("text", "a\"b\\c\nd\u{1}").finish();
        assert_eq!(line, r#"{"text":"a\"b\\c\nd\u0001"}"#);
    }

    #[test]
    fn fields_keep_their_order() {
        let line = Object::new()
            .str("event", "x")
            .num("seq", 3)
            .bool("ok", true)
            .raw("list", &array(vec![string("a")]))
            .finish();
        assert_eq!(line, r#"{"event":"x","seq":3,"ok":true,"list":["a"]}"#);
    }
}
