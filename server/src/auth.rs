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
//! `UNAUTHORIZED`. The same module holds the origin allow-list, the admin token
//! check and the `switchboard token` minting command.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use clap::Args;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use tracing::warn;

use crate::config::ConfigError;
use crate::protocol::{is_valid_name, ErrorCode, JoinRequest, ProtocolError, MAX_ROLE_CHARS};

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
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Authentication options of the server.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// HS256 shared secret (its bytes as given, at least 16). Turns auth on.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of one RS256 (RSA) or ES256 (P-256) public key. Turns auth on.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (JSON `{"keys":[…]}`, RS256/ES256 keys selected by `kid`),
    /// re-read when it changes. Turns auth on.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim (the token's `aud` must contain it).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = DEFAULT_JWT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,
    /// Comma-separated origins allowed to open WebSockets from a browser
    /// (e.g. `https://app.example.com`); empty: any origin.
    #[arg(long, env = "ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Bearer token for the admin endpoints (`/status`); unset: they are open.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

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
            .finish()
    }
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl AuthArgs {
    /// Validates the options, reading the key files, into an [`AuthConfig`].
    pub fn into_config(self) -> Result<AuthConfig, ConfigError> {
        let secret = non_empty(self.jwt_secret);
        let pem = self
            .jwt_public_key_file
            .filter(|p| !p.as_os_str().is_empty());
        let jwks = self.jwt_jwks_file.filter(|p| !p.as_os_str().is_empty());
        let sources = [
            secret.is_some().then_some("JWT_SECRET"),
            pem.is_some().then_some("JWT_PUBLIC_KEY_FILE"),
            jwks.is_some().then_some("JWT_JWKS_FILE"),
        ];
        let set: Vec<&str> = sources.into_iter().flatten().collect();
        if set.len() > 1 {
            return Err(invalid(
                "JWT_SECRET",
                format!(
                    "{} are all set; configure exactly one key source",
                    set.join(" and ")
                ),
            ));
        }
        let keys = if let Some(secret) = secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(invalid(
                    "JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes (e.g. `openssl rand -base64 32`)"
                    ),
                ));
            }
            Some(KeySource::Secret(secret.into_bytes()))
        } else if let Some(path) = pem {
            let (key, algorithm) =
                load_pem(&path).map_err(|e| invalid("JWT_PUBLIC_KEY_FILE", e))?;
            Some(KeySource::PublicKey {
                path,
                key,
                algorithm,
            })
        } else if let Some(path) = jwks {
            let keys = load_jwks(&path).map_err(|e| invalid("JWT_JWKS_FILE", e))?;
            Some(KeySource::Jwks {
                path,
                keys: Arc::new(keys),
            })
        } else {
            None
        };
        let issuer = non_empty(self.jwt_issuer);
        let audience = non_empty(self.jwt_audience);
        if keys.is_none() {
            if issuer.is_some() {
                return Err(invalid(
                    "JWT_ISSUER",
                    "needs a key source (JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE)",
                ));
            }
            if audience.is_some() {
                return Err(invalid(
                    "JWT_AUDIENCE",
                    "needs a key source (JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE)",
                ));
            }
        }
        if self.jwt_leeway_secs > MAX_JWT_LEEWAY_SECS {
            return Err(invalid(
                "JWT_LEEWAY_SECS",
                format!(
                    "{} is over the maximum of {MAX_JWT_LEEWAY_SECS}",
                    self.jwt_leeway_secs
                ),
            ));
        }
        let mut allowed_origins = Vec::new();
        for origin in self.allowed_origins.iter().flat_map(|s| s.split(',')) {
            let origin = origin.trim();
            if origin.is_empty() {
                continue;
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                return Err(invalid(
                    "ALLOWED_ORIGINS",
                    format!(
                        "{origin:?} is not an origin like https://app.example.com (scheme and host, optional port, no path)"
                    ),
                ));
            }
            allowed_origins.push(normalize_origin(origin));
        }
        let admin_token = non_empty(self.admin_token);
        if admin_token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_JWT_SECRET_BYTES)
        {
            return Err(invalid(
                "ADMIN_TOKEN",
                format!("must be at least {MIN_JWT_SECRET_BYTES} characters"),
            ));
        }
        Ok(AuthConfig {
            keys,
            issuer,
            audience,
            leeway_secs: self.jwt_leeway_secs,
            allowed_origins,
            admin_token,
        })
    }
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads one RSA or P-256 public key; the key type picks RS256 or ES256.
fn load_pem(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = read_file(path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "{} holds a private key; give the server only the public key (`openssl pkey -pubout`)",
            path.display()
        ));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        // A SEC1 P-256 point: 65 bytes uncompressed, 33 compressed. Other
        // curves would only fail later, on every token.
        if !matches!(key.as_bytes().len(), 33 | 65) {
            return Err(format!(
                "{} is an EC key on another curve than P-256 (ES256 needs P-256)",
                path.display()
            ));
        }
        return Ok((key, Algorithm::ES256));
    }
    Err(format!(
        "{} is not a PEM RSA or P-256 EC public key",
        path.display()
    ))
}

