//! Tests of the HorizontalPodAutoscaler and the PodDisruptionBudget.

use super::*;
use crate::fixtures::{cluster, json, with_spec};
use serde_json::json;

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let sc = with_spec(
        json!({"replicas": 3, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 8, "targetMemoryUtilizationPercentage": 80}}),
    );
    let d = json(&deployment(&sc));
    assert!(
        d["spec"].get("replicas").is_none(),
        "replicas must not be in the applied object"
    );
    let h = json(&hpa(&sc).unwrap());
    assert_eq!(
        (&h["spec"]["minReplicas"], &h["spec"]["maxReplicas"]),
        (&json!(2), &json!(8))
    );
    assert_eq!(h["spec"]["scaleTargetRef"]["name"], "chat");
    assert_eq!(
        h["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
}

#[test]
fn hpa_scales_down_slowly_as_configured() {
    let h = json(&hpa(&with_spec(json!({"autoscaling": {"enabled": true}}))).unwrap());
    let b = &h["spec"]["behavior"];
    assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
    assert_eq!(
        b["scaleUp"]["policies"],
        json!([{"type": "Percent", "value": 100, "periodSeconds": 60}])
    );
    assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 600);
    assert_eq!(
        b["scaleDown"]["policies"],
        json!([{"type": "Pods", "value": 1, "periodSeconds": 120}])
    );

    let h = json(
        &hpa(&with_spec(json!({"autoscaling": {"enabled": true,
        "scaleDown": {"stabilizationWindowSeconds": 1800, "pods": 2, "periodSeconds": 300}}})))
        .unwrap(),
    );
    let d = &h["spec"]["behavior"]["scaleDown"];
    assert_eq!(d["stabilizationWindowSeconds"], 1800);
    assert_eq!(
        d["policies"],
        json!([{"type": "Pods", "value": 2, "periodSeconds": 300}])
    );
}

#[test]
fn hpa_defaults_to_cpu_and_is_absent_when_disabled() {
    let h = json(&hpa(&with_spec(json!({"autoscaling": {"enabled": true}}))).unwrap());
    assert_eq!(h["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(
        h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    assert!(hpa(&with_spec(json!({"autoscaling": {"enabled": false}}))).is_none());
    assert!(hpa(&cluster("chat")).is_none());
}

#[test]
fn pdb_is_on_by_default_only_with_several_replicas() {
    assert!(pdb(&with_spec(json!({"replicas": 1}))).is_none());
    let p = json(&pdb(&with_spec(json!({"replicas": 3}))).unwrap());
    assert_eq!(p["spec"]["maxUnavailable"], 1);
    assert_eq!(p["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert!(pdb(&with_spec(
        json!({"replicas": 3, "podDisruptionBudget": {"enabled": false}})
    ))
    .is_none());
    assert!(pdb(&with_spec(
        json!({"replicas": 1, "podDisruptionBudget": {"enabled": true}})
    ))
    .is_some());
    assert!(pdb(&with_spec(
        json!({"replicas": 1, "autoscaling": {"enabled": true, "minReplicas": 2}})
    ))
    .is_some());
}
