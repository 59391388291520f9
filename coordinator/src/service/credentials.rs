//! Agent secrets: what binds a lease to the agent it was granted to.
//!
//! `RegisterAgent` hands each new agent a secret of 32 random bytes from the operating system,
//! in hex. The coordinator keeps only its SHA-256 (in memory and in the store, so a restart keeps
//! every agent's identity) and compares digests in constant time. Every later call of the agent
//! carries the secret: leasing, heartbeats and unregistering name the agent and prove it is that
//! agent; epoch reports and completions name a lease, and the secret must be the one of the agent
//! the lease was granted to. Re-registering a known id needs its secret, so an agent id read from
//! `ListTrials` is not enough to take over a registration.
//!
//! ```
//! use coordinator::service::credentials::{SecretDigest, generate_secret};
//! let secret = generate_secret().expect("the OS has randomness");
//! let digest = SecretDigest::of(&secret);
//! assert!(digest.matches(&secret));
//! assert!(!digest.matches("guess"));
//! assert_eq!(SecretDigest::from_hex(&digest.to_hex()), Some(digest));
//! ```

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// A fresh secret: 32 bytes from the operating system's random source, as 64 hex digits.
///
/// # Errors
/// When the operating system gives no randomness.
pub fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for an agent secret: {e}")))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The SHA-256 digest of an agent's secret: what the coordinator keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `secret` has this digest; compares in time independent of where they differ.
    pub fn matches(&self, secret: &str) -> bool {
        let other = Self::of(secret);
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// 64 lowercase hex digits, as stored.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`SecretDigest::to_hex`]'s form; `None` for anything else (such as the empty
    /// digest of an agent stored before agents had secrets).
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_hex() {
        let a = generate_secret().expect("secret");
        let b = generate_secret().expect("secret");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn digest_matches_only_its_secret() {
        let digest = SecretDigest::of("alpha");
        assert!(digest.matches("alpha"));
        assert!(!digest.matches("alphb"));
        assert!(!digest.matches(""));
    }

    #[test]
    fn hex_round_trip_and_garbage() {
        let digest = SecretDigest::of("x");
        assert_eq!(SecretDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(SecretDigest::from_hex(""), None);
        assert_eq!(SecretDigest::from_hex(&"zz".repeat(32)), None);
        assert_eq!(SecretDigest::from_hex(&"é".repeat(32)), None);
    }
}
