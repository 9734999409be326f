//! The `SignalingCluster` custom resource (`switchboard.dev/v1alpha1`).
//!
//! The Rust types here are the single source of the CRD schema: `crd_yaml()`
//! renders it, the committed `k8s/operator/crd.yaml` is checked against it by a
//! test, and defaults declared with `#[serde(default)]` land in the schema so the
//! API server fills them in. Rules the schema cannot express on one field (for
//! example `minReplicas <= maxReplicas`) are CEL rules; the same rules, plus a few
//! that need more context, are checked again in `validate` so a
//! resource that slipped past the API server still gets a clear message.
//!
//! This file holds the resource itself, its status and what several parts share;
//! the parts of the spec live beside it, one file per concern:
//! - [`server`]: image, server settings, authentication and TURN;
//! - [`redis`]: the managed or external Redis;
//! - [`scaling`]: autoscaling and the disruption budget;
//! - [`exposure`]: Service, Ingress, NetworkPolicy and monitoring.

// Each `printcolumn(...)` of the kube derive repeats the same keys, which clippy
// takes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod exposure;
mod redis;
mod scaling;
mod server;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use exposure::*;
pub use redis::*;
pub use scaling::*;
pub use server::*;

/// API group of the custom resource.
pub const GROUP: &str = "switchboard.dev";

/// Desired state of one Switchboard signaling cluster and its Redis.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "SignalingCluster",
    namespaced,
    status = "SignalingClusterStatus",
    shortname = "sigc",
    category = "switchboard",
    doc = "A Switchboard WebRTC signaling cluster: server Deployment, Service, autoscaler, disruption budget and Redis backend, managed by switchboard-operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Redis", type_ = "string", json_path = ".status.redis"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SignalingClusterSpec {
    /// Number of server pods. Ignored while autoscaling is enabled (the HPA owns it then).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Server container image.
    #[serde(default)]
    pub image: ImageSpec,
    /// CPU and memory requests and limits of each server container. Autoscaling
    /// needs the request of each resource it targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Server settings passed to every pod as environment configuration.
    #[serde(default)]
    pub server: ServerSettings,
    /// Extra environment variables for the server container. Variables the operator
    /// sets itself (Redis, auth and TURN settings) cannot be overridden here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Annotations added to every server pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Node selector for the server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the server pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints for the server pods. Leave `labelSelector` empty to
    /// select this cluster's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Pod anti-affinity across nodes: `Preferred` (default), `Required` or `None`.
    /// `Required` rolls pods one down at a time (no surge pod, which would find no
    /// free node).
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Redis backend shared by all server pods: `managed` (default) or `external`.
    #[serde(default)]
    pub redis: RedisSpec,
    /// Horizontal pod autoscaling (autoscaling/v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// The Service in front of the server pods.
    #[serde(default)]
    pub service: ServiceSpec,
    /// An Ingress routing the public WebSocket path to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// A NetworkPolicy for the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// Prometheus Operator integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
    /// JWT authentication of WebSocket clients, and the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// STUN/TURN servers handed to clients in `joined.ice_servers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnSpec>,
    /// PodDisruptionBudget for the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PdbSpec>,
}

fn default_replicas() -> i32 {
    2
}

pub(crate) fn default_true() -> bool {
    true
}

/// A key in a Secret of the SignalingCluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Observed state, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalingClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Server pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Server pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the server pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Redis endpoint the servers use (never with a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML, exactly as committed under `k8s/operator/crd.yaml`.
pub fn crd_yaml() -> String {
    let crd = SignalingCluster::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `switchboard-operator crd` (run `make crd`); do not edit by hand.\n{body}"
    )
}

#[cfg(test)]
mod tests;
