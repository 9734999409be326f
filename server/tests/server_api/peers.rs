//! `server` messages and kicks, made on another node than the peer's.

use serde_json::{json, Value};

use super::{assert_api_error, peers_of, Api};
use crate::support::{join, join_with, Cluster};

/// The session token of a `joined`.
fn session(joined: &Value) -> String {
    joined["session"].as_str().expect("session").to_owned()
}

/// To one peer: only that peer gets `server{payload}` (with its seq); to
/// all: every peer; the answer counts the recipients.
pub async fn messages_reach_one_peer_or_all(c: &Cluster) {
    let api = Api::of(c, 0);
    let (mut alice, _) = join(c, 0, "talk", "alice").await;
    let (mut bob, _) = join(c, 1, "talk", "bob").await;
    alice.recv_type("peer_joined").await;

    let payload = json!({"kind": "notice", "text": "hello bob", "n": [1, 2]});
    let r = api
        .post(
            "/api/v1/rooms/talk/messages",
            &json!({"to": "bob", "payload": payload}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"delivered": 1}));
    let got = bob.recv_type("server").await;
    assert_eq!(got["payload"], payload, "{got}");
    assert!(got["seq"].as_u64().is_some(), "{got}");
    alice.assert_quiet().await;

    let r = api
        .post(
            "/api/v1/rooms/talk/messages",
            &json!({"payload": "to everyone"}),
        )
        .await;
    assert_eq!(r.json(), json!({"delivered": 2}));
    assert_eq!(alice.recv_type("server").await["payload"], "to everyone");
    assert_eq!(bob.recv_type("server").await["payload"], "to everyone");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A message to a peer that is away counts as delivered: it is kept and
/// replayed when the peer resumes.
pub async fn a_message_to_an_away_peer_is_replayed_on_resume(c: &Cluster) {
    let api = Api::of(c, 0);
    let (_alice, _) = join(c, 0, "later", "alice").await;
    let (bob, joined) = join(c, 1, "later", "bob").await;
    let token = session(&joined);
    drop(bob);
    api.room_until("later", "bob away", |r| r["peers"][1]["away"] == true)
        .await;
    let r = api
        .post(
            "/api/v1/rooms/later/messages",
            &json!({"to": "bob", "payload": 7}),
        )
        .await;
    assert_eq!(r.json(), json!({"delivered": 1}), "{}", r.body);
    let (mut bob, joined) = join_with(
        c,
        1,
        json!({"type": "join", "room": "later", "peer": "bob", "resume": token}),
    )
    .await;
    assert_ne!(joined["recovered"], false, "{joined}");
    assert_eq!(bob.recv_type("server").await["payload"], 7);
}

/// A kick (on another node than the peer's): the peer's socket closes with
/// 4003, the others get `peer_left{reason:"kicked"}`, and its session token
/// no longer resumes: a join with it is a fresh join, announced anew.
pub async fn a_kicked_peer_is_closed_and_cannot_resume(c: &Cluster) {
    let api = Api::of(c, 0);
    let (mut alice, _) = join(c, 0, "kicks", "alice").await;
    let (mut bob, joined) = join(c, 1, "kicks", "bob").await;
    let token = session(&joined);
    alice.recv_type("peer_joined").await;

    let r = api.delete("/api/v1/rooms/kicks/peers/bob").await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.body.is_empty(), "{}", r.body);
    bob.expect_close(4003).await;
    let left = alice.recv_type("peer_left").await;
    assert_eq!(left["peer"], "bob", "{left}");
    assert_eq!(left["reason"], "kicked", "{left}");
    assert_eq!(peers_of(&api.room("kicks").await), ["alice"]);
    assert_api_error(
        &api.delete("/api/v1/rooms/kicks/peers/bob").await,
        404,
        "PEER_NOT_FOUND",
    );

    let (_bob, joined) = join_with(
        c,
        1,
        json!({"type": "join", "room": "kicks", "peer": "bob", "resume": token}),
    )
    .await;
    assert_eq!(
        joined["recovered"], false,
        "a kicked session resumed: {joined}"
    );
    assert_ne!(session(&joined), token);
    let again = alice.recv_type("peer_joined").await;
    assert_eq!(again["peer"]["peer"], "bob", "{again}");
}

/// An away peer is removed the same way, and its resume is a fresh join.
pub async fn an_away_peer_can_be_kicked(c: &Cluster) {
    let api = Api::of(c, 0);
    let (mut alice, _) = join(c, 0, "gone", "alice").await;
    let (bob, joined) = join(c, 1, "gone", "bob").await;
    let token = session(&joined);
    alice.recv_type("peer_joined").await;
    drop(bob);
    api.room_until("gone", "bob away", |r| r["peers"][1]["away"] == true)
        .await;

    let r = api.delete("/api/v1/rooms/gone/peers/bob").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let left = alice.recv_type("peer_left").await;
    assert_eq!(
        (&left["peer"], &left["reason"]),
        (&json!("bob"), &json!("kicked"))
    );
    let (_bob, joined) = join_with(
        c,
        0,
        json!({"type": "join", "room": "gone", "peer": "bob", "resume": token}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    alice.recv_type("peer_joined").await;
}
