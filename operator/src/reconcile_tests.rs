//! Reconcile tests against the mock API server: each states the exact calls the
//! operator must make for one situation, and checks the bodies that matter.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use k8s_openapi::ByteString;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{json, Value};

use crate::controller::{
    error_policy, reconcile, BACKOFF_BASE, BACKOFF_MAX, HANDOFF_MANAGER, RESYNC,
};
use crate::crd::SignalingCluster;
use crate::error::Error;
use crate::fixtures::{
    cluster, ready_deployment, ready_redis, test_context, time, Reply, Scenario, Seen,
};
use crate::resources::{self, with_spec_hash};
use crate::status::{self, Observed, Outcome};

async fn run(sc: SignalingCluster, scenario: Scenario) -> (Result<Action, Error>, Vec<Seen>) {
    let (ctx, handle) = test_context();
    let mock = scenario.run(handle);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(sc), ctx.clone()),
    )
    .await
    .expect("reconcile finished");
    drop(ctx);
    let seen = tokio::time::timeout(Duration::from_secs(10), mock)
        .await
        .expect("mock finished")
        .expect("mock scenario held");
    (result, seen)
}

fn writes(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.method != Method::GET)
        .map(|s| format!("{} {}", s.method, s.uri.split('?').next().unwrap()))
        .collect()
}

fn body_of<'a>(seen: &'a [Seen], method: Method, path_end: &str) -> &'a Value {
    &seen
        .iter()
        .find(|s| s.method == method && s.uri.split('?').next().unwrap().ends_with(path_end))
        .unwrap_or_else(|| panic!("no {method} .../{path_end}"))
        .body
}

/// GETs answered with the objects `sc` wants, as if applied earlier, plus ready
/// status on the Deployment and Redis.
fn existing(sc: &SignalingCluster, s: Scenario) -> Scenario {
    let s = s
        .get_object(
            "secrets",
            "chat-redis-auth",
            &resources::redis_auth_secret(sc, "pw"),
        )
        .get_object(
            "configmaps",
            "chat-redis-config",
            &with_spec_hash(resources::redis_configmap(sc).unwrap()),
        )
        .get_object(
            "services",
            "chat-redis",
            &with_spec_hash(resources::redis_service(sc).unwrap()),
        )
        .get_object(
            "networkpolicies",
            "chat-redis",
            &with_spec_hash(resources::redis_network_policy(sc).unwrap()),
        )
        .get_object("statefulsets", "chat-redis", &ready_redis(sc))
        .get_object(
            "serviceaccounts",
            "chat",
            &with_spec_hash(resources::service_account(sc)),
        )
        .get_object(
            "configmaps",
            "chat-config",
            &with_spec_hash(resources::server_configmap(sc)),
        )
        .get_object(
            "deployments",
            "chat",
            &owned_replicas(ready_deployment(sc, 2)),
        )
        .get_object("services", "chat", &with_spec_hash(resources::service(sc)))
        .get_missing("horizontalpodautoscalers", "chat");
    s.get_object(
        "poddisruptionbudgets",
        "chat",
        &with_spec_hash(resources::pdb(sc).unwrap()),
    )
}

/// The first calls after a switch to an external Redis: each object of the
/// managed Redis that `old` had is read and deleted.
fn removing_managed_redis(old: &SignalingCluster) -> Scenario {
    Scenario::default()
        .get_object("statefulsets", "chat-redis", &ready_redis(old))
        .delete("statefulsets", "chat-redis")
        .get_object(
            "services",
            "chat-redis",
            &with_spec_hash(resources::redis_service(old).unwrap()),
        )
        .delete("services", "chat-redis")
        .get_object(
            "networkpolicies",
            "chat-redis",
            &with_spec_hash(resources::redis_network_policy(old).unwrap()),
        )
        .delete("networkpolicies", "chat-redis")
        .get_object(
            "configmaps",
            "chat-redis-config",
            &with_spec_hash(resources::redis_configmap(old).unwrap()),
        )
        .delete("configmaps", "chat-redis-config")
}

/// A Secret holding one key.
fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(crate::fixtures::NS.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// The pod-template annotation `key` of an applied Deployment.
fn pod_annotation<'a>(seen: &'a [Seen], key: &str) -> &'a Value {
    &body_of(seen, Method::PATCH, "deployments/chat")["spec"]["template"]["metadata"]["annotations"]
        [key]
}

