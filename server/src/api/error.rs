//! The Server API's error answer, `{"error":{"code":"ROOM_NOT_FOUND",
//! "message":"…"}}`, with its HTTP status: one type that every handler
//! returns and one place that maps backend failures onto statuses. Internal
//! details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::backend::AdminError;
use crate::protocol::{ErrorCode, ProtocolError};

/// An error answer of the Server API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The current state version, on a stale `If-Match`.
    pub version: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            version: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this call needs a Server API key: Authorization: Bearer <one of API_KEYS>",
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such Server API call; see GET /api/v1/openapi.json",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this path does not take that method; see GET /api/v1/openapi.json",
        )
    }

    pub fn room_not_found(room: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ROOM_NOT_FOUND",
            format!("room {room:?} has no peers (a room exists while it has peers)"),
        )
    }

    fn peer_not_found(room: &str, peer: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "PEER_NOT_FOUND",
            format!("peer {peer:?} is not in room {room:?}"),
        )
    }

    /// The answer to a backend failure of a call on `room` (and `peer`).
    pub fn of_backend(e: AdminError, room: &str, peer: Option<&str>) -> Self {
        match e {
            AdminError::RoomNotFound => Self::room_not_found(room),
            AdminError::PeerNotFound => Self::peer_not_found(room, peer.unwrap_or_default()),
            AdminError::Contended => Self::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                "the room state changed under every attempt to apply this patch; retry",
            ),
            AdminError::Protocol(e) => Self::of_protocol(e),
        }
    }

    fn of_protocol(e: ProtocolError) -> Self {
        let (status, code) = match e.code {
            ErrorCode::VersionConflict => (StatusCode::PRECONDITION_FAILED, "VERSION_CONFLICT"),
            ErrorCode::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            other => {
                tracing::error!(code = other.as_str(), message = %e.message, "Server API call failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "the server failed to handle this call; it was logged",
                );
            }
        };
        Self {
            status,
            code,
            message: e.message,
            version: e.version,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(v) = self.version {
            error["version"] = json!(v);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
