//! The course in `docs/`, the README and the comments of the code (`//!`, `///`, and the
//! examples' `//`) point into the code all the time: file paths, item names, which file
//! holds an item, links between chapters. This test fails when one of those pointers has
//! gone stale, and names the text, the line and the stale name, all at once. Run it alone
//! with `cargo test --test docs` (no process, no socket, under a second). Other tests in
//! this file hold the log lines the docs quote to the modules that print them, each claim
//! "this item is in that file" to the file (`docs/claims.rs`), `src/lib.rs`'s Layout to
//! the files of `src/` (`docs/layout.rs`), and each chapter to its "Break it" and
//! "Questions" endings (`docs/chapters.rs`).
//!
//! `docs/testing.md` ("The docs test") says what counts as a name, how each is found (a
//! plain text scan of the rustfmt-formatted sources, no parser), and how to fix what the
//! test reports. A name that is rightly not in this crate goes into [`ALLOWED`]; an entry
//! that is no longer needed fails the test until it is deleted.

#[path = "docs/chapters.rs"]
mod chapters;
#[path = "docs/claims.rs"]
mod claims;
#[path = "docs/layout.rs"]
mod layout;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Names the docs and the comments use that are rightly not defined in this crate.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // std: types (each covers its methods), traits, variants and methods that the docs
    // discuss beside dsys's own.
    "Arc", "AtomicBool", "AtomicU64", "BufWriter", "Clone", "Condvar", "Cursor", "Debug",
    "Display", "Drop", "Err", "ErrorKind", "HashMap", "Instant", "Interrupted", "None", "Ok", "OnceLock",
    "RandomState", "Read", "Receiver", "Relaxed", "SeqCst", "Sender", "Shutdown", "Some",
    "String", "TcpListener", "TcpStream", "TimedOut", "Unsupported", "Vec", "WouldBlock",
    "Write", "Command::pre_exec", "notify_all", "try_clone", "try_wait",
    // crossbeam-channel.
    "Disconnected", "tick", "try_send",
    // The kernel: a build option, a capability, fields of /proc/PID/status, a system call,
    // error numbers.
    "CONFIG_INET_DIAG_DESTROY", "CAP_NET_ADMIN", "Cpus_allowed_list", "Threads", "VmHWM",
    "VmRSS", "sched_yield", "ECONNRESET", "EPIPE", "EINVAL", "EACCES",
    // The C library: the environment variable that sets glibc's start-up tunables, the
    // `sysconf` name of the clock tick, the types of a resource limit and of a size.
    "GLIBC_TUNABLES", "_SC_CLK_TCK", "rlim_t", "size_t", "ssize_t",
    // The commands of the brokers the benches compare with: Redis's and NATS's.
    "PUBLISH", "SUBSCRIBE", "PUB", "CONNECT",
    // Mathematics: the base-2 logarithm, written as a call.
    "log2",
    // The outside contract: kept beside the repository, not in it.
    "CONTRACT.md",
    // What the docs compare dsys with: the Rust Book's final project, a crate, HTTP, and
    // the types a client written in JavaScript would use.
    "ThreadPool", "env_logger", "GET", "BigInt", "Number",
];