/// Reads a JWKS file. Keys that are not RS256 or ES256 signature keys are
/// skipped; a file without any usable key is an error.
fn load_jwks(path: &Path) -> Result<KeySet, String> {
    let bytes = read_file(path)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(format!(
            "{} has no \"keys\" array (expected a JWKS document)",
            path.display()
        ));
    };
    let mut set = KeySet::default();
    let mut unnamed = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match jwk_key(entry) {
            Ok((kid, key)) => match kid {
                Some(kid) => {
                    set.by_kid.insert(kid, key);
                }
                None => unnamed.push(key),
            },
            Err(why) => warn!(file = %path.display(), index = i, "JWKS key skipped: {why}"),
        }
    }
    if set.by_kid.is_empty() && unnamed.len() == 1 {
        set.only = unnamed.pop();
    } else if !unnamed.is_empty() {
        warn!(file = %path.display(), count = unnamed.len(), "JWKS keys without `kid` skipped (only a single-key set may omit it)");
    }
    if set.by_kid.is_empty() && set.only.is_none() {
        return Err(format!(
            "{} holds no usable RS256 or ES256 (P-256) signature key",
            path.display()
        ));
    }
    Ok(set)
}

fn jwk_key(entry: &Value) -> Result<(Option<String>, (DecodingKey, Algorithm)), String> {
    let jwk: Jwk =
        serde_json::from_value(entry.clone()).map_err(|e| format!("not a supported JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key (`use`)".into());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return Err("only RSA and P-256 EC keys are supported".into()),
    };
    if let Some(alg) = entry.get("alg").and_then(Value::as_str) {
        let expected = format!("{algorithm:?}");
        if alg != expected {
            return Err(format!(
                "`alg` {alg:?} is not supported for this key (expected {expected})"
            ));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok((jwk.common.key_id.clone(), (key, algorithm)))
}

/// The grant a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The peer id the connection must use.
    pub sub: String,
    /// Room names, or `prefix*` patterns, the connection may join.
    pub rooms: Vec<String>,
    /// The only role the connection may take, when set.
    pub role: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl Claims {
    /// Whether the grant covers `room`: an exact name, or a pattern ending in
    /// `*` that `room` starts with (`*` alone covers every room).
    pub fn allows_room(&self, room: &str) -> bool {
        self.rooms
            .iter()
            .any(|grant| match grant.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => grant == room,
            })
    }

    /// Whether the token is past its expiry (with `leeway_secs`) at `now`.
    pub fn is_expired(&self, now: u64, leeway_secs: u64) -> bool {
        self.exp.saturating_add(leeway_secs) < now
    }

    /// Checks a `join` against the grant and fills in what the token decides:
    /// a join without `peer` takes `sub`, one without a role takes the pinned
    /// role. `now` is Unix seconds.
    ///
    /// The protocol's default role cannot be told apart from an absent one,
    /// so an explicit `"role":"peer"` also takes the pinned role.
    pub fn authorize_join(
        &self,
        join: &mut JoinRequest,
        now: u64,
        leeway_secs: u64,
    ) -> Result<(), ProtocolError> {
        if self.is_expired(now, leeway_secs) {
            return Err(ProtocolError::new(
                ErrorCode::Unauthorized,
                "the connection's token has expired; reconnect with a fresh token to join",
            ));
        }
        match &join.peer {
            Some(peer) if *peer != self.sub => {
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "peer {peer:?} is not the token's subject; omit `peer` or use {:?}",
                        self.sub
                    ),
                ))
            }
            Some(_) => {}
            None => join.peer = Some(self.sub.clone()),
        }
        if !self.allows_room(&join.room) {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!("the token does not grant room {:?}", join.room),
            ));
        }
        if let Some(pinned) = &self.role {
            match &join.role {
                None => join.role = Some(pinned.clone()),
                Some(role) if role != pinned => return Err(self.role_error(role)),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the role of an `update`.
    pub fn authorize_role(&self, role: Option<&str>) -> Result<(), ProtocolError> {
        match (role, &self.role) {
            (Some(role), Some(pinned)) if role != pinned => Err(self.role_error(role)),
            _ => Ok(()),
        }
    }

    fn role_error(&self, role: &str) -> ProtocolError {
        let pinned = self.role.as_deref().unwrap_or_default();
        ProtocolError::new(
            ErrorCode::Forbidden,
            format!("the token pins role {pinned:?}; role {role:?} is not allowed"),
        )
    }
}

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

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
                let keys = state.lock().unwrap_or_else(|e| e.into_inner()).keys();
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

fn claims_from(map: &Map<String, Value>) -> Result<Claims, AuthError> {
    let bad = |claim: &str, why: &str| AuthError::BadClaim(claim.to_owned(), why.to_owned());
    let sub = match map.get("sub") {
        Some(Value::String(s)) if is_valid_name(s) => s.clone(),
        Some(_) => {
            return Err(bad(
                "sub",
                "must be a peer id of 1-128 characters from [A-Za-z0-9._:@-]",
            ))
        }
        None => return Err(AuthError::MissingClaim("sub".into())),
    };
    let exp = match map.get("exp") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("exp", "must be Unix seconds"))?,
        None => return Err(AuthError::MissingClaim("exp".into())),
    };
    let rooms = match map.get("rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(bad(
                    "rooms",
                    "must be a list of room names or prefix* patterns",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(bad(
                "rooms",
                "must be a list of room names or prefix* patterns",
            ))
        }
        None => return Err(AuthError::MissingClaim("rooms".into())),
    };
    let role = match map.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if !r.is_empty() && r.chars().count() <= MAX_ROLE_CHARS => {
            Some(r.clone())
        }
        Some(_) => {
            return Err(bad(
                "role",
                &format!("must be a string of 1-{MAX_ROLE_CHARS} characters"),
            ))
        }
    };
    Ok(Claims {
        sub,
        rooms,
        role,
        exp,
    })
}

