//! Keys, bad input (each refused with a clear error, nothing changed), the
//! served OpenAPI document and the request metrics.

use serde_json::{json, Value};

use super::{assert_api_error, peers_of, Api, KEY, OTHER_KEY};
use crate::support::http::{self, metric_sample};
use crate::support::{join, Cluster};

/// Without a key, with a wrong one, or with another scheme: 401 (with
/// `WWW-Authenticate`), on known and unknown paths alike; both configured
/// keys work.
pub async fn keys_are_required_and_both_are_accepted(c: &Cluster) {
    let addr = c.addr(0);
    let (_alice, _) = join(c, 0, "keyed", "alice").await;
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-key-0123456789abc")],
        vec![("Authorization", "Basic dGVzdDp0ZXN0")],
        vec![("Authorization", "Bearer ")],
    ] {
        for path in [
            "/api/v1/rooms",
            "/api/v1/rooms/keyed",
            "/api/v1/nothing-here",
        ] {
            let r = http::get_with(addr, path, &headers).await;
            assert_api_error(&r, 401, "UNAUTHORIZED");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}");
        }
    }
    // A refused kick changes nothing.
    let r = http::send(addr, "DELETE", "/api/v1/rooms/keyed/peers/alice", &[], b"").await;
    assert_api_error(&r, 401, "UNAUTHORIZED");
    let first = Api::of(c, 0);
    let second = Api {
        key: OTHER_KEY.to_owned(),
        ..Api::of(c, 0)
    };
    assert_eq!(peers_of(&first.room("keyed").await), ["alice"]);
    assert_eq!(peers_of(&second.room("keyed").await), ["alice"]);
    // Keys, right or wrong, are never logged.
    for i in 0..c.len() {
        let log = c.node(i).output().join("\n");
        for key in [KEY, OTHER_KEY, "wrong-key-0123456789abc"] {
            assert!(!log.contains(key), "node {i} logged a key:\n{log}");
        }
    }
}

/// Bad JSON, a non-object body, missing and wrong-typed fields, a payload
/// or body over its limit, bad names, bad queries and headers: 400 or 413
/// with a message, and the room and its peers see nothing.
pub async fn bad_input_changes_nothing(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "calm", "alice").await;
    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 1}}))
        .await;
    alice.recv_type("state").await;
    let before = api.room("calm").await;

    let messages = "/api/v1/rooms/calm/messages";
    let state = "/api/v1/rooms/calm/state";
    let deep = format!("{}{}", "{\"a\":".repeat(127) + "{}", "}".repeat(127));
    let raw: [(&str, &str, &[u8], &str); 13] = [
        (
            "POST",
            messages,
            b"{not json",
            "the request body is not valid JSON",
        ),
        ("POST", messages, b"", "empty"),
        ("POST", messages, b"[1,2]", "JSON object"),
        ("POST", messages, b"{\"to\":\"alice\"}", "payload"),
        ("POST", messages, b"{\"to\":7,\"payload\":1}", "peer id"),
        ("POST", messages, b"{\"to\":null,\"payload\":1}", "peer id"),
        (
            "POST",
            messages,
            b"{\"to\":\"bad name\",\"payload\":1}",
            "not a valid name",
        ),
        ("PATCH", state, b"{oops", "not valid JSON"),
        ("PATCH", state, b"[\"a\"]", "JSON object"),
        ("PATCH", state, b"null", "JSON object"),
        ("PATCH", state, b"", "empty"),
        ("GET", "/api/v1/rooms/bad%20room", b"", "not a valid name"),
        // 128 levels: one more than a member's set_state may nest.
        ("PATCH", state, deep.as_bytes(), "recursion limit"),
    ];
    for (method, path, body, says) in raw {
        let r = api.call(method, path, &[], body).await;
        assert_api_error(&r, 400, "BAD_REQUEST");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(says),
            "{method} {path} {:?}: {message}",
            String::from_utf8_lossy(body)
        );
    }
    for query in [
        "limit=0",
        "limit=abc",
        "limit=100000",
        "cursor=a%20b",
        "cursor=",
    ] {
        let r = api.get(&format!("/api/v1/rooms?{query}")).await;
        assert_api_error(&r, 400, "BAD_REQUEST");
    }
    for if_match in ["\"one\"", "W/\"1\"", "\"1"] {
        let r = api.patch(state, &json!({"a": 2}), Some(if_match)).await;
        assert_api_error(&r, 400, "BAD_REQUEST");
    }
    // A payload over MAX_PAYLOAD_BYTES (64 KiB), and a body over the limit
    // of the call (a payload's or state's limit plus 16 KiB).
    let big = json!({"payload": "x".repeat(70 * 1024)});
    assert_api_error(&api.post(messages, &big).await, 413, "PAYLOAD_TOO_LARGE");
    let huge = json!({"payload": "x".repeat(100 * 1024)});
    assert_api_error(&api.post(messages, &huge).await, 413, "PAYLOAD_TOO_LARGE");
    let huge_patch = json!({"a": "x".repeat(100 * 1024)});
    assert_api_error(
        &api.patch(state, &huge_patch, None).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // Methods a path does not take.
    let r = api.call("PUT", state, &[], b"{}").await;
    assert_api_error(&r, 405, "METHOD_NOT_ALLOWED");

    alice.assert_quiet().await;
    assert_eq!(api.room("calm").await, before);
}

