//! The `SignalingCluster` custom resource (`switchboard.dev/v1alpha1`).
//!
//! The Rust types here are the single source of the CRD schema: `crd_yaml()`
//! renders it, the committed `k8s/operator/crd.yaml` is checked against it by a
//! test, and defaults declared with `#[serde(default)]` land in the schema so the
//! API server fills them in. Rules the schema cannot express on one field (for
//! example `minReplicas <= maxReplicas`) are CEL rules; the same rules, plus a few
//! that need more context, are checked again in [`validate`](crate::validate) so a
//! resource that slipped past the API server still gets a clear message.

// Each `printcolumn(...)` of the kube derive repeats the same keys, which clippy
// takes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the custom resource.
pub const GROUP: &str = "switchboard.dev";
/// Default server image repository.
pub const DEFAULT_SERVER_IMAGE: &str = "ghcr.io/switchboard-dev/switchboard";
/// Default image for the managed Redis.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:8.2-alpine";

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
    /// CPU and memory requests and limits of each server container.
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
    /// JWT authentication of WebSocket clients.
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

/// Container image of the server.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default = "default_server_repository")]
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of Secrets in the same namespace used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_server_repository(),
            tag: None,
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }
}

fn default_server_repository() -> String {
    DEFAULT_SERVER_IMAGE.to_string()
}

/// Kubernetes image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Settings of the signaling server. Unset limits keep the server's defaults.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSettings {
    /// `RUST_LOG` filter, for example `info` or `switchboard=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Seconds a terminating pod waits for its clients to leave. The pod's termination
    /// grace period is set longer than this.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_timeout_seconds: i32,
    /// Region label reported by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Browser origins allowed to open WebSockets; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Maximum WebSocket connections per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<i64>,
    /// Maximum peers in one room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_peers_per_room: Option<i64>,
    /// Maximum `signal`/`broadcast` payload in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_payload_bytes: Option<i64>,
    /// Sustained messages per second per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_per_sec: Option<i64>,
    /// Message burst per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_burst: Option<i64>,
    /// Seconds a disconnected peer may resume its session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub resume_window_seconds: Option<i64>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            log_level: default_log_level(),
            drain_timeout_seconds: default_drain_timeout(),
            region: None,
            allowed_origins: Vec::new(),
            max_connections: None,
            max_peers_per_room: None,
            max_payload_bytes: None,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            resume_window_seconds: None,
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

fn default_drain_timeout() -> i32 {
    15
}

/// How strongly server pods are kept off each other's nodes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AntiAffinity {
    /// Spread across nodes when possible (scheduling never blocks).
    #[default]
    Preferred,
    /// Never two server pods of this cluster on one node.
    Required,
    /// No anti-affinity.
    None,
}

/// Redis backend: exactly one of `managed` or `external`; neither means managed
/// with defaults.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.managed) && has(self.external))").message("set either redis.managed or redis.external, not both"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// A single-node Redis StatefulSet run by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
    /// A Redis you run yourself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

/// A Redis run by the operator as a one-replica StatefulSet.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// Redis image.
    #[serde(default = "default_redis_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Keep data on a PersistentVolumeClaim (append-only file). Off keeps it in memory.
    #[serde(default = "default_true")]
    pub persistence: bool,
    /// Volume for the data when persistence is on.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Require a password (AUTH). The password is generated once into the Secret
    /// `<name>-redis-auth` and never rotated by the operator.
    #[serde(default = "default_true")]
    pub auth: bool,
    /// CPU and memory of the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ManagedRedis {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            persistence: true,
            storage: StorageSpec::default(),
            auth: true,
            resources: None,
        }
    }
}

fn default_redis_image() -> String {
    DEFAULT_REDIS_IMAGE.to_string()
}

fn default_true() -> bool {
    true
}

/// PersistentVolumeClaim settings of the managed Redis.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity such as `1Gi`.
    #[serde(default = "default_storage_size")]
    pub size: String,
    /// StorageClass; unset uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> String {
    "1Gi".to_string()
}

/// A Redis outside the operator's care.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.tls) || !has(self.tls.caSecretRef) || self.url.startsWith('rediss://')").message("redis.external.tls.caSecretRef needs a rediss:// URL"))]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// `redis://host:port` or `rediss://host:port` (TLS). Put no password here:
    /// use `passwordSecretRef`.
    #[schemars(regex(pattern = r"^rediss?://.+"), length(max = 2048))]
    pub url: String,
    /// Secret key holding the Redis password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// TLS settings; needs a `rediss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
}

