//! Cases for the client messages of PROTOCOL.md and their direct replies:
//! `join`/`joined`, `leave`, `signal`, `broadcast`, `update`, `ping`, `id`
//! echo, and the errors a well-formed message can get (`NOT_JOINED`,
//! `ALREADY_JOINED`, `PEER_ID_TAKEN`, `PEER_NOT_FOUND`, `UNKNOWN_TYPE`).
//!
//! Successive peers of a case use successive node indices, so against a
//! multi-node cluster they sit on different nodes.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::support::*;

/// `joined` carries every documented field, echoes the id, and is the only message.
pub async fn join_reply_has_every_field(c: &Cluster) {
    let mut alice = c.connect(0).await;
    let join = json!({"type": "join", "room": "r1", "peer": "alice", "role": "host",
                      "metadata": {"tags": ["a"], "properties": {"x": 1}}});
    let joined = alice.request_with_id(join, json!("j-1")).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["id"], "j-1");
    assert_eq!(joined["room"], "r1");
    assert_eq!(joined["peer"], "alice");
    let session = joined["session"].as_str().expect("session is a string");
    assert!(!session.is_empty(), "empty session token");
    assert_eq!(joined["peers"], json!([]));
    assert_eq!(joined["state"], json!({"version": 0, "data": {}}));
    assert_eq!(joined["ice_servers"], json!([]), "no STUN/TURN configured");
    let allowed: BTreeSet<String> = [
        "type",
        "id",
        "room",
        "peer",
        "session",
        "peers",
        "state",
        "ice_servers",
        "recovered",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let extra: Vec<String> = keys(&joined).difference(&allowed).cloned().collect();
    assert!(extra.is_empty(), "undocumented keys {extra:?} in {joined}");
    if let Some(recovered) = joined.get("recovered") {
        assert!(
            recovered.is_boolean(),
            "recovered must be a boolean: {joined}"
        );
    }
    alice.assert_quiet().await;
}

/// `joined.peers` lists everyone already there as PeerInfo; the others get
/// `peer_joined` with the newcomer's PeerInfo (default role `peer`, metadata `{}`).
pub async fn peers_listed_and_announced(c: &Cluster) {
    let meta = json!({"tags": ["gpu"], "properties": {"zone": "a"}, "extra": [1, {"x": null}]});
    let (mut alice, joined) = join_with(
        c,
        0,
        json!({"type": "join", "room": "r1", "peer": "alice", "role": "host", "metadata": meta}),
    )
    .await;
    assert_eq!(joined["peers"], json!([]));

    let (mut bob, joined) = join(c, 1, "r1", "bob").await;
    let peers = joined["peers"].as_array().expect("peers list");
    assert_eq!(peers.len(), 1, "{joined}");
    assert_peer_info(&peers[0], "alice", "host", &meta);

    let ev = alice.recv_type("peer_joined").await;
    assert_keys(&ev, PEER_JOINED_KEYS);
    assert_peer_info(&ev["peer"], "bob", "peer", &json!({}));

    let (mut carol, joined) = join(c, 2, "r1", "carol").await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice", "bob"]));
    for p in joined["peers"].as_array().unwrap() {
        if p["peer"] == "bob" {
            assert_peer_info(p, "bob", "peer", &json!({}));
        } else {
            assert_peer_info(p, "alice", "host", &meta);
        }
    }
    for client in [&mut alice, &mut bob] {
        let ev = client.recv_type("peer_joined").await;
        assert_keys(&ev, PEER_JOINED_KEYS);
        assert_peer_info(&ev["peer"], "carol", "peer", &json!({}));
    }
    for client in [&mut alice, &mut bob, &mut carol] {
        client.assert_quiet().await;
    }
}

/// Without `peer`, the server assigns ids that are unique, valid names, and
/// what the others see.
pub async fn server_assigns_unique_peer_ids(c: &Cluster) {
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for i in 0..6 {
        let (client, joined) = join_with(c, i, json!({"type": "join", "room": "r1"})).await;
        let id = joined["peer"]
            .as_str()
            .expect("assigned peer id")
            .to_owned();
        assert!(
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b)),
            "assigned id {id:?} is not a valid peer id"
        );
        let mut earlier = ids.clone();
        earlier.sort();
        assert_eq!(peer_ids(&joined["peers"]), earlier, "peers listed to {id}");
        ids.push(id);
        clients.push(client);
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "assigned ids are not unique: {ids:?}"
    );
    // Each earlier peer saw each later one exactly once.
    for (i, client) in clients.iter_mut().enumerate() {
        for later in &ids[i + 1..] {
            let ev = client.recv_type("peer_joined").await;
            assert_eq!(ev["peer"]["peer"], later.as_str());
        }
        client.assert_quiet().await;
    }
}

