//! What every chapter of `docs/` ends with, as the README promises: "Break it" exercises and
//! questions; and exercises that point at one line, not two.
//!
//! An exercise is a paragraph of the `## Break it` section that opens with a bold title
//! (`**A title.**`). The line it quotes is the backticked span right after the word
//! "change" or the words "replace the line". The file it names is its first backticked
//! `.rs` path; without one, the file that defines the item of its opening "In `item`"; else
//! the file of the exercise before it ("In the same condition, ..."). The quoted text must
//! appear exactly once in that file: a reader told to change it must find one place, and a
//! file that grows a second copy makes the exercise ambiguous.

use super::claims::{defines, item_segments, resolve};
use super::{Doc, SourceFile, Span};

/// Quotes rightly found more than once, for now: `(chapter, file, quote, why)`. An entry
/// that no longer matches fails the test until it is deleted.
#[rustfmt::skip]
const REPEATS_ALLOWED: &[(&str, &str, &str, &str)] = &[];

/// The text between two byte offsets of `doc`'s prose, its spaces made one.
fn words(doc: &Doc, from: usize, to: usize) -> String {
    doc.prose[from..to]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The spans of each exercise of the `## Break it` section, with the paragraph's start.
fn exercises(doc: &Doc) -> Vec<(usize, Vec<&Span>)> {
    let Some(section) = doc.prose.find("\n## Break it\n") else {
        return Vec::new();
    };
    let end = (doc.prose[section + 1..].find("\n## ")).map_or(doc.prose.len(), |e| section + 1 + e);
    let mut found = Vec::new();
    let mut at = section;
    for paragraph in doc.prose[section..end].split("\n\n") {
        let start = at;
        at += paragraph.len() + 2;
        if !paragraph.trim_start().starts_with("**") {
            continue;
        }
        let inside = |s: &&Span| s.start >= start && s.end <= start + paragraph.len();
        found.push((start, doc.spans.iter().filter(inside).collect()));
    }
    found
}

/// What is wrong with the chapters' endings and their exercises' quotes.
pub fn check(all: &[SourceFile], chapters: &[Doc]) -> Vec<(String, usize, String)> {
    let mut problems = Vec::new();
    let mut allowed_used = vec![false; REPEATS_ALLOWED.len()];
    for doc in chapters.iter().filter(|d| d.rel.starts_with("docs/")) {
        for heading in ["## Break it", "## Questions"] {
            if !doc.prose.contains(&format!("\n{heading}\n")) {
                let why = format!("no `{heading}` section: every chapter ends with one");
                problems.push((doc.rel.clone(), 0, why));
            }
        }
        let mut previous: Option<&SourceFile> = None;
        for (start, spans) in exercises(doc) {
            let line = doc.prose[..start].matches('\n').count() + 2;
            let mut quote = None;
            let mut from = start;
            for span in &spans {
                let before = words(doc, from, span.start);
                from = span.end;
                if before.ends_with("change") || before.ends_with("replace the line") {
                    quote = Some(*span);
                    break;
                }
            }
            let Some(quote) = quote else {
                let why = "an exercise that quotes no line after \"change\"".to_string();
                problems.push((doc.rel.clone(), line, why));
                continue;
            };
            let path = spans.iter().find(|s| s.text.ends_with(".rs"));
            let files: Vec<&SourceFile> = match (path, spans.first()) {
                (Some(path), _) => resolve(all, &doc.rel, &path.text),
                (None, Some(first)) if words(doc, start, first.start).ends_with("In") => {
                    let segments = item_segments(&first.text).unwrap_or_default();
                    all.iter().filter(|f| defines(f, &segments)).collect()
                }
                _ => previous.into_iter().collect(),
            };
            let [file] = files[..] else {
                let why = format!("cannot tell which one file `{}` is in", quote.text);
                problems.push((doc.rel.clone(), quote.line, why));
                continue;
            };
            previous = Some(file);
            let lines: Vec<usize> = (file.text.lines().enumerate())
                .filter(|(_, l)| l.contains(&quote.text))
                .map(|(n, _)| n + 1)
                .collect();
            if lines.len() == 1 {
                continue;
            }
            let allowed = REPEATS_ALLOWED
                .iter()
                .position(|&(chapter, path, text, _)| {
                    chapter == doc.rel && path == file.rel && text == quote.text
                });
            if let Some(i) = allowed.filter(|_| lines.len() > 1) {
                allowed_used[i] = true;
                continue;
            }
            let at: Vec<String> = lines.iter().map(|n| format!("{}:{n}", file.rel)).collect();
            let why = match at.as_slice() {
                [] => format!("`{}` is not in {}", quote.text, file.rel),
                at => format!(
                    "`{}` appears {} times ({}): quote a line that appears once",
                    quote.text,
                    at.len(),
                    at.join(", ")
                ),
            };
            problems.push((doc.rel.clone(), quote.line, why));
        }
    }
    for (i, (chapter, path, ..)) in REPEATS_ALLOWED.iter().enumerate() {
        if !allowed_used[i] {
            let why = format!(
                "the entry for {chapter} and {path} in REPEATS_ALLOWED is no longer needed: \
                 delete it"
            );
            problems.push(("tests/docs/chapters.rs".into(), 0, why));
        }
    }
    problems
}
