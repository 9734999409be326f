//! The Server API's keys: which `Authorization: Bearer <key>` is accepted.
//!
//! Keys are kept as SHA-256 digests and a presented key is hashed and
//! compared with every configured digest by a fold over all their bytes, so
//! the time taken says neither which key nor how much of one matched, nor
//! the keys' lengths. Several keys are accepted at once, so that a key can
//! be rotated without downtime: add the new one, move the callers, remove
//! the old one. Keys are never logged or shown.

use sha2::{Digest, Sha256};

/// The accepted keys, as digests.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// The keys of `API_KEYS` (already validated by the command line).
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    /// Whether the Server API is on (at least one key).
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `key` is one of the keys. Every configured key is compared,
    /// each over all its bytes, whatever matched before.
    pub fn accepts(&self, key: &[u8]) -> bool {
        let given = digest(key);
        let mut matched = 0u8;
        for d in &self.digests {
            let diff = d.iter().zip(&given).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            // 1 when diff == 0, else 0, without a branch on the key's bytes.
            matched |= ((u16::from(diff).wrapping_sub(1)) >> 8) as u8 & 1;
        }
        matched == 1
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The key of an `Authorization: Bearer <key>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, key) = header?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_key_and_only_those_is_accepted() {
        let keys = ApiKeys::new(&["old-key-0123456789".into(), "new-key-0123456789".into()]);
        assert!(keys.enabled());
        assert!(keys.accepts(b"old-key-0123456789"));
        assert!(keys.accepts(b"new-key-0123456789"));
        assert!(!keys.accepts(b"new-key-012345678"));
        assert!(!keys.accepts(b""));
        assert!(!ApiKeys::new(&[]).enabled());
        assert!(!ApiKeys::new(&[]).accepts(b""));
    }

    #[test]
    fn bearer_keys_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