/// Malformed `join` fields are `BAD_REQUEST` and leave the connection unjoined;
/// the boundaries of names and roles are accepted.
pub async fn join_validation(c: &Cluster) {
    let mut client = c.connect(0).await;
    let long_name = "a".repeat(129);
    let bad = [
        json!({"type": "join"}),
        json!({"type": "join", "room": ""}),
        json!({"type": "join", "room": "a b"}),
        json!({"type": "join", "room": "r/1"}),
        json!({"type": "join", "room": "rööm"}),
        json!({"type": "join", "room": long_name}),
        json!({"type": "join", "room": 5}),
        json!({"type": "join", "room": null}),
        json!({"type": "join", "room": ["r1"]}),
        json!({"type": "join", "room": "r1", "peer": ""}),
        json!({"type": "join", "room": "r1", "peer": "bad peer"}),
        json!({"type": "join", "room": "r1", "peer": long_name}),
        json!({"type": "join", "room": "r1", "peer": 7}),
        json!({"type": "join", "room": "r1", "role": "r".repeat(65)}),
        json!({"type": "join", "room": "r1", "role": 3}),
        json!({"type": "join", "room": "r1", "metadata": [1, 2]}),
        json!({"type": "join", "room": "r1", "metadata": "meta"}),
        json!({"type": "join", "room": "r1", "resume": 12}),
        json!({"type": "join", "room": "r1", "last_seq": "3"}),
        json!({"type": "join", "room": "r1", "last_seq": -1}),
    ];
    for message in bad {
        let id = json!(format!("bad-{}", message));
        let reply = client.request_with_id(message.clone(), id.clone()).await;
        assert_error_reply(&reply, "BAD_REQUEST", &id, &[]);
    }
    // Still unjoined: a room message is NOT_JOINED.
    client
        .request_error(json!({"type": "broadcast", "payload": 1}), "NOT_JOINED")
        .await;

    let room = format!("A-z0.9_:@-{}", "r".repeat(118));
    let peer = format!("P.e_e:r@-9{}", "p".repeat(118));
    assert_eq!(room.len(), 128);
    assert_eq!(peer.len(), 128);
    let role = "w".repeat(64);
    let joined = client
        .join(json!({"type": "join", "room": room, "peer": peer, "role": role}))
        .await;
    assert_eq!(joined["room"], room.as_str());
    assert_eq!(joined["peer"], peer.as_str());
    let (mut other, joined) = join(c, 1, &room, "other").await;
    assert_peer_info(&joined["peers"][0], &peer, &role, &json!({}));
    client.recv_type("peer_joined").await;
    other.assert_quiet().await;
}

/// Every message but `join` and `ping` is `NOT_JOINED` before a join.
pub async fn not_joined_before_join(c: &Cluster) {
    let mut client = c.connect(0).await;
    let messages = [
        json!({"type": "leave"}),
        json!({"type": "signal", "to": "bob", "payload": {"sdp": "x"}}),
        json!({"type": "broadcast", "payload": "hi"}),
        json!({"type": "discover"}),
        json!({"type": "set_state", "patch": {"a": 1}}),
        json!({"type": "update", "role": "viewer"}),
    ];
    for (n, message) in messages.into_iter().enumerate() {
        let id = json!(n as u64 + 100);
        let reply = client.request_with_id(message, id.clone()).await;
        assert_error_reply(&reply, "NOT_JOINED", &id, &[]);
    }
    let pong = client
        .request_with_id(json!({"type": "ping"}), json!(1))
        .await;
    assert_eq!(pong, json!({"type": "pong", "id": 1}));
    client.assert_quiet().await;
}

