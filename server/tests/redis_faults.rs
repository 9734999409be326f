//! Redis-backed clusters under faults and in their less common setups, all
//! with real processes: Redis killed and restarted empty under live
//! connections, a password-protected Redis (and a wrong password), Redis over
//! TLS with a CA made at test time, the race of many nodes for a room's last
//! seat, the keys a crashed node leaves behind, a peer Redis lost restored on
//! its next request, a node cut off past the resume window closing its
//! removed peers with 4001, and the scripts' library loaded again after
//! Redis dropped it. Faults under paced traffic are in
//! `faults_under_traffic.rs`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::redis::{Redis, RedisOptions};
use support::{assert_error, join, peer_ids, sorted, ty, Cluster, Settings};

/// Bound of every wait for a state change in this file.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn redis_restart_without_persistence_is_survived_without_reconnecting() {
    let mut redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .fast_failure_detection();
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    assert_eq!(alice.recv_type("peer_joined").await["peer"]["peer"], "bob");

    redis.kill();
    c.wait_ready(0, 503).await;
    c.wait_ready(1, 503).await;
    // The sockets stay open; operations that need Redis say so.
    alice.ping().await;
    let reply = alice
        .request(json!({"type": "signal", "to": "bob", "payload": 1}))
        .await;
    assert_error(&reply, "UNAVAILABLE");
    let body = c.get(0, "/ready").await.json();
    assert_eq!(body["backend"]["healthy"], false, "{body}");

    redis.restart();
    c.wait_ready(0, 200).await;
    c.wait_ready(1, 200).await;
    // Both nodes re-registered their peers and subscriptions: the room works
    // again without anyone reconnecting.
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": {"n": 1}}))
        .await;
    let ev = bob.recv_type("signal").await;
    assert_eq!(
        (ev["from"].as_str(), ev["payload"]["n"].as_u64()),
        (Some("alice"), Some(1))
    );
    bob.request_ok(json!({"type": "broadcast", "payload": "back"}))
        .await;
    assert_eq!(alice.recv_type("broadcast").await["payload"], "back");
    let peers = bob.request(json!({"type": "discover"})).await;
    assert_eq!(peer_ids(&peers["peers"]), sorted(&["alice"]));
    // The state was lost with Redis and starts over.
    alice
        .request_ok(json!({"type": "set_state", "patch": {"k": 1}}))
        .await;
    for client in [&mut alice, &mut bob] {
        let ev = client.recv_type("state").await;
        assert_eq!(ev["version"], 1, "{ev}");
    }
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

#[tokio::test]
async fn password_protected_redis() {
    let redis = Redis::start(RedisOptions {
        password: Some("s3cret/pw".into()),
        ..Default::default()
    });
    assert!(redis.url().contains(":s3cret/pw@"));
    // The password from REDIS_PASSWORD, composed into the URL by the server.
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let settings = Settings::new()
        .set("REDIS_URL", url)
        .set("REDIS_PASSWORD", "s3cret/pw");
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": "hi"}))
        .await;
    assert_eq!(alice.recv_type("signal").await["payload"], "hi");
    let keys = redis.cli(&["--scan", "--pattern", "sb:*"]);
    assert!(keys.contains("sb:{r1}:peers"), "keys: {keys}");
}

#[tokio::test]
async fn wrong_redis_password_fails_fast_with_a_clear_error() {
    let redis = Redis::start(RedisOptions {
        password: Some("right".into()),
        ..Default::default()
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env(
            "REDIS_URL",
            format!("redis://:wrong@127.0.0.1:{}", redis.port()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard");
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node with a wrong Redis password kept running");
        }
        // Waiting for a process to exit: poll its status.
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("REDIS_URL"),
        "the error should say what to check: {text}"
    );
    assert!(
        !text.contains("wrong@"),
        "the password must not be logged: {text}"
    );
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let redis = Redis::start(RedisOptions {
        tls: true,
        ..Default::default()
    });
    assert!(redis.url().starts_with("rediss://"));
    let ca = redis.ca_file().expect("TLS server has a CA");
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .set("REDIS_TLS_CA_FILE", ca.display());
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(bob.recv_type("signal").await["payload"]["sdp"], "v=0");
    assert_eq!(c.get(0, "/status").await.json()["backend"]["healthy"], true);
}

#[tokio::test]
async fn concurrent_joins_never_exceed_the_room_limit() {
    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .set("MAX_PEERS_PER_ROOM", 3);
    let c = Cluster::over(3, settings, Box::new(())).await;
    let (mut first, _) = join(&c, 0, "r1", "first").await;
    // Eight contenders on three nodes race for the two free seats.
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(c.connect(i).await);
    }
    let results =
        futures_util::future::join_all(clients.iter_mut().enumerate().map(|(i, client)| {
            client.request(json!({"type": "join", "room": "r1", "peer": format!("p{i}")}))
        }))
        .await;
    let joined = results.iter().filter(|r| ty(r) == "joined").count();
    let full = results.iter().filter(|r| r["code"] == "ROOM_FULL").count();
    assert_eq!((joined, full), (2, 6), "{results:?}");
    let peers = first.request(json!({"type": "discover"})).await;
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(2), "{peers}");
}