/// Leading path segments that name a module outside this crate, or a primitive type
/// (`u64::MAX`).
const FOREIGN_MODULES: &[&str] = &["std", "crossbeam_channel", "thread", "u64"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` relative to the repository, with `/` separators.
fn rel(path: &Path) -> String {
    let rel = path.strip_prefix(repo()).expect("a path in the repository");
    rel.to_string_lossy().replace('\\', "/")
}

/// A definition: its name, what it is, its line and its indent.
struct Def(String, &'static str, usize, usize);

/// A block that owns members (`impl T`, `struct T`, `enum T`, `trait T`, a struct-like
/// variant `T { .. }`): owner, indent, first and last line. Its members are the defs
/// between those lines one indent (4 spaces) deeper.
struct Block(String, usize, usize, usize);

struct SourceFile {
    rel: String,
    defs: Vec<Def>,
    blocks: Vec<Block>,
    text: String,
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_camel(s: &str) -> bool {
    is_ident(s) && s.starts_with(|c: char| c.is_ascii_uppercase()) && s.contains(char::is_lowercase)
}

/// The identifier at the start of `s`.
fn leading_ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    &s[..end.unwrap_or(s.len())]
}

/// `impl<..> Trait<..> for path::Type<..> {` and `impl Type {` → `Type`.
fn impl_self_type(header: &str) -> String {
    let mut depth = 0;
    let plain: String = (header.chars())
        .filter(|&c| {
            depth += (c == '<') as i32 - (c == '>') as i32;
            depth == 0 && c != '>'
        })
        .collect();
    let ty = plain.rsplit(" for ").next().unwrap_or("");
    let ty = ty.trim_start_matches("impl");
    let path = ty.split_whitespace().next().unwrap_or("");
    path.rsplit("::").next().unwrap_or("").to_string()
}

/// Finds the defs and member blocks of one file. It relies on rustfmt's layout: a block
/// opened by a line at indent `i` closes at the next line that starts with `}` at indent `i`.
fn index_file(rel: String, text: String) -> SourceFile {
    let lines: Vec<&str> = text.lines().collect();
    let (mut defs, mut blocks) = (Vec::new(), Vec::new());
    let mut open: Vec<(String, usize, usize, bool)> = Vec::new(); // owner, indent, line, enum?
    for (n, raw) in lines.iter().enumerate() {
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        if line.starts_with("//") || line.starts_with("#[") || line.is_empty() || line == "{" {
            continue; // a lone `{` follows a `where` clause: its block is open already
        }
        if line.starts_with('}') {
            open.retain(|o| o.1 <= indent); // drops a block whose end was not recognised
            if open.last().is_some_and(|o| o.1 == indent) {
                let (owner, indent, start, _) = open.pop().expect("an open block");
                blocks.push(Block(owner, indent, start, n));
            }
        }
        let parent = open.last().filter(|o| o.1 + 4 == indent).map(|o| o.3);
        let mut words = line.split_whitespace().peekable();
        // `const` qualifies a function (`pub const unsafe fn new`), but opens a constant
        // item (`const LIMIT: u64`) everywhere else.
        let const_fn = line.contains("const fn ") || line.contains("const unsafe fn ");
        let qualifier = |w: &&str| {
            w.starts_with("pub")
                || ["async", "unsafe", "extern", "\"C\""].contains(w)
                || (*w == "const" && const_fn)
        };
        while words.next_if(qualifier).is_some() {}
        let first = words.next().unwrap_or("");
        let mut second = leading_ident(words.next().unwrap_or(""));
        if first == "let" && second == "mut" {
            second = leading_ident(words.next().unwrap_or(""));
        }
        // `let (a, b) = ..`: each name of the tuple is a binding.
        if first == "let" && second.is_empty() && line.starts_with("let (") {
            let names = line["let (".len()..].split(')').next().unwrap_or("");
            for name in names.split(", ") {
                let name = leading_ident(name.trim_start_matches("mut "));
                defs.push(Def(name.to_string(), "let", n, 0));
            }
        }
        let opens = line.ends_with('{') || lines.get(n + 1).is_some_and(|l| l.trim() == "where");
        let mut owner = String::new();
        let kind = match first {
            "fn" | "macro_rules!" => "fn",
            "mod" => "mod",
            "const" | "static" => "const",
            "let" => "let",
            "type" => "type",
            "struct" | "enum" | "trait" | "union" => {
                owner = second.to_string();
                "type"
            }
            _ if first == "impl" || first.starts_with("impl<") => {
                owner = impl_self_type(line);
                ""
            }
            _ if parent == Some(true) && is_camel(leading_ident(line)) => {
                second = leading_ident(line);
                owner = second.to_string();
                "variant"
            }
            _ => {
                second = first
                    .strip_suffix(':')
                    .filter(|_| line.len() > first.len())
                    .unwrap_or("");
                if is_ident(second) { "field" } else { "" }
            }
        };
        if !kind.is_empty() {
            defs.push(Def(second.to_string(), kind, n, indent));
        }
        if opens {
            open.push((owner, indent, n, first == "enum"));
        }
        // The parameters of a one-line signature: `fn f(a: T, mut b: U)`.
        let params = line.split_once('(').map_or("", |p| p.1).split(", ");
        for param in params.filter(|p| first == "fn" && p.contains(':')) {
            let name = leading_ident(param.trim_start_matches("mut "));
            defs.push(Def(name.to_string(), "let", n, 0));
        }
    }
    SourceFile {
        rel,
        defs,
        blocks,
        text,
    }
}

/// Indexes every `.rs` file under `dir`, except this test's own (its allow-list defines
/// nothing, and its comments quote wrong pointers on purpose).
fn load_sources(dir: &Path, out: &mut Vec<SourceFile>) {
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    let mut paths: Vec<PathBuf> = entries.map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            load_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !is_this_test(&path) {
            let text = fs::read_to_string(&path).expect("a readable source file");
            out.push(index_file(rel(&path), text));
        }
    }
}

fn is_this_test(path: &Path) -> bool {
    let rel = rel(path);
    rel == "tests/docs.rs" || rel.starts_with("tests/docs/")
}

fn load_all_sources() -> Vec<SourceFile> {
    let mut sources = Vec::new();
    for dir in ["src", "tests", "benches", "examples"] {
        load_sources(&repo().join(dir), &mut sources);
    }
    sources
}

/// The comments of a source file as a markdown text, line for line (other lines left
/// empty): its `//!` and `///` blocks, and in `examples/` its plain `//` comments too,
/// which there carry the lesson.
fn comment_doc(file: &SourceFile) -> Doc {
    let example = file.rel.starts_with("examples/");
    let mut text = String::new();
    for line in file.text.lines() {
        let line = line.trim_start();
        let doc = (line.strip_prefix("//!"))
            .or_else(|| line.strip_prefix("///").filter(|r| !r.starts_with('/')))
            .or_else(|| line.strip_prefix("//").filter(|_| example));
        if let Some(comment) = doc {
            text.push_str(comment.strip_prefix(' ').unwrap_or(comment));
        }
        text.push('\n');
    }
    parse_doc(&file.rel, &text, Origin::Comments)
}

/// Whether `file` belongs to module `m`: it is `m.rs`, or it sits in a folder `m/`.
fn in_module(file: &SourceFile, m: &str) -> bool {
    let parts: Vec<&str> = file.rel.split('/').collect();
    parts[..parts.len() - 1].contains(&m) || parts.last() == Some(&format!("{m}.rs").as_str())
}

fn defined(files: &[&SourceFile], name: &str, kinds: &[&str]) -> bool {
    let is = |d: &Def| d.0 == name && kinds.contains(&d.1);
    files.iter().any(|f| f.defs.iter().any(is))
}

/// Whether `member` is written directly inside a block owned by `owner`.
fn has_member(files: &[&SourceFile], owner: &str, member: &str) -> bool {
    files.iter().any(|f| {
        let blocks = f.blocks.iter().filter(|b| b.0 == owner);
        blocks.into_iter().any(|Block(_, indent, start, end)| {
            let inside = |d: &&Def| d.2 > *start && d.2 < *end && d.3 == indent + 4;
            f.defs.iter().filter(inside).any(|d| d.0 == member)
        })
    })
}

const TYPE_KINDS: &[&str] = &["type", "variant"];
const ANY_KIND: &[&str] = &["fn", "mod", "const", "type", "variant", "field", "let"];

/// Checks a path of identifiers, `a::b::C::d`, and says why it is stale if it is.
fn check_path(all: &[SourceFile], segments: &[&str]) -> Result<(), String> {
    let mut files: Vec<&SourceFile> = all.iter().collect();
    let mut rest = segments;
    while rest.len() > 1 && ["dsys", "crate", "self", "super"].contains(&rest[0]) {
        rest = &rest[1..];
    }
    // A single capital letter is a type parameter (`W::KEEPALIVE`), bound where it is used.
    let parameter = rest[0].len() == 1 && rest[0].starts_with(|c: char| c.is_ascii_uppercase());
    if FOREIGN_MODULES.contains(&rest[0]) || parameter {
        return Ok(());
    }
    while rest.len() > 1 && !is_camel(rest[0]) {
        files.retain(|f| in_module(f, rest[0]));
        if files.is_empty() {
            return Err(format!("no module `{}`", rest[0]));
        }
        rest = &rest[1..];
    }
    match rest {
        [name] if defined(&files, name, ANY_KIND) => Ok(()),
        [name] => Err(format!("nothing named `{name}` in that module")),
        [.., owner, _] if !defined(&files, owner, TYPE_KINDS) => {
            Err(format!("no type or variant `{owner}`"))
        }
        [.., owner, member] if !has_member(&files, owner, member) => Err(format!(
            "no `{member}` in any impl, struct or enum of `{owner}`"
        )),
        _ => Ok(()),
    }
}

/// `None` when a span is not checked, else why it is stale, if it is.
type Verdict = Option<Result<(), String>>;

/// Whether an entry of [`ALLOWED`] `matches`; records it as used.
fn allow(used: &mut HashSet<&str>, matches: impl Fn(&str) -> bool) -> bool {
    let entry = ALLOWED.iter().find(|a| matches(a));
    entry.map(|a| used.insert(a)).is_some()
}

/// Checks what a backticked span names: `None` when it is not checked (prose, a command, a
/// flag, a single lowercase word), else why it is stale, if it is. Records allow-list hits.
fn check_span(all: &[SourceFile], span: &str, allowed: &mut HashSet<&str>) -> Verdict {
    let s = span.trim();
    if !s.contains([' ', '*']) && (s.ends_with(".rs") || s.ends_with(".md")) {
        if allow(allowed, |a| a == s) {
            return Some(Ok(()));
        }
        // Under `target/` are files a run writes, not part of the repository.
        return (!s.starts_with("target/")).then(|| check_file(all, s));
    }
    // `f(args)` → `f` and `T { fields }` → `T`; `write(2)` names a manual page, not code.
    let (head, called) = match s.strip_suffix(')').and_then(|r| r.split_once('(')) {
        Some((_, args)) if args.len() == 1 && args.starts_with(|c: char| c.is_ascii_digit()) => {
            return None;
        }
        Some((head, _)) => (head, true),
        None if s.ends_with('}') => (s.split('{').next().unwrap_or(s).trim_end(), false),
        None => (s, false),
    };
    // An allowed type (`Instant`) covers its members (`Instant::now`).
    let first = head.split("::").next().unwrap_or(head);
    if allow(allowed, |a| a == head || (a == first && is_camel(a))) {
        return Some(Ok(()));
    }
    if let Some((owner, field)) = head.split_once('.') {
        return (is_camel(owner) && is_ident(field)).then(|| check_path(all, &[owner, field]));
    }
    let segments: Vec<&str> = head.split("::").collect();
    if !segments.iter().all(|s| is_ident(s)) {
        return None;
    }
    let files: Vec<&SourceFile> = all.iter().collect();
    let name = segments[0];
    let def = |kinds| defined(&files, name, kinds);
    let snake = (name.contains('_') && !name.starts_with('_')) || called;
    let (ok, what) = match segments.len() {
        1 if name.len() > 1 && !name.contains(char::is_lowercase) => {
            // The whole literal, or the word it opens with (`"SKIPPED: no ..."`).
            let opens = |f: &SourceFile| {
                let quoted = format!("\"{name}");
                (f.text.match_indices(&quoted)).any(|(i, _)| {
                    !f.text[i + quoted.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            };
            let literal = all.iter().any(opens);
            (
                literal || def(&["const"]),
                "const, static or string literal",
            )
        }
        1 if is_camel(name) => (def(TYPE_KINDS), "type or variant"),
        1 if snake => (def(ANY_KIND), "fn, field, module or binding"),
        1 => return None,
        _ => return Some(check_path(all, &segments)),
    };
    Some(ok.then_some(()).ok_or(format!("no {what} `{name}`")))
}

fn check_file(all: &[SourceFile], path: &str) -> Result<(), String> {
    let root = repo();
    let rooted = ["src/", "tests/", "benches/", "examples/", "docs/"];
    let exists = if rooted.iter().any(|r| path.starts_with(r)) {
        root.join(path).exists()
    } else if path.ends_with(".md") {
        root.join(path).exists() || root.join("docs").join(path).exists()
    } else {
        all.iter().any(|f| f.rel.ends_with(&format!("/{path}")))
    };
    exists.then_some(()).ok_or_else(|| "no such file".into())
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some((before, after)) = rest.split_once('[') {
        // A link shows as its text.
        let Some((label, after)) = after.split_once("](") else {
            break;
        };
        text.push_str(before);
        text.push_str(label);
        rest = after.split_once(')').map_or("", |p| p.1);
    }
    text.push_str(rest);
    let dashed = text.to_lowercase().replace(' ', "-");
    dashed.replace(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'), "")
}

/// What the checks need from one markdown file, or from the comments of one source file.
#[derive(Default)]
struct Doc {
    rel: String,
    /// The anchors of its headings.
    anchors: HashSet<String>,
    /// `(line, text)` of every backticked span, and of every path or call in a diagram.
    names: Vec<(usize, String)>,
    /// `(line, target)` of every link outside code.
    links: Vec<(usize, String)>,
    /// The text outside fenced blocks (fenced lines left empty), for the claims.
    prose: String,
    /// Every backticked span of `prose`, in order.
    spans: Vec<Span>,
}

/// A backticked span: from its first backtick to after its last, its line, its text.
struct Span {
    start: usize,
    end: usize,
    line: usize,
    text: String,
}

/// Where a text comes from. In a source file's comments, a bare fence is Rust (a doctest),
/// and links are rustdoc's to check.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Markdown,
    Comments,
}

fn parse_doc(rel: &str, text: &str, origin: Origin) -> Doc {
    let mut doc = Doc {
        rel: rel.into(),
        ..Doc::default()
    };
    let mut repeats: HashMap<String, usize> = HashMap::new();
    // The prose, with the fenced lines blanked out so that no span crosses a fence.
    let mut prose = String::new();
    let mut fence: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = fence.xor(Some(info.trim()));
        } else if let Some(lang) = fence {
            let diagram = match origin {
                Origin::Markdown => !["rust", "console"].contains(&lang),
                Origin::Comments => lang == "text",
            };
            if diagram {
                let names = diagram_names(line).into_iter();
                doc.names.extend(names.map(|name| (n + 1, name)));
            }
        } else {
            if let Some(heading) = trimmed.trim_start_matches('#').strip_prefix(' ')
                && trimmed.starts_with('#')
            {
                let base = slug(heading.trim());
                let count = repeats.entry(base.clone()).or_insert(0);
                *count += 1;
                doc.anchors.insert(match *count {
                    1 => base,
                    n => format!("{base}-{}", n - 1),
                });
            }
            prose.push_str(line);
        }
        prose.push('\n');
    }
    // Backticked spans (they may wrap onto the next line, never across a blank one), and
    // link targets outside them.
    let bytes = prose.as_bytes();
    let line_at = |i: usize| prose[..i].matches('\n').count() + 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let ticks = &prose[i..i + bytes[i..].iter().take_while(|&&b| b == b'`').count()];
            let after = i + ticks.len();
            i = match prose[after..].find(ticks).map(|j| after + j) {
                Some(end) if !prose[after..end].contains("\n\n") => {
                    let span = prose[after..end].replace('\n', " ");
                    doc.names.push((line_at(i), span.clone()));
                    doc.spans.push(Span {
                        start: i,
                        end: end + ticks.len(),
                        line: line_at(i),
                        text: span,
                    });
                    end + ticks.len()
                }
                _ => after,
            };
            continue;
        }
        if bytes[i..].starts_with(b"](")
            && origin == Origin::Markdown
            && let Some(len) = prose[i + 2..].find(')')
        {
            let target = prose[i + 2..i + 2 + len].to_string();
            doc.links.push((line_at(i), target));
        }
        i += 1;
    }
    doc.prose = prose;
    doc
}

/// In a diagram: `a::b` paths, and snake_case names with an underscore written as calls.
fn diagram_names(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        rest = &rest[start..];
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let (token, after) = rest.split_at(len.unwrap_or(rest.len()));
        let token = token.trim_end_matches(':');
        if token.contains("::") {
            names.push(token.to_string());
        } else if after.starts_with('(') && token.contains('_') {
            names.push(format!("{token}()"));
        }
        rest = after;
    }
    names
}

fn load_docs() -> Vec<Doc> {
    let root = repo();
    let entries = fs::read_dir(root.join("docs"))
        .expect("the docs/ folder")
        .flatten();
    let mut paths: Vec<PathBuf> = entries.map(|e| e.path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "md"));
    paths.sort();
    paths.insert(0, root.join("README.md"));
    let read = |p: &PathBuf| {
        let text = fs::read_to_string(p).expect("a readable doc");
        parse_doc(&rel(p), &text, Origin::Markdown)
    };
    paths.iter().map(read).collect()
}