/// A second `join` on a joined connection is `ALREADY_JOINED`, whatever room,
/// and the connection stays in its first room.
pub async fn already_joined(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    for message in [
        json!({"type": "join", "room": "r1", "peer": "alice"}),
        json!({"type": "join", "room": "r1", "peer": "alice2"}),
        json!({"type": "join", "room": "r2", "peer": "alice"}),
    ] {
        let id = json!("again");
        let reply = alice.request_with_id(message, id.clone()).await;
        assert_error_reply(&reply, "ALREADY_JOINED", &id, &[]);
    }
    alice
        .request_ok(json!({"type": "broadcast", "payload": "still here"}))
        .await;
    let ev = bob.recv_type("broadcast").await;
    assert_eq!(ev["from"], "alice");
    assert_eq!(ev["payload"], "still here");
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// A taken peer id is `PEER_ID_TAKEN` (on any node, auth off; with auth the
/// join takes the peer over, see tests/auth.rs); the same id in another
/// room is fine; the refused connection can join under another id.
pub async fn peer_id_taken(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let mut second = c.connect(1).await;
    let id = json!(42);
    let reply = second
        .request_with_id(
            json!({"type": "join", "room": "r1", "peer": "alice"}),
            id.clone(),
        )
        .await;
    assert_error_reply(&reply, "PEER_ID_TAKEN", &id, &[]);
    // Without auth nothing proves the joiner is alice: the message says how
    // a reconnecting client gets its peer back.
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("`resume`"), "{reply}");
    alice.assert_quiet().await;

    let joined = second
        .join(json!({"type": "join", "room": "r1", "peer": "alice-2"}))
        .await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice"]));
    let ev = alice.recv_type("peer_joined").await;
    assert_eq!(ev["peer"]["peer"], "alice-2");

    let (mut elsewhere, joined) = join(c, 2, "r2", "alice").await;
    assert_eq!(joined["peers"], json!([]));
    for client in [&mut alice, &mut second, &mut elsewhere] {
        client.assert_quiet().await;
    }
}

/// alice, bob and carol join room r1 on nodes 0, 1 and 2, in that order; the
/// `peer_joined` events of the later joins are consumed.
async fn alice_bob_carol(c: &Cluster) -> (Client, Client, Client) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let (carol, _) = join(c, 2, "r1", "carol").await;
    alice.recv_type("peer_joined").await;
    alice.recv_type("peer_joined").await;
    bob.recv_type("peer_joined").await;
    (alice, bob, carol)
}

/// `signal` reaches exactly its target as `signal{from,payload,seq}`, with any
/// JSON payload unchanged; `ok` only when the signal had an id.
pub async fn signal_delivery(c: &Cluster) {
    let (mut alice, mut bob, mut carol) = alice_bob_carol(c).await;

    let payloads = [
        json!({"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"}),
        json!({"candidate": "candidate:1 1 UDP 2122252543 192.0.2.1 54321 typ host",
               "sdpMid": "0", "sdpMLineIndex": 0}),
        json!("plain string with unicode ✓ é 中 and \"quotes\" and \\ and \u{0001}"),
        json!(12345.5),
        json!(-7),
        json!([1, "two", {"three": [3]}]),
        json!(true),
        json!(null),
        json!({}),
    ];
    for payload in &payloads {
        // Without id: no reply to the sender.
        alice
            .send_json(json!({"type": "signal", "to": "bob", "payload": payload}))
            .await;
        let ev = bob.recv_type("signal").await;
        assert_keys(&ev, SIGNAL_KEYS);
        assert_eq!(ev["from"], "alice");
        assert_eq!(&ev["payload"], payload);
    }
    alice.assert_quiet().await;

    // With an id: `ok` echoing it, exactly `{type, id}`.
    let ok = alice
        .request_with_id(
            json!({"type": "signal", "to": "bob", "payload": {"n": 1}}),
            json!(9),
        )
        .await;
    assert_eq!(ok, json!({"type": "ok", "id": 9}));
    let ev = bob.recv_type("signal").await;
    assert_eq!(ev["payload"], json!({"n": 1}));

    bob.send_json(json!({"type": "signal", "to": "alice", "payload": "back"}))
        .await;
    let ev = alice.recv_type("signal").await;
    assert_eq!(ev["from"], "bob");
    assert_eq!(ev["payload"], "back");

    for client in [&mut alice, &mut bob, &mut carol] {
        client.assert_quiet().await;
    }
}

/// `signal` to a peer not in the sender's room is `PEER_NOT_FOUND`, also when
/// that peer exists in another room; nothing crosses rooms.
pub async fn signal_to_unknown_peer(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut carol, _) = join(c, 1, "r2", "carol").await;
    for to in ["nobody", "carol", "alice-"] {
        let id = json!(format!("to-{to}"));
        let reply = alice
            .request_with_id(
                json!({"type": "signal", "to": to, "payload": "x"}),
                id.clone(),
            )
            .await;
        assert_error_reply(&reply, "PEER_NOT_FOUND", &id, &[]);
    }
    // Without an id the error still comes back (an error answers the message).
    alice
        .send_json(json!({"type": "signal", "to": "carol", "payload": "x"}))
        .await;
    let err = alice.recv_type("error").await;
    assert_error(&err, "PEER_NOT_FOUND");
    assert!(err.get("id").is_none(), "no id to echo: {err}");
    carol.assert_quiet().await;
    alice.assert_quiet().await;
}

