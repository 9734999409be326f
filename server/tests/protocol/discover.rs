//! Cases for `discover`: every filter of PROTOCOL.md (`role`, `tags`,
//! `properties` with plain values and each operator), the rule that a missing
//! property never matches a comparison, and `BAD_REQUEST` for unknown operators
//! and wrong-typed filters.

use serde_json::{json, Value};

use crate::support::*;

/// Joins the observer and five peers with known roles and metadata, spread over
/// the nodes; returns the observer (with its presence events consumed) and the
/// other clients (kept connected).
async fn populated_room(c: &Cluster) -> (Client, Vec<Client>) {
    let peers = [
        (
            "w1",
            "worker",
            json!({"tags": ["gpu", "eu"], "properties": {"vram_gb": 24, "zone": "a"}}),
        ),
        (
            "w2",
            "worker",
            json!({"tags": ["cpu", "us"], "properties": {"vram_gb": 8, "zone": "b"}}),
        ),
        (
            "w3",
            "worker",
            json!({"tags": ["gpu", "us"], "properties": {"vram_gb": 16, "zone": "a", "spot": true}}),
        ),
        (
            "v1",
            "viewer",
            json!({"tags": ["eu"], "properties": {"zone": "a"}}),
        ),
        ("v2", "viewer", json!({})),
    ];
    let (mut observer, _) = join_with(
        c,
        0,
        json!({"type": "join", "room": "r1", "peer": "obs", "role": "observer"}),
    )
    .await;
    let mut others = Vec::new();
    for (i, (peer, role, metadata)) in peers.into_iter().enumerate() {
        let (client, _) = join_with(
            c,
            i + 1,
            json!({"type": "join", "room": "r1", "peer": peer, "role": role, "metadata": metadata}),
        )
        .await;
        others.push(client);
        let ev = observer.recv_type("peer_joined").await;
        assert_eq!(ev["peer"]["peer"], peer);
    }
    (observer, others)
}

/// Sends `discover` with `filters` (omitted when `None`) and returns the sorted ids.
async fn discover(client: &mut Client, filters: Option<Value>) -> Vec<String> {
    let mut message = json!({"type": "discover"});
    if let Some(f) = filters {
        message["filters"] = f;
    }
    let reply = client.request_with_id(message.clone(), json!("d")).await;
    assert_eq!(reply["type"], "peers", "reply to {message}: {reply}");
    assert_keys(&reply, &["type", "id", "peers"]);
    peer_ids(&reply["peers"])
}

/// Without filters (or with `{}`) every other peer is listed as full PeerInfo.
pub async fn discover_without_filters(c: &Cluster) {
    let (mut obs, _others) = populated_room(c).await;
    let all = sorted(&["v1", "v2", "w1", "w2", "w3"]);
    assert_eq!(discover(&mut obs, None).await, all);
    assert_eq!(discover(&mut obs, Some(json!({}))).await, all);
    let reply = obs.request(json!({"type": "discover"})).await;
    for info in reply["peers"].as_array().unwrap() {
        match info["peer"].as_str().unwrap() {
            "w3" => assert_peer_info(
                info,
                "w3",
                "worker",
                &json!({"tags": ["gpu", "us"], "properties": {"vram_gb": 16, "zone": "a", "spot": true}}),
            ),
            "v2" => assert_peer_info(info, "v2", "viewer", &json!({})),
            _ => assert_keys(info, PEER_INFO_KEYS),
        }
    }
    obs.assert_quiet().await;
}

/// `role` is an exact match; `tags` matches a peer having at least one of them.
pub async fn discover_role_and_tags(c: &Cluster) {
    let (mut obs, _others) = populated_room(c).await;
    let cases = [
        (json!({"role": "worker"}), vec!["w1", "w2", "w3"]),
        (json!({"role": "viewer"}), vec!["v1", "v2"]),
        (json!({"role": "work"}), vec![]),
        (json!({"role": "Worker"}), vec![]),
        (json!({"tags": ["gpu"]}), vec!["w1", "w3"]),
        (json!({"tags": ["eu", "cpu"]}), vec!["v1", "w1", "w2"]),
        (json!({"tags": ["nope"]}), vec![]),
        (json!({"role": "worker", "tags": ["eu"]}), vec!["w1"]),
    ];
    for (filters, expected) in cases {
        assert_eq!(
            discover(&mut obs, Some(filters.clone())).await,
            sorted(&expected),
            "{filters}"
        );
    }
}