/// Why a link is broken, if it is. Records allow-list hits.
fn check_link(docs: &[Doc], from: &Doc, link: &str, allowed: &mut HashSet<&str>) -> Option<String> {
    if link.contains("://") || link.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
    let own = from.rel.rsplit('/').next().unwrap_or_default();
    let relative = if path.is_empty() { own } else { path };
    let canonical = |p: &Path| fs::canonicalize(p).ok();
    let Some(target) = canonical(&repo().join(&from.rel).with_file_name(relative)) else {
        return (!allow(allowed, |a| a == link)).then(|| "no such file or folder".into());
    };
    let same = |d: &&Doc| canonical(&repo().join(&d.rel)).as_ref() == Some(&target);
    match docs.iter().find(same) {
        _ if anchor.is_empty() => None,
        Some(doc) if doc.anchors.contains(anchor) => None,
        Some(doc) => Some(format!("{} has no heading #{anchor}", doc.rel)),
        None => Some("anchors are checked only in README.md and docs/*.md".into()),
    }
}

#[test]
fn docs_name_only_what_exists() {
    let sources = load_all_sources();
    let docs = load_docs();
    let comments: Vec<Doc> = sources.iter().map(comment_doc).collect();
    let mut allowed_used = HashSet::new();
    let mut problems = Vec::new();
    for doc in docs.iter().chain(&comments) {
        for (line, name) in &doc.names {
            if let Some(Err(why)) = check_span(&sources, name, &mut allowed_used) {
                problems.push((doc.rel.clone(), *line, format!("`{name}`: {why}")));
            }
        }
        for (line, link) in &doc.links {
            if let Some(why) = check_link(&docs, doc, link, &mut allowed_used) {
                problems.push((doc.rel.clone(), *line, format!("link ({link}): {why}")));
            }
        }
    }
    for unused in ALLOWED.iter().filter(|a| !allowed_used.contains(*a)) {
        let why = "no longer needed (unused, or it exists now): delete it from ALLOWED";
        problems.push(("tests/docs.rs".into(), 0, format!("`{unused}`: {why}")));
    }
    problems.sort();
    let report: Vec<String> = problems
        .iter()
        .map(|(f, l, w)| format!("{f}:{l}: {w}"))
        .collect();
    assert!(
        report.is_empty(),
        "\n{} stale reference(s) in the docs:\n  {}\n\nWrite what the code calls it now, or reword; \
         a name rightly outside this crate goes into ALLOWED in tests/docs.rs.\n",
        report.len(),
        report.join("\n  ")
    );
}