/// 250 signals from one sender to one recipient arrive complete and in order,
/// with increasing `seq`.
pub async fn signals_arrive_in_order(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    const N: u64 = 250;
    for n in 0..N {
        alice
            .send_json(json!({"type": "signal", "to": "bob", "payload": {"n": n}}))
            .await;
    }
    let mut last_seq = None;
    for n in 0..N {
        let ev = bob.recv_type("signal").await;
        assert_eq!(ev["payload"]["n"], n, "signal {n} out of order: {ev}");
        let s = seq(&ev);
        if let Some(prev) = last_seq {
            assert!(s > prev, "seq not increasing: {prev} then {s}");
        }
        last_seq = Some(s);
    }
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// Requests that arrive together (a burst of signals with other requests and
/// bad frames among them) are answered one by one, in order, and the signals
/// are delivered in order with increasing seqs.
pub async fn burst_answered_in_order(c: &Cluster) {
    let (mut alice, mut bob, mut carol) = alice_bob_carol(c).await;

    let burst = [
        json!({"type": "signal", "to": "bob", "payload": 1, "id": "s1"}),
        json!({"type": "signal", "to": "nobody", "payload": 0, "id": "s2"}),
        json!({"type": "signal", "to": "carol", "payload": 2}),
        json!({"type": "ping", "id": "p1"}),
        json!({"type": "signal", "to": "bob", "payload": 3, "id": "s3"}),
        json!({"type": "signal", "payload": 0, "id": "bad"}),
        json!({"type": "broadcast", "payload": 4, "id": "b1"}),
        json!({"type": "signal", "to": "bob", "payload": 5}),
        json!({"type": "signal", "to": "carol", "payload": 6, "id": "s4"}),
    ];
    let texts: Vec<String> = burst.iter().map(Value::to_string).collect();
    alice.send_burst(&texts).await;

    let mut answers = Vec::new();
    for _ in 0..7 {
        let m = alice.recv_json().await;
        answers.push(format!(
            "{} {} {}",
            m["id"].as_str().unwrap_or("-"),
            m["type"].as_str().unwrap_or("-"),
            m["code"].as_str().unwrap_or("-")
        ));
    }
    assert_eq!(
        answers,
        [
            "s1 ok -",
            "s2 error PEER_NOT_FOUND",
            "p1 pong -",
            "s3 ok -",
            "bad error BAD_REQUEST",
            "b1 ok -",
            "s4 ok -",
        ]
    );
    for (client, expected) in [
        (&mut bob, [1, 3, 4, 5].as_slice()),
        (&mut carol, &[2, 4, 6]),
    ] {
        let mut last = 0;
        for n in expected {
            let ev = client.recv_json().await;
            assert_eq!(ev["payload"], *n, "{ev}");
            assert_eq!(ev["from"], "alice", "{ev}");
            assert!(seq(&ev) > last, "seq not increasing: {ev}");
            last = seq(&ev);
        }
        client.assert_quiet().await;
    }
    alice.assert_quiet().await;
}

/// `broadcast` reaches every other peer of the room, not the sender; `ok` only
/// with an id.
pub async fn broadcast_delivery(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let (mut carol, _) = join(c, 2, "r1", "carol").await;
    let (mut other_room, _) = join(c, 3, "r2", "dave").await;
    alice.recv_type("peer_joined").await;
    alice.recv_type("peer_joined").await;
    bob.recv_type("peer_joined").await;

    let ok = alice
        .request_with_id(
            json!({"type": "broadcast", "payload": {"chat": "hi"}}),
            json!("b1"),
        )
        .await;
    assert_eq!(ok, json!({"type": "ok", "id": "b1"}));
    for client in [&mut bob, &mut carol] {
        let ev = client.recv_type("broadcast").await;
        assert_keys(&ev, BROADCAST_KEYS);
        assert_eq!(ev["from"], "alice");
        assert_eq!(ev["payload"], json!({"chat": "hi"}));
    }
    carol
        .send_json(json!({"type": "broadcast", "payload": [1, 2, 3]}))
        .await;
    for client in [&mut alice, &mut bob] {
        let ev = client.recv_type("broadcast").await;
        assert_eq!(ev["from"], "carol");
        assert_eq!(ev["payload"], json!([1, 2, 3]));
    }
    for client in [&mut alice, &mut bob, &mut carol, &mut other_room] {
        client.assert_quiet().await;
    }
}

/// `update` replaces the fields it carries and keeps the others; the others get
/// `peer_updated` with the full PeerInfo (same `joined_at`); the sender only `ok`.
pub async fn update_semantics(c: &Cluster) {
    let meta = json!({"tags": ["a"], "properties": {"x": 1}});
    let (mut alice, _) = join_with(
        c,
        0,
        json!({"type": "join", "room": "r1", "peer": "alice", "role": "host", "metadata": meta}),
    )
    .await;
    let (mut bob, joined) = join(c, 1, "r1", "bob").await;
    let joined_at = joined["peers"][0]["joined_at"].clone();
    alice.recv_type("peer_joined").await;

    let ok = alice
        .request_with_id(json!({"type": "update", "role": "viewer"}), json!(5))
        .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["id"], 5);
    let ev = bob.recv_type("peer_updated").await;
    assert_keys(&ev, PEER_UPDATED_KEYS);
    assert_peer_info(&ev["peer"], "alice", "viewer", &meta);
    assert_eq!(
        ev["peer"]["joined_at"], joined_at,
        "joined_at must not change"
    );

    let new_meta = json!({"properties": {"y": "z"}});
    alice
        .request_ok(json!({"type": "update", "metadata": new_meta}))
        .await;
    let ev = bob.recv_type("peer_updated").await;
    assert_peer_info(&ev["peer"], "alice", "viewer", &new_meta);

    alice
        .request_ok(json!({"type": "update", "role": "host", "metadata": {"tags": ["b"]}}))
        .await;
    let ev = bob.recv_type("peer_updated").await;
    assert_peer_info(&ev["peer"], "alice", "host", &json!({"tags": ["b"]}));

    // Bad updates change nothing and tell nobody.
    alice
        .request_error(
            json!({"type": "update", "role": "r".repeat(65)}),
            "BAD_REQUEST",
        )
        .await;
    alice
        .request_error(json!({"type": "update", "metadata": [1]}), "BAD_REQUEST")
        .await;
    alice
        .request_error(json!({"type": "update", "role": 1}), "BAD_REQUEST")
        .await;
    bob.assert_quiet().await;
    alice.assert_quiet().await;

    let peers = bob.request(json!({"type": "discover"})).await;
    assert_eq!(peers["type"], "peers", "{peers}");
    assert_peer_info(&peers["peers"][0], "alice", "host", &json!({"tags": ["b"]}));
    let (_carol, joined) = join(c, 2, "r1", "carol").await;
    let alice_info = joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == "alice")
        .cloned()
        .expect("alice listed");
    assert_peer_info(&alice_info, "alice", "host", &json!({"tags": ["b"]}));
}

