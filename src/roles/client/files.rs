//! Files on the client: streaming one out in chunks ([`Outgoing`]), and taking one in safely
//! ([`Incoming`]).
//!
//! **Who calls it.** The session opens an [`Outgoing`] when a file's turn comes (and
//! `client::run` opens each `--send-file` once, to refuse a bad one before registering), then
//! reads one [`FILE_CHUNK_LEN`] chunk at a time when it has room, hashing as it goes. The
//! session's inbox (`inbox.rs`) feeds an [`Incoming`] the chunks it receives. No thread of its
//! own; at most one chunk per file is in its hands.
//!
//! **Receiving safely.** A name from the wire goes through [`safe_name`]: its last component
//! only, nothing that could leave the download directory or confuse a terminal. Chunks go to
//! a hidden temporary file, hashed as they arrive; only when the length and the SHA-256 match
//! is the file linked into place, under a name that does not exist yet, so a partial file
//! never shows and nothing is overwritten. **How it stops:** an [`Incoming`] dropped
//! unfinished deletes its temporary file. The rest: docs/protocol.md, "8. Files".

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::protocol::FILE_CHUNK_LEN;
use crate::support::sha256::{self, Sha256};

/// Longest file name kept, in bytes; longer names are cut (at a character boundary).
const MAX_NAME_BYTES: usize = 200;
/// How many `name (n)` variants to try before giving up on a crowded directory.
const MAX_SUFFIX: u32 = 10_000;
/// The prefix of temporary files in the download directory (hidden, and never a name
/// [`safe_name`] produces, since it turns a leading dot into `_`).
const PARTIAL_PREFIX: &str = ".dsys-partial-";

/// A file being sent, read one chunk at a time.
pub struct Outgoing {
    file: File,
    path: PathBuf,
    /// Bytes still to send; the file is sent at the length it had when it was opened.
    remaining: u64,
    hasher: Sha256,
}

impl Outgoing {
    /// Opens `path` for sending; returns it with the name and size to announce.
    ///
    /// # Errors
    /// A sentence for the user: missing, unreadable, not a regular file, or over `max_size`.
    pub fn open(path: &Path, max_size: u64) -> Result<(Outgoing, String, u64), String> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| format!("cannot send {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot send {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("cannot send {shown}: not a regular file"));
        }
        if meta.len() > max_size {
            return Err(format!(
                "cannot send {shown}: {} bytes is over the {max_size}-byte limit (--max-file-size)",
                meta.len()
            ));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_string());
        let outgoing = Outgoing {
            file,
            path: path.to_path_buf(),
            remaining: meta.len(),
            hasher: Sha256::new(),
        };
        Ok((outgoing, name, meta.len()))
    }

    /// The next chunk, or `None` when every byte has been read.
    ///
    /// # Errors
    /// A sentence for the user when the file cannot be read to its announced length (it
    /// shrank, or a read failed): the sender then abandons the file.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = self.remaining.min(FILE_CHUNK_LEN as u64) as usize;
        let mut chunk = vec![0; want];
        self.file
            .read_exact(&mut chunk)
            .map_err(|e| format!("cannot send {}: {e}", self.path.display()))?;
        self.remaining -= want as u64;
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }

    /// The SHA-256 of everything read; call after [`Outgoing::next_chunk`] returned `None`.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finish()
    }
}

/// A file being received into a temporary file in the download directory.
pub struct Incoming {
    temp: PathBuf,
    file: File,
    dir: PathBuf,
    name: String,
    size: u64,
    written: u64,
    hasher: Sha256,
}

impl Incoming {
    /// Starts receiving a file announced as `untrusted` name and `size` bytes.
    ///
    /// # Errors
    /// The I/O error when the directory or the temporary file cannot be created.
    pub fn start(dir: &Path, untrusted: &str, size: u64) -> io::Result<Incoming> {
        fs::create_dir_all(dir)?;
        let temp = dir.join(format!(
            "{PARTIAL_PREFIX}{:016x}",
            crate::support::random::random_u64()
        ));
        // create_new: never opens something that is already there, a symlink included.
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(Incoming {
            temp,
            file,
            dir: dir.to_path_buf(),
            name: safe_name(untrusted),
            size,
            written: 0,
            hasher: Sha256::new(),
        })
    }

    /// Appends the next chunk.
    ///
    /// # Errors
    /// When the chunks add up to more than the announced size, or the write fails.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.written + data.len() as u64 > self.size {
            return Err(io::Error::other(format!(
                "more bytes than the {} announced",
                self.size
            )));
        }
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Checks length and digest, then links the file into place under a free name (` (1)`,
    /// ` (2)`, ... before the extension when the name is taken). Returns the final path and
    /// the size.
    ///
    /// # Errors
    /// A sentence for the user when the file is short, its digest does not match, or it
    /// cannot be stored; the temporary file is removed either way.
    pub fn finish(mut self, sha256: &[u8; 32]) -> Result<(PathBuf, u64), String> {
        if self.written != self.size {
            return Err(format!(
                "file {} incomplete: {} of {} bytes",
                self.name, self.written, self.size
            ));
        }
        let digest = std::mem::take(&mut self.hasher).finish();
        if &digest != sha256 {
            return Err(format!(
                "file {} damaged: SHA-256 {} instead of {}",
                self.name,
                sha256::to_hex(&digest),
                sha256::to_hex(sha256)
            ));
        }
        self.file
            .sync_all()
            .map_err(|e| format!("cannot save {}: {e}", self.name))?;
        let path = link_under_free_name(&self.temp, &self.dir, &self.name)
            .map_err(|e| format!("cannot save {}: {e}", self.name))?;
        Ok((path, self.size))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Finished or not, the temporary name goes: a linked file lives on under its final
        // name, an unfinished one is discarded.
        let _ = fs::remove_file(&self.temp);
    }
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

/// Links `temp` into `dir` under `name`, or under `stem (n).ext` when that is taken.
fn link_under_free_name(temp: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
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