/// TLS trust for an external Redis.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisTls {
    /// Secret key holding the PEM CA bundle that signed the Redis certificate. Unset
    /// uses the image's system trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
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

/// Horizontal pod autoscaler settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Create an HPA for the server Deployment.
    #[serde(default)]
    pub enabled: bool,
    /// Lower replica bound.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Upper replica bound.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target average CPU utilisation in percent of requests. When neither target is
    /// set, 70 is used. Needs `resources.requests.cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Target average memory utilisation in percent of requests. Needs
    /// `resources.requests.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_memory_utilization_percentage: Option<i32>,
}

fn default_min_replicas() -> i32 {
    2
}

fn default_max_replicas() -> i32 {
    10
}

/// The Service exposing the server pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service listens on (forwarded to the pods' port 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Service annotations, for example cloud load balancer settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `ClientIP` keeps a client on one pod (sticky sessions at the Service).
    #[serde(default)]
    pub session_affinity: SessionAffinity,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
            session_affinity: SessionAffinity::default(),
        }
    }
}

fn default_service_port() -> i32 {
    80
}

/// Kubernetes Service type.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes expects in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Kubernetes Service session affinity.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP,
}

impl SessionAffinity {
    /// The value Kubernetes expects in `spec.sessionAffinity`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionAffinity::None => "None",
            SessionAffinity::ClientIP => "ClientIP",
        }
    }
}

/// JWT authentication of clients.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding the HS256 shared secret (`JWT_SECRET`).
    pub jwt_secret_ref: SecretKeyRef,
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// STUN and TURN servers announced to clients.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnSpec {
    /// TURN URLs, for example `turn:turn.example.com:3478?transport=udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// STUN URLs, for example `stun:stun.example.com:3478`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stun_urls: Vec<String>,
    /// Secret key holding the TURN REST shared secret, used to mint time-limited
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Lifetime of minted TURN credentials in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub ttl_seconds: Option<i64>,
}

/// PodDisruptionBudget for the server pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the budget. Unset means: on when more than one replica is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Pods that may be down at once during voluntary disruptions.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_unavailable: i32,
}

fn default_max_unavailable() -> i32 {
    1
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
mod tests {
    use super::*;

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    #[test]
    fn committed_crd_matches_the_rust_types() {
        let committed = repo_file("k8s/operator/crd.yaml");
        assert!(
            committed == crd_yaml(),
            "k8s/operator/crd.yaml is out of date with operator/src/crd.rs; run `make crd` and commit the result"
        );
    }

    #[test]
    fn crd_has_subresources_columns_and_cel_rules() {
        let crd: serde_json::Value = serde_json::to_value(SignalingCluster::crd()).unwrap();
        let v = &crd["spec"]["versions"][0];
        assert_eq!(
            v["subresources"]["scale"]["specReplicasPath"],
            ".spec.replicas"
        );
        assert_eq!(
            v["subresources"]["scale"]["labelSelectorPath"],
            ".status.selector"
        );
        assert!(v["subresources"]["status"].is_object());
        let cols: Vec<_> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Replicas", "Ready", "Redis", "Status", "Age"]);
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(
            spec["autoscaling"]["x-kubernetes-validations"][0]["rule"],
            "self.minReplicas <= self.maxReplicas"
        );
        assert_eq!(
            spec["redis"]["x-kubernetes-validations"][0]["rule"],
            "!(has(self.managed) && has(self.external))"
        );
        assert_eq!(spec["replicas"]["default"], 2);
        let ext = &spec["redis"]["properties"]["external"];
        assert!(ext["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("startsWith('rediss://')"));
    }

    #[test]
    fn example_is_a_valid_signalingcluster() {
        let text = repo_file("k8s/operator/example-signalingcluster.yaml");
        let mut sc: SignalingCluster =
            serde_yaml::from_str(&text).expect("example parses as a SignalingCluster");
        sc.metadata.uid = Some("x".into());
        assert_eq!(crate::validate::problems(&sc), Vec::<String>::new());
    }

    #[test]
    fn empty_spec_gets_the_documented_defaults() {
        let spec: SignalingClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.image.repository, DEFAULT_SERVER_IMAGE);
        assert_eq!(spec.server.drain_timeout_seconds, 15);
        assert_eq!(spec.service.port, 80);
        assert_eq!(spec.anti_affinity, AntiAffinity::Preferred);
        assert!(spec.redis.managed.is_none() && spec.redis.external.is_none());
    }
}
