//! A cluster's life: created, left alone, changed, switched to an external
//! Redis; invalid specs and API errors; drift correction and back-off.

use super::*;
use crate::controller::{error_policy, BACKOFF_BASE, BACKOFF_MAX, RESYNC};
use crate::fixtures::context::test_context;
use crate::fixtures::mock::Reply;
use crate::fixtures::{cluster, existing, json, put};
use crate::resources as res;
use kube::runtime::reflector::ObjectRef;

#[tokio::test]
async fn new_cluster_creates_everything() {
    let sc = cluster("chat");
    let scenario = Scenario::default()
        .get_missing("secrets", "chat-redis-auth")
        .create("secrets")
        .applies(NEW_CLUSTER_APPLIES)
        .event()
        .status("chat");
    let (result, seen) = run_with(sc.clone(), &[], scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    // Owned objects come from the caches: the only read is the Secret's.
    let reads: Vec<_> = seen.iter().filter(|s| s.method == Method::GET).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");

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
    assert!(dep["metadata"]["annotations"][res::SPEC_HASH_ANNOTATION].is_string());
    let ev = body_of(&seen, Method::POST, "events");
    assert_eq!(ev["reason"], "Applied");
    assert!(
        ev["note"].as_str().unwrap().contains("Deployment chat"),
        "{ev}"
    );
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    assert_eq!(st["redis"], "chat-redis:6379");
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(written_condition(&seen, "Ready")["status"], "False");
}

#[tokio::test]
async fn unchanged_cluster_writes_nothing() {
    let sc = settled(cluster("chat"));
    let scenario = Scenario::default().redis_secret_exists(&sc);
    let (result, seen) = run_with(sc.clone(), &existing(&sc), scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    assert_eq!(writes(&seen), Vec::<String>::new());
}

#[tokio::test]
async fn replica_change_patches_only_the_deployment_and_status() {
    let old = settled(cluster("chat"));
    let sc = edited(&old, json!({"replicas": 3}));
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .apply("deployments", "chat")
        .event()
        .status("chat");
    let (result, seen) = run_with(sc, &existing(&old), scenario).await;
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
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    assert_eq!(st["observedGeneration"], 2);
}

#[tokio::test]
async fn config_change_updates_the_configmap_and_rolls_the_pods() {
    let old = settled(cluster("chat"));
    let sc = edited(&old, json!({"server": {"logLevel": "debug"}}));
    let scenario = Scenario::default()
        .redis_secret_exists(&sc)
        .applies(&[("configmaps", "chat-config"), ("deployments", "chat")])
        .event()
        .status("chat");
    let (result, seen) = run_with(sc.clone(), &existing(&old), scenario).await;
    result.unwrap();
    let cm = body_of(&seen, Method::PATCH, "configmaps/chat-config");
    assert_eq!(cm["data"]["RUST_LOG"], "debug");
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    let hash = &dep["spec"]["template"]["metadata"]["annotations"][res::CONFIG_HASH_ANNOTATION];
    assert_eq!(hash, &json!(res::config_hash(&sc)));
    assert_ne!(hash, &json!(res::config_hash(&old)));
}

#[tokio::test]
async fn switching_to_external_redis_removes_the_managed_one() {
    let old = settled(cluster("chat"));
    let url =
        json!({"url": "redis://cache:6379", "passwordSecretRef": {"name": "cache", "key": "pw"}});
    let sc = edited(&old, json!({"redis": {"managed": null, "external": url}}));
    let scenario = Scenario::default()
        .delete("statefulsets", "chat-redis")
        .delete("services", "chat-redis")
        .delete("networkpolicies", "chat-redis")
        .delete("configmaps", "chat-redis-config")
        .apply("configmaps", "chat-config")
        // The password's value goes into the pod template's secrets hash.
        .get_object("secrets", "cache", &secret("cache", "pw", "one"))
        .apply("deployments", "chat")
        .event()
        .status("chat");
    let (result, seen) = run_with(sc.clone(), &existing(&old), scenario).await;
    result.unwrap();
    let cm = body_of(&seen, Method::PATCH, "configmaps/chat-config");
    assert_eq!(cm["data"]["REDIS_URL"], "redis://cache:6379");
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let pw = env.iter().find(|e| e["name"] == "REDIS_PASSWORD").unwrap();
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "cache");
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    assert_eq!(st["redis"], "redis://cache:6379");
    // The password Secret is kept: switching back must not rotate it.
    assert!(!writes(&seen).iter().any(|w| w.contains("secrets")));
    let r = sc
        .spec
        .redis
        .external
        .as_ref()
        .unwrap()
        .password_secret_ref
        .as_ref()
        .unwrap();
    let one = ByteString(b"one".to_vec());
    let annotations = &dep["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations[res::SECRETS_HASH_ANNOTATION],
        json!(res::secrets_hash(&[(r, Some(&one))]))
    );
}

#[tokio::test]
async fn objects_not_owned_by_the_cluster_are_never_deleted() {
    let old = settled(cluster("chat"));
    let sc = edited(
        &old,
        json!({"redis": {"managed": null, "external": {"url": "redis://cache:6379"}}}),
    );
    let mut cached = existing(&sc);
    let mut foreign = ready_redis(&old);
    foreign.metadata.owner_references = None;
    put(&mut cached, json(&foreign));
    let scenario = Scenario::default().status("chat");
    let (result, seen) = run_with(sc, &cached, scenario).await;
    result.unwrap();
    assert!(!seen.iter().any(|x| x.method == Method::DELETE));
}

#[tokio::test]
async fn invalid_spec_is_degraded_without_touching_anything() {
    let old = settled(cluster("chat"));
    let sc = edited(
        &old,
        json!({"autoscaling": {"minReplicas": 9, "maxReplicas": 3}}),
    );
    // Status, then two Warnings: the new problem, and no longer Ready.
    let s = Scenario::default().status("chat").event().event();
    let (result, seen) = run_with(sc.clone(), &existing(&old), s).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let msg = expect_condition(&seen, "Degraded", "True", "InvalidSpec");
    assert!(
        msg.contains("raise maxReplicas or lower minReplicas"),
        "{msg}"
    );
    let ev = body_of(&seen, Method::POST, "events");
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );

    // Reconciled again with that status stored: no calls at all.
    let mut again = sc;
    let st = &body_of(&seen, Method::PATCH, "chat/status")["status"];
    again.status = Some(serde_json::from_value(st.clone()).unwrap());
    let (result, seen) = run_with(again, &existing(&old), Scenario::default()).await;
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
    let (result, seen) = run_with(sc.clone(), &existing(&sc), s).await;
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("reading Secret chat-redis-auth failed"),
        "{msg}"
    );
    let msg = expect_condition(&seen, "Degraded", "True", "ReconcileFailed");
    assert!(msg.contains("etcd is unhappy"), "{msg}");
    // Ready comes from what the caches show: still ready.
    assert_eq!(written_condition(&seen, "Ready")["status"], "True");
    assert_eq!(
        body_of(&seen, Method::POST, "events")["reason"],
        "ReconcileFailed"
    );
}

