//! Tests of the managed Redis objects and of the storage that cannot change in
//! place.

use super::*;
use crate::fixtures::{cluster, json, with_spec};
use serde_json::json;

#[test]
fn endpoint_never_shows_a_password() {
    assert_eq!(strip_userinfo("redis://u:p@h:1/0"), "redis://h:1/0");
    assert_eq!(strip_userinfo("rediss://h:1"), "rediss://h:1");
}

#[test]
fn managed_redis_statefulset() {
    let sc = cluster("chat");
    let s = json(&redis_statefulset(&sc).unwrap());
    assert_eq!(s["spec"]["replicas"], 1);
    assert_eq!(s["spec"]["serviceName"], "chat-redis");
    let claim = &s["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "1Gi");
    let c = &s["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], crate::crd::DEFAULT_REDIS_IMAGE);
    let start = c["command"][2].as_str().unwrap();
    assert!(
        start.contains("--requirepass \"$REDIS_PASSWORD\""),
        "{start}"
    );
    // maxmemory is 75 % of the memory limit, which the downward API hands over.
    assert!(
        start.contains("--maxmemory \"$(( REDIS_MEMORY_LIMIT / 100 * 75 ))\""),
        "{start}"
    );
    assert_eq!(
        c["resources"]["limits"]["memory"],
        DEFAULT_REDIS_MEMORY_LIMIT
    );
    let env: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, [MEMORY_LIMIT_ENV, "REDIS_PASSWORD", "REDISCLI_AUTH"]);
    assert_eq!(
        c["env"][0]["valueFrom"]["resourceFieldRef"],
        json!({"containerName": "redis", "resource": "limits.memory", "divisor": "1"})
    );
    assert!(redis_conf(&ManagedRedis::default()).contains("appendonly yes"));
    assert!(redis_conf(&ManagedRedis::default()).contains("maxmemory-policy noeviction"));
    let svc = json(&redis_service(&sc).unwrap());
    assert_eq!(svc["spec"]["clusterIP"], "None");
    let np = json(&redis_network_policy(&sc).unwrap());
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "redis"
    );
    let rule = &np["spec"]["ingress"][0];
    let from = &rule["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(
        (
            &from["app.kubernetes.io/component"],
            &from["app.kubernetes.io/instance"]
        ),
        (&json!("server"), &json!("chat"))
    );
    assert_eq!(rule["ports"][0]["port"], 6379);
}

#[test]
fn managed_redis_without_persistence_or_auth() {
    let sc = with_spec(
        json!({"redis": {"managed": {"persistence": false, "auth": false, "storage": {"storageClassName": "fast"}}}}),
    );
    let s = json(&redis_statefulset(&sc).unwrap());
    assert!(s["spec"].get("volumeClaimTemplates").is_none());
    let pod = &s["spec"]["template"]["spec"];
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "data" && v["emptyDir"].is_object()));
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert_eq!(env.len(), 1, "only the memory limit: {env:?}");
    assert!(!pod["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .contains("requirepass"));
    let d = json(&deployment(&sc));
    let server_env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(server_env.iter().all(|e| e["name"] != "REDIS_PASSWORD"));
    assert!(redis_conf(&managed_redis(&sc).unwrap()).contains("appendonly no"));
}

#[test]
fn passwords_are_random_and_long() {
    let (a, b) = (generate_password(), generate_password());
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
    let s = redis_auth_secret(&cluster("chat"), &a);
    assert_eq!(s.string_data.unwrap()[REDIS_PASSWORD_KEY], a);
}

#[test]
fn storage_is_read_back_from_a_statefulset() {
    let sc = with_spec(
        json!({"redis": {"managed": {"storage": {"size": "3Gi", "storageClassName": "fast"}}}}),
    );
    let m = managed_redis(&sc).unwrap();
    let wanted = RedisStorage::wanted(&m);
    let sts = redis_statefulset(&sc).unwrap();
    assert_eq!(RedisStorage::of(&sts), wanted);
    // Built with another storage: only the storage differs.
    let live = RedisStorage {
        persistence: true,
        size: "1Gi".into(),
        class: None,
    };
    let kept = redis_statefulset_with(&sc, &m, &live);
    assert_eq!(RedisStorage::of(&kept), live);
    assert_eq!(kept.spec.template, sts.spec.template);
    let ephemeral = RedisStorage {
        persistence: false,
        size: String::new(),
        class: None,
    };
    assert_eq!(
        RedisStorage::of(&redis_statefulset_with(&sc, &m, &ephemeral)),
        ephemeral
    );
}

#[test]
fn storage_change_messages_name_the_field_and_the_procedure() {
    let sc = cluster("chat");
    let live = RedisStorage {
        persistence: true,
        size: "1Gi".into(),
        class: None,
    };
    let bigger = RedisStorage {
        size: "5Gi".into(),
        ..live.clone()
    };
    let m = storage_change_message(&sc, &live, &bigger);
    assert!(
        m.starts_with(
            "spec.redis.managed.storage.size is 5Gi but the Redis volume was created with 1Gi"
        ),
        "{m}"
    );
    assert!(
        m.contains("kubectl -n default patch pvc data-chat-redis-0"),
        "{m}"
    );
    assert!(
        m.contains(r#"{"spec":{"resources":{"requests":{"storage":"5Gi"}}}}"#),
        "{m}"
    );
    assert!(
        m.contains("delete statefulset chat-redis --cascade=orphan"),
        "{m}"
    );

    let ephemeral = RedisStorage {
        persistence: false,
        ..live.clone()
    };
    let m = storage_change_message(&sc, &live, &ephemeral);
    assert!(
        m.starts_with("spec.redis.managed.persistence is false"),
        "{m}"
    );
    assert!(m.contains("delete pvc data-chat-redis-0"), "{m}");
    let fast = RedisStorage {
        class: Some("fast".into()),
        ..live.clone()
    };
    let m = storage_change_message(&sc, &live, &fast);
    assert!(
        m.starts_with("spec.redis.managed.storage.storageClassName is \"fast\""),
        "{m}"
    );
}
