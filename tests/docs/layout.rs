//! The map of `src/lib.rs` kept whole: its `# Layout` lists every file of `src/`, and
//! nothing else.
//!
//! The map is the first ```` ```text ```` block after the `# Layout` heading of
//! `src/lib.rs`'s `//!` block. Each line is an entry, or the continuation of the entry
//! above. An entry starts left of the description column (where the first line's
//! description starts) with a name: `name.rs` a file, `name/` a folder. Two more spaces of
//! indent than a folder's line put an entry inside that folder; a name may hold a slash
//! itself (`net/accept.rs`). A continuation starts at the description column or further
//! right.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::repo;

/// An entry of the map: its line in `src/lib.rs`, and its path under `src/` (a folder's
/// ends with `/`).
pub struct Entry {
    pub line: usize,
    pub path: String,
}

/// The entries of `lib.rs`'s map, and the lines that are not entries as they should be;
/// or why it cannot be read at all.
pub fn entries(lib: &str) -> Result<(Vec<Entry>, Vec<String>), String> {
    let lines: Vec<(usize, &str)> = (lib.lines().enumerate())
        .filter_map(|(n, l)| Some((n + 1, l.strip_prefix("//!")?)))
        .map(|(n, l)| (n, l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let heading = (lines.iter())
        .position(|(_, l)| *l == "# Layout")
        .ok_or("src/lib.rs has no `# Layout` heading in its //! block")?;
    let after = &lines[heading..];
    let open = (after.iter())
        .position(|(_, l)| *l == "```text")
        .ok_or("the Layout has no ```text block")?;
    let block = &after[open + 1..];
    let close = (block.iter())
        .position(|(_, l)| l.starts_with("```"))
        .ok_or("the Layout's ```text block is not closed")?;
    let block = &block[..close];
    let column = |l: &str| {
        let name = l.split_whitespace().next().unwrap_or("");
        let rest = &l[l.len() - l.trim_start().len() + name.len()..];
        l.len() - rest.trim_start().len()
    };
    let description = block.first().map_or(0, |(_, l)| column(l));
    let mut folders: Vec<String> = Vec::new(); // the folder open at each depth
    let (mut found, mut wrong) = (Vec::new(), Vec::new());
    for &(line, text) in block {
        let indent = text.len() - text.trim_start().len();
        if text.trim().is_empty() || indent >= description {
            continue;
        }
        let name = text.split_whitespace().next().unwrap_or("");
        if indent % 2 != 0 || indent / 2 > folders.len() {
            wrong.push(format!(
                "src/lib.rs:{line}: `{name}` is indented under no folder"
            ));
            continue;
        }
        if !(name.ends_with(".rs") || name.ends_with('/')) {
            let why = "names neither a file (`.rs`) nor a folder (`/`), one a line";
            wrong.push(format!("src/lib.rs:{line}: `{name}` {why}"));
            continue;
        }
        folders.truncate(indent / 2);
        let path = format!("{}{name}", folders.concat());
        if name.ends_with('/') {
            folders.push(name.to_string());
        }
        found.push(Entry { line, path });
    }
    Ok((found, wrong))
}

/// Every `.rs` file under `dir`, as a path under `src/`.
fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            files_under(&entry.path(), &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".rs") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

/// What is wrong with the map: files it leaves out, names of files or folders that do not
/// exist, a file named twice.
pub fn check() -> Vec<String> {
    let src = repo().join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("a readable src/lib.rs");
    let (entries, mut problems) = match entries(&lib) {
        Ok(read) => read,
        Err(why) => return vec![why],
    };
    let mut files = BTreeSet::new();
    files_under(&src, "", &mut files);
    let mut named = BTreeSet::new();
    for Entry { line, path } in &entries {
        let exists = match path.strip_suffix('/') {
            Some(folder) => src.join(folder).is_dir(),
            None => files.contains(path),
        };
        if !exists {
            problems.push(format!(
                "src/lib.rs:{line}: the Layout names `src/{path}`, which does not exist"
            ));
        } else if !named.insert(path.clone()) {
            problems.push(format!(
                "src/lib.rs:{line}: the Layout names `src/{path}` twice"
            ));
        }
    }
    let block = entries.first().map_or(0, |e| e.line);
    for missing in files.difference(&named) {
        problems.push(format!(
            "src/lib.rs:{block}: the Layout leaves out `src/{missing}`"
        ));
    }
    problems
}
