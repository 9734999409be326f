//! `INTERNAL_ADDR`: a second listener for what only the inside of the network
//! should reach. With it, the public listener serves the WebSocket, the page
//! and the probes, and no longer `/metrics` or `/status`; the internal one
//! serves the probes, metrics and status, and no WebSocket (and the Server
//! API when API keys are set: tests/api.rs). Its startup log says which.

mod support;

use std::process::Command;

use serde_json::json;
use support::{http, join, Cluster, Settings};

#[tokio::test]
async fn metrics_and_status_move_to_the_internal_listener() {
    let c = Cluster::embedded(Settings::new().set("INTERNAL_ADDR", "127.0.0.1:0")).await;
    let (internal, serves) = c.internal_listener(0).await;
    assert_ne!(internal, c.addr(0));
    // Without API keys the log says so, and the Server API is nowhere.
    assert!(serves.contains("no Server API"), "{serves}");
    let api = http::get(internal, "/api/v1/rooms").await;
    assert_eq!(api.status, 404, "{}", api.body);
    for path in ["/metrics", "/status"] {
        assert_eq!(c.get(0, path).await.status, 404, "public {path}");
        assert_eq!(
            http::get(internal, path).await.status,
            200,
            "internal {path}"
        );
    }
    for path in ["/health", "/ready"] {
        assert_eq!(c.get(0, path).await.status, 200, "public {path}");
        assert_eq!(
            http::get(internal, path).await.status,
            200,
            "internal {path}"
        );
    }
    assert_eq!(http::get(internal, "/ws").await.status, 404);
    // The public listener still serves clients, and the internal one sees them.
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    alice
        .request_ok(json!({"type": "broadcast", "payload": 1}))
        .await;
    let status = http::get(internal, "/status").await.json();
    assert_eq!(status["connections"], 1, "{status}");
}

#[test]
fn the_internal_listener_needs_a_port_of_its_own() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .args([
            "--port",
            "8090",
            "--internal-addr",
            "127.0.0.1:8090",
            "print-config",
        ])
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("INTERNAL_ADDR"), "{stderr}");
}
