//! SHA-256, the end-to-end check of every shared file, and HMAC-SHA256 ([`hmac`]), the proof
//! of the cluster secret. Pure functions: no thread, no state beyond a [`Sha256`] in progress.
//!
//! **Who calls it.** A client's files (`roles/client/files.rs`): the sender hashes a file as
//! its chunks go out, a receiver hashes what it wrote and compares before the file takes its
//! name. `auth.rs`, for the challenge's proof and the resume token.
//!
//! It is written out here because dsys takes no crate beyond its four runtime ones. It
//! follows FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2) and RFC 2104; the tests use
//! the vectors of FIPS 180-4 and RFC 4231. Why a digest at all: `docs/guarantees.md`,
//! section 5; why it guards against corruption and not forgery: `docs/security.md`.

/// SHA-256 works on 64-byte blocks.
const BLOCK_LEN: usize = 64;

/// The length trailer at the end of the last block: the message length in bits, 64-bit
/// big-endian (FIPS 180-4 5.1.1).
const LENGTH_LEN: usize = 8;

/// The initial hash value: the first 32 bits of the fractional parts of the square roots of
/// the first eight primes (FIPS 180-4 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants: the first 32 bits of the fractional parts of the cube roots of the
/// first 64 primes (FIPS 180-4 4.2.2). Being derived from primes shows they hide nothing.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A SHA-256 computation in progress: feed it with [`update`](Sha256::update) as the data
/// arrives, then take the digest with [`finish`](Sha256::finish).
///
/// Memory stays constant however much is hashed: only an incomplete block is kept, and
/// whole blocks go straight from the caller's slice into the compression function.
#[derive(Clone, Debug)]
pub struct Sha256 {
    /// The running hash value H (FIPS 180-4 6.2).
    state: [u32; 8],
    /// The start of a block whose rest has not arrived yet; only `buffered` bytes are valid.
    buffer: [u8; BLOCK_LEN],
    buffered: usize,
    /// Bytes hashed so far, for the length trailer (which counts bits, so `finish`
    /// multiplies by 8). The standard caps messages below 2^64 bits; wrapping arithmetic
    /// only keeps an absurdly long input from panicking.
    length: u64,
}

impl Sha256 {
    /// A fresh computation, as if no data had been seen.
    #[must_use]
    pub fn new() -> Sha256 {
        Sha256 {
            state: H0,
            buffer: [0; BLOCK_LEN],
            buffered: 0,
            length: 0,
        }
    }

    /// Hashes `data` as the continuation of everything fed so far. Any number of calls of
    /// any sizes give the same digest as one call with all the data.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);

        // Complete a block left over from the previous call before anything else, since
        // blocks must be compressed in order.
        if self.buffered > 0 {
            let taken = data.len().min(BLOCK_LEN - self.buffered);
            self.buffer[self.buffered..self.buffered + taken].copy_from_slice(&data[..taken]);
            self.buffered += taken;
            data = &data[taken..];
            if self.buffered < BLOCK_LEN {
                return;
            }
            compress(&mut self.state, &self.buffer);
            self.buffered = 0;
        }

        // Whole blocks are compressed straight from the caller's slice, never copied.
        let (blocks, rest) = data.as_chunks::<BLOCK_LEN>();
        for block in blocks {
            compress(&mut self.state, block);
        }

        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// Pads the message, compresses the last block(s) and returns the 32-byte digest.
    #[must_use]
    pub fn finish(mut self) -> [u8; 32] {
        let bit_length = self.length.wrapping_mul(8);

        // Padding is a single 1 bit, zeros, then the bit length, filling out whole blocks.
        // The 1 bit is the top bit of the byte after the data; buffered is at most 63, so
        // that byte is always in this block. When it leaves no room for the 8-byte length
        // (56 or more bytes buffered), the length goes into an extra block of zeros.
        self.buffer[self.buffered] = 0x80;
        self.buffer[self.buffered + 1..].fill(0);
        if self.buffered >= BLOCK_LEN - LENGTH_LEN {
            compress(&mut self.state, &self.buffer);
            self.buffer.fill(0);
        }
        self.buffer[BLOCK_LEN - LENGTH_LEN..].copy_from_slice(&bit_length.to_be_bytes());
        compress(&mut self.state, &self.buffer);

        let mut digest = [0; 32];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256::new()
    }
}

