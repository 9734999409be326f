//! `GET /api/v1/rooms/{room}/events?after=OFFSET&limit=N`: one page of a
//! room's history, `{"events":[{"offset","type","at","data"}],"next":…}`.
//!
//! The handler takes only what it needs (the backend, the room, the query
//! string), so the `/api/v1` router wires it behind its key check.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::backend::history::MAX_PAGE;
use crate::backend::Backend;
use crate::protocol::{is_valid_name, ErrorCode};

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// The answer to one history read.
pub async fn events(backend: &dyn Backend, room: &str, query: Option<&str>) -> Response {
    if !is_valid_name(room) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the room name must be 1-128 characters from [A-Za-z0-9._:@-]",
        );
    }
    let (after, limit) = match parse_query(query.unwrap_or("")) {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    match backend.history(room, after.as_deref(), limit).await {
        Ok(Some(page)) => Json(page).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "ROOM_NOT_FOUND",
            &format!("room {room:?} has no history (it never had a peer, or its history aged out)"),
        ),
        Err(e) => {
            let status = match e.code {
                ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.code.as_str(), &e.message)
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `after` (an offset as given out) and `limit` (1 to [`MAX_PAGE`]).
fn parse_query(query: &str) -> Result<(Option<String>, usize), String> {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" if value.is_empty() => {}
            "after" => {
                if value.len() > 64
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(format!(
                        "after={value:?} is not an offset of this room's history; pass back a `next` or `offset` you were given"
                    ));
                }
                after = Some(value.to_owned());
            }
            "limit" => {
                limit = match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "limit={value:?} must be a whole number from 1 to {MAX_PAGE}"
                        ))
                    }
                };
            }
            // Unknown parameters are ignored, as HTTP APIs commonly do.
            _ => {}
        }
    }
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        assert_eq!(parse_query("").unwrap(), (None, DEFAULT_LIMIT));
        assert_eq!(
            parse_query("after=17-0&limit=5").unwrap(),
            (Some("17-0".into()), 5)
        );
        assert!(parse_query("limit=0").is_err());
        assert!(parse_query("limit=100000").is_err());
        assert!(parse_query("after=%27x").is_err());
    }
}
