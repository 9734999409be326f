//! Session (resume) tokens: `sb1.<room>.<peer>.<secret>`, each part base64url.
//!
//! The secret is 256 random bits; backends store only its SHA-256, so a leaked
//! store does not leak usable tokens. The token names its room and peer, and a
//! backend accepts it only for that peer of that room, which binds it to both.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sb1";

/// A freshly minted token and the hash to store.
pub struct Minted {
    pub token: String,
    pub secret_hash: [u8; 32],
}

/// A parsed token.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub room: String,
    pub peer: String,
    pub secret_hash: [u8; 32],
}

/// Mints a token for `peer` in `room`.
pub fn mint(room: &str, peer: &str) -> Minted {
    let secret: [u8; 32] = rand::random();
    let token = format!(
        "{PREFIX}.{}.{}.{}",
        B64.encode(room),
        B64.encode(peer),
        B64.encode(secret)
    );
    Minted {
        token,
        secret_hash: Sha256::digest(secret).into(),
    }
}

/// Parses a token; `None` when it is not one of ours.
pub fn parse(token: &str) -> Option<Parsed> {
    let mut parts = token.split('.');
    if parts.next()? != PREFIX {
        return None;
    }
    let room = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    let peer = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    let secret = B64.decode(parts.next()?).ok()?;
    if parts.next().is_some() || secret.len() != 32 {
        return None;
    }
    Some(Parsed {
        room,
        peer,
        secret_hash: Sha256::digest(&secret).into(),
    })
}

/// The token of a `join` if it names that join's room (and its peer, when the
/// join names one): only such a token can resume anything.
pub fn for_join(request: &crate::protocol::JoinRequest) -> Option<Parsed> {
    let token = parse(request.resume.as_deref()?)?;
    let same_peer = request.peer.as_ref().is_none_or(|p| p == &token.peer);
    (token.room == request.room && same_peer).then_some(token)
}

/// Compares two hashes in constant time.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let m = mint("room-1", "alice");
        let p = parse(&m.token).unwrap();
        assert_eq!((p.room.as_str(), p.peer.as_str()), ("room-1", "alice"));
        assert!(same_hash(&p.secret_hash, &m.secret_hash));
        let other = mint("room-1", "alice");
        assert!(!same_hash(
            &parse(&other.token).unwrap().secret_hash,
            &m.secret_hash
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        for t in [
            "",
            "sb1",
            "sb1.a.b",
            "sb2.YQ.YQ.YQ",
            "sb1.YQ.YQ.YQ",
            "sb1.!!.YQ.YQ",
        ] {
            assert!(parse(t).is_none(), "{t}");
        }
    }
}
