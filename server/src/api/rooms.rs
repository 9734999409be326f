//! The calls on rooms as a whole: list them, read one, close one.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::input::{name, page_query};
use crate::node::Node;

/// `GET /api/v1/rooms?limit=N&cursor=C`: rooms in name order; `next_cursor`
/// is the last room of this page, `null` on the last page.
pub async fn list_rooms(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(query.as_deref())?;
    let page = node
        .backend
        .list_rooms(cursor.as_deref(), limit)
        .await
        .map_err(|e| ApiError::of_backend(e, "", None))?;
    Ok(Json(page).into_response())
}

/// `GET /api/v1/rooms/{room}`: the room's peers (with node and away) and state.
pub async fn get_room(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    let detail = node
        .backend
        .room(room)
        .await
        .map_err(|e| ApiError::of_backend(e, room, None))?;
    Ok(Json(detail).into_response())
}

/// `DELETE /api/v1/rooms/{room}`: every peer closed with 4003, the room deleted.
pub async fn close_room(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    node.backend
        .close_room(room)
        .await
        .map_err(|e| ApiError::of_backend(e, room, None))?;
    tracing::info!(room, "room closed through the Server API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
