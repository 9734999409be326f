//! After the first install: storage changes the StatefulSet cannot take, an
//! object the API server refuses, autoscaling (slow scale-down, no requests,
//! the replica handoff), rotated Secrets, and the objects that expose and
//! monitor the servers.

use super::*;
use crate::apply::HANDOFF_MANAGER;
use crate::controller::RESYNC;
use crate::fixtures::mock::Reply;
use crate::fixtures::{cluster, existing, json, put};
use crate::resources as res;

/// A settled cluster with CPU requests (so autoscaling may be turned on).
fn with_requests() -> SignalingCluster {
    let mut sc = cluster("chat");
    sc.spec.resources = serde_json::from_value(json!({"requests": {"cpu": "100m"}})).unwrap();
    settled(sc)
}

#[tokio::test]
async fn storage_change_is_reported_while_the_rest_of_the_edit_applies() {
    let old = settled(cluster("chat"));
    // One edit: a bigger Redis volume, a new server image and a log level.
    let sc = edited(
        &old,
        json!({"redis": {"managed": {"storage": {"size": "5Gi"}}},
               "image": {"tag": "9.9.9"}, "server": {"logLevel": "debug"}}),
    );
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .applies(&[("configmaps", "chat-config"), ("deployments", "chat")])
        .event()
        .status("chat")
        .event();
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
    // Nothing failed: the reconcile succeeds and comes back at the resync.
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    // The StatefulSet was not touched (its storage cannot change), the rest was.
    assert!(
        !writes(&seen).iter().any(|w| w.contains("statefulsets")),
        "{:?}",
        writes(&seen)
    );
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    let image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(image.ends_with(":9.9.9"), "{image}");
    let msg = expect_condition(&seen, "Degraded", "True", "ManualStepNeeded");
    assert!(
        msg.starts_with(
            "spec.redis.managed.storage.size is 5Gi but the Redis volume was created with 1Gi"
        ),
        "{msg}"
    );
    assert!(msg.contains("patch pvc data-chat-redis-0"), "{msg}");
    // Ready is about serving, which goes on.
    assert_eq!(written_condition(&seen, "Ready")["status"], "True");
    let warning = seen.iter().rfind(|s| s.method == Method::POST).unwrap();
    assert_eq!(warning.body["reason"], "ManualStepNeeded");
}

#[tokio::test]
async fn redis_changes_still_apply_around_a_storage_change() {
    let old = settled(cluster("chat"));
    let sc = edited(
        &old,
        json!({"redis": {"managed": {"image": "redis:8.4-alpine", "storage": {"size": "5Gi", "storageClassName": "fast"}}}}),
    );
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .apply("statefulsets", "chat-redis")
        .event()
        .status("chat")
        .event();
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
    result.unwrap();
    let sts = body_of(&seen, Method::PATCH, "statefulsets/chat-redis");
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "redis:8.4-alpine"
    );
    // The claim template is the one the StatefulSet has, so the apply is legal.
    let claim = &sts["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "1Gi");
    assert!(claim.get("storageClassName").is_none());
    let msg = written_condition(&seen, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("spec.redis.managed.storage.storageClassName is \"fast\""),
        "{msg}"
    );
}

#[tokio::test]
async fn a_refused_object_never_blocks_the_others() {
    let old = settled(cluster("chat"));
    // A Redis image change the API server refuses (say, an admission policy),
    // in the same edit as a server image change.
    let sc = edited(
        &old,
        json!({"redis": {"managed": {"image": "redis:bad"}}, "image": {"tag": "9.9.9"}}),
    );
    let refused = "StatefulSet.apps \"chat-redis\" is invalid: spec: Forbidden: denied by policy";
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .call(
            Method::PATCH,
            crate::fixtures::mock::path("statefulsets", "chat-redis"),
            Reply::Status(422, refused.into()),
        )
        .apply("deployments", "chat")
        .event()
        .status("chat")
        .event();
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Immutable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("applying StatefulSet chat-redis was rejected"),
        "{err}"
    );
    // The Deployment got its new image although the StatefulSet failed first.
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    assert!(dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with(":9.9.9"));
    let msg = expect_condition(&seen, "Degraded", "True", "ReconcileFailed");
    assert!(msg.contains("denied by policy"), "{msg}");
    let applied = body_of(&seen, Method::POST, "events");
    assert_eq!(applied["note"], "Applied Deployment chat");
}

