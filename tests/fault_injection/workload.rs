//! What each fault-injection client sends, and what every other client must receive from
//! it: a text a tick (`m1`, `m2`, ...) and, at [`FILE_TICKS`], a file.
//!
//! **Why files.** A file is big: [`FILE_SIZE`] is four chunks of 256 KiB and a bit, and
//! when the senders' files arrive together they fill a receiver's socket. Then the server's
//! writes to it are cut short and the rest goes, with the pen, to another thread
//! (`src/roles/server/write/through.rs`): the path on which bytes could leave out of order, or a
//! frame be cut in two. Short texts alone rarely take it.
//!
//! **What "in order" means with files.** A file gets its number when its last chunk is
//! sent, and a text typed meanwhile may go out between two chunks, so whether a file comes
//! before or after the texts sent around it depends on timing (`roles/client/session/mod.rs`). What does not
//! depend on timing, and is checked ([`check_sender`]): from each sender, every number
//! `1..=total` exactly once and in order, the texts among them `m1`, `m2`, ... in order,
//! and the files among them the sender's files in the order sent, each byte-identical.
//! Every receiver must also see each file under the same number as every other one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{TempDir, pseudo_random_bytes};

/// The ticks at which every client sends a file, before that tick's text. Early enough
/// that each file is through long before the last text.
pub const FILE_TICKS: [u64; 2] = [30, 75];
/// Bytes in each file: four whole chunks and part of a fifth, so the last chunk is short.
pub const FILE_SIZE: usize = 4 * 256 * 1024 + 12_345;

/// The files the clients of one round send, made before the round starts (removed on drop).
pub struct Files {
    dir: TempDir,
}

impl Files {
    /// Makes every client's files, their bytes a function of `seed`, the sender and the
    /// file's index, so that a chunk of one delivered in place of another is seen.
    pub fn make(seed: u64, senders: &[String]) -> Files {
        let dir = TempDir::new("fault-files");
        for sender in senders {
            for k in 0..FILE_TICKS.len() {
                let path = dir.path().join(file_name(sender, k));
                std::fs::write(&path, contents(seed, sender, k))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
        }
        Files { dir }
    }

    /// The `k`-th file of `sender`, as its client is told to send it.
    pub fn path(&self, sender: &str, k: usize) -> PathBuf {
        self.dir.path().join(file_name(sender, k))
    }

    /// The `/file` command a client is given at `tick`, if it sends a file then.
    pub fn command_at(&self, sender: &str, tick: u64) -> Option<String> {
        let k = FILE_TICKS.iter().position(|t| *t == tick)?;
        Some(format!("/file {}", self.path(sender, k).display()))
    }
}

/// The name a file keeps on the wire and in every download directory: one per sender and
/// index, so that no receiver saves two under the same name.
pub fn file_name(sender: &str, k: usize) -> String {
    format!("{sender}-f{}.bin", k + 1)
}

/// Deliveries each sender owes every other client: its texts and its files.
pub fn items_per_sender(texts: u64) -> u64 {
    texts + FILE_TICKS.len() as u64
}

/// The bytes of file `k` of `sender` in round `seed`: no two files alike, and no pattern
/// that repeats at a chunk's length.
fn contents(seed: u64, sender: &str, k: usize) -> Vec<u8> {
    let mut mixed = seed ^ 0x9e37_79b9_7f4a_7c15;
    for byte in sender.bytes().chain([k as u8]) {
        mixed = (mixed ^ u64::from(byte)).wrapping_mul(0x1000_0000_01b3);
    }
    pseudo_random_bytes(FILE_SIZE, mixed)
}

/// One receiver's deliveries from one sender, checked: `Err` says what is wrong. `events`
/// are the receiver's events from that sender (`message` and `file`), in arrival order;
/// `files` where the sender's originals are.
pub fn check_sender(
    events: &[&Value],
    sender: &str,
    texts: u64,
    files: &Files,
) -> Result<(), String> {
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap_or_default())
        .collect();
    let total = items_per_sender(texts);
    if seqs != (1..=total).collect::<Vec<_>>() {
        return Err(format!(
            "numbers from {sender} are not 1..={total} once each in order: {seqs:?}"
        ));
    }
    let got_texts: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    let sent_texts: Vec<String> = (1..=texts).map(|n| format!("m{n}")).collect();
    if got_texts != sent_texts {
        return Err(format!("texts from {sender} are not m1..m{texts} in order"));
    }
    let got_files = events.iter().filter(|e| e["event"] == "file");
    for (k, file) in got_files.enumerate() {
        let name = file_name(sender, k);
        if file["name"] != name.as_str() || file["size"] != FILE_SIZE as u64 {
            return Err(format!(
                "file {} from {sender} is {file}, not {name}",
                k + 1
            ));
        }
        let saved = Path::new(file["path"].as_str().unwrap_or_default());
        if !same_bytes(saved, &files.path(sender, k)) {
            return Err(format!(
                "{} differs from what {sender} sent",
                saved.display()
            ));
        }
    }
    Ok(())
}

/// The number under which each receiver got each file, per `(sender, file name)`: every
/// receiver must have got it under the same one.
pub fn file_numbers<'a>(
    all: impl IntoIterator<Item = &'a Value>,
    numbers: &mut BTreeMap<(String, String), Vec<u64>>,
) {
    for event in all.into_iter().filter(|e| e["event"] == "file") {
        let key = (
            event["from"].as_str().unwrap_or_default().to_string(),
            event["name"].as_str().unwrap_or_default().to_string(),
        );
        numbers
            .entry(key)
            .or_default()
            .push(event["seq"].as_u64().unwrap_or_default());
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