/// `leave` answers `ok`, tells the others `peer_left{reason:"left"}`, makes room
/// messages `NOT_JOINED`; the connection can join again (same or other room).
pub async fn leave_then_rejoin(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    let ok = alice
        .request_with_id(json!({"type": "leave"}), json!("bye"))
        .await;
    assert_eq!(ok, json!({"type": "ok", "id": "bye"}));
    let ev = bob.recv_type("peer_left").await;
    assert_keys(&ev, PEER_LEFT_KEYS);
    assert_eq!(ev["peer"], "alice");
    assert_eq!(ev["reason"], "left");

    alice
        .request_error(json!({"type": "leave"}), "NOT_JOINED")
        .await;
    alice
        .request_error(json!({"type": "discover"}), "NOT_JOINED")
        .await;
    bob.request_error(
        json!({"type": "signal", "to": "alice", "payload": 1}),
        "PEER_NOT_FOUND",
    )
    .await;
    let peers = bob.request(json!({"type": "discover"})).await;
    assert_eq!(peers["peers"], json!([]));

    let joined = alice
        .join(json!({"type": "join", "room": "r1", "peer": "alice"}))
        .await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["bob"]));
    let ev = bob.recv_type("peer_joined").await;
    assert_eq!(ev["peer"]["peer"], "alice");

    alice.request_ok(json!({"type": "leave"})).await;
    let ev = bob.recv_type("peer_left").await;
    assert_eq!(ev["reason"], "left");
    let joined = alice
        .join(json!({"type": "join", "room": "r2", "peer": "alice"}))
        .await;
    assert_eq!(joined["room"], "r2");
    assert_eq!(joined["peers"], json!([]));
    alice
        .request_ok(json!({"type": "broadcast", "payload": "r2 only"}))
        .await;
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// `ping` works joined or not and echoes string and integer ids; without an id
/// the pong is exactly `{"type":"pong"}`.
pub async fn ping_pong(c: &Cluster) {
    let mut client = c.connect(0).await;
    client.send_json(json!({"type": "ping"})).await;
    assert_eq!(client.recv_json().await, json!({"type": "pong"}));
    for id in [json!(0), json!(-1), json!("p"), json!(""), json!("ünï ✓")] {
        let pong = client
            .request_with_id(json!({"type": "ping"}), id.clone())
            .await;
        assert_eq!(pong, json!({"type": "pong", "id": id}));
    }
    client
        .join(json!({"type": "join", "room": "r1", "peer": "alice"}))
        .await;
    let pong = client
        .request_with_id(json!({"type": "ping"}), json!(77))
        .await;
    assert_eq!(pong, json!({"type": "pong", "id": 77}));
    client.assert_quiet().await;
}