/// `properties`: plain values are equality, every key must match, and each
/// operator compares as documented; a missing property never matches.
pub async fn discover_property_operators(c: &Cluster) {
    let (mut obs, _others) = populated_room(c).await;
    let cases = [
        (json!({"zone": "a"}), vec!["v1", "w1", "w3"]),
        (json!({"zone": "a", "vram_gb": 24}), vec!["w1"]),
        (json!({"spot": true}), vec!["w3"]),
        (json!({"spot": false}), vec![]),
        (json!({"vram_gb": {"$eq": 16}}), vec!["w3"]),
        (json!({"vram_gb": {"$ne": 16}}), vec!["w1", "w2"]),
        (json!({"vram_gb": {"$gt": 16}}), vec!["w1"]),
        (json!({"vram_gb": {"$gte": 16}}), vec!["w1", "w3"]),
        (json!({"vram_gb": {"$lt": 16}}), vec!["w2"]),
        (json!({"vram_gb": {"$lte": 16}}), vec!["w2", "w3"]),
        (json!({"vram_gb": {"$in": [8, 24, 99]}}), vec!["w1", "w2"]),
        (json!({"vram_gb": {"$in": []}}), vec![]),
        (json!({"vram_gb": {"$gt": 8, "$lt": 24}}), vec!["w3"]),
        (json!({"zone": {"$in": ["b", "c"]}}), vec!["w2"]),
        (json!({"zone": {"$ne": "a"}}), vec!["w2"]),
        (json!({"missing": {"$ne": 1}}), vec![]),
        (json!({"missing": {"$lt": 100}}), vec![]),
    ];
    for (properties, expected) in cases {
        let filters = json!({"properties": properties});
        assert_eq!(
            discover(&mut obs, Some(filters.clone())).await,
            sorted(&expected),
            "{filters}"
        );
    }
    // The example of PROTOCOL.md, all three filters together.
    let filters = json!({"role": "worker", "tags": ["gpu", "eu"],
                         "properties": {"vram_gb": {"$gte": 16}, "zone": "a"}});
    assert_eq!(
        discover(&mut obs, Some(filters)).await,
        sorted(&["w1", "w3"])
    );
    let filters =
        json!({"role": "worker", "tags": ["us"], "properties": {"vram_gb": {"$gte": 16}}});
    assert_eq!(discover(&mut obs, Some(filters)).await, sorted(&["w3"]));
}

/// Unknown operators and wrong-typed filters are `BAD_REQUEST`; the connection
/// keeps working.
pub async fn discover_bad_filters(c: &Cluster) {
    let (mut obs, _others) = populated_room(c).await;
    let bad = [
        json!({"properties": {"vram_gb": {"$regex": "1.*"}}}),
        json!({"properties": {"vram_gb": {"$gte": 1, "$foo": 2}}}),
        json!({"properties": {"zone": {"$in": "a"}}}),
        json!({"properties": 5}),
        json!({"tags": "gpu"}),
        json!({"role": 7}),
        json!(5),
        json!([]),
        json!("worker"),
    ];
    for filters in bad {
        let id = json!(format!("f-{filters}"));
        let reply = obs
            .request_with_id(json!({"type": "discover", "filters": filters}), id.clone())
            .await;
        assert_error_reply(&reply, "BAD_REQUEST", &id, &[]);
    }
    assert_eq!(
        discover(&mut obs, Some(json!({"role": "viewer"}))).await,
        sorted(&["v1", "v2"])
    );
    obs.assert_quiet().await;
}

/// `discover` follows joins, leaves and updates.
pub async fn discover_follows_changes(c: &Cluster) {
    let (mut obs, mut others) = populated_room(c).await;
    let w1 = &mut others[0];
    w1.request_ok(json!({"type": "update", "role": "viewer"}))
        .await;
    obs.recv_type("peer_updated").await;
    assert_eq!(
        discover(&mut obs, Some(json!({"role": "viewer"}))).await,
        sorted(&["v1", "v2", "w1"])
    );
    let v2 = &mut others[4];
    v2.request_ok(json!({"type": "leave"})).await;
    obs.recv_type("peer_left").await;
    assert_eq!(
        discover(&mut obs, Some(json!({"role": "viewer"}))).await,
        sorted(&["v1", "w1"])
    );
    assert_eq!(
        discover(&mut obs, None).await,
        sorted(&["v1", "w1", "w2", "w3"])
    );
}
