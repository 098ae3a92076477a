//! Who may join: the cluster secret ([`Secret`], from `--secret-file` or `DSYS_SECRET`), the
//! challenge and response that prove it at the opening of every connection (a fresh nonce,
//! [`new_nonce`]; HMAC-SHA256 of nonce and role, [`Secret::proof`]; compared in constant
//! time, [`accepts`]), and the resume token that proves a session ([`resume_token`]).
//!
//! **Who calls it.** `net.rs` drives the exchange for every role and tool (`connect_as`,
//! `expect_hello`); the server's hub issues and checks resume tokens. Pure functions and a
//! value: no thread, no socket. Without a secret the proof is all zeros and nobody checks
//! it. The exchange, and what the secret protects against and what it does not:
//! `docs/security.md`, "Who may join: the cluster secret".

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::protocol::Role;
use crate::support::sha256;

/// The environment variable that may hold the secret itself.
pub const SECRET_ENV: &str = "DSYS_SECRET";

/// The proof a connection without a secret sends.
pub const NO_PROOF: [u8; 32] = [0; 32];

/// The cluster secret. Cheap to clone; its `Debug` never shows the bytes, so it cannot
/// leak into a log line by accident.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret from `file` when given, else from [`SECRET_ENV`] when set, else none.
    /// A trailing newline in the file is not part of the secret.
    ///
    /// # Errors
    /// [`Error::Failed`] when the file cannot be read (exit status 1); [`Error::Usage`] when
    /// the secret is empty.
    pub fn load(file: Option<&Path>) -> Result<Option<Secret>> {
        let (bytes, source) = match file {
            Some(path) => {
                // A file that is not there is the machine's state, not a mistake in the
                // command line: a runtime failure (exit status 1), as a missing file to
                // send is.
                let mut bytes = std::fs::read(path).map_err(|e| {
                    Error::Failed(format!(
                        "cannot read the secret file {}: {e}",
                        path.display()
                    ))
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                (bytes, path.display().to_string())
            }
            None => match std::env::var_os(SECRET_ENV) {
                Some(value) => (value.into_encoded_bytes(), SECRET_ENV.to_string()),
                None => return Ok(None),
            },
        };
        if bytes.is_empty() {
            return Err(Error::Usage(format!("the secret in {source} is empty")));
        }
        Ok(Some(Secret(bytes.into())))
    }

    /// A secret from bytes (tests and the demo).
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }

    /// What a connection for `role` answers to the challenge `nonce`. The role is inside
    /// the proof, so a proof seen on one kind of connection does not open another.
    pub fn proof(&self, nonce: &[u8; 16], role: Role) -> [u8; 32] {
        let mut message = nonce.to_vec();
        message.push(role as u8);
        sha256::hmac(&self.0, &message)
    }
}

/// The proof to send: from the secret when there is one, [`NO_PROOF`] otherwise.
pub fn proof_for(secret: Option<&Secret>, nonce: &[u8; 16], role: Role) -> [u8; 32] {
    secret.map_or(NO_PROOF, |s| s.proof(nonce, role))
}

/// Whether a connection that answered `nonce` with `proof` for `role` may go on: always
/// when this process has no secret, else only with the right proof.
pub fn accepts(secret: Option<&Secret>, nonce: &[u8; 16], role: Role, proof: &[u8; 32]) -> bool {
    match secret {
        None => true,
        Some(secret) => constant_time_eq(&secret.proof(nonce, role), proof),
    }
}

/// Compares two MACs in time that does not depend on where they differ, so a stranger
/// cannot find the right one byte by byte by timing the refusals.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The resume token for `session` registered as `name`. With a secret it is a MAC of
/// both, so any server of the cluster can check a resume it has never seen
/// ([`resume_token_valid`]); without one it is random, and only the server that holds the
/// session can check it (`Hub::register`).
pub fn resume_token(secret: Option<&Secret>, session: u64, name: &str) -> u64 {
    match secret {
        Some(secret) => token_mac(secret, session, name),
        None => crate::support::random::random_u64(),
    }
}

/// Whether `token` is the one issued for `session` as `name`. Without a secret there is
/// nothing to check it against, and any token passes (`docs/security.md` says what follows).
pub fn resume_token_valid(secret: Option<&Secret>, session: u64, name: &str, token: u64) -> bool {
    match secret {
        Some(secret) => constant_time_eq(
            &token_mac(secret, session, name).to_be_bytes(),
            &token.to_be_bytes(),
        ),
        None => true,
    }
}

/// The first 8 bytes of HMAC-SHA256(secret, label, session, name). The label keeps these
/// MACs apart from connection proofs made with the same secret.
fn token_mac(secret: &Secret, session: u64, name: &str) -> u64 {
    let mut message = b"dsys resume token".to_vec();
    message.extend_from_slice(&session.to_be_bytes());
    message.extend_from_slice(name.as_bytes());
    // The pattern takes the first 8 of the 32 bytes; the compiler checks the lengths.
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = sha256::hmac(&secret.0, &message);
    u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

/// 16 fresh bytes for a challenge. From `support::random::random_u64`: unpredictable to a stranger
/// (std seeds it from the operating system), though not a cryptographic generator.
pub fn new_nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&crate::support::random::random_u64().to_be_bytes());
    nonce[8..].copy_from_slice(&crate::support::random::random_u64().to_be_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 16] = [7; 16];

    #[test]
    fn the_right_proof_is_accepted_and_any_other_refused() {
        let secret = Secret::new(b"correct horse");
        let proof = secret.proof(&NONCE, Role::Client);
        assert!(accepts(Some(&secret), &NONCE, Role::Client, &proof));
        let wrong = Secret::new(b"wrong horse").proof(&NONCE, Role::Client);
        assert!(!accepts(Some(&secret), &NONCE, Role::Client, &wrong));
        assert!(!accepts(Some(&secret), &NONCE, Role::Client, &NO_PROOF));
    }

    #[test]
    fn a_proof_opens_only_its_own_challenge_and_role() {
        let secret = Secret::new(b"s");
        let proof = secret.proof(&NONCE, Role::Client);
        assert!(!accepts(Some(&secret), &[8; 16], Role::Client, &proof));
        assert!(!accepts(Some(&secret), &NONCE, Role::Peer, &proof));
    }

    #[test]
    fn without_a_secret_anyone_is_accepted() {
        assert!(accepts(None, &NONCE, Role::Status, &NO_PROOF));
        assert_eq!(proof_for(None, &NONCE, Role::Status), NO_PROOF);
    }

    #[test]
    fn a_resume_token_is_bound_to_its_session_and_name() {
        let secret = Secret::new(b"s");
        let token = resume_token(Some(&secret), 42, "alice");
        assert!(resume_token_valid(Some(&secret), 42, "alice", token));
        assert!(!resume_token_valid(Some(&secret), 43, "alice", token));
        assert!(!resume_token_valid(Some(&secret), 42, "mallory", token));
        assert!(!resume_token_valid(Some(&secret), 42, "alice", token ^ 1));
        let other = Secret::new(b"t");
        assert!(!resume_token_valid(Some(&other), 42, "alice", token));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        assert_eq!(format!("{:?}", Secret::new(b"hunter2")), "Secret(..)");
    }
}