/// The token of an upgrade request: `Authorization: Bearer …` first, then
/// the `token` query parameter.
pub fn token_from_request(authorization: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(value) = authorization {
        let value = value.trim();
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim().to_owned());
            }
        }
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a browser upgrade from `origin` is allowed. Requests without an
/// `Origin` header (non-browser clients, which could claim any origin) pass.
pub fn origin_allowed(config: &AuthConfig, origin: Option<&str>) -> bool {
    match origin {
        _ if config.allowed_origins.is_empty() => true,
        None => true,
        Some(origin) => config
            .allowed_origins
            .iter()
            .any(|allowed| *allowed == normalize_origin(origin)),
    }
}

/// Whether `authorization` carries the admin token (always true when none is
/// configured). Compared in constant time.
pub fn admin_allowed(config: &AuthConfig, authorization: Option<&str>) -> bool {
    let Some(expected) = &config.admin_token else {
        return true;
    };
    let given = token_from_request(authorization, None).unwrap_or_default();
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Options of `switchboard token`: mints a token for development and tests.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Peer id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Room name or `prefix*` pattern; repeat for several.
    #[arg(long = "room", required = true)]
    pub rooms: Vec<String>,
    /// Pinned role.
    #[arg(long)]
    pub role: Option<String>,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = DEFAULT_TOKEN_TTL)]
    pub ttl: String,
    /// HS256 secret to sign with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// PEM private key (RSA: RS256, P-256: ES256) to sign with, instead of a secret.
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// `kid` header (for JWKS).
    #[arg(long)]
    pub kid: Option<String>,
    /// `iss` claim.
    #[arg(long, env = "JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub audience: Option<String>,
}

/// Parses `90`, `90s`, `15m`, `1h`, `2d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("ttl {s:?} is not a number with an optional s, m, h or d"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("ttl {s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(unit)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("ttl {s:?} must be positive and reasonable"))
}