#[tokio::test]
async fn several_failures_are_all_reported() {
    let old = settled(cluster("chat"));
    let sc = edited(
        &old,
        json!({"redis": {"managed": {"image": "redis:bad"}}, "image": {"tag": "9.9.9"}}),
    );
    let scenario = Scenario::default()
        .get(
            "secrets",
            "chat-redis-auth",
            Reply::Status(500, "etcd is unhappy".into()),
        )
        .call(
            Method::PATCH,
            crate::fixtures::mock::path("statefulsets", "chat-redis"),
            Reply::Status(500, "timeout".into()),
        )
        .call(
            Method::PATCH,
            crate::fixtures::mock::path("deployments", "chat"),
            Reply::Status(500, "timeout".into()),
        )
        .status("chat")
        .event();
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
    let err = result.unwrap_err();
    assert!(matches!(&err, Error::Partial(e) if e.len() == 3), "{err:?}");
    let msg = written_condition(&seen, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    for what in [
        "reading Secret chat-redis-auth",
        "applying StatefulSet chat-redis",
        "applying Deployment chat",
    ] {
        assert!(msg.contains(what), "{what} missing from {msg}");
    }
}

#[tokio::test]
async fn autoscaling_hands_replicas_to_the_hpa_with_a_slow_scale_down() {
    let old = with_requests();
    let sc = edited(
        &old,
        json!({"autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 6,
               "scaleDown": {"stabilizationWindowSeconds": 900, "pods": 1, "periodSeconds": 300}}}),
    );
    let mut cached = existing(&old);
    put(
        &mut cached,
        json(&owned_replicas(ready_deployment(&old, 2))),
    );
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        // The handoff apply, then the operator's apply without replicas.
        .applies(&[
            ("deployments", "chat"),
            ("deployments", "chat"),
            ("horizontalpodautoscalers", "chat"),
        ])
        .event()
        .status("chat");
    let (result, seen) = run_with(sc, &cached, scenario).await;
    result.unwrap();
    let patches: Vec<_> = seen
        .iter()
        .filter(|x| x.method == Method::PATCH && x.uri.contains("deployments/chat"))
        .collect();
    assert!(
        patches[0]
            .uri
            .contains(&format!("fieldManager={HANDOFF_MANAGER}")),
        "{}",
        patches[0].uri
    );
    assert_eq!(patches[0].body["spec"], json!({"replicas": 2}));
    let manager = |uri: &str| {
        uri.split(['?', '&'])
            .find_map(|p| p.strip_prefix("fieldManager="))
            .map(String::from)
    };
    assert_eq!(
        manager(&patches[1].uri).as_deref(),
        Some("switchboard-operator")
    );
    assert!(
        patches[1].body["spec"].get("replicas").is_none(),
        "the operator must not own replicas under an HPA"
    );
    let hpa = body_of(&seen, Method::PATCH, "horizontalpodautoscalers/chat");
    assert_eq!(
        (&hpa["spec"]["minReplicas"], &hpa["spec"]["maxReplicas"]),
        (&json!(2), &json!(6))
    );
    let down = &hpa["spec"]["behavior"]["scaleDown"];
    assert_eq!(down["stabilizationWindowSeconds"], 900);
    assert_eq!(
        down["policies"],
        json!([{"type": "Pods", "value": 1, "periodSeconds": 300}])
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
        0
    );
}