/// Marks `spec.replicas` as owned by the operator's field manager.
fn owned_replicas(
    mut d: k8s_openapi::api::apps::v1::Deployment,
) -> k8s_openapi::api::apps::v1::Deployment {
    d.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(crate::controller::MANAGER.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
        ..Default::default()
    }]);
    d
}

/// `sc` with the status a previous reconcile of the existing objects wrote.
fn settled(mut sc: SignalingCluster) -> SignalingCluster {
    let dep = ready_deployment(&sc, 2);
    let redis = ready_redis(&sc);
    let seen = Observed {
        deployment: Some(&dep),
        redis: Some(&redis),
    };
    sc.status = Some(status::compute(&sc, &Outcome::Applied, &seen, time(1)));
    sc
}

#[tokio::test]
async fn new_cluster_creates_everything() {
    let sc = cluster("chat");
    let scenario = Scenario::default()
        .get_missing("secrets", "chat-redis-auth")
        .create("secrets")
        .get_missing("configmaps", "chat-redis-config")
        .apply("configmaps", "chat-redis-config")
        .get_missing("services", "chat-redis")
        .apply("services", "chat-redis")
        .get_missing("networkpolicies", "chat-redis")
        .apply("networkpolicies", "chat-redis")
        .get_missing("statefulsets", "chat-redis")
        .apply("statefulsets", "chat-redis")
        .get_missing("serviceaccounts", "chat")
        .apply("serviceaccounts", "chat")
        .get_missing("configmaps", "chat-config")
        .apply("configmaps", "chat-config")
        .get_missing("deployments", "chat")
        .apply("deployments", "chat")
        .get_missing("services", "chat")
        .apply("services", "chat")
        .get_missing("horizontalpodautoscalers", "chat")
        .get_missing("poddisruptionbudgets", "chat")
        .apply("poddisruptionbudgets", "chat")
        .event()
        .status("chat");
    let (result, seen) = run(sc.clone(), scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));

    // Every apply is server-side apply under the one field manager, forced.
    for s in seen.iter().filter(|s| s.method == Method::PATCH) {
        assert!(
            s.uri.contains("fieldManager=switchboard-operator") && s.uri.contains("force=true"),
            "{}",
            s.uri
        );
    }
    let secret = body_of(&seen, Method::POST, "secrets");
    assert_eq!(secret["metadata"]["name"], "chat-redis-auth");
    assert_eq!(secret["stringData"]["password"].as_str().unwrap().len(), 64);
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(dep["metadata"]["ownerReferences"][0]["uid"], "uid-chat");
    assert!(dep["metadata"]["annotations"][resources::SPEC_HASH_ANNOTATION].is_string());
    let ev = body_of(&seen, Method::POST, "events");
    assert_eq!(ev["reason"], "Applied");
    assert!(
        ev["note"].as_str().unwrap().contains("Deployment chat"),
        "{ev}"
    );
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    assert_eq!(st["redis"], "chat-redis:6379");
    assert_eq!(st["observedGeneration"], 1);
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
}

#[tokio::test]
async fn unchanged_cluster_writes_nothing() {
    let sc = settled(cluster("chat"));
    let (result, seen) = run(sc.clone(), existing(&sc, Scenario::default())).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    assert_eq!(writes(&seen), Vec::<String>::new());
}

#[tokio::test]
async fn replica_change_patches_only_the_deployment_and_status() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.replicas = 3;
    sc.metadata.generation = Some(2);
    let (result, seen) = run(
        sc.clone(),
        existing(&old, Scenario::default()).tap_apply_after("deployments", "chat"),
    )
    .await;
    result.unwrap();
    assert_eq!(
        writes(&seen),
        [
            "PATCH /apis/apps/v1/namespaces/default/deployments/chat",
            "POST /apis/events.k8s.io/v1/namespaces/default/events",
            "PATCH /apis/switchboard.dev/v1alpha1/namespaces/default/signalingclusters/chat/status",
        ]
    );
    assert_eq!(
        body_of(&seen, Method::PATCH, "deployments/chat")["spec"]["replicas"],
        3
    );
    assert_eq!(
        body_of(&seen, Method::PATCH, "chat/status")["status"]["observedGeneration"],
        2
    );
}