/// Mints a token for `args`, issued at `now` (Unix seconds).
pub fn mint(args: &TokenArgs, now: u64) -> Result<String, String> {
    if !is_valid_name(&args.sub) {
        return Err(format!(
            "--sub {:?} must be 1-128 characters from [A-Za-z0-9._:@-]",
            args.sub
        ));
    }
    let ttl = parse_ttl(&args.ttl)?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(args.sub.clone()));
    claims.insert("rooms".into(), Value::from(args.rooms.clone()));
    if let Some(role) = &args.role {
        claims.insert("role".into(), Value::from(role.clone()));
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(ttl)));
    if let Some(iss) = non_empty(args.issuer.clone()) {
        claims.insert("iss".into(), Value::from(iss));
    }
    if let Some(aud) = non_empty(args.audience.clone()) {
        claims.insert("aud".into(), Value::from(aud));
    }
    let (key, algorithm) = match (&args.private_key_file, non_empty(args.secret.clone())) {
        (Some(path), _) => {
            let pem = read_file(path)?;
            if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
                (key, Algorithm::ES256)
            } else {
                return Err(format!(
                    "{} is not a PEM RSA or P-256 private key (PKCS#8)",
                    path.display()
                ));
            }
        }
        (None, Some(secret)) => {
            // The server's rule: a token signed with a shorter secret would
            // only ever be refused.
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(format!(
                    "the secret must be at least {MIN_JWT_SECRET_BYTES} bytes, as the server requires of JWT_SECRET (e.g. `openssl rand -base64 32`)"
                ));
            }
            (
                EncodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            )
        }
        (None, None) => {
            return Err("give --secret (or JWT_SECRET) or --private-key-file".into());
        }
    };
    let mut header = Header::new(algorithm);
    header.kid = args.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DEFAULT_ROLE;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minting_refuses_a_secret_the_server_would_refuse() {
        let args = TokenArgs {
            sub: "alice".into(),
            rooms: vec!["r1".into()],
            role: None,
            ttl: DEFAULT_TOKEN_TTL.into(),
            secret: Some("short".into()),
            private_key_file: None,
            kid: None,
            issuer: None,
            audience: None,
        };
        let e = mint(&args, 1).unwrap_err();
        assert!(e.contains("at least 16 bytes"), "{e}");
        let args = TokenArgs {
            secret: Some(SECRET.into()),
            ..args
        };
        assert!(mint(&args, 1).is_ok());
    }

    fn verifier() -> Verifier {
        let config = AuthArgs {
            jwt_secret: Some(SECRET.into()),
            jwt_leeway_secs: 0,
            ..AuthArgs::default()
        }
        .into_config()
        .unwrap();
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
    fn grants_match_names_and_prefixes() {
        let c = Claims {
            sub: "a".into(),
            rooms: vec!["lobby".into(), "team-*".into()],
            role: None,
            exp: 0,
        };
        assert!(c.allows_room("lobby"));
        assert!(!c.allows_room("lobby2"));
        assert!(c.allows_room("team-"));
        assert!(c.allows_room("team-x"));
        assert!(!c.allows_room("team"));
        let all = Claims {
            rooms: vec!["*".into()],
            ..c
        };
        assert!(all.allows_room("anything"));
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

    #[test]
    fn config_errors_name_the_setting() {
        let both = AuthArgs {
            jwt_secret: Some(SECRET.into()),
            jwt_jwks_file: Some("/nonexistent".into()),
            ..AuthArgs::default()
        };
        assert_eq!(both.into_config().unwrap_err().setting, "JWT_SECRET");
        let short = AuthArgs {
            jwt_secret: Some("short".into()),
            ..AuthArgs::default()
        };
        assert_eq!(short.into_config().unwrap_err().setting, "JWT_SECRET");
        let missing = AuthArgs {
            jwt_public_key_file: Some("/nonexistent/key.pem".into()),
            ..AuthArgs::default()
        };
        assert_eq!(
            missing.into_config().unwrap_err().setting,
            "JWT_PUBLIC_KEY_FILE"
        );
        let origin = AuthArgs {
            allowed_origins: Some("https://a.example/path".into()),
            ..AuthArgs::default()
        };
        assert_eq!(origin.into_config().unwrap_err().setting, "ALLOWED_ORIGINS");
        let leeway = AuthArgs {
            jwt_leeway_secs: MAX_JWT_LEEWAY_SECS + 1,
            ..AuthArgs::default()
        };
        assert_eq!(leeway.into_config().unwrap_err().setting, "JWT_LEEWAY_SECS");
    }

    #[test]
    fn tokens_come_from_header_or_query() {
        assert_eq!(
            token_from_request(Some("Bearer abc"), Some("token=x")).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_request(None, Some("a=1&token=x%2Ey")).as_deref(),
            Some("x.y")
        );
        assert_eq!(token_from_request(None, Some("a=1")), None);
        assert_eq!(
            token_from_request(None, Some("token=%")).as_deref(),
            Some("%")
        );
    }

    #[test]
    fn origins_and_admin_token() {
        let config = AuthArgs {
            allowed_origins: Some("https://App.example.com/, http://localhost:3000".into()),
            admin_token: Some("admin-token-0123456789".into()),
            ..AuthArgs::default()
        }
        .into_config()
        .unwrap();
        assert!(origin_allowed(&config, Some("https://app.example.com")));
        assert!(origin_allowed(&config, Some("http://localhost:3000")));
        assert!(!origin_allowed(&config, Some("https://evil.example")));
        assert!(origin_allowed(&config, None));
        assert!(admin_allowed(
            &config,
            Some("Bearer admin-token-0123456789")
        ));
        assert!(!admin_allowed(
            &config,
            Some("Bearer admin-token-012345678")
        ));
        assert!(!admin_allowed(&config, None));
        assert!(format!("{config:?}").contains("redacted"));
        assert!(!format!("{config:?}").contains("admin-token-0123456789"));
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
