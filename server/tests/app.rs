//! The HTTP routes in-process: `http::app` and `http::internal_app` over an
//! embedded node, driven with `tower`'s `oneshot` — no process, no socket.
//! The black-box suites (`healthcheck`, `internal_listener`, `auth`) cover
//! the same routes over TCP; these are the cheap layer for what the routes
//! answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use switchboard::auth::AuthConfig;
use switchboard::backend::memory::MemoryBackend;
use switchboard::config::Config;
use switchboard::http::{app, internal_app};
use switchboard::metrics::Metrics;
use switchboard::node::Node;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";

/// A node over the embedded backend; `internal` as if INTERNAL_ADDR were set.
fn node(internal: bool) -> Arc<Node> {
    let mut config = Config::default();
    config.node_id = "n-test".into();
    config.auth = AuthConfig {
        admin_token: Some(ADMIN.into()),
        ..config.auth
    };
    if internal {
        config.internal_addr = Some("127.0.0.1:0".parse().unwrap());
    }
    let backend = MemoryBackend::new(config.limits.clone(), Duration::from_secs(30));
    Node::new(config, backend, Metrics::new())
}

/// `GET path` with optional headers: (status, content type, body).
async fn get(
    router: Router,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, String, String) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn health_and_ready_follow_the_drain() {
    let node = node(false);
    let (status, _, body) = get(app(node.clone()), "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["node"], "n-test");
    let (status, _, body) = get(app(node.clone()), "/ready", &[]).await;
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (StatusCode::OK, "ready".into())
    );

    node.drain.start();
    let (status, _, body) = get(app(node.clone()), "/ready", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["status"], "draining");
    // Liveness is not readiness: a draining node is alive.
    let (status, _, _) = get(app(node), "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_list_each_direction_s_own_types() {
    let (status, content_type, body) = get(app(node(false)), "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    for present in [
        r#"switchboard_messages_in_total{type="join"} 0"#,
        r#"switchboard_messages_in_total{type="invalid"} 0"#,
        r#"switchboard_messages_out_total{type="joined"} 0"#,
        r#"switchboard_messages_out_total{type="signal"} 0"#,
        "switchboard_rooms_active 0",
        "switchboard_room_peers_count 0",
    ] {
        assert!(body.contains(present), "missing {present} in\n{body}");
    }
    for absent in [
        r#"switchboard_messages_in_total{type="joined"}"#,
        r#"switchboard_messages_out_total{type="join"}"#,
        r#"switchboard_messages_out_total{type="invalid"}"#,
    ] {
        assert!(
            !body.contains(absent),
            "{absent} cannot occur, yet is listed"
        );
    }
}

#[tokio::test]
async fn status_needs_the_admin_token() {
    let node = node(false);
    let (status, _, body) = get(app(node.clone()), "/status", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "unauthorized");
    let bearer = format!("Bearer {ADMIN}");
    let (status, _, body) = get(app(node), "/status", &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    let status = json(&body);
    assert_eq!(status["backend"]["kind"], "memory");
    assert_eq!(status["rooms"], 0);
}

#[tokio::test]
async fn an_internal_listener_takes_metrics_and_status_off_the_public_router() {
    let node = node(true);
    for path in ["/metrics", "/status"] {
        let (status, _, _) = get(app(node.clone()), path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "public {path}");
    }
    let (status, _, _) = get(internal_app(node.clone()), "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(app(node), "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_plain_get_of_the_socket_path_is_no_upgrade() {
    // Without the upgrade headers (and the connection a real listener hands
    // over) nothing is upgraded and no session starts.
    let node = node(false);
    let remote: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let request = Request::get("/ws")
        .extension(ConnectInfo(remote))
        .body(Body::empty())
        .unwrap();
    let response = app(node.clone()).oneshot(request).await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(node.drain.active(), 0);
}