#[tokio::test]
async fn config_change_updates_the_configmap_and_rolls_the_pods() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.server.log_level = "debug".into();
    sc.metadata.generation = Some(2);
    let scenario = existing(&old, Scenario::default())
        .tap_apply_after("configmaps", "chat-config")
        .tap_apply_after("deployments", "chat");
    let (result, seen) = run(sc.clone(), scenario).await;
    result.unwrap();
    assert_eq!(
        body_of(&seen, Method::PATCH, "configmaps/chat-config")["data"]["RUST_LOG"],
        "debug"
    );
    let hash = &body_of(&seen, Method::PATCH, "deployments/chat")["spec"]["template"]["metadata"]
        ["annotations"][resources::CONFIG_HASH_ANNOTATION];
    assert_eq!(hash, &json!(resources::config_hash(&sc)));
    assert_ne!(hash, &json!(resources::config_hash(&old)));
}

#[tokio::test]
async fn autoscaling_hands_replicas_to_the_hpa() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.autoscaling = Some(
        serde_json::from_value(json!({"enabled": true, "minReplicas": 2, "maxReplicas": 6}))
            .unwrap(),
    );
    sc.metadata.generation = Some(2);
    let mut s = existing(&old, Scenario::default());
    // After the Deployment GET: the handoff apply, then the operator's apply.
    let at = s
        .calls
        .iter()
        .position(|c| c.path.ends_with("deployments/chat"))
        .unwrap()
        + 1;
    let dep_path = crate::fixtures::path("deployments", "chat");
    s.calls.insert(
        at,
        crate::fixtures::Call {
            method: Method::PATCH,
            path: dep_path.clone(),
            reply: Reply::Echo,
        },
    );
    s.calls.insert(
        at + 1,
        crate::fixtures::Call {
            method: Method::PATCH,
            path: dep_path,
            reply: Reply::Echo,
        },
    );
    // The HPA does not exist yet: create it.
    let at = s
        .calls
        .iter()
        .position(|c| c.path.ends_with("horizontalpodautoscalers/chat"))
        .unwrap()
        + 1;
    s.calls.insert(
        at,
        crate::fixtures::Call {
            method: Method::PATCH,
            path: crate::fixtures::path("horizontalpodautoscalers", "chat"),
            reply: Reply::Echo,
        },
    );
    let s = s.event().status("chat");
    let (result, seen) = run(sc.clone(), s).await;
    result.unwrap();

    let patches: Vec<_> = seen
        .iter()
        .filter(|x| x.method == Method::PATCH && x.uri.contains("deployments/chat"))
        .collect();
    assert_eq!(patches.len(), 2);
    assert!(
        patches[0]
            .uri
            .contains(&format!("fieldManager={HANDOFF_MANAGER}")),
        "{}",
        patches[0].uri
    );
    assert_eq!(patches[0].body["spec"], json!({"replicas": 2}));
    assert!(
        patches[1]
            .uri
            .contains("fieldManager=switchboard-operator&")
            || patches[1]
                .uri
                .ends_with("fieldManager=switchboard-operator")
    );
    assert!(
        patches[1].body["spec"].get("replicas").is_none(),
        "the operator must not own replicas under an HPA"
    );
    let hpa = body_of(&seen, Method::PATCH, "horizontalpodautoscalers/chat");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(2), json!(6))
    );
}

#[tokio::test]
async fn autoscaled_cluster_leaves_replicas_alone_on_later_reconciles() {
    let mut sc = cluster("chat");
    sc.spec.autoscaling = Some(
        serde_json::from_value(json!({"enabled": true, "minReplicas": 2, "maxReplicas": 6}))
            .unwrap(),
    );
    let sc = settled(sc);
    // The HPA scaled the Deployment to 5; the operator's applied object is unchanged.
    let mut dep = ready_deployment(&sc, 2);
    dep.spec.replicas = Some(5);
    let s = Scenario::default()
        .get_object(
            "secrets",
            "chat-redis-auth",
            &resources::redis_auth_secret(&sc, "pw"),
        )
        .get_object(
            "configmaps",
            "chat-redis-config",
            &with_spec_hash(resources::redis_configmap(&sc).unwrap()),
        )
        .get_object(
            "services",
            "chat-redis",
            &with_spec_hash(resources::redis_service(&sc).unwrap()),
        )
        .get_object(
            "networkpolicies",
            "chat-redis",
            &with_spec_hash(resources::redis_network_policy(&sc).unwrap()),
        )
        .get_object("statefulsets", "chat-redis", &ready_redis(&sc))
        .get_object(
            "serviceaccounts",
            "chat",
            &with_spec_hash(resources::service_account(&sc)),
        )
        .get_object(
            "configmaps",
            "chat-config",
            &with_spec_hash(resources::server_configmap(&sc)),
        )
        .get_object("deployments", "chat", &dep)
        .get_object("services", "chat", &with_spec_hash(resources::service(&sc)))
        .get_object(
            "horizontalpodautoscalers",
            "chat",
            &with_spec_hash(resources::hpa(&sc).unwrap()),
        )
        .get_object(
            "poddisruptionbudgets",
            "chat",
            &with_spec_hash(resources::pdb(&sc).unwrap()),
        )
        .status("chat");
    let (result, seen) = run(sc, s).await;
    result.unwrap();
    // Only status changes (5 replicas seen); the Deployment is not touched.
    assert_eq!(
        writes(&seen),
        ["PATCH /apis/switchboard.dev/v1alpha1/namespaces/default/signalingclusters/chat/status"]
    );
}

