//! Checking a token: its header picks the key (by `alg` and `kid`), the
//! signature and the registered claims are checked, and the grant comes out
//! as [`Claims`]. A JWKS file is re-read when its modification time changes
//! (checked at most every [`JWKS_RELOAD_INTERVAL`]), so keys rotate without
//! a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tracing::warn;

use super::claims::claims_from;
use super::keys::load_jwks;
use super::{AuthConfig, Claims, KeySet, KeySource, JWKS_RELOAD_INTERVAL, MAX_TOKEN_BYTES};

/// Why a token was refused. The text is safe to show to the client: it names
/// what is wrong with the token, never the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required: pass it as ?token=… or Authorization: Bearer …")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("algorithm {0:?} is not accepted by this server")]
    Algorithm(String),
    #[error("the token's key id (kid) is unknown to this server")]
    UnknownKey,
    #[error("the token has no key id (kid); this server has several keys")]
    MissingKid,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer (iss) is not accepted")]
    Issuer,
    #[error("the token's audience (aud) is not accepted")]
    Audience,
    #[error("the token lacks the {0:?} claim")]
    MissingClaim(String),
    #[error("the token's {0:?} claim is invalid: {1}")]
    BadClaim(String, String),
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    source: VerifierKeys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

enum VerifierKeys {
    Fixed(DecodingKey, Algorithm),
    Jwks(Mutex<JwksState>),
}

struct JwksState {
    path: PathBuf,
    keys: Arc<KeySet>,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl JwksState {
    /// The current keys, re-reading the file when it changed and the last
    /// check is older than [`JWKS_RELOAD_INTERVAL`]. A file that became
    /// unreadable or invalid keeps the previous keys (and is logged).
    fn keys(&mut self) -> Arc<KeySet> {
        if self.checked.elapsed() >= JWKS_RELOAD_INTERVAL {
            self.checked = Instant::now();
            let stamp = file_stamp(&self.path);
            if stamp.is_some() && stamp != self.stamp {
                self.stamp = stamp;
                match load_jwks(&self.path) {
                    Ok(keys) => {
                        tracing::info!(file = %self.path.display(), kids = ?keys.kids(), "JWKS reloaded");
                        self.keys = Arc::new(keys);
                    }
                    Err(e) => warn!("JWKS reload failed, keeping the previous keys: {e}"),
                }
            }
        }
        self.keys.clone()
    }
}

/// The parts of a JWT header needed to pick the key.
struct PeekedHeader {
    alg: String,
    kid: Option<String>,
}

fn peek_header(token: &str) -> Result<PeekedHeader, AuthError> {
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = B64.decode(header).map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?
        .chars()
        .take(32)
        .collect();
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(PeekedHeader { alg, kid })
}

impl Verifier {
    /// The verifier of `config`; `None` when auth is off.
    pub fn new(config: &AuthConfig) -> Option<Verifier> {
        let source = match config.keys.as_ref()? {
            KeySource::Secret(secret) => {
                VerifierKeys::Fixed(DecodingKey::from_secret(secret), Algorithm::HS256)
            }
            KeySource::PublicKey { key, algorithm, .. } => {
                VerifierKeys::Fixed(key.clone(), *algorithm)
            }
            KeySource::Jwks { path, keys } => VerifierKeys::Jwks(Mutex::new(JwksState {
                stamp: file_stamp(path),
                path: path.clone(),
                keys: keys.clone(),
                checked: Instant::now(),
            })),
        };
        Some(Verifier {
            source,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// A short description for the startup log.
    pub fn describe(&self) -> String {
        let keys = match &self.source {
            VerifierKeys::Fixed(_, alg) => format!("{alg:?}"),
            VerifierKeys::Jwks(_) => "JWKS (RS256/ES256 by kid)".to_owned(),
        };
        let mut s = format!("tokens required ({keys}");
        if let Some(iss) = &self.issuer {
            s.push_str(&format!(", iss={iss}"));
        }
        if let Some(aud) = &self.audience {
            s.push_str(&format!(", aud={aud}"));
        }
        s.push(')');
        s
    }

    /// Verifies `token` (signature, algorithm, `exp`, `nbf`, `iss`, `aud`) and
    /// returns its grant.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = peek_header(token)?;
        let (key, algorithm) = match &self.source {
            VerifierKeys::Fixed(key, alg) => (key.clone(), *alg),
            VerifierKeys::Jwks(state) => {
                // A std Mutex: held only to clone an Arc (and, every few
                // seconds, to stat and maybe re-read a small file), never
                // across an await.
                let keys = crate::sync::lock(state).keys();
                match &header.kid {
                    Some(kid) => keys.by_kid.get(kid).cloned().ok_or(AuthError::UnknownKey)?,
                    None => keys.only.clone().ok_or(AuthError::MissingKid)?,
                }
            }
        };
        if header.alg != format!("{algorithm:?}") {
            return Err(AuthError::Algorithm(header.alg));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => AuthError::Signature,
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidIssuer => AuthError::Issuer,
                    ErrorKind::InvalidAudience => AuthError::Audience,
                    ErrorKind::InvalidAlgorithm => AuthError::Algorithm(header.alg.clone()),
                    ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                    ErrorKind::InvalidClaimFormat(c) => {
                        AuthError::BadClaim(c.clone(), "wrong type".into())
                    }
                    ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
                        AuthError::Signature
                    }
                    _ => AuthError::Malformed,
                }
            })?;
        claims_from(&data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{mint, unix_now, TokenArgs};
    use crate::protocol::{ErrorCode, JoinRequest, DEFAULT_ROLE};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        let config = AuthConfig {
            keys: Some(KeySource::Secret(SECRET.into())),
            leeway_secs: 0,
            ..AuthConfig::default()
        };
        Verifier::new(&config).unwrap()
    }

