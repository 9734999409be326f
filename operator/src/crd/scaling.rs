//! How many server pods run: autoscaling (with a slow scale-down, because every
//! removed pod makes its clients reconnect) and the disruption budget.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default seconds of recommendations the HPA looks back over before it
/// scales down (it takes the highest): a short dip never removes pods.
pub const DEFAULT_SCALE_DOWN_WINDOW_SECS: i32 = 600;
/// Default pods removed per scale-down period.
pub const DEFAULT_SCALE_DOWN_PODS: i32 = 1;
/// Default length of a scale-down period in seconds.
pub const DEFAULT_SCALE_DOWN_PERIOD_SECS: i32 = 120;

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
    /// `resources.requests.memory`. A server's memory hardly falls when pods are
    /// added, so a memory target mostly scales up; prefer CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_memory_utilization_percentage: Option<i32>,
    /// How fast the HPA may remove pods. Scaling up is always fast.
    #[serde(default)]
    pub scale_down: ScaleDownSpec,
}

fn default_min_replicas() -> i32 {
    2
}

fn default_max_replicas() -> i32 {
    10
}

/// The HPA's scale-down behaviour: at most `pods` pods every `periodSeconds`,
/// after the load has stayed low for `stabilizationWindowSeconds`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownSpec {
    /// Seconds of past recommendations considered (the highest wins).
    #[serde(default = "default_scale_down_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,
    /// Pods removed at most per period.
    #[serde(default = "default_scale_down_pods")]
    #[schemars(range(min = 1, max = 1000))]
    pub pods: i32,
    /// Length of a period in seconds.
    #[serde(default = "default_scale_down_period")]
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

impl Default for ScaleDownSpec {
    fn default() -> Self {
        Self {
            stabilization_window_seconds: DEFAULT_SCALE_DOWN_WINDOW_SECS,
            pods: DEFAULT_SCALE_DOWN_PODS,
            period_seconds: DEFAULT_SCALE_DOWN_PERIOD_SECS,
        }
    }
}

fn default_scale_down_window() -> i32 {
    DEFAULT_SCALE_DOWN_WINDOW_SECS
}

fn default_scale_down_pods() -> i32 {
    DEFAULT_SCALE_DOWN_PODS
}

fn default_scale_down_period() -> i32 {
    DEFAULT_SCALE_DOWN_PERIOD_SECS
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