#[tokio::test]
async fn autoscaled_cluster_leaves_replicas_alone_on_later_reconciles() {
    let base = with_requests();
    let sc = settled(edited(
        &base,
        json!({"autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 6}}),
    ));
    // The HPA scaled the Deployment to 5; the operator's applied object is unchanged.
    let mut cached = existing(&sc);
    let mut dep = ready_deployment(&sc, 2);
    dep.spec.replicas = Some(5);
    put(&mut cached, json(&dep));
    let scenario = Scenario::default().redis_secret_exists(&sc).status("chat");
    let (result, seen) = run_with(sc, &cached, scenario).await;
    result.unwrap();
    // Only status changes (5 replicas seen); the Deployment is not touched.
    assert_eq!(
        writes(&seen),
        ["PATCH /apis/switchboard.dev/v1alpha1/namespaces/default/signalingclusters/chat/status"]
    );
}

#[tokio::test]
async fn autoscaling_without_requests_is_refused_and_changes_nothing() {
    let old = settled(cluster("chat"));
    let sc = edited(&old, json!({"autoscaling": {"enabled": true}}));
    let scenario = Scenario::default().status("chat").event().event();
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
    assert_eq!(result.unwrap(), Action::await_change());
    expect_condition(&seen, "Ready", "False", "InvalidSpec");
    let msg = expect_condition(&seen, "Degraded", "True", "InvalidSpec");
    assert!(
        msg.contains("spec.resources.requests.cpu is not set"),
        "{msg}"
    );
    assert!(!writes(&seen)
        .iter()
        .any(|w| w.contains("horizontalpodautoscalers") || w.contains("deployments")));
}

/// A cluster with the JWT and TURN secrets in one Secret, and its Deployment as
/// applied while the Secret held `jwt`/`turn` (`None`: did not exist).
fn with_auth_secrets(values: Option<(&str, &str)>) -> (SignalingCluster, Deployment) {
    let sc = edited(
        &settled(cluster("chat")),
        json!({"auth": {"jwtSecretRef": {"name": "chat-keys", "key": "jwt"}},
               "turn": {"urls": ["turn:turn.example.com:3478"], "secretRef": {"name": "chat-keys", "key": "turn"}}}),
    );
    let sc = settled(sc);
    let bytes = |v: &str| ByteString(v.as_bytes().to_vec());
    let (jwt, turn) = values.map_or((None, None), |(j, t)| (Some(bytes(j)), Some(bytes(t))));
    let refs = res::secret_refs(&sc);
    let hash = res::secrets_hash(&[(refs[0], jwt.as_ref()), (refs[1], turn.as_ref())]);
    let mut dep = res::deployment(&sc);
    res::annotate_pods(&mut dep, res::SECRETS_HASH_ANNOTATION, hash);
    let mut dep = owned_replicas(res::with_spec_hash(dep));
    dep.status = ready_deployment(&sc, 2).status;
    (sc, dep)
}

fn keys(jwt: &str, turn: &str, unused: &str) -> Secret {
    let mut s = secret("chat-keys", "jwt", jwt);
    let data = s.data.as_mut().unwrap();
    data.insert("turn".into(), ByteString(turn.as_bytes().to_vec()));
    data.insert("unused".into(), ByteString(unused.as_bytes().to_vec()));
    s
}

/// Reconciles the cluster of `with_auth_secrets(applied)` while the Secret
/// holds `now`; returns the writes.
async fn rotate(applied: Option<(&str, &str)>, now: Secret, rolls: bool) -> Vec<Seen> {
    let (sc, dep) = with_auth_secrets(applied);
    let mut cached = existing(&sc);
    put(&mut cached, json(&dep));
    let mut scenario =
        Scenario::default()
            .redis_secret_exists(&sc)
            .get_object("secrets", "chat-keys", &now);
    if rolls {
        scenario = scenario.apply("deployments", "chat").event();
    }
    let (result, seen) = run_with(sc, &cached, scenario).await;
    result.unwrap();
    seen
}

#[tokio::test]
async fn rotating_a_referenced_secret_rolls_the_pods() {
    // Same values, or a key the server does not read changed: nothing to write.
    let seen = rotate(Some(("j1", "t1")), keys("j1", "t1", "x"), false).await;
    assert_eq!(writes(&seen), Vec::<String>::new());
    let seen = rotate(Some(("j1", "t1")), keys("j1", "t1", "y"), false).await;
    assert_eq!(writes(&seen), Vec::<String>::new());

    // The TURN secret rotates: the Deployment is applied with the new hash.
    let seen = rotate(Some(("j1", "t1")), keys("j1", "t2", "x"), true).await;
    let (_, rotated) = with_auth_secrets(Some(("j1", "t2")));
    let pods = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"][res::SECRETS_HASH_ANNOTATION].clone()
    };
    assert_eq!(
        pods(body_of(&seen, Method::PATCH, "deployments/chat")),
        pods(&json(&rotated))
    );

    // Applied before the Secret existed: its creation rolls the pods too.
    let seen = rotate(None, keys("j1", "t1", "x"), true).await;
    assert_eq!(
        writes(&seen)[0],
        "PATCH /apis/apps/v1/namespaces/default/deployments/chat"
    );
}

#[tokio::test]
async fn ingress_network_policy_and_service_monitor_follow_the_spec() {
    let old = settled(cluster("chat"));
    let on = edited(
        &old,
        json!({
            "ingress": {"enabled": true, "hosts": ["sig.example.com"], "tlsSecretName": "tls"},
            "networkPolicy": {"enabled": true},
            "monitoring": {"serviceMonitor": {"enabled": true}},
        }),
    );
    let scenario = Scenario::default()
        .redis_secret_exists(&on)
        .applies(&[
            ("ingresses", "chat"),
            ("networkpolicies", "chat"),
            ("servicemonitors", "chat"),
        ])
        .event()
        .status("chat");
    let (result, seen) = run_with(on.clone(), &existing(&old), scenario).await;
    result.unwrap();
    let ingress = body_of(&seen, Method::PATCH, "ingresses/chat");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["path"],
        "/ws"
    );
    let sm = body_of(&seen, Method::PATCH, "servicemonitors/chat");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "internal");

    // Turned off again: the three are deleted.
    let off = edited(
        &settled(on.clone()),
        json!({"ingress": null, "networkPolicy": null, "monitoring": null}),
    );
    let scenario = Scenario::default()
        .redis_secret_exists(&off)
        .delete("ingresses", "chat")
        .delete("networkpolicies", "chat")
        .delete("servicemonitors", "chat")
        .event();
    let (result, _) = run_with(off, &existing(&on), scenario).await;
    result.unwrap();
}

#[tokio::test]
async fn a_service_monitor_without_its_crd_is_reported_and_the_rest_applied() {
    let old = settled(cluster("chat"));
    let sc = edited(
        &old,
        json!({"monitoring": {"serviceMonitor": {"enabled": true}}, "replicas": 3}),
    );
    let (ctx, handle) = crate::fixtures::context::context_serving(&existing(&old), false);
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .apply("deployments", "chat")
        .event()
        .status("chat")
        .event()
        .knowing(&existing(&old));
    let (result, seen) = run_in(ctx, handle, sc, scenario).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::KindNotServed { .. }), "{err:?}");
    let msg = written_condition(&seen, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("install it (the Prometheus Operator) and restart the operator"),
        "{msg}"
    );
    assert_eq!(
        body_of(&seen, Method::PATCH, "deployments/chat")["spec"]["replicas"],
        3
    );
}