/// The digest of `data` in one call.
#[must_use]
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish()
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104): a digest that only someone who knows
/// the key can compute.
#[must_use]
pub fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // A key longer than a block is hashed first; a shorter one is padded with zeros.
    let mut block_key = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        block_key[..32].copy_from_slice(&digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|k| k ^ byte);
    let mut inner = Sha256::new();
    inner.update(&pad(0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(&pad(0x5c));
    outer.update(&inner.finish());
    outer.finish()
}

/// Lowercase hex of a digest, as `sha256sum` prints it.
#[must_use]
pub fn to_hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Mixes one 64-byte block into the hash value (FIPS 180-4 6.2.2).
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    let schedule = message_schedule(block);

    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (&k, &w) in K.iter().zip(&schedule) {
        let t1 = h
            .wrapping_add(big_sigma1(e))
            .wrapping_add(choose(e, f, g))
            .wrapping_add(k)
            .wrapping_add(w);
        let t2 = big_sigma0(a).wrapping_add(majority(a, b, c));
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }

    for (word, added) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(added);
    }
}

/// Expands a block's sixteen big-endian words into the 64 words W0..W63 that the rounds
/// consume, one per round (FIPS 180-4 6.2.2 step 1).
fn message_schedule(block: &[u8; BLOCK_LEN]) -> [u32; 64] {
    let mut w = [0u32; 64];
    let (words, _) = block.as_chunks::<4>();
    for (word, bytes) in w.iter_mut().zip(words) {
        *word = u32::from_be_bytes(*bytes);
    }
    for t in 16..64 {
        w[t] = small_sigma1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(small_sigma0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
    w
}

// The six logical functions of FIPS 180-4 4.1.2, named for what they do rather than by
// their symbols (Ch, Maj, Σ0, Σ1, σ0, σ1).

/// Ch: each bit of `x` chooses between the bits of `y` (1) and `z` (0).
fn choose(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (!x & z)
}

/// Maj: each result bit is the value held by at least two of the three inputs.
fn majority(x: u32, y: u32, z: u32) -> u32 {
    (x & y) ^ (x & z) ^ (y & z)
}

/// Σ0, applied to the working variable `a`.
fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

/// Σ1, applied to the working variable `e`.
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

/// σ0, used in the message schedule. The last term is a shift, not a rotation.
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

/// σ1, used in the message schedule. The last term is a shift, not a rotation.
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_digest(data: &[u8]) -> String {
        to_hex(&digest(data))
    }

    // The expected values are the examples of FIPS 180-4's companion document (NIST, "SHA-256
    // example", also in FIPS 180-2 appendix B), and agree with `sha256sum`.

    // RFC 4231, test cases 1, 2 and 6 (a short key, a text key, a key longer than a block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            to_hex(&hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            to_hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            to_hex(&hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn empty_message() {
        assert_eq!(
            hex_digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn one_block_message() {
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn two_block_message() {
        // 56 bytes: the padding's 1 bit fits, the length does not, so it needs a second block.
        assert_eq!(
            hex_digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn one_million_a() {
        assert_eq!(
            hex_digest(&vec![b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn any_split_gives_the_same_digest() {
        // Every prefix length up to 768 bytes ends with every possible partial block, so
        // the padding is exercised with 55, 56, 63, 64, 65... bytes left over; every piece
        // size makes `update` meet block boundaries at every offset.
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * 256).collect();
        let mut all_prefixes = Sha256::new();
        for len in 0..=data.len() {
            let whole = digest(&data[..len]);
            for piece in 1..=130 {
                let mut hasher = Sha256::default();
                for part in data[..len].chunks(piece) {
                    hasher.update(part);
                }
                assert_eq!(hasher.finish(), whole, "length {len}, pieces of {piece}");
            }
            all_prefixes.update(&whole);
        }
        // Agreeing with itself is not enough, so the one-call digests of all the prefixes
        // are checked too, against Python's hashlib:
        // sha256(b"".join(sha256(data[:n]).digest() for n in range(769)))
        assert_eq!(
            to_hex(&all_prefixes.finish()),
            "ce6eff54c7ab3971baf317ab05b3ddf49140eaf3287abdb4053fb4ff3f9577c1"
        );
    }

    #[test]
    fn empty_updates_change_nothing() {
        let mut hasher = Sha256::new();
        hasher.update(b"");
        hasher.update(b"ab");
        hasher.update(b"");
        hasher.update(b"c");
        assert_eq!(hasher.finish(), digest(b"abc"));
    }

    #[test]
    fn hex_is_lowercase_and_zero_padded() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0x00;
        bytes[1] = 0x0f;
        bytes[2] = 0xa0;
        bytes[31] = 0xff;
        let hex = to_hex(&bytes);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("000fa0"));
        assert!(hex.ends_with("ff"));
        assert_eq!(hex, hex.to_lowercase());
    }
}
