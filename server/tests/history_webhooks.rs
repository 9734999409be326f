//! Room history and webhooks against real processes: an embedded node, and
//! nodes sharing a real `redis-server`, with a real HTTP receiver in the test.
//!
//! - the history read (`/api/v1/rooms/{room}/events`): every membership and
//!   state change once, in order, paged by offset, bounded by count, kept
//!   after the room ends; 404, 400 and 401 where they belong;
//! - webhooks: signatures verify; per-room order and contiguous `seq` under
//!   concurrent joins and leaves on two nodes; a receiver that is down and
//!   comes back gets everything, in order; when the node that recorded the
//!   events is killed (SIGKILL) before delivering them, another node does;
//!   redeliveries carry the same id and body.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use support::hooks::{per_room, signature_valid, Delivery, Receiver};
use support::http::{get_with, metric_sample, send, HttpResponse};
use support::{join, Cluster, Settings};

const API_KEY: &str = "history-test-api-key-0123456789";
const SECRET: &str = "history-test-secret";

/// Generous bound for webhook deliveries on a loaded machine.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn settings() -> Settings {
    Settings::new().set("API_KEYS", API_KEY)
}

fn hook_settings(receiver: &Receiver) -> Settings {
    settings()
        .set("WEBHOOK_URLS", receiver.url())
        .set("WEBHOOK_SECRET", SECRET)
        .set("WEBHOOK_RETRY_INITIAL_MS", 100)
        .set("WEBHOOK_RETRY_MAX_MS", 400)
}

async fn events(c: &Cluster, node: usize, room: &str, query: &str) -> HttpResponse {
    let auth = format!("Bearer {API_KEY}");
    get_with(
        c.addr(node),
        &format!("/api/v1/rooms/{room}/events{query}"),
        &[("Authorization", &auth)],
    )
    .await
}

