//! Cases that need two or more nodes sharing one backend (`cluster_suite!`):
//! resuming on another node after a drain or a crash, `peer_left{reason:
//! "node_lost"}` for peers of a dead node that do not return, and the
//! consistency rule (once a node answered, every node sees the effect).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::http::metric_sample;
use crate::support::*;

#[track_caller]
fn need_two_nodes(c: &Cluster) {
    assert!(
        c.len() >= 2,
        "this case needs a cluster of two or more nodes"
    );
}

/// A drained node's client resumes on another node: recovered, with what was
/// sent to it meanwhile, and the others see no presence change.
pub async fn resume_on_another_node_after_drain(c: &Cluster) {
    need_two_nodes(c);
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let ev = alice.recv_type("peer_joined").await;
    let last_seq = seq(&ev);

    c.node(0).sigterm();
    let reconnect = alice.recv_json().await;
    assert_eq!(reconnect["type"], "reconnect", "{reconnect}");
    alice.expect_close(1001).await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": "while moving"}))
        .await;

    let (mut alice, joined) = join_with(
        c,
        1,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session, "last_seq": last_seq}),
    )
    .await;
    assert!(
        joined.get("recovered").is_none() || joined["recovered"] == true,
        "{joined}"
    );
    assert_eq!(alice.recv_type("signal").await["payload"], "while moving");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
    let status = c.node(0).wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
}

/// A client of a killed node resumes on another node with everything it missed.
pub async fn resume_on_another_node_after_crash(c: &Cluster) {
    need_two_nodes(c);
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let ev = alice.recv_type("peer_joined").await;
    let last_seq = seq(&ev);

    c.node(0).kill();
    for n in 0..5 {
        bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": n}}))
            .await;
    }
    let (mut alice, joined) = join_with(
        c,
        1,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session, "last_seq": last_seq}),
    )
    .await;
    assert!(
        joined.get("recovered").is_none() || joined["recovered"] == true,
        "{joined}"
    );
    for n in 0..5 {
        assert_eq!(alice.recv_type("signal").await["payload"]["n"], n);
    }
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// Peers of a dead node that do not come back are removed with
/// `peer_left{reason:"node_lost"}` once the resume window ends, not before.
pub async fn crashed_node_peers_removed_as_node_lost(c: &Cluster) {
    need_two_nodes(c);
    let window = c.settings().secs("RESUME_WINDOW_SECS", 30);
    let (_alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let killed = Instant::now();
    c.node(0).kill();
    let ev = bob
        .recv_json_timeout(window + Duration::from_secs(30))
        .await;
    assert_eq!(ev["type"], "peer_left", "{ev}");
    assert_eq!(ev["peer"], "alice");
    assert_eq!(ev["reason"], "node_lost");
    assert!(
        killed.elapsed() + Duration::from_millis(100) >= window,
        "removed before the window"
    );
    bob.assert_quiet().await;
}

/// Signals read together from one socket cost one Redis script call, and the
/// recipient's node gets them as one pub/sub message (`M`, see
/// server/src/backend/redis/lua/common.lua), still in order.
pub async fn signal_burst_batched_through_redis(c: &Cluster) {
    need_two_nodes(c);
    const N: usize = 20;
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let calls = "switchboard_redis_op_seconds_count{op=\"signal\"}";
    let received = "switchboard_redis_pubsub_received_total";
    let sample = |body: &str, series: &str| metric_sample(body, series).unwrap_or(0.0);
    let calls_before = sample(&c.get(0, "/metrics").await.body, calls);
    let received_before = sample(&c.get(1, "/metrics").await.body, received);

    // Only the last asks for `ok`, which comes after the script call is counted.
    let texts: Vec<String> = (0..N)
        .map(|n| {
            let mut m = json!({"type": "signal", "to": "bob", "payload": n});
            if n == N - 1 {
                m["id"] = json!("last");
            }
            m.to_string()
        })
        .collect();
    alice.send_burst(&texts).await;
    assert_eq!(alice.recv_json().await["id"], "last");
    let mut last = 0;
    for n in 0..N {
        let ev = bob.recv_type("signal").await;
        assert_eq!(ev["payload"], n, "signal {n} out of order: {ev}");
        assert!(seq(&ev) > last, "seq not increasing: {ev}");
        last = seq(&ev);
    }
    // Bob's node counts a message before it queues its events.
    let calls = sample(&c.get(0, "/metrics").await.body, calls) - calls_before;
    let received = sample(&c.get(1, "/metrics").await.body, received) - received_before;
    assert!(
        (1.0..N as f64).contains(&calls),
        "{N} signals sent in one write took {calls} signal script calls"
    );
    assert!(
        (1.0..N as f64).contains(&received),
        "{N} signals sent in one write arrived in {received} pub/sub messages"
    );
    bob.assert_quiet().await;
}

/// Once a node answered, every node sees the effect: membership (listing,
/// `PEER_ID_TAKEN`, a freed id), state and updates, immediately.
pub async fn cross_node_consistency(c: &Cluster) {
    need_two_nodes(c);
    for round in 0..20 {
        let room = format!("c{round}");
        let (mut alice, _) = join(c, round, &room, "alice").await;
        let mut other = c.connect(round + 1).await;
        let reply = other
            .request(json!({"type": "join", "room": room, "peer": "alice"}))
            .await;
        assert_error(&reply, "PEER_ID_TAKEN");
        alice
            .request_ok(json!({"type": "set_state", "patch": {"round": round}}))
            .await;
        let joined = other
            .join(json!({"type": "join", "room": room, "peer": "bob"}))
            .await;
        assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice"]));
        assert_eq!(
            joined["state"],
            json!({"version": 1, "data": {"round": round}})
        );
        alice.recv_type("state").await;
        alice.recv_type("peer_joined").await;
        alice
            .request_ok(json!({"type": "update", "role": "moved"}))
            .await;
        let peers = other
            .request(json!({"type": "discover", "filters": {"role": "moved"}}))
            .await;
        assert_eq!(peer_ids(&peers["peers"]), sorted(&["alice"]), "{peers}");
        alice.request_ok(json!({"type": "leave"})).await;
        let mut again = c.connect(round + 1).await;
        let joined = again
            .join(json!({"type": "join", "room": room, "peer": "alice"}))
            .await;
        assert_eq!(peer_ids(&joined["peers"]), sorted(&["bob"]));
    }
}