#[tokio::test]
async fn switching_to_external_redis_removes_the_managed_one() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.redis = serde_json::from_value(json!({"external": {"url": "redis://cache:6379", "passwordSecretRef": {"name": "cache", "key": "pw"}}})).unwrap();
    sc.metadata.generation = Some(2);
    let s = removing_managed_redis(&old)
        .get_object(
            "serviceaccounts",
            "chat",
            &with_spec_hash(resources::service_account(&old)),
        )
        .get_object(
            "configmaps",
            "chat-config",
            &with_spec_hash(resources::server_configmap(&old)),
        )
        .apply("configmaps", "chat-config")
        // The password's value goes into the pod template's secrets hash.
        .get_object("secrets", "cache", &secret("cache", "pw", "one"))
        .get_object(
            "deployments",
            "chat",
            &owned_replicas(ready_deployment(&old, 2)),
        )
        .apply("deployments", "chat")
        .get_object(
            "services",
            "chat",
            &with_spec_hash(resources::service(&old)),
        )
        .get_missing("horizontalpodautoscalers", "chat")
        .get_object(
            "poddisruptionbudgets",
            "chat",
            &with_spec_hash(resources::pdb(&old).unwrap()),
        )
        .event()
        .status("chat");
    let (result, seen) = run(sc.clone(), s).await;
    result.unwrap();
    assert_eq!(
        body_of(&seen, Method::PATCH, "configmaps/chat-config")["data"]["REDIS_URL"],
        "redis://cache:6379"
    );
    let env = &body_of(&seen, Method::PATCH, "deployments/chat")["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    let pw = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "REDIS_PASSWORD")
        .unwrap();
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "cache");
    assert_eq!(
        body_of(&seen, Method::PATCH, "chat/status")["status"]["redis"],
        "redis://cache:6379"
    );
    // The password Secret is kept: switching back must not rotate it.
    assert!(!writes(&seen).iter().any(|w| w.contains("secrets")));
    let r = &sc.spec.redis.external.as_ref().unwrap().password_secret_ref;
    let one = ByteString(b"one".to_vec());
    assert_eq!(
        pod_annotation(&seen, resources::SECRETS_HASH_ANNOTATION),
        &json!(resources::secrets_hash(&[(
            r.as_ref().unwrap(),
            Some(&one)
        )]))
    );
}

/// A cluster with the JWT and TURN secrets in one Secret, as applied while the
/// Secret held `jwt`/`turn` values (`None`: the Secret did not exist).
fn with_auth_secrets(values: Option<(&str, &str)>) -> (SignalingCluster, Deployment) {
    let mut sc = settled(cluster("chat"));
    sc.spec.auth = Some(
        serde_json::from_value(json!({"jwtSecretRef": {"name": "chat-keys", "key": "jwt"}}))
            .unwrap(),
    );
    sc.spec.turn = Some(
        serde_json::from_value(json!({"urls": ["turn:turn.example.com:3478"],
            "secretRef": {"name": "chat-keys", "key": "turn"}}))
        .unwrap(),
    );
    let mut dep = resources::deployment(&sc);
    let (jwt, turn) = values.map_or((None, None), |(j, t)| {
        (
            Some(ByteString(j.as_bytes().to_vec())),
            Some(ByteString(t.as_bytes().to_vec())),
        )
    });
    let refs = resources::secret_refs(&sc);
    let hash = resources::secrets_hash(&[(refs[0], jwt.as_ref()), (refs[1], turn.as_ref())]);
    resources::annotate_pods(&mut dep, resources::SECRETS_HASH_ANNOTATION, hash);
    let mut dep = owned_replicas(with_spec_hash(dep));
    dep.status = ready_deployment(&sc, 2).status;
    (sc, dep)
}

