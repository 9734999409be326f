//! ICE servers handed to clients in every `joined`: the configured STUN URLs,
//! and TURN URLs with time-limited credentials of the TURN REST scheme that
//! coturn implements as `use-auth-secret`: username `<unix expiry>:<peer>`,
//! credential `base64(HMAC-SHA1(secret, username))`. The TURN server checks
//! both with the same shared secret, so no per-user state is needed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;

/// Default lifetime of a TURN credential, in seconds (one day: a call that
/// outlives it keeps its allocation, but new allocations need a fresh join).
pub const DEFAULT_TURN_TTL_SECS: u64 = 86_400;

/// TURN servers and the secret their credentials are derived from.
#[derive(Clone, PartialEq)]
pub struct TurnConfig {
    pub urls: Vec<String>,
    pub secret: String,
    /// Credential lifetime in seconds.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"redacted")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The validated ICE configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn: Option<TurnConfig>,
}

/// The TURN REST credential for `username`: base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// The `ice_servers` of a `joined` for `peer` at `now` (Unix seconds):
/// RTCIceServer objects, `[]` when nothing is configured.
pub fn ice_servers(config: &IceConfig, peer: &str, now: u64) -> Value {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(json!({ "urls": config.stun_urls }));
    }
    if let Some(turn) = &config.turn {
        let username = format!("{}:{peer}", now.saturating_add(turn.ttl_secs));
        let credential = turn_credential(&turn.secret, &username);
        servers.push(json!({
            "urls": turn.urls,
            "username": username,
            "credential": credential,
        }));
    }
    Value::Array(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_a_known_vector() {
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog")
        // = de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9 (RFC 2104 test vector).
        assert_eq!(
            turn_credential("key", "The quick brown fox jumps over the lazy dog"),
            "3nybhbi3iqa8ino29wqQcBydtNk="
        );
    }
}
