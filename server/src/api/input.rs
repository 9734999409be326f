//! Reading what a Server API call carries: the body (bounded in bytes, then
//! parsed as JSON with a message that says what is wrong), room and peer
//! names, the listing's query, and `If-Match`. Every check answers 400 or
//! 413 before anything is changed.

use axum::body::{to_bytes, Body};
use axum::http::HeaderMap;
use serde_json::Value;

use super::error::ApiError;
use crate::protocol::is_valid_name;

/// Rooms per listing page without `limit`.
pub const DEFAULT_PAGE_ROOMS: usize = 100;
/// The largest `limit` of a listing page.
pub const MAX_PAGE_ROOMS: usize = 1000;
/// Bytes a body may take beyond the largest payload or state it can carry
/// (the envelope: `to`, field names, whitespace).
pub const BODY_ENVELOPE_BYTES: usize = 16 * 1024;

/// The body as JSON, at most `limit` bytes (413 beyond, 400 when it is not JSON).
pub async fn json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(format!(
            "the request body is over {limit} bytes, the limit of this call"
        ))
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; this call takes a JSON body",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// A room or peer name of the path: 1-128 characters of `[A-Za-z0-9._:@-]`.
pub fn name<'a>(what: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if is_valid_name(value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {value:?} is not a valid name: 1-128 characters of [A-Za-z0-9._:@-]"
        )))
    }
}

/// The listing's `limit` and `cursor`; unknown parameters are ignored.
pub fn page_query(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = DEFAULT_PAGE_ROOMS;
    let mut cursor = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_ROOMS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit {value:?} must be a whole number from 1 to {MAX_PAGE_ROOMS}"
                        ))
                    })?;
            }
            "cursor" => {
                let decoded = percent_decode(value);
                if !is_valid_name(&decoded) {
                    return Err(ApiError::bad_request(format!(
                        "cursor {decoded:?} is not one this API gave out (use next_cursor of the previous page)"
                    )));
                }
                cursor = Some(decoded);
            }
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// `If-Match: "<version>"` as a version (the quotes of an entity tag may
/// be left out); `None` without the header or with `*` (any version).
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    Some(unquoted)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "If-Match {text:?} must be a state version, like \"3\" (or * for any)"
            ))
        })
}

/// `%XX` escapes of a query value (room names need none, but clients may
/// escape `:` and `@`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn page_queries_are_checked() {
        assert_eq!(page_query(None).unwrap(), (DEFAULT_PAGE_ROOMS, None));
        assert_eq!(
            page_query(Some("limit=2&cursor=room%3A1&x=y")).unwrap(),
            (2, Some("room:1".into()))
        );
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=1001",
            "limit=x",
            "cursor=a%20b",
        ] {
            assert_eq!(
                page_query(Some(bad)).unwrap_err().code,
                "BAD_REQUEST",
                "{bad}"
            );
        }
    }

    #[test]
    fn if_match_takes_a_quoted_version_or_star() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert("if-match", HeaderValue::from_static("\"3\""));
        assert_eq!(if_match(&h).unwrap(), Some(3));
        h.insert("if-match", HeaderValue::from_static("7"));
        assert_eq!(if_match(&h).unwrap(), Some(7));
        h.insert("if-match", HeaderValue::from_static("*"));
        assert_eq!(if_match(&h).unwrap(), None);
        for bad in ["\"x\"", "\"-1\"", "W/\"3\"", "\"\"", "\"3", "+3"] {
            h.insert("if-match", HeaderValue::from_static(bad));
            assert!(if_match(&h).is_err(), "{bad}");
        }
    }
}
