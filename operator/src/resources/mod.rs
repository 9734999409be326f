//! Pure builders: one function per owned object, from a `SignalingCluster` to the
//! object the operator wants to exist.
//!
//! Nothing here talks to the API server, so every builder is unit-tested on its
//! own. The reconcile loop (`apply.rs`) applies what these return
//! with server-side apply. Each object carries an owner reference to its
//! SignalingCluster (garbage collection on delete) and the operator's labels.
//!
//! This file holds what every object shares (names, labels, owner reference,
//! hashes); the objects themselves are grouped by concern:
//! - [`server`]: ConfigMap, ServiceAccount and the Deployment with its pods;
//! - [`exposure`]: Services, Ingress and the server NetworkPolicy;
//! - [`scaling`]: HorizontalPodAutoscaler and PodDisruptionBudget;
//! - [`redis`]: the managed Redis (StatefulSet, Service, ConfigMap,
//!   NetworkPolicy, password Secret);
//! - [`monitoring`]: the Prometheus Operator ServiceMonitor.

pub mod exposure;
pub mod monitoring;
pub mod redis;
pub mod scaling;
pub mod server;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, PodSecurityContext, SeccompProfile, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{ManagedRedis, SignalingCluster};

pub use exposure::*;
pub use monitoring::*;
pub use redis::*;
pub use scaling::*;
pub use server::*;

/// Port the server listens on inside the pod.
pub const SERVER_PORT: i32 = 8080;
/// Port of the managed Redis.
pub const REDIS_PORT: i32 = 6379;
/// Pod-template annotation with the hash of the server configuration; a change rolls
/// the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "switchboard.dev/config-hash";
/// Pod-template annotation with the hash of the Secret values the server reads
/// at startup (see [`secret_refs`]); rotating one of them rolls the pods.
pub const SECRETS_HASH_ANNOTATION: &str = "switchboard.dev/secrets-hash";
/// Annotation with the hash of the desired object the operator last applied; equal
/// hashes let the reconcile loop skip a write.
pub const SPEC_HASH_ANNOTATION: &str = "switchboard.dev/spec-hash";
/// Value of `app.kubernetes.io/managed-by` on every owned object; the
/// operator's caches watch only objects carrying it.
pub const MANAGED_BY: &str = "switchboard-operator";
/// Label selector of every object the operator owns.
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=switchboard-operator";

/// Names of every object owned by one SignalingCluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, HPA, PDB, Ingress, NetworkPolicy and ServiceAccount.
    pub server: String,
    /// The Service of the internal port, and the ServiceMonitor scraping it.
    pub internal: String,
    /// Server ConfigMap.
    pub config: String,
    /// Redis StatefulSet and its headless Service.
    pub redis: String,
    /// Redis configuration ConfigMap.
    pub redis_config: String,
    /// Generated Redis password Secret.
    pub redis_auth: String,
}

impl Names {
    /// Names derived from the SignalingCluster's name.
    pub fn new(name: &str) -> Self {
        Self {
            server: name.to_string(),
            internal: format!("{name}-internal"),
            config: format!("{name}-config"),
            redis: format!("{name}-redis"),
            redis_config: format!("{name}-redis-config"),
            redis_auth: format!("{name}-redis-auth"),
        }
    }
}

pub(crate) fn names(sc: &SignalingCluster) -> Names {
    Names::new(&sc.name_any())
}

/// Labels that select one component's pods.
pub fn selector_labels(sc: &SignalingCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "switchboard".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), sc.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ])
}

/// A selector of one component's pods.
pub(crate) fn pod_selector(sc: &SignalingCluster, component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(sc, component)),
        ..Default::default()
    }
}

/// The label selector of the server pods as a string, for the scale subresource.
pub fn selector_string(sc: &SignalingCluster) -> String {
    selector_labels(sc, "server")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn labels(sc: &SignalingCluster, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(sc, component);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert("app.kubernetes.io/part-of".into(), "switchboard".into());
    l
}

fn owner(sc: &SignalingCluster) -> OwnerReference {
    // A SignalingCluster read from the API server always has a uid; tests build
    // them with one too.
    sc.controller_owner_ref(&())
        .expect("SignalingCluster has a uid")
}

/// Name, namespace, labels and owner reference of an owned object.
pub(crate) fn meta(sc: &SignalingCluster, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: sc.namespace(),
        labels: Some(labels(sc, component)),
        owner_references: Some(vec![owner(sc)]),
        ..Default::default()
    }
}

/// Hex SHA-256 of a value's JSON form (stable: maps are ordered).
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("Kubernetes objects serialize");
    hex::encode(&Sha256::digest(&json)[..16])
}

/// Stamps `SPEC_HASH_ANNOTATION` with the hash of the object without it.
pub fn with_spec_hash<K: Resource + serde::Serialize>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(SPEC_HASH_ANNOTATION);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    let h = hash_of(&obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.into(), h);
    obj
}

/// The managed Redis settings, or `None` when the cluster uses an external Redis.
pub fn managed_redis(sc: &SignalingCluster) -> Option<ManagedRedis> {
    match (&sc.spec.redis.managed, &sc.spec.redis.external) {
        (_, Some(_)) => None,
        (Some(m), None) => Some(m.clone()),
        (None, None) => Some(ManagedRedis::default()),
    }
}

/// Whether autoscaling is on (the HPA owns the replica count then).
pub fn autoscaling_enabled(sc: &SignalingCluster) -> bool {
    sc.spec.autoscaling.as_ref().is_some_and(|a| a.enabled)
}

/// An environment variable read from a Secret key.
pub(crate) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container security context of every owned workload: the `restricted`
/// Pod Security Standard.
pub(crate) fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod security context of every owned workload, running as `uid`.
pub(crate) fn restricted_pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod exposure_tests;
#[cfg(test)]
mod redis_run_tests;
#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod scaling_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
