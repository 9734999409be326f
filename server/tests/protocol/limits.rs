//! Limits: peers per room (`ROOM_FULL`), payload / metadata sizes at their
//! boundaries, configured limits, the rate limit (`RATE_LIMITED`, then close
//! 1008 for a client that keeps exceeding it), the slow consumer that never
//! reads (close 1008 while the others keep receiving promptly), and the
//! connection limit. Each case names the settings it needs in the suite table.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::server_still_works;
use crate::support::client::Incoming;
use crate::support::http::metric_sample;
use crate::support::*;

/// `MAX_PEERS_PER_ROOM` of the room-full case.
pub const ROOM_CAP: usize = 3;

/// A room at its maximum refuses the next peer with `ROOM_FULL` (on any node)
/// and tells nobody; other rooms are unaffected; a freed place can be taken by
/// the refused connection.
pub async fn room_full(c: &Cluster) {
    let mut members = Vec::new();
    for i in 0..ROOM_CAP {
        let (client, _) = join(c, i, "r1", &format!("p{i}")).await;
        members.push(client);
    }
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i + 1..ROOM_CAP {
            m.recv_type("peer_joined").await;
        }
    }
    let mut late = c.connect(ROOM_CAP).await;
    let id = json!("full");
    let reply = late
        .request_with_id(
            json!({"type": "join", "room": "r1", "peer": "late"}),
            id.clone(),
        )
        .await;
    assert_error_reply(&reply, "ROOM_FULL", &id, &[]);
    // Not joined: a room message is NOT_JOINED.
    late.request_error(json!({"type": "discover"}), "NOT_JOINED")
        .await;
    for m in members.iter_mut() {
        m.assert_quiet().await;
    }
    let (_elsewhere, _) = join(c, ROOM_CAP + 1, "r2", "late").await;

    members[0].request_ok(json!({"type": "leave"})).await;
    let joined = late
        .join(json!({"type": "join", "room": "r1", "peer": "late"}))
        .await;
    assert_eq!(joined["peers"].as_array().map(Vec::len), Some(ROOM_CAP - 1));
}

/// With default settings a room holds 100 peers (spread over the nodes); the
/// 101st is `ROOM_FULL`.
pub async fn default_room_cap_is_100(c: &Cluster) {
    let mut members = Vec::new();
    for i in 0..100 {
        let (client, joined) = join(c, i, "big", &format!("p{i}")).await;
        assert_eq!(
            joined["peers"].as_array().map(Vec::len),
            Some(i),
            "peers of p{i}"
        );
        members.push(client);
    }
    let mut late = c.connect(100).await;
    late.request_error(
        json!({"type": "join", "room": "big", "peer": "p100"}),
        "ROOM_FULL",
    )
    .await;
    // The last member got no event about the refused peer.
    members[99].assert_quiet().await;
}

