//! Tests of what every owned object shares: owner reference, labels,
//! namespace, and the spec hash that lets the reconcile loop skip writes.

use super::*;
use crate::fixtures::{cluster, with_spec};
use serde_json::json;

#[test]
fn every_object_is_owned_labelled_and_namespaced() {
    let sc = with_spec(json!({
        "autoscaling": {"enabled": true},
        "ingress": {"enabled": true, "hosts": ["sig.example.com"]},
        "networkPolicy": {"enabled": true},
        "monitoring": {"serviceMonitor": {"enabled": true}},
    }));
    let metas = [
        server_configmap(&sc).metadata,
        service_account(&sc).metadata,
        deployment(&sc).metadata,
        service(&sc).metadata,
        internal_service(&sc).unwrap().metadata,
        ingress(&sc).unwrap().metadata,
        server_network_policy(&sc).unwrap().metadata,
        service_monitor(&sc).unwrap().metadata,
        hpa(&sc).unwrap().metadata,
        pdb(&sc).unwrap().metadata,
        redis_configmap(&sc).unwrap().metadata,
        redis_service(&sc).unwrap().metadata,
        redis_network_policy(&sc).unwrap().metadata,
        redis_statefulset(&sc).unwrap().metadata,
        redis_auth_secret(&sc, "pw").metadata,
    ];
    for m in metas {
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("SignalingCluster", "chat", "uid-chat")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(m.namespace.as_deref(), Some("default"));
        let l = m.labels.unwrap();
        assert_eq!(l["app.kubernetes.io/instance"], "chat");
        // The operator's caches watch only objects with this label.
        assert_eq!(l["app.kubernetes.io/managed-by"], MANAGED_BY);
        assert_eq!(
            OWNED_SELECTOR,
            format!("app.kubernetes.io/managed-by={MANAGED_BY}")
        );
    }
}

#[test]
fn spec_hash_is_stable_and_sensitive() {
    let sc = cluster("chat");
    let a = with_spec_hash(deployment(&sc));
    let again = with_spec_hash(a.clone());
    assert_eq!(a.metadata.annotations, again.metadata.annotations);
    let mut other = sc.clone();
    other.spec.replicas = 5;
    let b = with_spec_hash(deployment(&other));
    assert_ne!(
        a.metadata.annotations.unwrap()[SPEC_HASH_ANNOTATION],
        b.metadata.annotations.unwrap()[SPEC_HASH_ANNOTATION]
    );
}

#[test]
fn names_follow_the_cluster() {
    let n = Names::new("chat");
    assert_eq!(
        [
            n.server,
            n.internal,
            n.config,
            n.redis,
            n.redis_config,
            n.redis_auth
        ],
        [
            "chat",
            "chat-internal",
            "chat-config",
            "chat-redis",
            "chat-redis-config",
            "chat-redis-auth"
        ]
    );
}
