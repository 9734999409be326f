//! Reading verification keys: one RS256/ES256 public key from a PEM file, or
//! the RS256/ES256 signature keys of a JWKS file (by `kid`). Errors are text
//! naming the file and what is wrong with it, for the setting's error.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::warn;

use super::KeySet;

/// The bytes of a key file, or an error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads one RSA or P-256 public key; the key type picks RS256 or ES256.
pub fn load_pem(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
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
pub fn load_jwks(path: &Path) -> Result<KeySet, String> {
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