/// `signal`/`broadcast` payloads of exactly 64 KiB are relayed; one byte more is
/// `PAYLOAD_TOO_LARGE` and reaches nobody.
pub async fn payload_size_boundary(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let exact = string_of_json_len(65536);
    let over = string_of_json_len(65537);

    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": exact}))
        .await;
    assert_eq!(bob.recv_type("signal").await["payload"], exact);
    alice
        .request_ok(json!({"type": "broadcast", "payload": exact}))
        .await;
    assert_eq!(bob.recv_type("broadcast").await["payload"], exact);

    let id = json!(1);
    let reply = alice
        .request_with_id(
            json!({"type": "signal", "to": "bob", "payload": over}),
            id.clone(),
        )
        .await;
    assert_error_reply(&reply, "PAYLOAD_TOO_LARGE", &id, &[]);
    let reply = alice
        .request_with_id(json!({"type": "broadcast", "payload": over}), id.clone())
        .await;
    assert_error_reply(&reply, "PAYLOAD_TOO_LARGE", &id, &[]);
    // An object payload just over the limit as well.
    let mut obj = json!({"sdp": string_of_json_len(65536 - 8)});
    assert_eq!(json_len(&obj), 65536);
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": obj}))
        .await;
    assert_eq!(bob.recv_type("signal").await["payload"], obj);
    obj["x"] = json!(1);
    alice
        .request_error(
            json!({"type": "signal", "to": "bob", "payload": obj}),
            "PAYLOAD_TOO_LARGE",
        )
        .await;
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// `metadata` of exactly 4 KiB is accepted at join and update; more is
/// `PAYLOAD_TOO_LARGE` (join refused; update changes nothing).
pub async fn metadata_size_boundary(c: &Cluster) {
    // {"d":"xxx…"} serializes to 8 + n bytes.
    let exact = json!({"d": "x".repeat(4096 - 8)});
    assert_eq!(json_len(&exact), 4096);
    let over = json!({"d": "x".repeat(4096 - 7)});

    let mut alice = c.connect(0).await;
    let reply = alice
        .request(json!({"type": "join", "room": "r1", "peer": "alice", "metadata": over}))
        .await;
    assert_error(&reply, "PAYLOAD_TOO_LARGE");
    alice
        .join(json!({"type": "join", "room": "r1", "peer": "alice", "metadata": exact}))
        .await;

    let (mut bob, joined) = join(c, 1, "r1", "bob").await;
    assert_eq!(joined["peers"][0]["metadata"], exact);
    alice.recv_type("peer_joined").await;
    bob.request_ok(json!({"type": "update", "metadata": exact}))
        .await;
    assert_eq!(
        alice.recv_type("peer_updated").await["peer"]["metadata"],
        exact
    );
    bob.request_error(
        json!({"type": "update", "metadata": over, "role": "changed"}),
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    alice.assert_quiet().await;
    let peers = alice.request(json!({"type": "discover"})).await;
    assert_eq!(peers["peers"][0]["metadata"], exact);
    assert_eq!(
        peers["peers"][0]["role"], "peer",
        "a refused update changes nothing"
    );
}

/// Configured limits (`MAX_FRAME_BYTES=2048`, `MAX_PAYLOAD_BYTES=1000`,
/// `MAX_METADATA_BYTES=100`, `MAX_STATE_BYTES=200`) hold at their boundaries.
pub async fn configured_size_limits(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": string_of_json_len(1000)}))
        .await;
    bob.recv_type("signal").await;
    alice
        .request_error(
            json!({"type": "broadcast", "payload": string_of_json_len(1001)}),
            "PAYLOAD_TOO_LARGE",
        )
        .await;

    let meta = |len: usize| json!({"d": "x".repeat(len - 8)});
    alice
        .request_ok(json!({"type": "update", "metadata": meta(100)}))
        .await;
    bob.recv_type("peer_updated").await;
    alice
        .request_error(
            json!({"type": "update", "metadata": meta(101)}),
            "PAYLOAD_TOO_LARGE",
        )
        .await;

    alice
        .request_ok(json!({"type": "set_state", "patch": meta(200)}))
        .await;
    alice.recv_type("state").await;
    bob.recv_type("state").await;
    alice
        .request_error(
            json!({"type": "set_state", "patch": {"e": 1}}),
            "PAYLOAD_TOO_LARGE",
        )
        .await;
    bob.assert_quiet().await;

    // A frame of exactly 2048 bytes is read; 2049 closes the connection with 1009.
    let frame = |len: usize| {
        let head = r#"{"type":"ping","id":"f","pad":""#;
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    assert_eq!(frame(2048).len(), 2048);
    alice.send_text(&frame(2048)).await;
    assert_eq!(alice.recv_json().await, json!({"type": "pong", "id": "f"}));
    let _ = alice.try_send(Message::text(frame(2049))).await;
    alice.expect_close(1009).await;
    server_still_works(c).await;
}

/// Over `RATE_LIMIT_BURST=10` (at `RATE_LIMIT_PER_SEC=5`) messages are answered
/// `RATE_LIMITED` (echoing the id); once tokens refill the connection works.
pub async fn rate_limited(c: &Cluster) {
    let mut client = c.connect(0).await;
    // Few enough over the burst that this is "exceeding", not "keeps exceeding".
    const SENT: u64 = 20;
    for n in 0..SENT {
        client.send_json(json!({"type": "ping", "id": n})).await;
    }
    let mut limited = 0;
    for n in 0..SENT {
        let reply = client.recv_json().await;
        if n < 10 {
            assert_eq!(reply, json!({"type": "pong", "id": n}), "within the burst");
        } else if reply["type"] == "error" {
            assert_error_reply(&reply, "RATE_LIMITED", &json!(n), &[]);
            limited += 1;
        } else {
            assert_eq!(reply, json!({"type": "pong", "id": n}));
        }
    }
    assert!(
        limited >= 5,
        "only {limited} of {SENT} messages were rate limited"
    );
    // Tokens refill at 5/s: waiting lets a few through again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.ping().await;
    client.assert_quiet().await;
}

/// A client that keeps exceeding the rate limit is closed with 1008; others are
/// unaffected.
pub async fn rate_limit_abuser_closed(c: &Cluster) {
    let (mut other, _) = join(c, 1, "r1", "other").await;
    let mut abuser = c.connect(0).await;
    let started = Instant::now();
    let mut code = None;
    'flood: while started.elapsed() < Duration::from_secs(20) {
        for _ in 0..50 {
            if abuser
                .try_send(Message::text(r#"{"type":"ping"}"#))
                .await
                .is_err()
            {
                break 'flood;
            }
        }
        // Drain what is there without waiting, watching for the close.
        loop {
            match abuser.read_incoming(Duration::from_millis(5)).await {
                Some(Incoming::Json(_)) => {}
                Some(Incoming::Close(c, _)) => {
                    code = Some(c);
                    break 'flood;
                }
                Some(Incoming::Ended(why)) => abuser.fail(&format!("ended without Close: {why}")),
                None => break,
            }
        }
    }
    let code = match code {
        Some(code) => code,
        None => abuser.closed(CLOSE_TIMEOUT).await.0,
    };
    assert_eq!(
        code,
        Some(1008),
        "close code of a client that keeps exceeding the rate limit"
    );
    other.assert_quiet().await;
    server_still_works(c).await;
}

/// A member that never reads is closed with 1008 once its outgoing queue stays
/// full (`OUTBOUND_QUEUE_BYTES=65536`), while another member keeps getting every
/// broadcast promptly.
pub async fn slow_consumer_closed(c: &Cluster) {
    let (mut sender, _) = join(c, 0, "r1", "sender").await;
    let (mut reader, _) = join(c, 1, "r1", "reader").await;
    let (mut sloth, _) = join(c, 2, "r1", "sloth").await;
    sender.recv_type("peer_joined").await;
    sender.recv_type("peer_joined").await;
    reader.recv_type("peer_joined").await;

    let payload = "y".repeat(60_000);
    let started = Instant::now();
    let mut sloth_gone = false;
    let mut sent = 0u64;
    // Loopback socket buffers hold several MB; 2000 × 60 KB is far more.
    while sent < 2000 && !sloth_gone {
        sender
            .send_json(json!({"type": "broadcast", "payload": {"n": sent, "pad": payload}}))
            .await;
        let sent_at = Instant::now();
        loop {
            let ev = reader.recv_json().await;
            match ty(&ev) {
                "broadcast" => {
                    assert_eq!(ev["payload"]["n"], sent, "reader lost a broadcast");
                    break;
                }
                "peer_left" if ev["peer"] == "sloth" => sloth_gone = true,
                _ => reader.fail(&format!("unexpected {ev}")),
            }
        }
        let latency = sent_at.elapsed();
        assert!(
            latency < Duration::from_secs(5),
            "broadcast {sent} took {latency:?} to reach the reader"
        );
        sent += 1;
    }
    assert!(sloth_gone || sent == 2000);
    let (code, before) = sloth.closed(Duration::from_secs(60)).await;
    // The server closes with 1008, but a client that reads nothing cannot even
    // take the Close frame in time, so the socket may end without one. Any
    // other close code is wrong.
    assert!(
        code == Some(1008) || code.is_none(),
        "the slow consumer got close code {code:?} (after {} of {sent} broadcasts, {:?})",
        before.len(),
        started.elapsed()
    );
    // Why it was closed: the node counts slow-consumer closes (server/src/metrics.rs).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = c.get(2, "/metrics").await.body;
        if metric_sample(&body, "switchboard_slow_consumer_closes_total") == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slow-consumer close counted:\n{body}"
        );
        // Polling a counter: the server reports the close no other way.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.assert_quiet().await;
    server_still_works(c).await;
}

/// With `MAX_CONNECTIONS=3` a fourth WebSocket is refused (at the upgrade, or
/// closed unserved); the first three keep working, and a freed slot can be used.
pub async fn connection_limit(c: &Cluster) {
    let mut open = Vec::new();
    for i in 0..3 {
        let (client, _) = join(c, 0, "r1", &format!("p{i}")).await;
        open.push(client);
    }
    match Client::try_connect(&c.ws_url(0), "fourth").await {
        Err(_) => {}
        Ok(mut fourth) => {
            let _ = fourth
                .try_send(Message::text(r#"{"type":"ping","id":1}"#))
                .await;
            let (_, before) = fourth.closed(CLOSE_TIMEOUT).await;
            assert!(
                before.iter().all(|m| m["type"] != "pong"),
                "the fourth connection was served"
            );
        }
    }
    for client in open.iter_mut() {
        client.ping().await;
    }
    let freed = open.pop().expect("three clients");
    freed.close().await;
    // The server frees the slot when it has processed the close; retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut client) = Client::try_connect(&c.ws_url(0), "again").await {
            client.send_json(json!({"type": "ping", "id": 2})).await;
            match client.read_incoming(RECV_TIMEOUT).await {
                Some(Incoming::Json(v)) if v == json!({"type": "pong", "id": 2}) => break,
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "no connection accepted after one was closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