    fn token(sub: &str, rooms: &[&str], role: Option<&str>, ttl: &str) -> String {
        mint(
            &TokenArgs {
                sub: sub.into(),
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                role: role.map(str::to_owned),
                ttl: ttl.into(),
                secret: Some(SECRET.into()),
                private_key_file: None,
                kid: None,
                issuer: None,
                audience: None,
            },
            unix_now(),
        )
        .unwrap()
    }

    /// A join; `DEFAULT_ROLE` stands for "no role given".
    fn join(room: &str, peer: Option<&str>, role: &str) -> JoinRequest {
        JoinRequest {
            room: room.into(),
            peer: peer.map(str::to_owned),
            role: (role != DEFAULT_ROLE).then(|| role.to_owned()),
            metadata: Map::new(),
            resume: None,
            last_seq: None,
        }
    }

    #[test]
    fn minted_tokens_verify_and_join_rules_apply() {
        let v = verifier();
        let claims = v
            .verify(&token("alice", &["team-*"], Some("host"), "1h"))
            .unwrap();
        assert_eq!(claims.sub, "alice");
        let now = unix_now();
        let mut j = join("team-1", None, DEFAULT_ROLE);
        claims.authorize_join(&mut j, now, 0).unwrap();
        assert_eq!(j.peer.as_deref(), Some("alice"));
        assert_eq!(j.role.as_deref(), Some("host"));
        // An explicit default role is still another role than the pinned one.
        let mut explicit = join("team-1", None, "x");
        explicit.role = Some(DEFAULT_ROLE.to_owned());
        assert!(claims.authorize_join(&mut explicit, now, 0).is_err());
        for mut bad in [
            join("other", None, DEFAULT_ROLE),
            join("team-1", Some("bob"), DEFAULT_ROLE),
            join("team-1", None, "admin"),
        ] {
            let e = claims.authorize_join(&mut bad, now, 0).unwrap_err();
            assert_eq!(e.code, ErrorCode::Forbidden);
        }
        let e = claims
            .authorize_join(&mut join("team-1", None, "host"), claims.exp + 1, 0)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(claims.authorize_role(Some("admin")).is_err());
        assert!(claims.authorize_role(Some("host")).is_ok());
        assert!(claims.authorize_role(None).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused_without_panics() {
        let v = verifier();
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "....",
            "e30.e30.",
            "e30.e30.e30.e30",
        ] {
            assert!(v.verify(t).is_err(), "{t}");
        }
        let good = token("alice", &["r"], None, "1h");
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = "AAAA";
        assert_eq!(v.verify(&parts.join(".")), Err(AuthError::Signature));
        // alg "none"
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(v.verify(&none), Err(AuthError::Algorithm("none".into())));
    }
}