/// Unknown rooms and peers are 404 with the code that says which, for every
/// call; nothing is created.
pub async fn unknown_rooms_and_peers_are_404(c: &Cluster) {
    let api = Api::of(c, 1);
    let (mut alice, _) = join(c, 0, "here", "alice").await;
    let nobody = "/api/v1/rooms/nowhere";
    assert_api_error(&api.get(nobody).await, 404, "ROOM_NOT_FOUND");
    assert_api_error(&api.delete(nobody).await, 404, "ROOM_NOT_FOUND");
    let msg = json!({"payload": 1});
    assert_api_error(
        &api.post(&format!("{nobody}/messages"), &msg).await,
        404,
        "ROOM_NOT_FOUND",
    );
    let r = api
        .patch(&format!("{nobody}/state"), &json!({"a": 1}), None)
        .await;
    assert_api_error(&r, 404, "ROOM_NOT_FOUND");
    let r = api.delete(&format!("{nobody}/peers/alice")).await;
    assert_api_error(&r, 404, "ROOM_NOT_FOUND");
    let r = api
        .post(
            "/api/v1/rooms/here/messages",
            &json!({"to": "bob", "payload": 1}),
        )
        .await;
    assert_api_error(&r, 404, "PEER_NOT_FOUND");
    assert_api_error(
        &api.delete("/api/v1/rooms/here/peers/bob").await,
        404,
        "PEER_NOT_FOUND",
    );
    assert_api_error(
        &api.get("/api/v1/rooms/here/nothing").await,
        404,
        "NOT_FOUND",
    );
    assert_api_error(&api.get("/api/v1").await, 404, "NOT_FOUND");
    alice.assert_quiet().await;
    let listed = api.get("/api/v1/rooms").await.json();
    assert_eq!(listed["rooms"].as_array().unwrap().len(), 1, "{listed}");
}

/// `GET /api/v1/openapi.json` is the committed `docs/openapi.json`.
pub async fn the_served_document_is_the_committed_one(c: &Cluster) {
    let served = Api::of(c, 0).get("/api/v1/openapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json");
    assert_eq!(served.body, committed);
    let doc: Value = served.json();
    assert!(doc["paths"]["/api/v1/rooms/{room}/peers/{peer}"]["delete"].is_object());
}

/// `switchboard_api_requests_total{call,status}` counts answered calls.
pub async fn calls_are_counted_by_call_and_status(c: &Cluster) {
    let api = Api::of(c, 0);
    api.get("/api/v1/rooms").await;
    api.get("/api/v1/rooms").await;
    api.get("/api/v1/rooms/none").await;
    http::get(c.addr(0), "/api/v1/rooms").await;
    let metrics = http::get(c.addr(0), "/metrics").await.body;
    let sample = |series: &str| metric_sample(&metrics, series);
    assert_eq!(
        sample("switchboard_api_requests_total{call=\"list_rooms\",status=\"200\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample("switchboard_api_requests_total{call=\"get_room\",status=\"404\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample("switchboard_api_requests_total{call=\"list_rooms\",status=\"401\"}"),
        Some(1.0)
    );
}
