//! Claims of place: a text that says an item is in a file, checked against that file.
//!
//! A pointer such as "`Clients::fan_out` in `hub/delivery.rs`" is right only while the item
//! is defined in that file; the name alone may still exist elsewhere after a move, which
//! the check of names cannot see. What counts as a claim, exactly (`gap` is the text
//! between two backticked spans, its spaces and line breaks made one space):
//!
//! - **In a sentence:** one or more items, joined by `, `, ` and `, `, and `, ` or `,
//!   followed by ` in `, ` (` or ` (in ` and a file path (`.rs`), itself maybe followed
//!   by more paths joined the same way: "`A` and `B::c` in `x.rs`", "`A` (`x.rs`)". An
//!   item is a Rust path (`name`, `Type::member`, `module::name`, `Type.field`, maybe
//!   written as a call `name()`), but not a single lowercase word without an underscore
//!   (`epoll`), which is prose unless written as a call. Any other word between the spans
//!   ("the `x` field in `y.rs`", "`a` calls `b` in `c.rs`") makes it no claim.
//! - **In a table row:** in a table with a column headed `File`, each item of the column
//!   headed `Function` or `Items ...`, outside parentheses, is in one of the files of the
//!   `File` cell of its row (the README's concept map, the seed's functions).
//!
//! A path is resolved as a reader would: from the repository root when it starts with
//! `src/`, `tests/`, `benches/` or `examples/`; else from the folder of the text that
//! names it, then from `src/`; else it is the end of a source file's path (if several
//! files end so, the item may be in any of them). A path that resolves to nothing is left
//! to the check of names, which reports it.
//!
//! An item is in a file when the file defines it: `fn`, `struct`, `enum`, `trait`, `type`,
//! `const`, `static`, `mod`, a field or an enum variant of that name, or an `impl` of it;
//! `Type::member` when the member is written directly in a block of `Type` in that file.
//! Leading module segments (`net::`) are left to the check of names.

use super::{Doc, SourceFile, Span, has_member, is_ident};

/// A text's claim that each of `items` is defined in one of `files`.
pub struct Claim {
    pub line: usize,
    pub items: Vec<String>,
    pub files: Vec<String>,
}

/// The text between two spans, each run of spaces and line breaks made one space.
fn gap(prose: &str, before: &Span, after: &Span) -> String {
    let mut gap = String::new();
    for c in prose[before.end..after.start].chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if !(c == ' ' && gap.ends_with(' ')) {
            gap.push(c);
        }
    }
    gap
}

const LIST: &[&str] = &[", ", " and ", ", and ", " or ", ", or "];
const PLACE: &[&str] = &[" in ", " (", " (in "];

fn is_path(span: &str) -> bool {
    span.ends_with(".rs") && !span.contains([' ', '*'])
}

/// The segments of an item (`Type::member`, `f()`, `Type.field`), or `None` if the span
/// is not one. A single lowercase word without an underscore (`epoll`, `timeout`) is
/// prose, as for the check of names, unless it is written as a call.
pub fn item_segments(span: &str) -> Option<Vec<&str>> {
    let s = span.strip_suffix("()").unwrap_or(span);
    let segments: Vec<&str> = s.split("::").flat_map(|p| p.split('.')).collect();
    let word = matches!(segments[..], [w] if w.starts_with(char::is_lowercase) && !w.contains('_'));
    let item = segments.iter().all(|s| is_ident(s)) && (!word || s.len() < span.len());
    item.then_some(segments)
}

/// Every claim of place in `doc`.
pub fn claims(doc: &Doc) -> Vec<Claim> {
    let mut found = Vec::new();
    let spans = &doc.spans;
    let gap_at = |j: usize| gap(&doc.prose, &spans[j - 1], &spans[j]);
    for j in 1..spans.len() {
        if !is_path(&spans[j].text) || !PLACE.contains(&gap_at(j).as_str()) {
            continue;
        }
        if is_path(&spans[j - 1].text) || item_segments(&spans[j - 1].text).is_none() {
            continue;
        }
        let mut first = j - 1;
        while first > 0
            && LIST.contains(&gap_at(first).as_str())
            && !is_path(&spans[first - 1].text)
            && item_segments(&spans[first - 1].text).is_some()
        {
            first -= 1;
        }
        let mut last = j;
        while last + 1 < spans.len()
            && LIST.contains(&gap_at(last + 1).as_str())
            && is_path(&spans[last + 1].text)
        {
            last += 1;
        }
        found.push(Claim {
            line: spans[j - 1].line,
            items: (first..j).map(|k| spans[k].text.clone()).collect(),
            files: (j..=last).map(|k| spans[k].text.clone()).collect(),
        });
    }
    found.extend(table_claims(doc));
    found
}