/// Every direct reply (`joined`, `peers`, `ok`, `pong`, `error`) carries the
/// request's id with its JSON type unchanged, at the edges of the integer range.
pub async fn ids_echoed_with_their_type(c: &Cluster) {
    const MAX: i64 = (1 << 53) - 1;
    let mut alice = c.connect(0).await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let joined = alice
        .request_with_id(
            json!({"type": "join", "room": "r1", "peer": "alice"}),
            json!(MAX),
        )
        .await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["id"], json!(MAX));
    assert!(
        joined["id"].is_i64() || joined["id"].is_u64(),
        "integer id became {}",
        joined["id"]
    );
    bob.recv_type("peer_joined").await;

    let cases = [
        (json!({"type": "discover"}), json!(-MAX), "peers"),
        (json!({"type": "discover"}), json!("7"), "peers"),
        (
            json!({"type": "set_state", "patch": {"k": 1}}),
            json!(0),
            "ok",
        ),
        (json!({"type": "update", "role": "x"}), json!("upd"), "ok"),
        (
            json!({"type": "signal", "to": "bob", "payload": 1}),
            json!(123456789),
            "ok",
        ),
        (
            json!({"type": "broadcast", "payload": 1}),
            json!("b-1"),
            "ok",
        ),
        (json!({"type": "ping"}), json!(-42), "pong"),
        (json!({"type": "nope"}), json!(31), "error"),
        (
            json!({"type": "signal", "to": "ghost", "payload": 1}),
            json!("e"),
            "error",
        ),
        (json!({"type": "leave"}), json!(-MAX), "ok"),
    ];
    for (message, id, reply_type) in cases {
        let reply = alice.request_with_id(message.clone(), id.clone()).await;
        assert_eq!(reply["type"], reply_type, "reply to {message}: {reply}");
        assert_eq!(reply["id"], id, "id echo for {message}: {reply}");
        assert_eq!(
            reply["id"].is_string(),
            id.is_string(),
            "id type changed: {reply}"
        );
    }
}

