//! The Server API (`/api/v1`) against one embedded node, against two nodes
//! sharing one real redis-server and against two nodes on a three-master
//! Redis Cluster (every call made on the node that does not hold the peer
//! it acts on), plus what only one setup needs: the API off without keys,
//! on the internal listener, and what a room close leaves in Redis.

mod server_api;
mod support;

use serde_json::json;
use support::http;
use support::redis::RedisCluster;
use support::{join, Cluster, Settings};

mod embedded {
    use super::*;
    server_api::api_suite!(Cluster::embedded);
}

mod redis {
    use super::*;
    server_api::api_suite!(|settings| Cluster::redis(2, settings));
}

async fn redis_cluster(settings: Settings) -> Cluster {
    let redis = RedisCluster::start(3);
    let settings = settings
        .set("REDIS_URL", redis.url())
        .set("REDIS_CLUSTER", "true");
    Cluster::over(2, settings, Box::new(redis)).await
}

mod redis_cluster {
    use super::*;
    server_api::api_suite!(redis_cluster);
}

/// On a Redis Cluster: closing a room deletes every key of it, its history
/// included, and leaves only the tombstones that keep the closed
/// connections' nodes from re-creating their peers; the room leaves the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_leaves_nothing_of_it_in_redis() {
    let redis = RedisCluster::start(3);
    let port = redis.masters[0].port().to_string();
    let settings = server_api::with_keys(
        Settings::new()
            .set("REDIS_URL", redis.url())
            .set("REDIS_CLUSTER", "true"),
    );
    let keys = |pattern: &str| redis.keys(pattern);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "doomed", "alice").await;
    let (mut bob, _) = join(&c, 1, "doomed", "bob").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "broadcast", "payload": "kept for replay"}))
        .await;
    bob.recv_type("broadcast").await;
    // What the room history keeps (written here as the recording would).
    cli(&["XADD", "sb:{doomed}:history", "*", "type", "room_started"]);
    assert!(keys("sb:{doomed}:*").contains(&"sb:{doomed}:history".to_owned()));
    let api = server_api::Api::of(&c, 0);
    assert_eq!(api.delete("/api/v1/rooms/doomed").await.status, 204);
    alice.expect_close(4003).await;
    bob.expect_close(4003).await;
    assert_eq!(
        keys("sb:{doomed}:*"),
        ["sb:{doomed}:gone:alice", "sb:{doomed}:gone:bob"]
    );
    assert_eq!(cli(&["ZSCORE", "sb:rooms", "doomed"]).trim(), "");
}

#[tokio::test]
async fn without_a_key_every_api_path_is_404() {
    let c = Cluster::embedded(Settings::new()).await;
    for path in ["/api/v1/rooms", "/api/v1/openapi.json", "/api/v1/rooms/r1"] {
        let r = http::get_with(
            c.addr(0),
            path,
            &[("Authorization", &format!("Bearer {}", server_api::KEY))],
        )
        .await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn with_an_internal_listener_the_api_moves_there() {
    let settings = server_api::with_keys(Settings::new().set("INTERNAL_ADDR", "127.0.0.1:0"));
    let c = Cluster::embedded(settings).await;
    let (internal, serves) = c.internal_listener(0).await;
    assert!(serves.contains("/api/v1 (Server API)"), "{serves}");
    let auth = format!("Bearer {}", server_api::KEY);
    let headers = [("Authorization", auth.as_str())];
    let public = http::get_with(c.addr(0), "/api/v1/rooms", &headers).await;
    assert_eq!(public.status, 404, "{}", public.body);
    let inside = http::get_with(internal, "/api/v1/rooms", &headers).await;
    assert_eq!(inside.status, 200, "{}", inside.body);
    assert_eq!(inside.json()["rooms"], serde_json::json!([]));
}
