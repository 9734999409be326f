//! What authentication reads from an HTTP request: the token of an upgrade,
//! the browser's `Origin` against the allow-list, and the admin token.

use super::{normalize_origin, AuthConfig};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