/// The whole history of `room` read through node `node`, `page` events at a
/// time; checks that offsets increase and `next` continues the paging.
async fn read_all(c: &Cluster, node: usize, room: &str, page: usize) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let query = match &after {
            Some(a) => format!("?limit={page}&after={a}"),
            None => format!("?limit={page}"),
        };
        let r = events(c, node, room, &query).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        let got = body["events"].as_array().cloned().unwrap_or_default();
        assert!(got.len() <= page, "page larger than limit: {body}");
        if got.is_empty() {
            assert_eq!(body["next"].as_str(), after.as_deref(), "{body}");
            return all;
        }
        assert_eq!(body["next"], got[got.len() - 1]["offset"], "{body}");
        after = body["next"].as_str().map(str::to_owned);
        all.extend(got);
    }
    panic!("history of {room} did not end within 1000 pages");
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// a and b join (on nodes 0 and 1 when there are two), b updates, a sets
/// state, b leaves, a leaves: the history has each change once, in order.
async fn membership_and_state_scenario(c: &Cluster) {
    let other = usize::from(c.is_multi_node());
    let (mut a, _) = join(c, 0, "hist", "a").await;
    let (mut b, _) = join(c, other, "hist", "b").await;
    b.request_ok(json!({"type": "update", "metadata": {"mic": false}}))
        .await;
    a.request_ok(json!({"type": "set_state", "patch": {"topic": "x"}}))
        .await;
    // A signal and a broadcast are not history.
    a.request_ok(json!({"type": "signal", "to": "b", "payload": {"sdp": "secret-sdp"}}))
        .await;
    a.request_ok(json!({"type": "broadcast", "payload": {"chat": "secret-chat"}}))
        .await;
    b.request_ok(json!({"type": "leave"})).await;
    a.request_ok(json!({"type": "leave"})).await;

    let all = read_all(c, other, "hist", 3).await;
    assert_eq!(
        kinds(&all),
        [
            "room_started",
            "peer_joined",
            "peer_joined",
            "peer_updated",
            "state_changed",
            "peer_left",
            "peer_left",
            "room_finished"
        ],
        "{all:?}"
    );
    assert_eq!(all[1]["data"]["peer"]["peer"], "a");
    assert_eq!(all[2]["data"]["peer"]["peer"], "b");
    assert_eq!(all[3]["data"]["peer"]["metadata"], json!({"mic": false}));
    assert_eq!(
        all[4]["data"],
        json!({"patch": {"topic": "x"}, "version": 1, "by": "a"})
    );
    assert_eq!(all[5]["data"], json!({"peer": "b", "reason": "left"}));
    assert_eq!(all[6]["data"], json!({"peer": "a", "reason": "left"}));
    for e in &all {
        let keys: HashSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["offset", "type", "at", "data"]), "{e}");
        assert!(e["at"].as_u64().unwrap() > 1_600_000_000_000, "{e}");
    }
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("secret-sdp") && !text.contains("secret-chat"));

    // Bad input: unknown room, malformed offset, bad limit, wrong key.
    assert_eq!(events(c, 0, "never-used", "").await.status, 404);
    // Every malformed offset is refused the same way, naming the parameter
    // and what to pass instead, whichever backend serves the room.
    for bad in ["zz", "1-1-1", "7-"] {
        let r = events(c, 0, "hist", &format!("?after={bad}")).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let error = &r.json()["error"];
        assert_eq!(error["code"], "BAD_REQUEST");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("after={bad:?} is not an offset"))
                && message.contains("pass back a `next` or `offset`"),
            "{message}"
        );
    }
    assert_eq!(events(c, 0, "hist", "?limit=0").await.status, 400);
    let wrong = get_with(
        c.addr(0),
        "/api/v1/rooms/hist/events",
        &[("Authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn history_in_order_and_paged_on_embedded() {
    let c = Cluster::embedded(settings()).await;
    membership_and_state_scenario(&c).await;
}

#[tokio::test]
async fn history_in_order_and_paged_on_redis() {
    let c = Cluster::redis(2, settings()).await;
    membership_and_state_scenario(&c).await;
}

/// The Server API's changes are history too: a state patch (`by: null`) and
/// a kick (`peer_left{reason:"kicked"}`); closing the room deletes its
/// history (404 after).
async fn server_api_changes(c: &Cluster) {
    let auth = format!("Bearer {API_KEY}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (_a, _) = join(c, 0, "api-hist", "a").await;
    let (_b, _) = join(c, c.len() - 1, "api-hist", "b").await;
    let r = send(
        c.addr(0),
        "PATCH",
        "/api/v1/rooms/api-hist/state",
        &headers,
        br#"{"k":1}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        c.addr(0),
        "DELETE",
        "/api/v1/rooms/api-hist/peers/b",
        &headers,
        b"",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let all = read_all(c, 0, "api-hist", 10).await;
    assert_eq!(
        kinds(&all),
        [
            "room_started",
            "peer_joined",
            "peer_joined",
            "state_changed",
            "peer_left"
        ]
    );
    assert_eq!(
        all[3]["data"],
        json!({"patch": {"k": 1}, "version": 1, "by": null})
    );
    assert_eq!(all[4]["data"], json!({"peer": "b", "reason": "kicked"}));
    let r = send(c.addr(0), "DELETE", "/api/v1/rooms/api-hist", &headers, b"").await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(events(c, 0, "api-hist", "").await.status, 404);
}

#[tokio::test]
async fn server_api_changes_are_history_on_embedded() {
    server_api_changes(&Cluster::embedded(settings()).await).await;
}

#[tokio::test]
async fn server_api_changes_are_history_on_redis() {
    server_api_changes(&Cluster::redis(2, settings()).await).await;
}

/// Ten joins and leaves with HISTORY_MAX_EVENTS=5: the newest five remain.
async fn bounded_by_count(c: &Cluster) {
    for i in 0..10 {
        let (mut p, _) = join(c, i % c.len(), "bounded", &format!("p{i}")).await;
        p.request_ok(json!({"type": "leave"})).await;
    }
    let all = read_all(c, 0, "bounded", 2).await;
    assert_eq!(all.len(), 5, "{all:?}");
    // The last one: p9 left and the room finished.
    assert_eq!(
        kinds(&all),
        [
            "room_finished",
            "room_started",
            "peer_joined",
            "peer_left",
            "room_finished"
        ]
    );
    assert_eq!(all[2]["data"]["peer"]["peer"], "p9");
}

/// The same over a three-master Redis Cluster: every key of the room
/// (history, webhook cursor and lease) is in the room's slot.
#[tokio::test]
async fn history_and_webhooks_on_a_redis_cluster() {
    let receiver = Receiver::start().await;
    let redis = support::redis::RedisCluster::start(3);
    let settings = hook_settings(&receiver)
        .set("REDIS_URL", redis.url())
        .set("REDIS_CLUSTER", "true");
    let c = Cluster::over(2, settings, Box::new(redis)).await;
    membership_and_state_scenario(&c).await;
    let got = receiver
        .wait_until("8 events acknowledged", DELIVERY_TIMEOUT, |d| {
            per_room(d).get("hist").map_or(0, Vec::len) >= 8
        })
        .await;
    let rooms = per_room(&got);
    assert_in_order(&rooms);
    same_events("hist", &history_of(&c, "hist").await, &rooms["hist"]);
}

#[tokio::test]
async fn history_bounded_by_count_on_embedded() {
    let c = Cluster::embedded(settings().set("HISTORY_MAX_EVENTS", 5)).await;
    bounded_by_count(&c).await;
}

#[tokio::test]
async fn history_bounded_by_count_on_redis() {
    let c = Cluster::redis(1, settings().set("HISTORY_MAX_EVENTS", 5)).await;
    bounded_by_count(&c).await;
}

/// Per room, the acknowledged events form seq 1..=n with no gap or swap.
fn assert_in_order(rooms: &std::collections::HashMap<String, Vec<Delivery>>) {
    for (room, got) in rooms {
        let seqs: Vec<u64> = got.iter().map(Delivery::seq).collect();
        let expected: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "room {room}: seqs out of order or with gaps"
        );
    }
}

/// What the receiver must see for `room`: its history, read back.
async fn history_of(c: &Cluster, room: &str) -> Vec<Value> {
    read_all(c, 0, room, 100).await
}

fn same_events(room: &str, history: &[Value], got: &[Delivery]) {
    assert_eq!(history.len(), got.len(), "room {room}: count differs");
    for (h, d) in history.iter().zip(got) {
        assert_eq!(d.json["type"], h["type"], "room {room}");
        assert_eq!(d.json["data"], h["data"], "room {room}");
        assert_eq!(d.json["at"], h["at"], "room {room}");
        assert_eq!(d.id(), format!("{room}/{}", h["offset"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn webhooks_signed_and_in_order_on_embedded() {
    let receiver = Receiver::start().await;
    let c = Cluster::embedded(hook_settings(&receiver)).await;
    membership_and_state_scenario(&c).await;
    let got = receiver
        .wait_until("8 events acknowledged", DELIVERY_TIMEOUT, |d| {
            d.iter().filter(|d| d.acked()).count() >= 8
        })
        .await;
    for d in &got {
        let sig = d.signature.as_deref().expect("signature header");
        assert!(signature_valid(SECRET, sig, &d.body), "bad signature {sig}");
        assert!(!signature_valid("other-secret", sig, &d.body));
        let keys: HashSet<&str> = d
            .json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from(["id", "type", "room", "seq", "at", "data"])
        );
    }
    let rooms = per_room(&got);
    assert_in_order(&rooms);
    same_events("hist", &history_of(&c, "hist").await, &rooms["hist"]);
    let metrics = c.get(0, "/metrics").await.body;
    assert_eq!(
        metric_sample(&metrics, "switchboard_webhook_sent_total"),
        Some(8.0)
    );
    // One room's events go one after another over a kept-alive connection:
    // fewer connections than deliveries, each counted by the node.
    let connections = receiver.connections();
    assert!((1..8).contains(&connections), "{connections} connections");
    assert_eq!(
        metric_sample(&metrics, "switchboard_webhook_connections_total"),
        Some(connections as f64)
    );
}

/// Peers join and leave two rooms concurrently on two nodes: every room's
/// events arrive once each (first acknowledgements), in seq order, equal to
/// the room's history.
#[tokio::test]
async fn webhooks_in_order_under_concurrent_churn_on_two_nodes() {
    let receiver = Receiver::start().await;
    let c = Cluster::redis(2, hook_settings(&receiver)).await;
    let churn = (0..8).map(|i| {
        let c = &c;
        async move {
            let room = if i % 2 == 0 { "churn-a" } else { "churn-b" };
            for round in 0..3 {
                let (mut p, _) = join(c, i % 2, room, &format!("p{i}-{round}")).await;
                p.request_ok(json!({"type": "update", "metadata": {"round": round}}))
                    .await;
                p.request_ok(json!({"type": "leave"})).await;
            }
        }
    });
    futures_util::future::join_all(churn).await;
    let mut expected = std::collections::HashMap::new();
    for room in ["churn-a", "churn-b"] {
        expected.insert(room, history_of(&c, room).await);
    }
    let total: usize = expected.values().map(Vec::len).sum();
    let got = receiver
        .wait_until("every churn event acknowledged", DELIVERY_TIMEOUT, |d| {
            per_room(d).values().map(Vec::len).sum::<usize>() >= total
        })
        .await;
    let rooms = per_room(&got);
    assert_in_order(&rooms);
    for (room, history) in &expected {
        same_events(room, history, &rooms[*room]);
    }
}

/// The receiver refuses connections for a while, then answers 500, then
/// comes back: nothing is lost and the order holds; failures were counted.
#[tokio::test]
async fn receiver_down_then_up_loses_nothing() {
    let receiver = Receiver::start().await;
    let c = Cluster::redis(1, hook_settings(&receiver)).await;
    receiver.stop();
    let (mut a, _) = join(&c, 0, "outage", "a").await;
    for i in 0..5 {
        a.request_ok(json!({"type": "set_state", "patch": {"i": i}}))
            .await;
    }
    receiver.resume().await;
    receiver.set_failing(true);
    receiver
        .wait_until("a refused delivery", DELIVERY_TIMEOUT, |d| {
            d.iter().any(|d| !d.acked())
        })
        .await;
    a.request_ok(json!({"type": "leave"})).await;
    receiver.set_failing(false);
    let expected = history_of(&c, "outage").await;
    assert_eq!(expected.len(), 9);
    let got = receiver
        .wait_until("all 9 events acknowledged", DELIVERY_TIMEOUT, |d| {
            per_room(d).get("outage").map_or(0, Vec::len) >= 9
        })
        .await;
    let rooms = per_room(&got);
    assert_in_order(&rooms);
    same_events("outage", &expected, &rooms["outage"]);
    let metrics = c.get(0, "/metrics").await.body;
    let failed = metric_sample(&metrics, "switchboard_webhook_failed_total").unwrap_or(0.0);
    let retried = metric_sample(&metrics, "switchboard_webhook_retried_total").unwrap_or(0.0);
    assert!(failed >= 2.0 && retried >= 2.0, "{metrics}");
}

/// Node 0 records events while the receiver fails, and is killed (SIGKILL)
/// before it delivers them: node 1 delivers all of them (and the leaves of
/// node 0's peers after their resume window), in order.
#[tokio::test]
async fn events_of_a_killed_node_are_delivered_by_another() {
    let receiver = Receiver::start().await;
    let settings = hook_settings(&receiver)
        .fast_failure_detection()
        .set("RESUME_WINDOW_SECS", 1);
    let c = Cluster::redis(2, settings).await;
    receiver.set_failing(true);
    let (mut a, _) = join(&c, 0, "crash", "a").await;
    let (_b, _) = join(&c, 0, "crash", "b").await;
    a.request_ok(json!({"type": "set_state", "patch": {"k": 1}}))
        .await;
    receiver
        .wait_until("node 0 tried to deliver", DELIVERY_TIMEOUT, |d| {
            !d.is_empty()
        })
        .await;
    let before_kill = receiver.all().len();
    c.node(0).kill();
    receiver.set_failing(false);
    // room_started, 2 joins, state, then the 2 node_lost leaves and the end.
    let got = receiver
        .wait_until(
            "every event of the room acknowledged",
            DELIVERY_TIMEOUT,
            |d| per_room(d).get("crash").map_or(0, Vec::len) >= 7,
        )
        .await;
    assert!(got.len() > before_kill);
    let rooms = per_room(&got);
    assert_in_order(&rooms);
    let expected = read_all(&c, 1, "crash", 100).await;
    same_events("crash", &expected, &rooms["crash"]);
    assert_eq!(expected[0]["type"], "room_started");
    assert_eq!(expected[4]["data"]["reason"], "node_lost");
    // Every acknowledged delivery came after the kill: node 1 sent them.
    assert!(got[..before_kill].iter().all(|d| !d.acked()));
}