/// The Kind of a resource plural used in these tests.
fn kind_of(plural: &str) -> &'static str {
    match plural {
        "configmaps" => "ConfigMap",
        "services" => "Service",
        "networkpolicies" => "NetworkPolicy",
        "statefulsets" => "StatefulSet",
        "serviceaccounts" => "ServiceAccount",
        "deployments" => "Deployment",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        other => panic!("no kind for {other}"),
    }
}

#[tokio::test]
async fn periodic_full_apply_undoes_drift_and_reports_only_real_changes() {
    let sc = settled(cluster("chat"));
    // Every object at resourceVersion 5; someone edited the Deployment's image
    // (its spec-hash annotation still matches).
    let mut cached = existing(&sc);
    for o in &mut cached {
        o["metadata"]["resourceVersion"] = json!("5");
    }
    let mut drifted = json(&owned_replicas(ready_deployment(&sc, 2)));
    drifted["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:1");
    drifted["metadata"]["resourceVersion"] = json!("5");
    put(&mut cached, drifted);
    // Each apply of an unchanged object answers it unchanged (same version);
    // the Deployment's apply changes it.
    let mut s = Scenario::default().redis_secret_exists(&sc);
    for (plural, name) in NEW_CLUSTER_APPLIES {
        let same = cached
            .iter()
            .find(|o| o["kind"] == kind_of(plural) && o["metadata"]["name"] == *name)
            .unwrap();
        let reply = if *plural == "deployments" {
            Reply::Echo
        } else {
            Reply::Json(same.clone())
        };
        s = s.call(
            Method::PATCH,
            crate::fixtures::mock::path(plural, name),
            reply,
        );
    }
    let s = s.event().knowing(&cached);
    let (ctx, handle) = context_with(&cached);
    ctx.make_full_apply_due(&ObjectRef::from_obj(&sc));
    let (result, seen) = run_in(ctx, handle, sc, s).await;
    result.unwrap();
    let dep = body_of(&seen, Method::PATCH, "deployments/chat");
    assert_ne!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "evil:1"
    );
    let note = body_of(&seen, Method::POST, "events")["note"].clone();
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

#[tokio::test]
async fn error_policy_backs_off_per_object() {
    let (ctx, _handle) = test_context();
    let a = Arc::new(cluster("a"));
    let b = Arc::new(cluster("b"));
    let err = || Error::MissingNamespace;
    let policy = |sc: &Arc<SignalingCluster>| error_policy(sc.clone(), &err(), ctx.clone());
    assert_eq!(policy(&a), Action::requeue(BACKOFF_BASE));
    assert_eq!(policy(&a), Action::requeue(BACKOFF_BASE * 2));
    assert_eq!(policy(&a), Action::requeue(BACKOFF_BASE * 4));
    // Another object starts from the base delay.
    assert_eq!(policy(&b), Action::requeue(BACKOFF_BASE));
    assert!(ctx
        .metrics
        .render()
        .contains("switchboard_operator_clusters_backing_off 2"));
    for _ in 0..40 {
        policy(&a);
    }
    assert_eq!(policy(&a), Action::requeue(BACKOFF_MAX));
    // Success forgets the failures.
    ctx.reset_backoff(&ObjectRef::from_obj(&*a));
    assert_eq!(policy(&a), Action::requeue(BACKOFF_BASE));
    let text = ctx.metrics.render();
    assert!(
        text.contains(
            "switchboard_operator_reconcile_failures_total{error=\"missing_namespace\"} 46"
        ),
        "{text}"
    );
}
