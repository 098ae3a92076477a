//! Files on the client: reading one to send, and saving a received one safely.
//!
//! A file name that arrives over the wire is untrusted. [`safe_name`] keeps only its last
//! component and neutralises everything that could leave the download directory or confuse
//! a terminal; [`save`] writes to a temporary file first and links it into place under a
//! name that does not exist yet, so a partial file never appears under the final name and an
//! existing file is never overwritten.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Longest file name kept, in bytes; longer names are cut (at a character boundary).
const MAX_NAME_BYTES: usize = 200;
/// How many `name (n)` variants to try before giving up on a crowded directory.
const MAX_SUFFIX: u32 = 10_000;

/// Reads a file to send, refusing what cannot be sent before anything is numbered.
///
/// # Errors
/// A sentence for the user: missing, unreadable, not a file, or larger than `max_len`.
pub fn read_for_sending(path: &Path, max_len: usize) -> Result<(String, Vec<u8>), String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot send {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot send {shown}: not a regular file"));
    }
    if meta.len() > max_len as u64 {
        return Err(format!(
            "cannot send {shown}: {} bytes is over the {max_len}-byte limit",
            meta.len()
        ));
    }
    let data = fs::read(path).map_err(|e| format!("cannot send {shown}: {e}"))?;
    if data.len() > max_len {
        return Err(format!(
            "cannot send {shown}: it grew past the limit while read"
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    Ok((name, data))
}

/// Turns an untrusted name into a plain file name: the last component after `/` or `\`,
/// control characters replaced by `_`, leading dots replaced by `_`, cut to a sane length,
/// and `file` when nothing is left.
pub fn safe_name(untrusted: &str) -> String {
    let last = untrusted.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let dots = name.len() - name.trim_start_matches('.').len();
    name.replace_range(..dots, &"_".repeat(dots));
    while name.len() > MAX_NAME_BYTES {
        name.pop();
    }
    if name.is_empty() {
        name.push_str("file");
    }
    name
}

/// Saves `data` in `dir` under a safe version of `untrusted`, never overwriting: when the
/// name exists, ` (1)`, ` (2)`, ... is added before the extension. Returns the path.
///
/// # Errors
/// The I/O error when the directory cannot be created or written.
pub fn save(dir: &Path, untrusted: &str, data: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".dsys-partial-{:016x}", crate::net::random_u64()));
    let result = write_then_link(&temp, dir, &safe_name(untrusted), data);
    let _ = fs::remove_file(&temp);
    result
}

fn write_then_link(temp: &Path, dir: &Path, name: &str, data: &[u8]) -> io::Result<PathBuf> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    for n in 0..MAX_SUFFIX {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        // hard_link fails if anything, a symlink included, already has the name: it never
        // follows or replaces it. That makes "never overwrite" atomic.
        match fs::hard_link(temp, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many files with that name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_names() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a\\b\\c.txt"), "c.txt");
        assert_eq!(safe_name(".bashrc"), "_bashrc");
        assert_eq!(safe_name(".."), "__");
        assert_eq!(safe_name("x/"), "file");
        assert_eq!(safe_name("bad\nname\u{7}"), "bad_name_");
        assert!(safe_name(&"é".repeat(300)).len() <= MAX_NAME_BYTES);
    }
}
