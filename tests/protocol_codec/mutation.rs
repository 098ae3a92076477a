//! Random mutation: seeded corruptions of valid frames never panic the decoder, and what
//! it accepts re-encodes to the same bytes (but for a refusal code it reads as `Other`).

use super::*;

/// xorshift64* (Vigna, 2016): a tiny deterministic generator, so a failure replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n > 0`); the slight modulo bias does not matter here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Applies one random edit: flip a bit, overwrite a byte with an interesting or random
/// value, insert a byte, or delete a byte.
fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    const INTERESTING: [u8; 6] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff];
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
        2 if at < bytes.len() => bytes[at] = rng.byte(),
        3 if at < bytes.len() => {
            bytes.remove(at);
        }
        _ => bytes.insert(at, rng.byte()),
    }
}

/// Whether `input` starts with the frame of `message`, as a canonical encoding must; or,
/// the one exception, `message` is a refusal of code `Other` read from a frame that wrote a
/// code byte this build does not know (or 0): that byte is dropped on purpose
/// (`docs/protocol.md`, 6.8), so the frame shown is the re-encoding with it put back.
fn encodes_to_the_front_of(message: &Message, input: &[u8]) -> bool {
    let encoded = message.encode();
    if input.starts_with(&encoded) {
        return true;
    }
    let (Message::Error { code, .. } | Message::RegisterRefused { code, .. }) = message else {
        return false;
    };
    let Some(&byte) = input.get(encoded.len()) else {
        return false;
    };
    let widened = frame(&[&encoded[4..], &[byte]].concat());
    *code == Refusal::Other && !(1..=4).contains(&byte) && input.starts_with(&widened)
}

/// The largest in-memory item a decoded list holds per input byte (a `ServerInfo` or a
/// watermark pair, with their `String`s and `Vec`s), rounded up.
const MAX_ITEM: usize = 128;

#[test]
fn mutated_frames_never_panic_or_over_allocate_in_the_decoder() {
    const SEED: u64 = 0x5eed_d5e5_0000_0001;
    const ITERATIONS: usize = 5_000;
    let samples: Vec<Vec<u8>> = sample_messages().iter().map(Message::encode).collect();
    let mut rng = XorShift(SEED);
    let (mut accepted, mut refused) = (0, 0);
    for iteration in 0..ITERATIONS {
        let mut input = samples[rng.below(samples.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        // Half the time keep the length prefix consistent, so the edit reaches the decoder
        // instead of being caught by the framing.
        if rng.below(2) == 0 && input.len() >= 4 {
            let body_len = (input.len() - 4) as u32;
            input[..4].copy_from_slice(&body_len.to_be_bytes());
        }
        let outcome = panic::catch_unwind(|| {
            largest_allocation_during(|| {
                let framed = read_message(&mut Cursor::new(&input));
                let decoded = Message::decode(input.get(4..).unwrap_or(&[]));
                (framed, decoded)
            })
        });
        let Ok(((framed, decoded), largest)) = outcome else {
            panic!(
                "seed {SEED:#x}, iteration {iteration}: decoding panicked on {}",
                hex(&input)
            );
        };
        // Never over-allocates: no single buffer beyond what the input's bytes could fill.
        // An item of a list takes at least one input byte and at most `MAX_ITEM` bytes of
        // memory, so `MAX_ITEM` times the input bounds every honest allocation.
        assert!(
            largest <= SMALL_ALLOCATION.max(MAX_ITEM * input.len()),
            "seed {SEED:#x}, iteration {iteration}: decoding {} bytes allocated {largest} at once",
            input.len()
        );
        // Whatever is accepted re-encodes to the very bytes it came from: each message has
        // exactly one encoding. `read_message` took one frame from the front of `input`;
        // `decode` was given everything after the first four bytes.
        match framed {
            Ok(Some(message)) => {
                accepted += 1;
                assert!(
                    encodes_to_the_front_of(&message, &input),
                    "iteration {iteration}: frame {} was read as {message:?}",
                    hex(&input)
                );
            }
            Ok(None) => {}
            Err(Error::Protocol(_) | Error::ClosedInsideFrame(_)) => refused += 1,
            Err(other) => panic!("iteration {iteration}: unexpected error {other:?}"),
        }
        match decoded {
            Ok(message) => {
                accepted += 1;
                let body = &input[4..];
                // `frame` gives the body its own length, so "the front" is all of it.
                assert!(
                    encodes_to_the_front_of(&message, &frame(body)),
                    "iteration {iteration}: body {} was decoded as {message:?}",
                    hex(body)
                );
            }
            Err(Error::Protocol(_)) => refused += 1,
            Err(other) => panic!("iteration {iteration}: unexpected error {other:?}"),
        }
    }
    // Both outcomes must occur, or the mutations are too weak (or too strong) to test much.
    assert!(
        accepted > 100 && refused > 100,
        "accepted {accepted}, refused {refused}"
    );
}