/// An `id` that is neither a string nor an integer within ±2^53 is `BAD_REQUEST`
/// and the message is not executed.
pub async fn bad_id_types(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let bad_ids = [
        "true",
        "false",
        "null",
        "1.5",
        "-0.25",
        "[1]",
        "{\"a\":1}",
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551616",
        "1e300",
    ];
    for id in bad_ids {
        let text = format!(r#"{{"type":"broadcast","payload":"must not arrive","id":{id}}}"#);
        alice.send_text(&text).await;
        let reply = alice.recv_json().await;
        assert_error(&reply, "BAD_REQUEST");
    }
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// An unknown `type` (case matters) is `UNKNOWN_TYPE`, joined or not.
pub async fn unknown_type(c: &Cluster) {
    let mut client = c.connect(0).await;
    for ty in ["shout", "JOIN", "Ping", "", "joined", "pong", "error"] {
        let id = json!(format!("u-{ty}"));
        let reply = client
            .request_with_id(json!({"type": ty}), id.clone())
            .await;
        assert_error_reply(&reply, "UNKNOWN_TYPE", &id, &[]);
    }
    client
        .join(json!({"type": "join", "room": "r1", "peer": "alice"}))
        .await;
    let reply = client
        .request_with_id(json!({"type": "kick", "peer": "x"}), json!(3))
        .await;
    assert_error_reply(&reply, "UNKNOWN_TYPE", &json!(3), &[]);
    client.assert_quiet().await;
}

/// Unknown fields are ignored.
pub async fn unknown_fields_ignored(c: &Cluster) {
    let extra = json!({"nested": {"deep": [1, 2, {"x": null}]}, "n": 1});
    let mut alice = c.connect(0).await;
    let joined = alice
        .join(json!({"type": "join", "room": "r1", "peer": "alice", "extra": extra, "to": 5}))
        .await;
    assert_eq!(joined["peer"], "alice");
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let pong = alice
        .request(json!({"type": "ping", "extra": extra, "payload": "x"}))
        .await;
    assert_eq!(pong["type"], "pong");
    alice
        .request_ok(
            json!({"type": "signal", "to": "bob", "payload": 1, "from": "mallory",
                           "seq": 999, "extra": extra}),
        )
        .await;
    let ev = bob.recv_type("signal").await;
    assert_eq!(ev["from"], "alice", "a client cannot forge `from`: {ev}");
    assert_eq!(ev["payload"], 1);
    bob.assert_quiet().await;
    alice.assert_quiet().await;
}

/// Nothing crosses rooms: presence, signals, broadcasts, state and updates of
/// r1 never reach r2, where the same peer ids live.
pub async fn rooms_are_isolated(c: &Cluster) {
    let (mut a1, _) = join(c, 0, "r1", "alice").await;
    let (mut a2, _) = join(c, 1, "r2", "alice").await;
    let (mut b1, _) = join(c, 2, "r1", "bob").await;
    let (mut b2, _) = join(c, 3, "r2", "bob").await;
    a1.recv_type("peer_joined").await;
    a2.recv_type("peer_joined").await;

    a1.request_ok(json!({"type": "signal", "to": "bob", "payload": "r1 signal"}))
        .await;
    a1.request_ok(json!({"type": "broadcast", "payload": "r1 broadcast"}))
        .await;
    a1.request_ok(json!({"type": "set_state", "patch": {"room": "r1"}}))
        .await;
    a1.request_ok(json!({"type": "update", "role": "r1-role"}))
        .await;
    a1.recv_type("state").await;
    assert_eq!(b1.recv_type("signal").await["payload"], "r1 signal");
    assert_eq!(b1.recv_type("broadcast").await["payload"], "r1 broadcast");
    assert_eq!(b1.recv_type("state").await["data"], json!({"room": "r1"}));
    assert_eq!(
        b1.recv_type("peer_updated").await["peer"]["role"],
        "r1-role"
    );
    let (mut c1, joined) = join(c, 4, "r1", "carol").await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice", "bob"]));
    a1.recv_type("peer_joined").await;
    b1.recv_type("peer_joined").await;
    b1.request_ok(json!({"type": "leave"})).await;
    a1.recv_type("peer_left").await;
    c1.recv_type("peer_left").await;

    let peers = a2.request(json!({"type": "discover"})).await;
    assert_eq!(peer_ids(&peers["peers"]), sorted(&["bob"]));
    assert_eq!(peers["peers"][0]["role"], "peer");
    let (mut c2, joined) = join(c, 5, "r2", "carol").await;
    assert_eq!(joined["state"], json!({"version": 0, "data": {}}));
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice", "bob"]));
    a2.recv_type("peer_joined").await;
    b2.recv_type("peer_joined").await;
    for client in [&mut a1, &mut a2, &mut b2, &mut c1, &mut c2] {
        client.assert_quiet().await;
    }
}

/// `joined` is the first message after `join`, even while the room is busy;
/// afterwards the joiner gets every later broadcast, in order, without gaps.
pub async fn joined_comes_first(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    const N: u64 = 150;
    let mut carol = c.connect(2).await;
    let sending = async {
        for n in 0..N {
            alice
                .send_json(json!({"type": "broadcast", "payload": n}))
                .await;
        }
    };
    let joining = async {
        carol
            .send_json(json!({"type": "join", "room": "r1", "peer": "carol", "id": "j"}))
            .await;
        carol.recv_json().await
    };
    let ((), joined) = tokio::join!(sending, joining);
    assert_eq!(
        joined["type"], "joined",
        "first message after join: {joined}"
    );
    assert_eq!(joined["id"], "j");
    alice
        .request_ok(json!({"type": "broadcast", "payload": "end"}))
        .await;

    let mut got = Vec::new();
    loop {
        let ev = carol.recv_type("broadcast").await;
        if ev["payload"] == "end" {
            break;
        }
        got.push(ev["payload"].as_u64().expect("numbered broadcast"));
    }
    if let Some(&first) = got.first() {
        let expected: Vec<u64> = (first..N).collect();
        assert_eq!(got, expected, "carol's broadcasts must be a gapless suffix");
    }
    // Bob saw all of them, then carol's arrival somewhere among them.
    let mut numbers = Vec::new();
    let mut saw_carol = false;
    loop {
        let ev = bob.recv_json().await;
        match ty(&ev) {
            "broadcast" if ev["payload"] == "end" => break,
            "broadcast" => numbers.push(ev["payload"].as_u64().unwrap()),
            "peer_joined" if ev["peer"]["peer"] == "carol" && !saw_carol => saw_carol = true,
            _ => bob.fail(&format!("unexpected {ev}")),
        }
    }
    assert!(saw_carol, "bob never saw carol join");
    assert_eq!(numbers, (0..N).collect::<Vec<_>>());
    carol.assert_quiet().await;
    bob.assert_quiet().await;
}

/// Peers joining at the same moment (spread over the nodes) each learn of every
/// other exactly once: in `joined.peers` or as `peer_joined`, never both/neither.
pub async fn concurrent_joins_exactly_once(c: &Cluster) {
    const PEERS: usize = 8;
    for round in 0..3 {
        let room = format!("race-{round}");
        let mut clients = Vec::new();
        for i in 0..PEERS {
            clients.push(c.connect(i).await);
        }
        // Send every join before reading any reply.
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .send_json(json!({"type": "join", "room": room, "peer": format!("p{i}"), "id": i}))
                .await;
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let me = format!("p{i}");
            client.set_label(&format!("{me}@{room}"));
            let joined = client.recv_json().await;
            assert_eq!(joined["type"], "joined", "first message of {me}: {joined}");
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for p in peer_ids(&joined["peers"]) {
                *seen.entry(p).or_default() += 1;
            }
            while seen.len() < PEERS - 1 {
                let ev = client.recv_type("peer_joined").await;
                let p = ev["peer"]["peer"].as_str().expect("peer id").to_owned();
                *seen.entry(p).or_default() += 1;
            }
            assert!(!seen.contains_key(&me), "{me} learned of itself: {seen:?}");
            let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                dups.is_empty(),
                "{me} learned of some peers twice: {dups:?}"
            );
        }
        join_all(clients.iter_mut().map(Client::assert_quiet)).await;
    }
}

