//! HTTP routes: the WebSocket upgrade, health, readiness, metrics, status,
//! the small status page and the demo page, and where the Server API
//! ([`crate::api`]) is mounted. `app()` builds the router so
//! tests and the binary serve the same thing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::upgrade::OnUpgrade;
use serde_json::json;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::api;
use crate::auth;
use crate::node::Node;
use crate::session;

mod demo;

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
    mut request: Request,
) -> Response {
    let (accept_key, on_upgrade) = match websocket_handshake(&mut request) {
        Ok(handshake) => handshake,
        Err(refused) => return *refused,
    };
    let headers = request.headers();
    let claims = match authenticate(&node, headers, query.as_deref()) {
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
    tokio::spawn(async move {
        // Fails when the client hung up before the upgrade completed (the
        // slot is then dropped here).
        if let Ok(upgraded) = on_upgrade.await {
            let socket = session::websocket(upgraded, &node.config.limits).await;
            // A task of its own: this one's state (the upgrade, the handshake)
            // is not carried for the connection's life.
            tokio::spawn(session::serve(socket, node, remote, conn, claims, slot));
        }
    });
    switching_protocols(&accept_key)
}

/// Checks that `request` asks for a WebSocket (RFC 6455, section 4.2.1) and
/// takes its upgrade: the `Sec-WebSocket-Accept` value and the future
/// connection. Done here rather than by axum's `WebSocketUpgrade`, which
/// hands over a WebSocket on buffers of a fixed size (see `session::socket`).
fn websocket_handshake(request: &mut Request) -> Result<(String, OnUpgrade), Box<Response>> {
    let headers = request.headers();
    let has = |name, wanted: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|text| {
                text.split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(wanted))
            })
        })
    };
    let bad = |message: &str| {
        Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "not_a_websocket_upgrade",
            message,
        )))
    };
    if request.method() != Method::GET {
        return bad("a WebSocket upgrade is a GET request");
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return bad(
            "this path only serves WebSockets: send Connection: Upgrade and Upgrade: websocket",
        );
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return bad("only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad("the Sec-WebSocket-Key header is missing");
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return Err(Box::new(refuse(
            StatusCode::UPGRADE_REQUIRED,
            "not_upgradable",
            "this connection cannot be upgraded to a WebSocket",
        )));
    };
    Ok((accept_key, on_upgrade))
}

/// The 101 answer to an accepted upgrade.
fn switching_protocols(accept_key: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
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