/// Calls of a settled cluster whose Deployment is `dep`, with the Secret
/// `chat-keys` read (once) right before the Deployment.
fn existing_with_keys(sc: &SignalingCluster, dep: &Deployment, keys: Option<Secret>) -> Scenario {
    let mut s = existing(sc, Scenario::default());
    let at = s
        .calls
        .iter()
        .position(|c| c.path.ends_with("/deployments/chat"))
        .unwrap();
    s.calls[at].reply = Reply::Json(serde_json::to_value(dep).unwrap());
    let read = match keys {
        Some(secret) => Scenario::default().get_object("secrets", "chat-keys", &secret),
        None => Scenario::default().get_missing("secrets", "chat-keys"),
    };
    s.calls.splice(at..at, read.calls);
    s
}

/// Drops the status write: a rollout under the same generation leaves the
/// stored status as it is.
fn without_status(mut s: Scenario) -> Scenario {
    s.calls.retain(|c| !c.path.ends_with("/status"));
    s
}

#[tokio::test]
async fn rotating_a_referenced_secret_rolls_the_pods() {
    let keys = |jwt: &str, turn: &str| {
        let mut s = secret("chat-keys", "jwt", jwt);
        s.data
            .as_mut()
            .unwrap()
            .insert("turn".into(), ByteString(turn.as_bytes().to_vec()));
        s.data
            .as_mut()
            .unwrap()
            .insert("unused".into(), ByteString(b"x".to_vec()));
        s
    };
    // Same values: nothing to write.
    let (sc, dep) = with_auth_secrets(Some(("j1", "t1")));
    let (result, seen) = run(
        sc.clone(),
        existing_with_keys(&sc, &dep, Some(keys("j1", "t1"))),
    )
    .await;
    result.unwrap();
    assert_eq!(writes(&seen), Vec::<String>::new());

    // A key the server does not read changes: still nothing.
    let mut other = keys("j1", "t1");
    other
        .data
        .as_mut()
        .unwrap()
        .insert("unused".into(), ByteString(b"y".to_vec()));
    let (result, seen) = run(sc.clone(), existing_with_keys(&sc, &dep, Some(other))).await;
    result.unwrap();
    assert_eq!(writes(&seen), Vec::<String>::new());

    // The TURN secret rotates: the Deployment is applied with a new hash.
    let scenario = existing_with_keys(&sc, &dep, Some(keys("j1", "t2")))
        .tap_apply_after("deployments", "chat");
    let (result, seen) = run(sc.clone(), without_status(scenario)).await;
    result.unwrap();
    let (_, rotated) = with_auth_secrets(Some(("j1", "t2")));
    let rotated = serde_json::to_value(rotated).unwrap();
    assert_eq!(
        pod_annotation(&seen, resources::SECRETS_HASH_ANNOTATION),
        &rotated["spec"]["template"]["metadata"]["annotations"][resources::SECRETS_HASH_ANNOTATION]
    );
    assert_eq!(
        writes(&seen)[0],
        "PATCH /apis/apps/v1/namespaces/default/deployments/chat"
    );

    // Applied before the Secret existed: its creation rolls the pods too.
    let (sc, dep) = with_auth_secrets(None);
    let scenario = existing_with_keys(&sc, &dep, Some(keys("j1", "t1")))
        .tap_apply_after("deployments", "chat");
    let (result, seen) = run(sc.clone(), without_status(scenario)).await;
    result.unwrap();
    assert_eq!(
        writes(&seen)[0],
        "PATCH /apis/apps/v1/namespaces/default/deployments/chat"
    );
}

#[tokio::test]
async fn objects_not_owned_by_the_cluster_are_never_deleted() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.redis =
        serde_json::from_value(json!({"external": {"url": "redis://cache:6379"}})).unwrap();
    let mut foreign = ready_redis(&old);
    foreign.metadata.owner_references = None;
    let s = Scenario::default()
        .get_object("statefulsets", "chat-redis", &foreign)
        .get_missing("services", "chat-redis")
        .get_missing("networkpolicies", "chat-redis")
        .get_missing("configmaps", "chat-redis-config")
        .get_object(
            "serviceaccounts",
            "chat",
            &with_spec_hash(resources::service_account(&sc)),
        )
        .get_object(
            "configmaps",
            "chat-config",
            &with_spec_hash(resources::server_configmap(&sc)),
        )
        .get_object("deployments", "chat", &ready_deployment(&sc, 2))
        .get_object("services", "chat", &with_spec_hash(resources::service(&sc)))
        .get_missing("horizontalpodautoscalers", "chat")
        .get_object(
            "poddisruptionbudgets",
            "chat",
            &with_spec_hash(resources::pdb(&sc).unwrap()),
        )
        .status("chat");
    let (result, seen) = run(sc, s).await;
    result.unwrap();
    assert!(!seen.iter().any(|x| x.method == Method::DELETE));
}

