//! The RBAC manifests grant exactly what the operator uses: every API call
//! of a reconcile that touches every kind (created, updated, deleted), plus
//! the calls no reconcile makes but the operator does (its watches, events
//! patched as a series, owner references). A verb granted and never used
//! fails the test as surely as one used and not granted.

use std::collections::BTreeSet;

use super::*;
use crate::fixtures::mock::Reply;
use crate::fixtures::{cluster, existing};

type Grant = (String, String, String);

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

fn verb(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "get",
        "POST" => "create",
        "PATCH" => "patch",
        "PUT" => "update",
        "DELETE" => "delete",
        m => panic!("unexpected method {m}"),
    }
}

/// Everything on: a new cluster creates every kind, then turning it all off
/// deletes what can go.
fn full() -> SignalingCluster {
    edited(
        &cluster("chat"),
        json!({
            "resources": {"requests": {"cpu": "100m"}},
            "autoscaling": {"enabled": true},
            "auth": {"jwtSecretRef": {"name": "keys", "key": "jwt"}},
            "ingress": {"enabled": true, "hosts": ["sig.example.com"]},
            "networkPolicy": {"enabled": true},
            "monitoring": {"serviceMonitor": {"enabled": true}},
        }),
    )
}

async fn calls_of_every_kind() -> Vec<Seen> {
    let sc = full();
    let mut applies = NEW_CLUSTER_APPLIES.to_vec();
    applies.insert(9, ("horizontalpodautoscalers", "chat"));
    applies.extend([
        ("ingresses", "chat"),
        ("networkpolicies", "chat"),
        ("servicemonitors", "chat"),
    ]);
    let mut created = Scenario::default()
        .get_missing("secrets", "chat-redis-auth")
        .create("secrets");
    for (kind, name) in &applies {
        if *kind == "deployments" {
            created = created.get("secrets", "keys", Reply::NotFound);
        }
        created = created.apply(kind, name);
    }
    let (result, mut seen) = run_with(sc.clone(), &[], created.event().status("chat")).await;
    result.unwrap();

    let old = settled(sc);
    let gone = edited(
        &old,
        json!({"redis": {"external": {"url": "redis://cache:6379"}}, "autoscaling": null, "replicas": 1,
               "ingress": null, "networkPolicy": null, "monitoring": null, "auth": null}),
    );
    let removed = Scenario::default()
        .delete("statefulsets", "chat-redis")
        .delete("services", "chat-redis")
        .delete("networkpolicies", "chat-redis")
        .delete("configmaps", "chat-redis-config")
        .applies(&[("configmaps", "chat-config"), ("deployments", "chat")])
        .delete("horizontalpodautoscalers", "chat")
        .delete("poddisruptionbudgets", "chat")
        .delete("ingresses", "chat")
        .delete("networkpolicies", "chat")
        .delete("servicemonitors", "chat")
        .event()
        .status("chat");
    let (result, more) = run_with(gone, &existing(&old), removed).await;
    result.unwrap();
    seen.extend(more);
    seen
}

/// What the operator does that no reconcile shows: its watches (the
/// SignalingClusters and the caches of every owned kind, see
/// `caches::attach`; the ServiceMonitor check at startup lists), an Event
/// repeated within minutes is patched as a series, and owner references with
/// `blockOwnerDeletion` need `update` on the owner's finalizers.
fn used_outside_reconciles() -> Vec<Grant> {
    let mut g = Vec::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str]| {
        for v in verbs {
            g.push((group.to_string(), resource.to_string(), v.to_string()));
        }
    };
    add("switchboard.dev", "signalingclusters", &["list", "watch"]);
    add(
        "switchboard.dev",
        "signalingclusters/finalizers",
        &["update"],
    );
    add("events.k8s.io", "events", &["patch"]);
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "services"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("monitoring.coreos.com", "servicemonitors"),
    ] {
        add(group, resource, &["list", "watch"]);
    }
    g
}

/// The (group, resource, verb) triples a Role or ClusterRole named
/// `switchboard-operator` in `file` grants.
fn granted(file: &str, kind: &str) -> BTreeSet<Grant> {
    let path = format!("{}/../k8s/operator/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != kind || v["metadata"]["name"] != "switchboard-operator" {
            continue;
        }
        for r in v["rules"].as_array().unwrap() {
            let list = |k: &str| {
                r[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            for g in list("apiGroups") {
                for res in list("resources") {
                    for verb in list("verbs") {
                        out.insert((g.clone(), res.clone(), verb));
                    }
                }
            }
        }
    }
    assert!(!out.is_empty(), "no {kind} switchboard-operator in {file}");
    out
}

#[tokio::test]
async fn rbac_grants_exactly_what_the_operator_uses() {
    let mut needed: BTreeSet<Grant> = used_outside_reconciles().into_iter().collect();
    for s in calls_of_every_kind().await {
        let (g, r) = group_resource(&s.uri);
        needed.insert((g, r, verb(&s.method).to_string()));
        // A server-side apply creates the object when it is missing.
        if s.method == Method::PATCH && !s.uri.contains("/status") && !s.uri.contains("/events") {
            let (g, r) = group_resource(&s.uri);
            needed.insert((g, r, "create".to_string()));
        }
    }
    // The default (namespace-scoped) Role and the cluster-wide ClusterRole.
    for (file, kind) in [
        ("rbac.yaml", "Role"),
        ("../operator-cluster-wide/rbac.yaml", "ClusterRole"),
    ] {
        let have = granted(file, kind);
        let missing: Vec<_> = needed.difference(&have).collect();
        let unused: Vec<_> = have.difference(&needed).collect();
        assert!(missing.is_empty(), "k8s/operator/{file} lacks {missing:?}");
        assert!(
            unused.is_empty(),
            "k8s/operator/{file} grants {unused:?}, which the operator never uses"
        );
    }
}

#[test]
fn leader_election_role_grants_the_lease_calls() {
    let path = format!("{}/../k8s/operator/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| -> Value { serde::Deserialize::deserialize(d).unwrap() })
        .find(|v| v["metadata"]["name"] == "switchboard-operator-leader-election")
        .expect("a leader-election Role");
    // GET the Lease, POST a missing one, PUT (conditional update) to renew,
    // take over or release it: see leader.rs.
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
    );
}
