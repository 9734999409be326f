//! How many server pods run: the HorizontalPodAutoscaler (fast up, slow down)
//! and the PodDisruptionBudget.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, names, pod_selector};
use crate::crd::{AutoscalingSpec, SignalingCluster};

/// CPU utilisation target when the spec names none.
pub const DEFAULT_CPU_TARGET_PERCENT: i32 = 70;

/// The resources the HPA scales on, with their target utilisation in percent
/// of requests: the ones the spec names, or CPU at 70 %.
pub fn autoscaling_targets(a: &AutoscalingSpec) -> Vec<(&'static str, i32)> {
    let mut t = Vec::new();
    if let Some(c) = a.target_cpu_utilization_percentage {
        t.push(("cpu", c));
    }
    if let Some(m) = a.target_memory_utilization_percentage {
        t.push(("memory", m));
    }
    if t.is_empty() {
        t.push(("cpu", DEFAULT_CPU_TARGET_PERCENT));
    }
    t
}

/// Scale up by up to double the pods a minute, at once; scale down as the spec
/// says (by default one pod every two minutes after ten quiet minutes), because
/// every removed pod makes its clients reconnect.
fn behavior(a: &AutoscalingSpec) -> HorizontalPodAutoscalerBehavior {
    let d = &a.scale_down;
    HorizontalPodAutoscalerBehavior {
        scale_up: Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 60,
            }]),
            ..Default::default()
        }),
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(d.stabilization_window_seconds),
            select_policy: Some("Min".into()),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Pods".into(),
                value: d.pods,
                period_seconds: d.period_seconds,
            }]),
            ..Default::default()
        }),
    }
}

/// The autoscaling/v2 HPA, when autoscaling is enabled.
pub fn hpa(sc: &SignalingCluster) -> Option<HorizontalPodAutoscaler> {
    let a = sc.spec.autoscaling.as_ref().filter(|a| a.enabled)?;
    let metrics = autoscaling_targets(a)
        .into_iter()
        .map(|(name, pct)| MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: name.into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(pct),
                    ..Default::default()
                },
            }),
            ..Default::default()
        })
        .collect();
    Some(HorizontalPodAutoscaler {
        metadata: meta(sc, &names(sc).server, "server"),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names(sc).server,
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: Some(behavior(a)),
        },
        ..Default::default()
    })
}

/// Replica count the PDB default looks at: the HPA minimum while autoscaling,
/// else `spec.replicas`.
fn effective_min_replicas(sc: &SignalingCluster) -> i32 {
    match &sc.spec.autoscaling {
        Some(a) if a.enabled => a.min_replicas,
        _ => sc.spec.replicas,
    }
}

/// Whether a PodDisruptionBudget should exist.
pub fn pdb_enabled(sc: &SignalingCluster) -> bool {
    let asked = sc.spec.pod_disruption_budget.as_ref();
    match asked.and_then(|p| p.enabled) {
        Some(on) => on,
        None => effective_min_replicas(sc) > 1,
    }
}

/// The PodDisruptionBudget, when enabled (by default with more than one replica).
pub fn pdb(sc: &SignalingCluster) -> Option<PodDisruptionBudget> {
    if !pdb_enabled(sc) {
        return None;
    }
    let max_unavailable = sc
        .spec
        .pod_disruption_budget
        .as_ref()
        .map_or(1, |p| p.max_unavailable);
    Some(PodDisruptionBudget {
        metadata: meta(sc, &names(sc).server, "server"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(pod_selector(sc, "server")),
            // A pod that is not ready serves nobody: evicting it never hurts,
            // and a stuck one must not block node drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}