/// `seq` increases over every kind of event addressed to one peer.
pub async fn seq_increases_across_event_kinds(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": 1}))
        .await;
    bob.request_ok(json!({"type": "broadcast", "payload": 2}))
        .await;
    bob.request_ok(json!({"type": "set_state", "patch": {"v": 3}}))
        .await;
    bob.request_ok(json!({"type": "update", "role": "r"})).await;
    let (carol, _) = join(c, 2, "r1", "carol").await;
    carol.close().await;
    bob.request_ok(json!({"type": "leave"})).await;
    let mut kinds = Vec::new();
    let mut last = None;
    let expected = [
        "signal",
        "broadcast",
        "state",
        "peer_updated",
        "peer_joined",
        "peer_left",
    ];
    while kinds.len() < expected.len() {
        let ev = alice.recv_json().await;
        // Carol's departure (a closed socket) may be reported later or not at all
        // within the resume window; only bob's events are counted.
        if ty(&ev) == "peer_left" && ev["peer"] == "carol" {
            continue;
        }
        let s = seq(&ev);
        if let Some(prev) = last {
            assert!(s > prev, "seq {s} after {prev}: {ev}");
        }
        last = Some(s);
        kinds.push(ty(&ev).to_owned());
    }
    assert_eq!(kinds, expected);
}

/// Everything one sender causes for one recipient (signals, broadcasts, state,
/// updates) arrives in the order sent.
pub async fn mixed_events_in_order(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    const ROUNDS: u64 = 40;
    for n in 0..ROUNDS {
        alice
            .send_json(json!({"type": "signal", "to": "bob", "payload": n}))
            .await;
        alice
            .send_json(json!({"type": "broadcast", "payload": n}))
            .await;
        alice
            .send_json(json!({"type": "set_state", "patch": {"n": n}}))
            .await;
        alice
            .send_json(json!({"type": "update", "metadata": {"n": n}}))
            .await;
    }
    let mut last_seq = 0;
    for n in 0..ROUNDS {
        for kind in ["signal", "broadcast", "state", "peer_updated"] {
            let ev = bob.recv_json().await;
            assert_eq!(ev["type"], kind, "round {n}: {ev}");
            let got = match kind {
                "signal" | "broadcast" => ev["payload"].clone(),
                "state" => ev["data"]["n"].clone(),
                _ => ev["peer"]["metadata"]["n"].clone(),
            };
            assert_eq!(got, n, "round {n}: {ev}");
            assert!(seq(&ev) > last_seq, "seq not increasing: {ev}");
            last_seq = seq(&ev);
        }
    }
    bob.assert_quiet().await;
}
