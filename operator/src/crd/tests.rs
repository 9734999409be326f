//! Tests of the CRD: the committed YAML matches the Rust types, and the
//! schema carries the subresources, columns, defaults and CEL rules.

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
        "k8s/operator/crd.yaml is out of date with operator/src/crd/; run `make crd` and commit the result"
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
    assert!(spec["auth"]["x-kubernetes-validations"][0]["rule"]
        .as_str()
        .unwrap()
        .contains("has(self.jwksSecretRef)"));
}

#[test]
fn empty_spec_gets_the_documented_defaults() {
    let spec: SignalingClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(spec.replicas, 2);
    assert_eq!(spec.image.repository, DEFAULT_SERVER_IMAGE);
    assert_eq!(spec.server.drain_timeout_seconds, 15);
    assert_eq!(
        spec.server.internal_listener,
        InternalListener {
            enabled: true,
            port: 9091
        }
    );
    assert_eq!(spec.service.port, 80);
    assert_eq!(spec.anti_affinity, AntiAffinity::Preferred);
    assert!(spec.redis.managed.is_none() && spec.redis.external.is_none());
    let a: AutoscalingSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(
        (
            a.scale_down.stabilization_window_seconds,
            a.scale_down.pods,
            a.scale_down.period_seconds
        ),
        (600, 1, 120)
    );
    let i: IngressSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(i.paths, ["/ws"]);
    assert_eq!(i.sticky_sessions.same_site, SameSite::None);
}
