//! `INTERNAL_ADDR`: a second listener for what only the inside of the network
//! should reach. With it, the public listener serves the WebSocket, the page
//! and the probes, and no longer `/metrics` or `/status`; the internal one
//! serves the probes, metrics and status, and no WebSocket (and the Server
//! API when API keys are set: tests/api.rs). Its startup log says which.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{http, join, Cluster, Settings};

/// The internal listener's address and what it says it serves, from the
/// node's startup log.
async fn internal_listener(c: &Cluster) -> (SocketAddr, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = c.node(0).output().iter().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if v["fields"]["message"] != "internal listener" {
                return None;
            }
            let addr = v["fields"]["addr"].as_str()?.parse().ok()?;
            Some((addr, v["fields"]["serves"].as_str()?.to_owned()))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no internal listener logged");
        // The log is read by a background thread: poll it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_and_status_move_to_the_internal_listener() {
    let c = Cluster::embedded(Settings::new().set("INTERNAL_ADDR", "127.0.0.1:0")).await;
    let (internal, serves) = internal_listener(&c).await;
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
