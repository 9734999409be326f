//! `PATCH /api/v1/rooms/{room}/state`: the application changes a room's
//! state with a JSON Merge Patch (RFC 7386), optionally only at the version
//! it read (`If-Match: "<version>"`, 412 when stale). Peers get `state` with
//! `by: null`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::input::{if_match, json_body, name, BODY_ENVELOPE_BYTES};
use crate::node::Node;

pub async fn patch_state(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    let if_version = if_match(&headers)?;
    let limit = node.config.limits.max_state_bytes + BODY_ENVELOPE_BYTES;
    let Value::Object(patch) = json_body(body, limit).await? else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object (a JSON Merge Patch of the room state's data)",
        ));
    };
    let version = node
        .backend
        .patch_state(room, &patch, if_version)
        .await
        .map_err(|e| ApiError::of_backend(e, room, None))?;
    Ok(Json(json!({ "version": version })).into_response())
}
