//! `PATCH /api/v1/rooms/{room}/state`.

use serde_json::json;

use super::{assert_api_error, Api};
use crate::support::{join, Cluster};

/// A merge patch from the application: `{"version": n}`, and every peer gets
/// `state` with the full data and `by: null`; `If-Match` at the current
/// version applies; members' own patches continue from there.
pub async fn state_patches_reach_every_peer_with_by_null(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "watch", "alice").await;
    let (mut bob, _) = join(c, 1, "watch", "bob").await;
    alice.recv_type("peer_joined").await;

    let r = api
        .patch(
            "/api/v1/rooms/watch/state",
            &json!({"url": "a", "playing": true}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"version": 1}));
    for peer in [&mut alice, &mut bob] {
        let s = peer.recv_type("state").await;
        assert_eq!(s["version"], 1, "{s}");
        assert_eq!(s["data"], json!({"url": "a", "playing": true}), "{s}");
        assert_eq!(s["by"], json!(null), "{s}");
    }

    let r = api
        .patch(
            "/api/v1/rooms/watch/state",
            &json!({"playing": null, "t": 3}),
            Some("\"1\""),
        )
        .await;
    assert_eq!(r.json(), json!({"version": 2}), "{}", r.body);
    let s = bob.recv_type("state").await;
    assert_eq!(s["data"], json!({"url": "a", "t": 3}), "{s}");
    alice.recv_type("state").await;

    let ok = alice
        .request_ok(json!({"type": "set_state", "patch": {"t": 4}, "if_version": 2}))
        .await;
    assert_eq!(ok["version"], 3, "{ok}");
    assert_eq!(
        api.room("watch").await["state"],
        json!({"version": 3, "data": {"url": "a", "t": 4}})
    );
}

/// A stale `If-Match` is 412 with the current version; nothing changes and
/// nobody is told anything.
pub async fn a_stale_if_match_changes_nothing(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "stale", "alice").await;
    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 1}}))
        .await;
    alice.recv_type("state").await;
    let r = api
        .patch("/api/v1/rooms/stale/state", &json!({"a": 2}), Some("\"0\""))
        .await;
    assert_api_error(&r, 412, "VERSION_CONFLICT");
    assert_eq!(r.json()["error"]["version"], 1, "{}", r.body);
    alice.assert_quiet().await;
    assert_eq!(
        api.room("stale").await["state"],
        json!({"version": 1, "data": {"a": 1}})
    );
}

/// A patch that would take the state over MAX_STATE_BYTES (200 here) is
/// 413 and changes nothing.
pub async fn a_patch_over_the_state_limit_changes_nothing(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "big", "alice").await;
    let r = api
        .patch("/api/v1/rooms/big/state", &json!({"small": 1}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    alice.recv_type("state").await;
    let r = api
        .patch(
            "/api/v1/rooms/big/state",
            &json!({"blob": "x".repeat(300)}),
            None,
        )
        .await;
    assert_api_error(&r, 413, "PAYLOAD_TOO_LARGE");
    alice.assert_quiet().await;
    assert_eq!(
        api.room("big").await["state"],
        json!({"version": 1, "data": {"small": 1}})
    );
}
