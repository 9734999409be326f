//! `GET /api/v1/rooms/{room}/events?after=OFFSET&limit=N`: one page of a
//! room's history, `{"events":[{"offset","type","at","data"}],"next":…}`.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::input::name;
use crate::backend::history::{Offset, MAX_PAGE};
use crate::backend::AdminError;
use crate::node::Node;

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// The history read. A room that never had history (or whose history aged
/// out) is 404, even while it exists: its history is what is asked for.
pub async fn room_events(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    let (after, limit) =
        parse_query(query.as_deref().unwrap_or("")).map_err(ApiError::bad_request)?;
    match node.backend.history(room, after.as_ref(), limit).await {
        Ok(Some(page)) => Ok(Json(page).into_response()),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ROOM_NOT_FOUND",
            format!("room {room:?} has no history (it never had a peer, or its history aged out)"),
        )),
        Err(e) => Err(ApiError::of_backend(AdminError::Protocol(e), room, None)),
    }
}

/// `after` (an offset as given out, parsed here once: the backends take it
/// as valid) and `limit` (1 to [`MAX_PAGE`]).
fn parse_query(query: &str) -> Result<(Option<Offset>, usize), String> {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" if value.is_empty() => {}
            "after" => {
                after = Some(Offset::parse(value).ok_or_else(|| {
                    format!(
                        "after={value:?} is not an offset of this room's history; pass back a `next` or `offset` you were given"
                    )
                })?);
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
        assert_eq!(parse_query("after=").unwrap(), (None, DEFAULT_LIMIT));
        let (after, limit) = parse_query("after=17-0&limit=5").unwrap();
        assert_eq!((after.unwrap().parts(), limit), ((17, 0), 5));
        assert!(parse_query("limit=0").is_err());
        assert!(parse_query("limit=100000").is_err());
        assert!(parse_query("after=%27x").is_err());
        // Refused here, not by a backend: every bad offset gets the same
        // message, naming the parameter.
        for bad in ["zz", "1-", "1-1-1", "99999999999999999999"] {
            let e = parse_query(&format!("after={bad}")).unwrap_err();
            assert!(
                e.starts_with(&format!("after={bad:?} is not an offset")),
                "{e}"
            );
        }
    }
}