/// The claims of table rows: in a table with a `File` column, the items of its
/// `Function` or `Items ...` column are in one of the files of the same row.
fn table_claims(doc: &Doc) -> Vec<Claim> {
    let mut found = Vec::new();
    // The columns of the table being read: the files', and the items'.
    let mut columns: Option<(usize, Vec<usize>)> = None;
    let mut in_table = false;
    let mut offset = 0;
    for (n, line) in doc.prose.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let in_line = |s: &&Span| s.start >= start && s.end <= offset;
        let spans: Vec<&Span> = doc.spans.iter().filter(in_line).collect();
        // The cells, as byte ranges of the prose; a `|` inside a span splits nothing.
        let mut cells = Vec::new();
        let mut cell_start = start;
        for (i, c) in line.char_indices() {
            let at = start + i;
            if c == '|' && !spans.iter().any(|s| s.start < at && at < s.end) {
                cells.push((cell_start, at));
                cell_start = at + 1;
            }
        }
        let text = |&(from, to): &(usize, usize)| doc.prose[from..to].trim();
        if !in_table {
            in_table = true;
            let heads: Vec<&str> = cells.iter().map(text).collect();
            let file = heads.iter().position(|h| *h == "File");
            let items = |i: usize| heads[i] == "Function" || heads[i].starts_with("Items");
            columns = file.map(|f| (f, (0..heads.len()).filter(|&i| items(i)).collect()));
            continue;
        }
        let Some((file_column, item_columns)) = &columns else {
            continue;
        };
        let inside = |&(from, to): &(usize, usize)| {
            let within = spans.iter().filter(move |s| s.start >= from && s.end <= to);
            within.copied().collect::<Vec<&Span>>()
        };
        let Some(file_cell) = cells.get(*file_column) else {
            continue;
        };
        let files: Vec<String> = (inside(file_cell).iter())
            .filter(|s| is_path(&s.text))
            .map(|s| s.text.clone())
            .collect();
        let mut items = Vec::new();
        for cell in item_columns.iter().filter_map(|&i| cells.get(i)) {
            // Outside parentheses: `send_challenge` (the first frame ..., `Hello`).
            let mut depth = 0;
            let mut at = cell.0;
            for span in inside(cell) {
                let before = &doc.prose[at..span.start];
                depth += before.matches('(').count() as i32 - before.matches(')').count() as i32;
                at = span.end;
                if depth == 0 && item_segments(&span.text).is_some() && !is_path(&span.text) {
                    items.push(span.text.clone());
                }
            }
        }
        if !files.is_empty() && !items.is_empty() {
            found.push(Claim {
                line: n + 1,
                items,
                files,
            });
        }
    }
    found
}

/// The source files a path names, read from the text at `from` (a path in the repository).
pub fn resolve<'a>(all: &'a [SourceFile], from: &str, path: &str) -> Vec<&'a SourceFile> {
    let exact = |p: &str| all.iter().filter(|f| f.rel == p).collect::<Vec<_>>();
    let rooted = ["src/", "tests/", "benches/", "examples/"];
    if rooted.iter().any(|r| path.starts_with(r)) {
        return exact(path);
    }
    let folder = from.rsplit_once('/').map_or("", |p| p.0);
    for base in [folder, "src"] {
        let found = exact(&format!("{base}/{path}"));
        if !found.is_empty() {
            return found;
        }
    }
    let suffix = format!("/{path}");
    all.iter().filter(|f| f.rel.ends_with(&suffix)).collect()
}

/// Whether `file` defines the item of `segments`.
pub fn defines(file: &SourceFile, segments: &[&str]) -> bool {
    let segments = match segments
        .iter()
        .position(|s| s.starts_with(char::is_uppercase))
    {
        Some(camel) => &segments[camel..],
        None => &segments[segments.len() - 1..],
    };
    match segments {
        [name] => {
            let kinds = ["fn", "mod", "const", "type", "variant", "field"];
            file.defs
                .iter()
                .any(|d| d.0 == *name && kinds.contains(&d.1))
                || file.blocks.iter().any(|b| b.0 == *name)
        }
        [.., owner, member] => has_member(&[file], owner, member),
        [] => false,
    }
}

/// Checks every claim of `docs`, and says for each wrong one where the item really is.
pub fn check(all: &[SourceFile], docs: &[Doc]) -> Vec<(String, usize, String)> {
    let mut problems = Vec::new();
    for doc in docs {
        for claim in claims(doc) {
            let mut files = Vec::new();
            for path in &claim.files {
                let found = resolve(all, &doc.rel, path);
                if found.is_empty() {
                    files.clear(); // the check of names reports the path
                    break;
                }
                files.extend(found);
            }
            if files.is_empty() {
                continue;
            }
            for item in &claim.items {
                let segments = item_segments(item).expect("an item");
                if files.iter().any(|f| defines(f, &segments)) {
                    continue;
                }
                let homes: Vec<&str> = (all.iter())
                    .filter(|f| defines(f, &segments))
                    .map(|f| f.rel.as_str())
                    .collect();
                let actually = match homes.as_slice() {
                    [] => "no file defines it".to_string(),
                    homes => format!("it is in {}", homes.join(", ")),
                };
                let said = claim.files.join("` or `");
                let why = format!("`{item}` is said to be in `{said}`, but {actually}");
                problems.push((doc.rel.clone(), claim.line, why));
            }
        }
    }
    problems
}
