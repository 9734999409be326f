//! The calls on the peers of a room: a `server` message to one or all of
//! them, and a kick.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::input::{json_body, name, BODY_ENVELOPE_BYTES};
use crate::backend::Recipients;
use crate::node::Node;
use crate::protocol::event;

/// `POST /api/v1/rooms/{room}/messages` with `{"to"?: peer, "payload": any}`:
/// a `server` event to that peer or every peer; `{"delivered": n}`.
pub async fn send_message(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    let max_payload = node.config.limits.max_payload_bytes;
    let value = json_body(body, max_payload + BODY_ENVELOPE_BYTES).await?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object: {\"payload\": …} and optionally \"to\": a peer id",
        ));
    };
    let to = match fields.get("to") {
        None => Recipients::All,
        Some(Value::String(peer)) => Recipients::Peer(name("to", peer)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "\"to\" must be a peer id (a string); leave it out to message every peer",
            ))
        }
    };
    let Some(payload) = fields.get("payload") else {
        return Err(ApiError::bad_request(
            "\"payload\" is missing; it may be any JSON value",
        ));
    };
    let size = serde_json::to_vec(payload).map_or(usize::MAX, |v| v.len());
    if size > max_payload {
        return Err(ApiError::too_large(format!(
            "the payload is {size} bytes; the limit is {max_payload} bytes (MAX_PAYLOAD_BYTES)"
        )));
    }
    let peer = match to {
        Recipients::Peer(p) => Some(p),
        Recipients::All => None,
    };
    let delivered = node
        .backend
        .send_server(room, to, event::server(payload))
        .await
        .map_err(|e| ApiError::of_backend(e, room, peer))?;
    Ok(Json(json!({ "delivered": delivered })).into_response())
}

/// `DELETE /api/v1/rooms/{room}/peers/{peer}`: the peer is removed, its
/// connection closed with 4003 and its session made unresumable.
pub async fn kick_peer(
    State(node): State<Arc<Node>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((room, peer)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let room = name("room", &room)?;
    let peer = name("peer", &peer)?;
    node.backend
        .kick(room, peer)
        .await
        .map_err(|e| ApiError::of_backend(e, room, Some(peer)))?;
    tracing::info!(room, peer, "peer kicked through the Server API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