#[tokio::test]
async fn invalid_spec_is_degraded_without_touching_anything() {
    let mut sc = cluster("chat");
    sc.spec.autoscaling = Some(
        serde_json::from_value(json!({"enabled": true, "minReplicas": 9, "maxReplicas": 3}))
            .unwrap(),
    );
    let s = Scenario::default().status("chat").event();
    let (result, seen) = run(sc.clone(), s).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    let degraded = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("InvalidSpec"))
    );
    assert!(degraded["message"]
        .as_str()
        .unwrap()
        .contains("raise maxReplicas or lower minReplicas"));
    let ev = body_of(&seen, Method::POST, "events");
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );

    // Reconciled again with that status stored: no calls at all.
    let mut again = sc;
    let stored: crate::crd::SignalingClusterStatus = serde_json::from_value(st.clone()).unwrap();
    again.status = Some(stored);
    let (result, seen) = run(again, Scenario::default()).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(seen.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn api_errors_are_reported_and_returned() {
    let sc = settled(cluster("chat"));
    let s = Scenario::default()
        .get(
            "secrets",
            "chat-redis-auth",
            Reply::Status(500, "etcd is unhappy".into()),
        )
        .status("chat")
        .event();
    let (result, seen) = run(sc.clone(), s).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("reading Secret chat-redis-auth failed"),
        "{err}"
    );
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    let degraded = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "ReconcileFailed");
    assert!(degraded["message"]
        .as_str()
        .unwrap()
        .contains("etcd is unhappy"));
    // Ready is kept from the last observation.
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(
        body_of(&seen, Method::POST, "events")["reason"],
        "ReconcileFailed"
    );
}

#[tokio::test]
async fn immutable_field_errors_say_what_to_do() {
    let old = settled(cluster("chat"));
    let mut sc = old.clone();
    sc.spec.redis = serde_json::from_value(json!({"managed": {"persistence": false}})).unwrap();
    let s = Scenario::default()
        .get_object("secrets", "chat-redis-auth", &resources::redis_auth_secret(&sc, "pw"))
        .get_object("configmaps", "chat-redis-config", &with_spec_hash(resources::redis_configmap(&old).unwrap()))
        .apply("configmaps", "chat-redis-config")
        .get_object("services", "chat-redis", &with_spec_hash(resources::redis_service(&sc).unwrap()))
        .get_object("networkpolicies", "chat-redis", &with_spec_hash(resources::redis_network_policy(&sc).unwrap()))
        .get_object("statefulsets", "chat-redis", &ready_redis(&old))
        .call(
            Method::PATCH,
            crate::fixtures::path("statefulsets", "chat-redis"),
            Reply::Status(422, "StatefulSet.apps \"chat-redis\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than ... are forbidden".into()),
        )
        .status("chat")
        .event();
    let (result, _) = run(sc, s).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Immutable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("delete the object so the operator recreates it"),
        "{err}"
    );
}

#[tokio::test]
async fn error_policy_backs_off_per_object() {
    let (ctx, _handle) = test_context();
    let a = Arc::new(cluster("a"));
    let b = Arc::new(cluster("b"));
    let err = || Error::MissingNamespace;
    assert_eq!(
        error_policy(a.clone(), &err(), ctx.clone()),
        Action::requeue(BACKOFF_BASE)
    );
    assert_eq!(
        error_policy(a.clone(), &err(), ctx.clone()),
        Action::requeue(BACKOFF_BASE * 2)
    );
    assert_eq!(
        error_policy(a.clone(), &err(), ctx.clone()),
        Action::requeue(BACKOFF_BASE * 4)
    );
    // Another object starts from the base delay.
    assert_eq!(
        error_policy(b.clone(), &err(), ctx.clone()),
        Action::requeue(BACKOFF_BASE)
    );
    for _ in 0..40 {
        error_policy(a.clone(), &err(), ctx.clone());
    }
    assert_eq!(
        error_policy(a.clone(), &err(), ctx.clone()),
        Action::requeue(BACKOFF_MAX)
    );
    // Success forgets the failures.
    ctx.reset_backoff(&ObjectRef::from_obj(&*a));
    assert_eq!(
        error_policy(a, &err(), ctx.clone()),
        Action::requeue(BACKOFF_BASE)
    );
    assert!(ctx
        .metrics
        .render()
        .contains("switchboard_operator_reconcile_failures_total{error=\"missing_namespace\"} 46"));
}

