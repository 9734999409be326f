//! Authentication and authorization: who may open a connection, and which
//! rooms, peer id and role a connection may take.
//!
//! Auth is off unless a key source is configured: an HS256 shared secret
//! (`JWT_SECRET`), one RS256 or ES256 public key in a PEM file
//! (`JWT_PUBLIC_KEY_FILE`), or a JWKS file of several keys selected by `kid`
//! (`JWT_JWKS_FILE`, re-read when it changes so keys rotate without a restart).
//! A [`Verifier`] checks the token of an upgrade and yields typed [`Claims`];
//! the session then checks every `join` (and role `update`) against them.
//!
//! The token gates the upgrade and each join: a connection whose token expires
//! while it is open keeps its room until it closes, but a later `join` on it is
//! `UNAUTHORIZED`. This folder also holds the origin allow-list and the admin
//! token check ([`request`]) and the `switchboard token` minting command
//! ([`mint`]).
//!
//! - this file: the validated settings ([`AuthConfig`], [`KeySource`]);
//! - [`keys`]: reading a PEM key or a JWKS file;
//! - [`claims`]: the grant of a token and the join/role rules it imposes;
//! - [`verifier`]: checking a token (JWKS reloaded when it changes);
//! - [`request`]: the token, origin and admin token of an HTTP request;
//! - [`mint`]: `switchboard token`.
//!
//! Nothing here reads the command line; `cli` turns flags into an
//! [`AuthConfig`].

pub mod claims;
pub mod keys;
pub mod mint;
pub mod request;
pub mod verifier;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, DecodingKey};

pub use claims::Claims;
pub use mint::{mint, parse_ttl, TokenArgs};
pub use request::{admin_allowed, origin_allowed, token_from_request};
pub use verifier::{AuthError, Verifier};

/// Default clock skew tolerated on `exp` and `nbf`, in seconds.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;
/// Largest accepted `JWT_LEEWAY_SECS`.
pub const MAX_JWT_LEEWAY_SECS: u64 = 3600;
/// Shortest accepted `JWT_SECRET`, in bytes: shorter HS256 secrets can be
/// brute-forced from a single token.
pub const MIN_JWT_SECRET_BYTES: usize = 16;
/// How often, at most, the JWKS file's modification time is checked.
pub const JWKS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// Lifetime of a token minted by `switchboard token` without `--ttl`.
pub const DEFAULT_TOKEN_TTL: &str = "1h";
/// Longest accepted token, in bytes (a URL or header carries it).
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Where token signatures are checked against.
#[derive(Clone)]
pub enum KeySource {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// One public key from a PEM file.
    PublicKey {
        path: PathBuf,
        key: DecodingKey,
        algorithm: Algorithm,
    },
    /// A JWKS file, re-read when its modification time changes.
    Jwks { path: PathBuf, keys: Arc<KeySet> },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(HS256, redacted)"),
            KeySource::PublicKey {
                path, algorithm, ..
            } => write!(f, "PublicKey({algorithm:?} from {})", path.display()),
            KeySource::Jwks { path, keys } => write!(
                f,
                "Jwks({} keys from {}: {:?})",
                keys.by_kid.len(),
                path.display(),
                keys.kids()
            ),
        }
    }
}

/// The keys of a JWKS file, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    /// The key without a `kid`, when the set holds exactly one key.
    only: Option<(DecodingKey, Algorithm)>,
}

impl KeySet {
    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// The validated authentication settings.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// `None`: auth is off and the server is open.
    pub keys: Option<KeySource>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Origins allowed to upgrade (lower-case, no trailing slash); empty: any.
    pub allowed_origins: Vec<String>,
    /// Bearer token of the admin endpoints.
    pub admin_token: Option<String>,
    /// Keys of the Server API (`/api/v1`); empty: the API is off.
    pub api_keys: Vec<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("allowed_origins", &self.allowed_origins)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "redacted"),
            )
            .field("api_keys", &format!("{} redacted", self.api_keys.len()))
            .finish()
    }
}

/// `s` unless it is empty or blank (an unset setting may arrive as "").
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// An origin as compared: lower-case, no trailing slash.
pub(crate) fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
