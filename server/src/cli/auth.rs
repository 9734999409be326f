//! The authentication flags and their validation into an [`AuthConfig`]
//! (the key file is read here, so a bad one stops the start).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{invalid, ConfigError};
use crate::auth::keys::{load_jwks, load_pem};
use crate::auth::{
    non_empty, normalize_origin, AuthConfig, KeySource, DEFAULT_JWT_LEEWAY_SECS,
    MAX_JWT_LEEWAY_SECS, MIN_JWT_SECRET_BYTES,
};

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
    /// Comma-separated keys of the Server API (`/api/v1`, `Authorization:
    /// Bearer <key>`), each at least 16 characters; several at once for
    /// rotation. Unset: every `/api/v1` path answers 404.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
}

impl AuthArgs {
    /// Validates the options, reading the key files, into an [`AuthConfig`].
    pub fn into_config(self) -> Result<AuthConfig, ConfigError> {
        let keys = key_source(
            non_empty(self.jwt_secret),
            self.jwt_public_key_file,
            self.jwt_jwks_file,
        )?;
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
        let api_keys = api_keys(self.api_keys.as_deref())?;
        Ok(AuthConfig {
            keys,
            issuer,
            audience,
            leeway_secs: self.jwt_leeway_secs,
            allowed_origins,
            admin_token,
            api_keys,
        })
    }
}

/// The Server API keys of `API_KEYS`: blanks between commas are skipped; a
/// key shorter than [`MIN_JWT_SECRET_BYTES`] is refused (the error never
/// shows the key).
fn api_keys(list: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let mut keys = Vec::new();
    for (i, key) in list.unwrap_or_default().split(',').enumerate() {
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        if key.len() < MIN_JWT_SECRET_BYTES {
            return Err(invalid(
                "API_KEYS",
                format!(
                    "key number {} is {} characters; each key must be at least {MIN_JWT_SECRET_BYTES}",
                    i + 1,
                    key.len()
                ),
            ));
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

/// The one key source configured, read and checked; `None`: auth is off.
fn key_source(
    secret: Option<String>,
    pem: Option<PathBuf>,
    jwks: Option<PathBuf>,
) -> Result<Option<KeySource>, ConfigError> {
    let pem = pem.filter(|p| !p.as_os_str().is_empty());
    let jwks = jwks.filter(|p| !p.as_os_str().is_empty());
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
    Ok(if let Some(secret) = secret {
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
        let (key, algorithm) = load_pem(&path).map_err(|e| invalid("JWT_PUBLIC_KEY_FILE", e))?;
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{admin_allowed, origin_allowed};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn api_keys_are_a_list_of_long_keys_never_shown() {
        let keys = AuthArgs {
            api_keys: Some(" key-one-0123456789 , ,key-two-0123456789".into()),
            ..AuthArgs::default()
        };
        let config = keys.into_config().unwrap();
        assert_eq!(
            config.api_keys,
            ["key-one-0123456789", "key-two-0123456789"]
        );
        assert!(!format!("{config:?}").contains("key-one"));
        let short = AuthArgs {
            api_keys: Some("key-one-0123456789,shortkey".into()),
            ..AuthArgs::default()
        };
        let e = short.into_config().unwrap_err();
        assert_eq!(e.setting, "API_KEYS");
        assert!(!e.reason.contains("shortkey"), "{}", e.reason);
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
}