/// Where a module's code lives, as `(file, folder of its child modules)`. env_logger prints
/// a record's target, which `log` sets to `module_path!()` (dsys never sets another), so a
/// log line's `dsys::a::b` is the crate root `src/lib.rs` followed by modules `a` and `b`:
/// `src/a/b.rs`, `src/a/b/mod.rs`, or an inline `mod b {` in the file of `dsys::a`.
fn module_file(segments: &[&str]) -> Option<(PathBuf, PathBuf)> {
    let Some((last, parents)) = segments.split_last() else {
        let src = repo().join("src");
        return Some((src.join("lib.rs"), src));
    };
    let (parent, dir) = module_file(parents)?;
    let own_dir = dir.join(last);
    let file = dir.join(format!("{last}.rs"));
    if file.is_file() {
        return Some((file, own_dir));
    }
    if own_dir.join("mod.rs").is_file() {
        return Some((own_dir.join("mod.rs"), own_dir));
    }
    let text = fs::read_to_string(&parent).ok()?;
    let inline = text.lines().any(|l| {
        let l = l
            .trim_start()
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        l == format!("mod {last} {{")
    });
    inline.then_some((parent, own_dir))
}

/// The fixed words a log line opens with, before its first value: `server ready` of
/// `server ready addr=127.0.0.1:8081 peers=1`, `open-file limit` of `open-file limit 20000
/// (hard 20000): ...`. Empty when the line opens with a value.
fn message_opening(message: &str) -> String {
    let fixed = |w: &&str| !w.contains(|c: char| c.is_ascii_digit() || "=.\"[".contains(c));
    let words: Vec<&str> = message.split_whitespace().take_while(fixed).collect();
    words.join(" ")
}

