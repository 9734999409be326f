//! HTTP endpoints: `/health` (liveness, with the node id), `/ready`, `/metrics`
//! (Prometheus text with the node's metric families) and `/status` (node id,
//! region, version, uptime, connections, rooms, backend kind and health).
//!
//! Metric and status field names are the server's (server/src/metrics.rs and
//! server/src/http.rs); PROTOCOL.md lists what `/status` must say.

use serde_json::json;

use crate::support::http::metric_sample as sample;
use crate::support::*;

/// Metric families every node exports (server/src/metrics.rs). In the text
/// format a counter family is named without its `_total` suffix.
const METRIC_FAMILIES: &[&str] = &[
    "switchboard_connections_active",
    "switchboard_connections",
    "switchboard_connections_rejected",
    "switchboard_connection_closes",
    "switchboard_messages_in",
    "switchboard_messages_out",
    "switchboard_errors",
    "switchboard_message_handling_seconds",
    "switchboard_slow_consumer_closes",
    "switchboard_rate_limited_messages",
    "switchboard_rooms_active",
    "switchboard_peers_active",
    "switchboard_room_peers",
];

/// `/health` is 200 `{"status":"ok","node":SERVER_ID}` on every node.
pub async fn health(c: &Cluster) {
    for i in 0..c.len() {
        let resp = c.get(i, "/health").await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(resp
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
        assert_eq!(resp.json(), json!({"status": "ok", "node": c.node_id(i)}));
    }
}

/// `/ready` is 200 on a serving node; unknown paths are 404.
pub async fn ready_and_unknown_path(c: &Cluster) {
    for i in 0..c.len() {
        assert_eq!(c.get(i, "/ready").await.status, 200);
        assert_eq!(c.get(i, "/no-such-path").await.status, 404);
    }
}

/// `/metrics` is Prometheus text with every family, and counts what happened.
pub async fn metrics(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (_bob, _) = join(c, 0, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": 1}))
        .await;
    alice
        .request_error(
            json!({"type": "signal", "to": "nobody", "payload": 1}),
            "PEER_NOT_FOUND",
        )
        .await;

    let resp = c.get(0, "/metrics").await;
    assert_eq!(resp.status, 200);
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "content-type {content_type}"
    );
    for family in METRIC_FAMILIES {
        assert!(
            resp.body.contains(&format!("# TYPE {family} ")),
            "family {family} missing:\n{}",
            resp.body
        );
    }
    let body = &resp.body;
    assert_eq!(
        sample(body, "switchboard_connections_active"),
        Some(2.0),
        "{body}"
    );
    assert!(
        sample(body, "switchboard_connections_total").unwrap_or(0.0) >= 2.0,
        "{body}"
    );
    assert!(
        sample(body, r#"switchboard_messages_in_total{type="signal"}"#).unwrap_or(0.0) >= 2.0,
        "{body}"
    );
    assert!(
        sample(body, r#"switchboard_errors_total{code="PEER_NOT_FOUND"}"#).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert_eq!(
        sample(body, "switchboard_peers_active"),
        Some(2.0),
        "{body}"
    );
}

/// `/status` is JSON with the node id, region, version, uptime, connections,
/// rooms and the backend's kind and health.
pub async fn status(c: &Cluster) {
    let (_a, _) = join(c, 0, "r1", "alice").await;
    let (_b, _) = join(c, 0, "r2", "bob").await;
    let resp = c.get(0, "/status").await;
    assert_eq!(resp.status, 200);
    let s = resp.json();
    assert_eq!(s["node"], c.node_id(0), "{s}");
    assert!(s.get("region").is_some(), "region missing: {s}");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{s}");
    assert!(s["uptime_secs"].is_u64(), "uptime: {s}");
    assert_eq!(s["connections"], 2, "{s}");
    assert_eq!(s["rooms"], 2, "{s}");
    let expected_kind = if c.uses_redis() { "redis" } else { "memory" };
    assert_eq!(s["backend"]["kind"], expected_kind, "{s}");
    assert_eq!(s["backend"]["healthy"], true, "{s}");
}