#[tokio::test]
async fn a_crashed_node_leaves_no_keys_behind() {
    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .set("RESUME_WINDOW_SECS", 1)
        .fast_failure_detection();
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (_bob, _) = join(&c, 1, "r1", "bob").await;
    let (_carol, _) = join(&c, 1, "r2", "carol").await;
    alice.recv_type("peer_joined").await;
    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 1}}))
        .await;
    alice.recv_type("state").await;

    c.node(1).kill();
    let left = alice.recv_json_timeout(CHANGE_TIMEOUT).await;
    assert_eq!(
        (ty(&left), left["peer"].as_str(), left["reason"].as_str()),
        ("peer_left", Some("bob"), Some("node_lost")),
        "{left}"
    );
    // Room r2 had only carol, on the dead node: every key of it is gone once
    // its window passed, but for the tombstones that tell a node which was
    // only cut off that its peers are gone (they expire like room keys), and
    // the room history with its webhook counter, which outlive the room by
    // design (until HISTORY_MAX_AGE_SECS; their TTL is checked below).
    // Poll: the expiry sweep runs on its own schedule.
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let keys = redis.cli(&["--scan", "--pattern", "*"]);
        let leftover: Vec<&str> = keys
            .lines()
            .filter(|k| !k.contains(":gone:"))
            .filter(|k| !k.ends_with("}:history") && !k.ends_with("}:hook"))
            .filter(|k| {
                k.starts_with("sb:{r2}")
                    || k.contains("node-1")
                    || k.contains("e:bob")
                    || k.contains("p:bob")
            })
            .collect();
        if leftover.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys of the dead node left: {leftover:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No key lives forever.
    for key in redis
        .cli(&["--scan", "--pattern", "*"])
        .lines()
        .filter(|k| !k.is_empty())
    {
        let ttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap_or(-3);
        // -2: deleted since the scan (a webhook lease released, a list
        // drained); -1 is the failure this looks for.
        assert!(ttl > 0 || ttl == -2, "key {key} has no TTL ({ttl})");
    }
    // The survivors' room still works.
    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 2}}))
        .await;
    assert_eq!(alice.recv_type("state").await["version"], 2);
}