/// `(line, module path, message)` of every log line a doc quotes, as env_logger prints
/// them: `[2026-... INFO  dsys::roles::server::hub::incarnation] server ready addr=...`.
fn quoted_log_lines(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("dsys::") {
            let after = &rest[start..];
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            let (path, tail) = after.split_at(len.unwrap_or(after.len()));
            if let Some(message) = tail.strip_prefix("] ") {
                found.push((n + 1, path.to_string(), message.to_string()));
            }
            rest = tail;
        }
    }
    found
}

#[test]
fn quoted_log_lines_name_modules_that_log_them() {
    let root = repo();
    let mut paths = vec![root.join("README.md")];
    let entries = fs::read_dir(root.join("docs")).expect("the docs/ folder");
    let mut chapters: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    chapters.retain(|p| p.extension().is_some_and(|e| e == "md"));
    chapters.sort();
    paths.extend(chapters);
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in &paths {
        let text = fs::read_to_string(path).expect("a readable doc");
        for (line, module, message) in quoted_log_lines(&text) {
            checked += 1;
            let at = format!("{}:{line}: `{module}]`", rel(path));
            let segments: Vec<&str> = module.split("::").skip(1).collect();
            let Some((file, _)) = module_file(&segments) else {
                problems.push(format!("{at}: no such module under src/"));
                continue;
            };
            // The words must be in that module's own file: a log line names the module its
            // macro is written in.
            let opening = message_opening(&message);
            let source = fs::read_to_string(&file).expect("a readable source file");
            if !opening.is_empty() && !source.contains(&opening) {
                let file = rel(&file);
                problems.push(format!("{at}: {file} never writes \"{opening}\""));
            }
        }
    }
    assert!(
        checked > 0,
        "no quoted log line found: is the pattern stale?"
    );
    assert!(
        problems.is_empty(),
        "\n{} quoted log line(s) that the code no longer prints so:\n  {}\n\nRun the command \
         and quote what it prints now.\n",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn items_are_in_the_files_the_text_names() {
    let sources = load_all_sources();
    let mut docs = load_docs();
    docs.extend(sources.iter().map(comment_doc));
    let mut problems = claims::check(&sources, &docs);
    problems.sort();
    let report: Vec<String> = (problems.iter())
        .map(|(f, l, w)| format!("{f}:{l}: {w}"))
        .collect();
    assert!(
        report.is_empty(),
        "\n{} item(s) not where the text says:\n  {}\n\nName the file that defines it now, or \
         reword.\n",
        report.len(),
        report.join("\n  ")
    );
}

#[test]
fn lib_layout_lists_every_file_of_src() {
    let problems = layout::check();
    assert!(
        problems.is_empty(),
        "\n{} problem(s) with the map in src/lib.rs:\n  {}\n\nGive each file of src/ one line \
         in the Layout, where a reader meets it; drop the lines of files that are gone.\n",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn chapters_end_with_exercises_that_quote_one_line() {
    let sources = load_all_sources();
    let mut problems = chapters::check(&sources, &load_docs());
    problems.sort();
    let report: Vec<String> = (problems.iter())
        .map(|(f, l, w)| format!("{f}:{l}: {w}"))
        .collect();
    assert!(
        report.is_empty(),
        "\n{} problem(s) with the chapters' endings:\n  {}\n\nEach chapter ends with \
         \"## Break it\" and \"## Questions\"; an exercise quotes a line its file holds once.\n",
        report.len(),
        report.join("\n  ")
    );
}

#[test]
fn every_test_file_has_a_row_in_the_testing_chapter() {
    let chapter = fs::read_to_string(repo().join("docs/testing.md")).expect("docs/testing.md");
    let mut missing = Vec::new();
    for entry in fs::read_dir(repo().join("tests")).expect("tests/") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let row = format!("| `{}` |", rel(&path));
            if !chapter.contains(&row) {
                missing.push(rel(&path));
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "\ndocs/testing.md has no row for {}: add one to its table of test files, saying \
         what the file asserts.\n",
        missing.join(", ")
    );
}
