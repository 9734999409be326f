//! Listing, reading and closing rooms.

use serde_json::json;

use super::{assert_api_error, peers_of, Api};
use crate::support::{join, now_ms, Cluster};

/// Pages of `limit` rooms in name order; `next_cursor` leads to the next
/// page and is null on the last; each room says its peers, state version and
/// when it started.
pub async fn rooms_are_listed_a_page_at_a_time(c: &Cluster) {
    let api = Api::of(c, 1);
    let before = now_ms();
    let (_a, _) = join(c, 0, "list-b", "alice").await;
    let (_b, _) = join(c, 1, "list-b", "bob").await;
    let (_c, _) = join(c, 0, "list-a", "carol").await;
    let (mut dave, _) = join(c, 1, "list-c", "dave").await;
    let after = now_ms();

    let first = api.get("/api/v1/rooms?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let names: Vec<_> = first["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].clone())
        .collect();
    assert_eq!(names, [json!("list-a"), json!("list-b")], "{first}");
    let b = &first["rooms"][1];
    assert_eq!(b["peers"], 2, "{first}");
    assert_eq!(b["state_version"], 0, "{first}");
    let created = b["created_at"].as_u64().expect("created_at");
    assert!(
        (before..=after).contains(&created),
        "created_at {created} not in [{before}, {after}]"
    );
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();

    let second = api
        .get(&format!("/api/v1/rooms?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(second["rooms"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["rooms"][0]["room"], "list-c", "{second}");
    assert_eq!(second["next_cursor"], json!(null), "{second}");

    // A room whose last peer left is no longer listed.
    let all = api.get("/api/v1/rooms").await.json();
    assert_eq!(all["rooms"].as_array().unwrap().len(), 3, "{all}");
    dave.request_ok(json!({"type": "leave"})).await;
    let all = api.get("/api/v1/rooms").await.json();
    let names: Vec<_> = all["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].clone())
        .collect();
    assert_eq!(names, [json!("list-a"), json!("list-b")], "{all}");
    assert_eq!(all["next_cursor"], json!(null), "{all}");
}

/// One room: peers in join order with PeerInfo, `node` and `away`, and the
/// state; a peer whose socket closed shows away with no node.
pub async fn a_room_shows_peers_nodes_away_and_state(c: &Cluster) {
    let api = Api::of(c, 0);
    let (mut alice, _) = join(c, 0, "show", "alice").await;
    let (bob, _) = join(c, 1, "show", "bob").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "set_state", "patch": {"url": "u"}}))
        .await;
    let room = api.room("show").await;
    assert_eq!(room["room"], "show");
    assert!(room["created_at"].as_u64().is_some(), "{room}");
    assert_eq!(room["state"], json!({"version": 1, "data": {"url": "u"}}));
    assert_eq!(peers_of(&room), ["alice", "bob"]);
    let a = &room["peers"][0];
    assert_eq!(a["role"], "peer");
    assert_eq!(a["metadata"], json!({}));
    assert!(a["joined_at"].as_u64().is_some(), "{room}");
    assert_eq!(a["node"], c.node_id(0), "{room}");
    assert_eq!(a["away"], false);
    assert_eq!(room["peers"][1]["node"], c.node_id(1), "{room}");

    // Bob's socket goes away without `leave`: he is away, resumable.
    drop(bob);
    let room = api
        .room_until("show", "bob away", |r| r["peers"][1]["away"] == true)
        .await;
    assert_eq!(room["peers"][1]["node"], json!(null), "{room}");
    assert_eq!(room["peers"][0]["away"], false, "{room}");
}

/// Closing a room closes every connection with 4003 (on every node), then
/// the room is gone: 404, not listed, and a new join starts a new room.
pub async fn closing_a_room_closes_every_peer_and_deletes_it(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "doomed", "alice").await;
    let (mut bob, _) = join(c, 1, "doomed", "bob").await;
    let (mut other, _) = join(c, 0, "spared", "carol").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "set_state", "patch": {"k": 1}}))
        .await;
    bob.recv_type("state").await;
    alice.recv_type("state").await;

    let r = api.delete("/api/v1/rooms/doomed").await;
    assert_eq!(r.status, 204, "{}", r.body);
    alice.expect_close(4003).await;
    bob.expect_close(4003).await;

    assert_api_error(
        &api.get("/api/v1/rooms/doomed").await,
        404,
        "ROOM_NOT_FOUND",
    );
    assert_api_error(
        &api.delete("/api/v1/rooms/doomed").await,
        404,
        "ROOM_NOT_FOUND",
    );
    let listed = api.get("/api/v1/rooms").await.json();
    assert_eq!(listed["rooms"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["rooms"][0]["room"], "spared", "{listed}");
    other.assert_quiet().await;

    let (_again, joined) = join(c, 1, "doomed", "alice").await;
    assert_eq!(joined["peers"], json!([]), "{joined}");
    assert_eq!(
        joined["state"],
        json!({"version": 0, "data": {}}),
        "{joined}"
    );
}

/// Rooms whose peers all left are not listed. On Redis their names stay in
/// the room index until a listing (or a sweep) meets them: paging through
/// many of them still ends at the live rooms, with short pages meanwhile,
/// and a listing after that finds the live room at once (they were pruned).
pub async fn rooms_that_ended_are_skipped_and_pruned(c: &Cluster) {
    let api = Api::of(c, 0);
    for i in 0..20 {
        let (mut peer, _) = join(c, i, &format!("ended-{i:02}"), "p").await;
        peer.request_ok(json!({"type": "leave"})).await;
    }
    let (_live, _) = join(c, 1, "live", "p").await;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 30, "paging never ended: {listed:?}");
        let query = cursor.map_or_else(String::new, |c| format!("&cursor={c}"));
        let r = api
            .get(&format!("/api/v1/rooms?limit=1{query}"))
            .await
            .json();
        for room in r["rooms"].as_array().unwrap() {
            listed.push(room["room"].as_str().unwrap().to_owned());
        }
        match r["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, ["live"]);
    let again = api.get("/api/v1/rooms?limit=1").await.json();
    assert_eq!(
        again,
        json!({"rooms": [{"room": "live", "peers": 1,
        "state_version": 0, "created_at": again["rooms"][0]["created_at"]}],
        "next_cursor": null})
    );
}
