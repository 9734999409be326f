//! Drain on SIGTERM: every client gets `reconnect{reason, after_ms}` and then
//! close 1001, `/ready` turns 503 (or the listener is gone) and new upgrades are
//! refused, and the process exits 0 within the drain timeout, also when a
//! client never reads. The suite table runs these with `DRAIN_TIMEOUT_SECS=3`.

use std::time::Duration;

use crate::support::http::try_get;
use crate::support::raw::{RawEvent, RawWs, OP_TEXT};
use crate::support::*;

pub const DRAIN_SECS: u64 = 3;

/// Slack for process exit on a loaded machine.
const EXIT_SLACK: Duration = Duration::from_secs(15);

/// Asserts `msg` is a well-formed `reconnect`.
#[track_caller]
fn assert_reconnect(msg: &serde_json::Value) {
    assert_eq!(msg["type"], "reconnect", "{msg}");
    assert_keys(msg, RECONNECT_KEYS);
    let reason = msg["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("reason not a string: {msg}"));
    assert!(!reason.is_empty(), "{msg}");
    assert!(
        msg["after_ms"].is_u64(),
        "after_ms must be a non-negative integer: {msg}"
    );
}

/// SIGTERM: both joined clients and an unjoined one get `reconnect` then close
/// 1001, nothing else; the node stops being ready; the process exits 0.
pub async fn sigterm_drains_and_exits_zero(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 0, "r1", "bob").await;
    let mut lurker = c.connect(0).await;
    alice.recv_type("peer_joined").await;
    lurker.ping().await;
    assert_eq!(c.get(0, "/ready").await.status, 200);

    c.node(0).sigterm();
    for client in [&mut alice, &mut bob, &mut lurker] {
        let msg = client.recv_json().await;
        assert_reconnect(&msg);
        let before = client.expect_close(1001).await;
        assert!(
            before.is_empty(),
            "messages between reconnect and close: {before:?}"
        );
    }
    // Draining has started (the clients were told): /ready must not say 200.
    if let Ok(resp) = try_get(c.addr(0), "/ready").await {
        assert_eq!(resp.status, 503, "/ready while draining: {}", resp.body);
    }
    let status = c
        .node(0)
        .wait_exit(Duration::from_secs(DRAIN_SECS) + EXIT_SLACK)
        .await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

/// While a client that never reads holds the drain open, `/ready` is 503 and a
/// new WebSocket is refused; the process still exits 0 once the drain timeout
/// has passed.
pub async fn sigterm_with_stuck_client(c: &Cluster) {
    let mut stuck = RawWs::connect(c.addr(0)).await;
    stuck
        .send_text(r#"{"type":"join","room":"r1","peer":"stuck"}"#)
        .await
        .expect("send");
    let mut pings = 0;
    match stuck.read_json(RECV_TIMEOUT, &mut pings).await {
        RawEvent::Frame(f) if f.opcode == OP_TEXT => {
            let joined = String::from_utf8_lossy(&f.payload).to_string();
            assert!(joined.starts_with(r#"{"type":"joined""#), "{joined}");
        }
        other => panic!("expected joined, got {other:?}"),
    }
    // From here on `stuck` reads nothing.
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    c.node(0).sigterm();
    assert_reconnect(&alice.recv_json().await);
    alice.expect_close(1001).await;

    let ready = try_get(c.addr(0), "/ready").await;
    if let Ok(resp) = &ready {
        assert_eq!(resp.status, 503, "/ready while draining: {}", resp.body);
    }
    if let Ok(mut late) = Client::try_connect(&c.ws_url(0), "late").await {
        // Accepted after all? It must then be told to go elsewhere at once.
        assert_reconnect(&late.recv_json().await);
    }
    let status = c
        .node(0)
        .wait_exit(Duration::from_secs(DRAIN_SECS) + EXIT_SLACK)
        .await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    drop(stuck);
}

/// SIGTERM with no client at all exits 0 promptly.
pub async fn sigterm_idle_node_exits_zero(c: &Cluster) {
    c.node(0).sigterm();
    let status = c.node(0).wait_exit(EXIT_SLACK).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}
