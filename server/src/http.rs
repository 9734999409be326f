//! HTTP routes: the WebSocket upgrade, health, readiness, metrics, status,
//! the small status page and the demo page, and where the Server API
//! ([`crate::api`]) is mounted. `app()` builds the router so
//! tests and the binary serve the same thing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api;
use crate::auth;
use crate::node::Node;
use crate::session;

mod demo;

/// Read buffer per WebSocket. tungstenite's default (128 KiB) would dominate
/// the memory of an idle connection; larger frames still arrive in chunks.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes of frames gathered before a write to the socket (frames queued
/// together are also flushed together).
const WS_WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// The router of one node's listener: everything, or with an internal
/// listener (`INTERNAL_ADDR`) configured, everything but metrics, status and
/// the Server API.
pub fn app(node: Arc<Node>) -> Router {
    let public = Router::new()
        .route("/", get(index))
        .route("/ws", get(upgrade))
        .route(demo::PAGE_PATH, get(demo::page))
        .route(demo::SCRIPT_PATH, get(demo::script))
        .route("/health", get(health))
        .route("/ready", get(ready));
    let public = if node.config.internal_addr.is_some() {
        public
    } else {
        public
            .route("/metrics", get(metrics))
            .route("/status", get(status))
    };
    let public = public.with_state(node.clone());
    match node.config.internal_addr {
        Some(_) => public,
        None => with_api(public, node),
    }
}

/// The router of the internal listener: probes, metrics, status and the
/// Server API, for what runs inside the network (Prometheus, load balancer health checks).
pub fn internal_app(node: Arc<Node>) -> Router {
    let internal = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(node.clone());
    with_api(internal, node)
}

/// `router` plus the Server API when an API key is configured.
fn with_api(router: Router, node: Arc<Node>) -> Router {
    match api::router(node) {
        Some(api) => router.merge(api),
        None => router,
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn upgrade(
    State(node): State<Arc<Node>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let claims = match authenticate(&node, &headers, query.as_deref()) {
        Ok(claims) => claims,
        Err(refused) => {
            tracing::debug!(%remote, status = refused.status().as_u16(), "upgrade refused");
            return *refused;
        }
    };
    if node.drain.is_draining() {
        node.metrics.rejected("draining");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is shutting down; connect to another node",
        );
    }
    let limits = &node.config.limits;
    let Some(slot) = node.drain.try_track(limits.max_connections) else {
        node.metrics.rejected("connection_limit");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection_limit",
            "this node has its maximum number of connections; retry later or connect to another node",
        );
    };
    let conn = node.next_connection_id();
    ws.read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(
            limits.outbound_queue_bytes.max(WS_WRITE_BUFFER_BYTES * 2) + limits.max_frame_bytes,
        )
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            session::serve(socket, node, remote, conn, claims).await;
            drop(slot);
        })
}

/// The origin check (403) and the token check (401) of an upgrade: the
/// token's grant, or `None` when auth is off.
fn authenticate(
    node: &Node,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<auth::Claims>, Box<Response>> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if !auth::origin_allowed(&node.config.auth, text(header::ORIGIN)) {
        node.metrics.rejected("origin");
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this origin is not allowed to connect (ALLOWED_ORIGINS)",
        )));
    }
    let Some(verifier) = &node.verifier else {
        return Ok(None);
    };
    let token = auth::token_from_request(text(header::AUTHORIZATION), query).unwrap_or_default();
    match verifier.verify(&token) {
        Ok(claims) => Ok(Some(claims)),
        Err(e) => {
            // The reason, never the token: it is a credential.
            tracing::debug!(reason = %e, "token refused");
            node.metrics.rejected("unauthorized");
            let mut response = refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            Err(Box::new(response))
        }
    }
}

async fn health(State(node): State<Arc<Node>>) -> Response {
    Json(json!({"status": "ok", "node": node.config.node_id})).into_response()
}

async fn ready(State(node): State<Arc<Node>>) -> Response {
    match node.ready() {
        Ok(()) => Json(json!({"status": "ready", "node": node.config.node_id})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": reason,
                "node": node.config.node_id,
                "backend": node.backend.health(),
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    node.metrics
        .pending_connections
        .set(node.pending.count() as i64);
    let stats = node.backend.stats();
    let body = node
        .metrics
        .render(stats.rooms, stats.peers, &stats.room_sizes);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !auth::admin_allowed(&node.config.auth, authorization) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs the admin token: Authorization: Bearer <ADMIN_TOKEN>",
        );
    }
    let stats = node.backend.stats();
    Json(json!({
        "node": node.config.node_id,
        "region": node.config.region,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": node.started.elapsed().as_secs(),
        "draining": node.drain.is_draining(),
        "connections": node.drain.active(),
        "pending_connections": node.pending.count(),
        "rooms": stats.rooms,
        "peers": stats.peers,
        "backend": {
            "kind": node.backend.kind(),
            "healthy": node.backend.health().healthy,
            "detail": node.backend.health().detail,
        },
    }))
    .into_response()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}