impl Scenario {
    /// Inserts an apply right after the GET of `kind/name`, and appends the event
    /// and status write that follow a change.
    fn tap_apply_after(mut self, kind: &str, name: &str) -> Self {
        let p = crate::fixtures::path(kind, name);
        let at = self
            .calls
            .iter()
            .position(|c| c.path == p && c.method == Method::GET)
            .unwrap()
            + 1;
        self.calls.insert(
            at,
            crate::fixtures::Call {
                method: Method::PATCH,
                path: p,
                reply: Reply::Echo,
            },
        );
        if !self.calls.iter().any(|c| c.path.ends_with("/status")) {
            self = self.event().status("chat");
        }
        self
    }
}

#[tokio::test]
async fn periodic_full_apply_undoes_drift_and_reports_only_real_changes() {
    let sc = settled(cluster("chat"));
    fn at_rv<T: serde::Serialize>(obj: &T) -> Value {
        let mut v = serde_json::to_value(obj).unwrap();
        v["metadata"]["resourceVersion"] = json!("5");
        v
    }
    // Someone edited the Deployment's image; its spec-hash annotation still matches.
    let mut drifted = owned_replicas(ready_deployment(&sc, 2));
    drifted.spec.template.spec.as_mut().unwrap().containers[0].image = Some("evil:1".into());
    let mut s = Scenario::default().get_object(
        "secrets",
        "chat-redis-auth",
        &resources::redis_auth_secret(&sc, "pw"),
    );
    let same: Vec<(&str, &str, Value)> = vec![
        (
            "configmaps",
            "chat-redis-config",
            at_rv(&with_spec_hash(resources::redis_configmap(&sc).unwrap())),
        ),
        (
            "services",
            "chat-redis",
            at_rv(&with_spec_hash(resources::redis_service(&sc).unwrap())),
        ),
        (
            "networkpolicies",
            "chat-redis",
            at_rv(&with_spec_hash(
                resources::redis_network_policy(&sc).unwrap(),
            )),
        ),
        ("statefulsets", "chat-redis", at_rv(&ready_redis(&sc))),
        (
            "serviceaccounts",
            "chat",
            at_rv(&with_spec_hash(resources::service_account(&sc))),
        ),
        (
            "configmaps",
            "chat-config",
            at_rv(&with_spec_hash(resources::server_configmap(&sc))),
        ),
    ];
    for (kind, name, obj) in same {
        s = s.get(kind, name, Reply::Json(obj.clone())).call(
            Method::PATCH,
            crate::fixtures::path(kind, name),
            Reply::Json(obj),
        );
    }
    s = s
        .get("deployments", "chat", Reply::Json(at_rv(&drifted)))
        .apply("deployments", "chat");
    let svc = at_rv(&with_spec_hash(resources::service(&sc)));
    s = s.get("services", "chat", Reply::Json(svc.clone())).call(
        Method::PATCH,
        crate::fixtures::path("services", "chat"),
        Reply::Json(svc),
    );
    s = s.get_missing("horizontalpodautoscalers", "chat");
    let pdb = at_rv(&with_spec_hash(resources::pdb(&sc).unwrap()));
    s = s
        .get("poddisruptionbudgets", "chat", Reply::Json(pdb.clone()))
        .call(
            Method::PATCH,
            crate::fixtures::path("poddisruptionbudgets", "chat"),
            Reply::Json(pdb),
        )
        .event();

    let (ctx, handle) = test_context();
    ctx.make_full_apply_due(&ObjectRef::from_obj(&sc));
    let mock = s.run(handle);
    reconcile(Arc::new(sc), ctx.clone()).await.unwrap();
    drop(ctx);
    let seen = mock.await.unwrap();
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    assert_ne!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "evil:1"
    );
    let note = body_of(&seen, Method::POST, "events")["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(note, "Applied Deployment chat");
}

