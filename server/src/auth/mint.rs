//! `switchboard token`: mints a token for development and tests, refusing
//! what the server would refuse (a short secret, an invalid peer id).

use std::path::PathBuf;

use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::keys::read_file;
use super::{non_empty, DEFAULT_TOKEN_TTL, MIN_JWT_SECRET_BYTES};
use crate::protocol::is_valid_name;

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
