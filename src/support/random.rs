//! Random identifiers: session ids (`roles/server/hub/clients.rs`), resume tokens without a
//! secret and challenge nonces (`auth.rs`), temporary file names (`roles/client/files.rs`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A random 64-bit number, different on every call (session ids, tokens, epochs' salt).
///
/// std's `RandomState` is seeded from the operating system's randomness for each process;
/// mixing in a counter makes successive calls differ. Not cryptographic: good enough for
/// identifiers, and `docs/security.md` says what tokens do and do not protect.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}