#[tokio::test]
async fn first_sighting_does_not_force_a_full_apply() {
    let (ctx, _handle) = test_context();
    let obj = ObjectRef::from_obj(&cluster("chat"));
    assert!(!ctx.full_apply_due(&obj));
    assert!(!ctx.full_apply_due(&obj));
    ctx.make_full_apply_due(&obj);
    assert!(ctx.full_apply_due(&obj));
    assert!(
        !ctx.full_apply_due(&obj),
        "the clock restarts after a full apply"
    );
}

/// (API group, resource) of a request path.
fn group_resource(uri: &str) -> (String, String) {
    let path = uri.split('?').next().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = if parts[0] == "api" {
        ("", &parts[2..])
    } else {
        (parts[1], &parts[3..])
    };
    let rest = if rest.first() == Some(&"namespaces") {
        &rest[2..]
    } else {
        rest
    };
    let resource = match rest {
        [plural, _, sub] => format!("{plural}/{sub}"),
        [plural, ..] => plural.to_string(),
        [] => panic!("no resource in {uri}"),
    };
    (group.to_string(), resource)
}

#[tokio::test]
async fn rbac_grants_every_call_the_operator_makes() {
    // Every kind the operator touches, from a new cluster and a managed -> external switch.
    let sc = cluster("chat");
    let (_, mut seen) = run(sc.clone(), {
        let s = Scenario::default()
            .get_missing("secrets", "chat-redis-auth")
            .create("secrets");
        let mut s = s;
        for (kind, name) in [
            ("configmaps", "chat-redis-config"),
            ("services", "chat-redis"),
            ("networkpolicies", "chat-redis"),
            ("statefulsets", "chat-redis"),
            ("serviceaccounts", "chat"),
            ("configmaps", "chat-config"),
            ("deployments", "chat"),
            ("services", "chat"),
        ] {
            s = s.get_missing(kind, name).apply(kind, name);
        }
        s.get_missing("horizontalpodautoscalers", "chat")
            .get_missing("poddisruptionbudgets", "chat")
            .apply("poddisruptionbudgets", "chat")
            .event()
            .status("chat")
    })
    .await;
    let old = settled(cluster("chat"));
    let mut ext = old.clone();
    ext.spec.redis =
        serde_json::from_value(json!({"external": {"url": "redis://cache:6379"}})).unwrap();
    let (_, more) = run(
        ext.clone(),
        removing_managed_redis(&old)
            .get_object(
                "serviceaccounts",
                "chat",
                &with_spec_hash(resources::service_account(&ext)),
            )
            .get_object(
                "configmaps",
                "chat-config",
                &with_spec_hash(resources::server_configmap(&ext)),
            )
            .get_object("deployments", "chat", &ready_deployment(&ext, 2))
            .get_object(
                "services",
                "chat",
                &with_spec_hash(resources::service(&ext)),
            )
            .get_object(
                "horizontalpodautoscalers",
                "chat",
                &with_spec_hash(
                    resources::hpa(&{
                        let mut a = ext.clone();
                        a.spec.autoscaling =
                            Some(serde_json::from_value(json!({"enabled": true})).unwrap());
                        a
                    })
                    .unwrap(),
                ),
            )
            .delete("horizontalpodautoscalers", "chat")
            .get_object(
                "poddisruptionbudgets",
                "chat",
                &with_spec_hash(resources::pdb(&ext).unwrap()),
            )
            .event()
            .status("chat"),
    )
    .await;
    seen.extend(more);

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../k8s/operator/rbac.yaml"
    ))
    .unwrap();
    let mut granted = std::collections::HashSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" {
            continue;
        }
        for r in v["rules"].as_array().unwrap() {
            for g in r["apiGroups"].as_array().unwrap() {
                for res in r["resources"].as_array().unwrap() {
                    for verb in r["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_string(),
                            res.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    let mut needed = std::collections::BTreeSet::new();
    for s in &seen {
        let (g, r) = group_resource(&s.uri);
        let verb = match s.method.as_str() {
            "GET" => "get",
            "POST" => "create",
            "PATCH" => "patch",
            "DELETE" => "delete",
            m => panic!("unexpected method {m}"),
        };
        needed.insert((g.clone(), r.clone(), verb.to_string()));
        // Applied objects are also watched (list + watch) and may be created by the apply.
        if s.method == Method::PATCH && !r.contains('/') && r != "events" {
            for v in ["list", "watch", "create"] {
                needed.insert((g.clone(), r.clone(), v.to_string()));
            }
        }
    }
    let missing: Vec<_> = needed.iter().filter(|t| !granted.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "k8s/operator/rbac.yaml lacks {missing:?}"
    );
}
