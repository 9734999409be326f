//! Liveness: the server pings (`PING_INTERVAL_SECS`), closes a connection that
//! sent nothing, not even a pong, for `IDLE_TIMEOUT_SECS`, and keeps one that
//! only answers pings. The suite table runs these with 1 s pings and a 3 s idle
//! timeout.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::raw::{RawEvent, RawWs, OP_CLOSE, OP_PING, OP_TEXT};
use crate::support::*;

/// Settings of the liveness cases.
pub const PING_SECS: u64 = 1;
pub const IDLE_SECS: u64 = 3;

/// The server sends WebSocket pings at its interval, joined or not.
pub async fn server_sends_pings(c: &Cluster) {
    let mut raw = RawWs::connect(c.addr(0)).await;
    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        match raw.read_frame(Duration::from_secs(PING_SECS * 2 + 8)).await {
            RawEvent::Frame(f) if f.opcode == OP_PING => pings += 1,
            other => panic!(
                "expected a ping, got {other:?} after {:?}",
                started.elapsed()
            ),
        }
    }
    // Two pings one interval apart cannot come sooner than one interval.
    assert!(started.elapsed() + Duration::from_millis(200) >= Duration::from_secs(PING_SECS));
}

/// A client that stays silent (never answers pings) is closed once the idle
/// timeout has passed since its last frame, and not before.
pub async fn idle_connection_closed(c: &Cluster) {
    let idle = Duration::from_secs(IDLE_SECS);
    let mut raw = RawWs::connect(c.addr(0)).await;
    // Taken before sending: the server's idle clock starts no earlier.
    let last_frame = Instant::now();
    raw.send_text(r#"{"type":"join","room":"r1","peer":"idle","id":1}"#)
        .await
        .expect("send join");
    let mut pings = 0;
    match raw.read_json(RECV_TIMEOUT, &mut pings).await {
        RawEvent::Frame(f) if f.opcode == OP_TEXT => {
            let joined: serde_json::Value = serde_json::from_slice(&f.payload).expect("JSON");
            assert_eq!(joined["type"], "joined", "{joined}");
        }
        other => panic!("expected joined, got {other:?}"),
    }
    let outcome = raw
        .read_json(idle + Duration::from_secs(15), &mut pings)
        .await;
    let elapsed = last_frame.elapsed();
    match outcome {
        RawEvent::Frame(f) if f.opcode == OP_CLOSE => {}
        RawEvent::Ended(_) => {}
        other => {
            panic!("expected the idle connection to be closed, got {other:?} after {elapsed:?}")
        }
    }
    assert!(
        elapsed + Duration::from_millis(200) >= idle,
        "closed after {elapsed:?}, before {idle:?}"
    );
    assert!(pings >= 1, "the server closed without pinging first");
}

/// A client that sends nothing but pongs (tokio-tungstenite answers each ping)
/// stays connected well past the idle timeout.
pub async fn answering_pings_keeps_alive(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    // Both only read (and so answer pings) for over twice the idle timeout.
    let period = Duration::from_secs(IDLE_SECS * 2 + 1);
    tokio::join!(alice.quiet_for(period), bob.quiet_for(period));
    assert!(
        alice.server_pings() >= 2,
        "only {} server pings",
        alice.server_pings()
    );
    alice
        .request_ok(json!({"type": "broadcast", "payload": "still here"}))
        .await;
    assert_eq!(bob.recv_type("broadcast").await["payload"], "still here");
    bob.assert_quiet().await;
}

/// A peer closed for idleness is, once its resume window has passed, removed
/// with `peer_left{reason:"timeout"}`. Runs with `RESUME_WINDOW_SECS=1`.
pub async fn idle_peer_left_as_timeout(c: &Cluster) {
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let mut raw = RawWs::connect(c.addr(0)).await;
    raw.send_text(r#"{"type":"join","room":"r1","peer":"idle","id":1}"#)
        .await
        .expect("send join");
    let ev = bob.recv_type("peer_joined").await;
    assert_eq!(ev["peer"]["peer"], "idle");
    // `raw` now stays silent; bob keeps reading (and answering pings).
    let bound = Duration::from_secs(IDLE_SECS + 1 + 20);
    let ev = bob.recv_json_timeout(bound).await;
    assert_eq!(ev["type"], "peer_left", "{ev}");
    assert_keys(&ev, PEER_LEFT_KEYS);
    assert_eq!(ev["peer"], "idle");
    assert_eq!(
        ev["reason"], "timeout",
        "an idle-closed peer leaves by timeout: {ev}"
    );
    bob.assert_quiet().await;
    drop(raw);
}