#[tokio::test]
async fn a_node_restarted_under_the_same_id_does_not_inherit_dead_peers() {
    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .set("RESUME_WINDOW_SECS", 1)
        .fast_failure_detection();
    let c = Cluster::over(2, settings.clone(), Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (_bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    // A fixed SERVER_ID, as with a pod or compose service name: the process
    // restarts under the same id right after the crash.
    c.node(1).kill();
    let restarted =
        support::ServerProcess::start("node-1", &settings.set("SERVER_ID", "node-1")).await;
    let left = alice.recv_json_timeout(CHANGE_TIMEOUT).await;
    assert_eq!(
        (ty(&left), left["peer"].as_str(), left["reason"].as_str()),
        ("peer_left", Some("bob"), Some("node_lost")),
        "{left}"
    );
    let mut carol = support::Client::connect(&restarted.ws_url()).await;
    let joined = carol
        .request(json!({"type": "join", "room": "r1", "peer": "carol"}))
        .await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice"]), "{joined}");
    assert_eq!(
        alice.recv_type("peer_joined").await["peer"]["peer"],
        "carol"
    );
}

#[tokio::test]
async fn a_peer_redis_lost_is_restored_on_its_next_request() {
    let redis = Redis::start(RedisOptions::default());
    let c = Cluster::over(
        2,
        Settings::new().set("REDIS_URL", redis.url()),
        Box::new(()),
    )
    .await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    // Redis loses alice's records (as after a restart without persistence)
    // while her node's heartbeat has not noticed yet.
    redis.cli(&["HDEL", "sb:{r1}:peers", "alice"]);
    redis.cli(&["DEL", "sb:{r1}:p:alice", "sb:{r1}:e:alice"]);
    // Her node restores her and the request goes through: never NOT_JOINED.
    alice
        .request_ok(json!({"type": "broadcast", "payload": 1}))
        .await;
    assert_eq!(bob.recv_type("broadcast").await["payload"], 1);
    let peers = bob.request(json!({"type": "discover"})).await;
    assert_eq!(peer_ids(&peers["peers"]), sorted(&["alice"]), "{peers}");
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": 2}))
        .await;
    assert_eq!(alice.recv_type("signal").await["payload"], 2);
}

#[tokio::test]
async fn a_function_library_redis_dropped_is_loaded_again() {
    let redis = Redis::start(RedisOptions::default());
    let c = Cluster::over(
        2,
        Settings::new().set("REDIS_URL", redis.url()),
        Box::new(()),
    )
    .await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    // Both nodes run the same build: one library, loaded once.
    let libraries = redis.cli(&["FUNCTION", "LIST"]);
    assert_eq!(libraries.matches("switchboard_").count(), 1, "{libraries}");
    // Redis loses the library (FUNCTION FLUSH, or a restart that kept the
    // data but not the functions): the next call of each node loads it again.
    assert_eq!(redis.cli(&["FUNCTION", "FLUSH"]).trim(), "OK");
    alice
        .request_ok(json!({"type": "signal", "to": "bob", "payload": 1}))
        .await;
    assert_eq!(bob.recv_type("signal").await["payload"], 1);
    assert_eq!(redis.cli(&["FUNCTION", "FLUSH"]).trim(), "OK");
    bob.request_ok(json!({"type": "broadcast", "payload": 2}))
        .await;
    assert_eq!(alice.recv_type("broadcast").await["payload"], 2);
    assert!(redis.cli(&["FUNCTION", "LIST"]).contains("switchboard_"));
}

/// Sends a signal to a process through `kill(1)` (no unsafe, no libc).
fn signal_process(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill {signal} {pid} failed: {status}");
}

#[tokio::test]
async fn a_node_cut_off_past_the_window_closes_its_removed_peers_with_4001() {
    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .set("RESUME_WINDOW_SECS", 1)
        .fast_failure_detection();
    let c = Cluster::over(2, settings, Box::new(())).await;
    let (mut alice, _) = join(&c, 0, "r1", "alice").await;
    let (mut bob, _) = join(&c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    // Node 1 stops answering (as behind a partition) long enough to be
    // declared dead and for bob's window to pass: the room sees bob leave.
    signal_process(c.node(1).pid(), "-STOP");
    let left = alice.recv_json_timeout(CHANGE_TIMEOUT).await;
    signal_process(c.node(1).pid(), "-CONT");
    assert_eq!(
        (ty(&left), left["peer"].as_str(), left["reason"].as_str()),
        ("peer_left", Some("bob"), Some("node_lost")),
        "{left}"
    );
    // When node 1 is back it must not bring bob back as a ghost: it closes
    // his connection with 4001, and his client joins afresh.
    let (code, before) = bob.closed(CHANGE_TIMEOUT).await;
    assert_eq!(code, Some(4001), "bob got {before:?}");
    assert!(
        before.iter().all(|m| m["code"] != "NOT_JOINED"),
        "{before:?}"
    );
    let peers = alice.request(json!({"type": "discover"})).await;
    assert_eq!(peer_ids(&peers["peers"]), Vec::<String>::new(), "{peers}");
    let (_bob, joined) = join(&c, 1, "r1", "bob").await;
    assert_eq!(joined["recovered"], serde_json::Value::Null, "{joined}");
    assert_eq!(alice.recv_type("peer_joined").await["peer"]["peer"], "bob");
}
