//! The Redis part of the spec: a Redis the operator runs (`managed`) or one the
//! user runs (`external`).

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{default_true, SecretKeyRef};

/// Default image for the managed Redis.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:8.2-alpine";
/// Default share of the Redis container's memory limit given to `maxmemory`;
/// the rest covers the copy-on-write pages of an AOF rewrite and fragmentation.
pub const DEFAULT_REDIS_MAXMEMORY_PERCENT: i32 = 75;

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
    /// Keep data on a PersistentVolumeClaim (append-only file). Off keeps it in
    /// memory. Cannot change in place: see docs/operator.md for the procedure.
    #[serde(default = "default_true")]
    pub persistence: bool,
    /// Volume for the data when persistence is on. Cannot change in place: see
    /// docs/operator.md for the procedure.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Require a password (AUTH). The password is generated once into the Secret
    /// `<name>-redis-auth` and never rotated by the operator.
    #[serde(default = "default_true")]
    pub auth: bool,
    /// CPU and memory of the Redis container. Without them the operator sets
    /// small requests and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Share of the container's memory limit Redis may fill (`maxmemory`); past
    /// it Redis refuses writes (`noeviction`) instead of being OOM-killed.
    #[serde(default = "default_maxmemory_percent")]
    #[schemars(range(min = 10, max = 95))]
    pub max_memory_percent: i32,
}

impl Default for ManagedRedis {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            persistence: true,
            storage: StorageSpec::default(),
            auth: true,
            resources: None,
            max_memory_percent: DEFAULT_REDIS_MAXMEMORY_PERCENT,
        }
    }
}

fn default_redis_image() -> String {
    DEFAULT_REDIS_IMAGE.to_string()
}

fn default_maxmemory_percent() -> i32 {
    DEFAULT_REDIS_MAXMEMORY_PERCENT
}

/// PersistentVolumeClaim settings of the managed Redis.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity such as `1Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1, max = 64))]
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
