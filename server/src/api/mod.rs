//! The Server API (`/api/v1`): HTTP+JSON calls for application backends to
//! see and steer rooms — list and read rooms, message peers, patch room
//! state, kick a peer, close a room — on whichever node serves the call, for
//! the whole cluster.
//!
//! - [`CALLS`] is the one list of calls: the router is built from it, the
//!   metrics label requests with its names, and a test checks that the
//!   OpenAPI document (`docs/openapi.json`, served by [`openapi`]) describes
//!   exactly these calls.
//! - Every request passes [`guard`]: the API key ([`keys`]), then the call,
//!   then one count in `switchboard_api_requests_total{call,status}`.
//! - [`error`] is the one error answer; [`input`] reads bodies, names and
//!   headers; [`rooms`], [`peers`], [`state`] and [`events`] (the room
//!   history) are the calls.
//!
//! Without an API key configured none of this is mounted, so every
//! `/api/v1` path answers 404 like any other unknown path.

pub mod error;
pub mod events;
pub mod input;
pub mod keys;
pub mod openapi;
mod peers;
mod rooms;
mod state;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, on, MethodFilter, MethodRouter};
use axum::Router;

use self::error::ApiError;
use self::keys::{bearer, ApiKeys};
use crate::node::Node;

/// The prefix of every call.
pub const PREFIX: &str = "/api/v1";

/// One call of the Server API: method, path (axum syntax, which is also
/// OpenAPI's) and its name (the OpenAPI `operationId` and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: &'static str,
    pub name: &'static str,
}

const fn call(method: &'static str, path: &'static str, name: &'static str) -> Call {
    Call { method, path, name }
}

/// Every call this node serves.
pub const CALLS: [Call; 8] = [
    call("GET", "/api/v1/rooms", "list_rooms"),
    call("GET", "/api/v1/rooms/{room}", "get_room"),
    call("DELETE", "/api/v1/rooms/{room}", "close_room"),
    call("POST", "/api/v1/rooms/{room}/messages", "send_message"),
    call("PATCH", "/api/v1/rooms/{room}/state", "patch_state"),
    call("DELETE", "/api/v1/rooms/{room}/peers/{peer}", "kick_peer"),
    call("GET", "/api/v1/rooms/{room}/events", "room_events"),
    call("GET", "/api/v1/openapi.json", "openapi"),
];

/// Calls the OpenAPI document describes that this node does not serve yet
/// (none: the list is kept for calls documented ahead of their code).
pub const DOCUMENTED_NOT_SERVED: [Call; 0] = [];

/// The metric label of requests that matched no call.
const UNKNOWN_CALL: &str = "unknown";

/// The handler of a call of [`CALLS`], on its method.
fn handler(call: &Call) -> MethodRouter<Arc<Node>> {
    let method = match call.method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PATCH" => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    };
    match call.name {
        "list_rooms" => on(method, rooms::list_rooms),
        "get_room" => on(method, rooms::get_room),
        "close_room" => on(method, rooms::close_room),
        "send_message" => on(method, peers::send_message),
        "patch_state" => on(method, state::patch_state),
        "kick_peer" => on(method, peers::kick_peer),
        "room_events" => on(method, events::room_events),
        "openapi" => on(method, openapi::document),
        // A call listed without a handler: it answers 404, which the suite
        // (server/tests/server_api, one case per call) would show.
        _ => any(|| async { ApiError::not_found() }),
    }
}

/// The `/api/v1` routes, or `None` when no API key is configured.
pub fn router(node: Arc<Node>) -> Option<Router> {
    let keys = ApiKeys::new(&node.config.auth.api_keys);
    if !keys.enabled() {
        return None;
    }
    let mut router = Router::new();
    for c in &CALLS {
        router = router.route(c.path, handler(c));
    }
    let router = router
        .route(
            &format!("{PREFIX}/{{*rest}}"),
            any(|| async { ApiError::not_found() }),
        )
        .route(PREFIX, any(|| async { ApiError::not_found() }))
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(from_fn_with_state(
            Arc::new(Guard {
                keys,
                node: node.clone(),
            }),
            guard,
        ));
    Some(router.with_state(node))
}

/// What [`guard`] needs.
struct Guard {
    keys: ApiKeys,
    node: Arc<Node>,
}

/// The name of the call a request matched.
fn call_of(method: &Method, matched: Option<&MatchedPath>) -> &'static str {
    let Some(path) = matched.map(MatchedPath::as_str) else {
        return UNKNOWN_CALL;
    };
    CALLS
        .iter()
        .find(|c| c.path == path && c.method == method.as_str())
        .map_or(UNKNOWN_CALL, |c| c.name)
}

/// Checks the key (401 before anything else, also on unknown paths, so that
/// an unauthenticated caller learns nothing), runs the call, counts it.
async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let call = call_of(request.method(), request.extensions().get::<MatchedPath>());
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let response = match bearer(key) {
        Some(key) if guard.keys.accepts(key.as_bytes()) => next.run(request).await,
        _ => {
            // Never the key itself: it is a credential.
            tracing::debug!(call, "Server API call refused: missing or unknown API key");
            ApiError::unauthorized().into_response()
        }
    };
    guard
        .node
        .metrics
        .api_request(call, response.status().as_u16());
    response
}
