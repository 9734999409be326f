//! Checks of a SignalingCluster that the CRD schema does not (or cannot) make.
//!
//! The API server enforces the schema and its CEL rules on write, but objects may
//! predate a schema change, and some rules need context (the object's name, the
//! operator's reserved environment variables). Every problem is reported with the
//! field and what to do, and an invalid object never stops the operator: it is
//! marked `Degraded` and left alone until it changes.

use kube::ResourceExt;

use crate::crd::SignalingCluster;
use crate::resources::RESERVED_ENV;

/// Longest SignalingCluster name: the Redis StatefulSet's pods carry a
/// `controller-revision-hash` label of `<name>-redis-<10 chars>`, at most 63.
pub const MAX_NAME_LEN: usize = 40;

/// Every problem found, each a sentence saying what is wrong and how to fix it.
/// Empty means valid.
pub fn problems(sc: &SignalingCluster) -> Vec<String> {
    let mut p = Vec::new();
    let spec = &sc.spec;
    let name = sc.name_any();

    if name.len() > MAX_NAME_LEN {
        p.push(format!(
            "metadata.name {name:?} is {} characters long; use at most {MAX_NAME_LEN} \
             (the operator derives Service and StatefulSet names from it)",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        p.push(format!(
            "metadata.name {name:?} must start with a lowercase letter, because it \
             becomes a Service name"
        ));
    }
    if spec.replicas < 0 {
        p.push(format!(
            "spec.replicas is {}; it must be 0 or more",
            spec.replicas
        ));
    }
    if spec.image.repository.trim().is_empty() {
        p.push(
            "spec.image.repository is empty; set an image repository such as \
                ghcr.io/switchboard-dev/switchboard"
                .into(),
        );
    }
    if let Some(tag) = &spec.image.tag {
        if tag.is_empty() || tag.contains([':', '@', '/', ' ']) {
            p.push(format!(
                "spec.image.tag {tag:?} is not a valid tag; give only the tag, such as 0.1.0"
            ));
        }
    }
    if spec.server.drain_timeout_seconds < 1 {
        p.push(format!(
            "spec.server.drainTimeoutSeconds is {}; it must be at least 1",
            spec.server.drain_timeout_seconds
        ));
    }
    for e in &spec.env {
        if RESERVED_ENV.contains(&e.name.as_str()) {
            p.push(format!(
                "spec.env sets {}, which the operator manages; remove it and use \
                 spec.redis, spec.auth or spec.turn instead",
                e.name
            ));
        }
    }

    let r = &spec.redis;
    if r.managed.is_some() && r.external.is_some() {
        p.push("spec.redis sets both managed and external; keep only one".into());
    }
    if let Some(m) = &r.managed {
        if m.persistence && !is_quantity(&m.storage.size) {
            p.push(format!(
                "spec.redis.managed.storage.size {:?} is not a Kubernetes quantity; use \
                 a value such as 1Gi or 500Mi",
                m.storage.size
            ));
        }
    }
    if let Some(ext) = &r.external {
        let tls = ext.url.starts_with("rediss://");
        if !(tls || ext.url.starts_with("redis://"))
            || ext.url.split_once("://").is_none_or(|(_, h)| h.is_empty())
        {
            p.push(format!(
                "spec.redis.external.url {:?} must be redis://host:port or \
                 rediss://host:port",
                ext.url
            ));
        }
        if ext
            .url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or_default().contains('@'))
        {
            p.push(
                "spec.redis.external.url contains credentials; remove them from the \
                    URL and use spec.redis.external.passwordSecretRef"
                    .into(),
            );
        }
        if ext
            .tls
            .as_ref()
            .and_then(|t| t.ca_secret_ref.as_ref())
            .is_some()
            && !tls
        {
            p.push(
                "spec.redis.external.tls.caSecretRef needs a rediss:// URL; change \
                    the URL scheme to rediss://"
                    .into(),
            );
        }
    }

    if let Some(a) = &spec.autoscaling {
        if a.min_replicas < 1 {
            p.push("spec.autoscaling.minReplicas must be at least 1".into());
        }
        if a.min_replicas > a.max_replicas {
            p.push(format!(
                "spec.autoscaling.minReplicas ({}) is greater than maxReplicas ({}); \
                 raise maxReplicas or lower minReplicas",
                a.min_replicas, a.max_replicas
            ));
        }
    }
    if !(1..=65535).contains(&spec.service.port) {
        p.push(format!(
            "spec.service.port {} is out of range; use 1-65535",
            spec.service.port
        ));
    }
    if let Some(t) = &spec.turn {
        if t.secret_ref.is_some() && t.urls.is_empty() {
            p.push(
                "spec.turn.secretRef is set but spec.turn.urls is empty; add the \
                    TURN URLs the credentials are for"
                    .into(),
            );
        }
        for u in &t.urls {
            if !(u.starts_with("turn:") || u.starts_with("turns:")) {
                p.push(format!(
                    "spec.turn.urls entry {u:?} must start with turn: or turns:"
                ));
            }
        }
        for u in &t.stun_urls {
            if !(u.starts_with("stun:") || u.starts_with("stuns:")) {
                p.push(format!(
                    "spec.turn.stunUrls entry {u:?} must start with stun: or stuns:"
                ));
            }
        }
    }
    if let Some(pdb) = &spec.pod_disruption_budget {
        if pdb.max_unavailable < 1 {
            p.push(
                "spec.podDisruptionBudget.maxUnavailable must be at least 1, or the \
                    budget blocks every node drain"
                    .into(),
            );
        }
    }
    p
}

/// A Kubernetes quantity: digits with an optional fraction and an optional suffix.
fn is_quantity(s: &str) -> bool {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let num_ok = !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "k" | "M" | "G" | "T" | "P" | "E" | "m"
    );
    num_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cluster;

    #[test]
    fn default_cluster_is_valid() {
        assert_eq!(problems(&cluster("chat")), Vec::<String>::new());
    }

    #[test]
    fn each_problem_names_the_field_and_the_fix() {
        let mut sc = cluster("chat");
        sc.spec.autoscaling = Some(
            serde_json::from_value(serde_json::json!({
                "enabled": true, "minReplicas": 5, "maxReplicas": 2
            }))
            .unwrap(),
        );
        sc.spec.env.push(k8s_openapi::api::core::v1::EnvVar {
            name: "REDIS_URL".into(),
            value: Some("redis://x".into()),
            ..Default::default()
        });
        let p = problems(&sc);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("spec.env sets REDIS_URL") && p[0].contains("spec.redis"),
            "{p:?}"
        );
        assert!(
            p[1].contains("minReplicas (5) is greater than maxReplicas (2)"),
            "{p:?}"
        );
    }

    #[test]
    fn external_redis_rules() {
        let mut sc = cluster("chat");
        sc.spec.redis = serde_json::from_value(serde_json::json!({
            "external": {"url": "redis://user:pw@cache:6379", "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}}
        })).unwrap();
        let p = problems(&sc);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("contains credentials"));
        assert!(p[1].contains("needs a rediss:// URL"));

        sc.spec.redis.external.as_mut().unwrap().url = "http://cache".into();
        sc.spec.redis.external.as_mut().unwrap().tls = None;
        assert!(problems(&sc)[0].contains("must be redis://host:port"));
    }

    #[test]
    fn both_redis_kinds_and_bad_storage() {
        let mut sc = cluster("chat");
        sc.spec.redis = serde_json::from_value(serde_json::json!({
            "managed": {"storage": {"size": "lots"}}, "external": {"url": "redis://cache:6379"}
        }))
        .unwrap();
        let p = problems(&sc);
        assert!(
            p.iter().any(|m| m.contains("both managed and external")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("\"lots\" is not a Kubernetes quantity")),
            "{p:?}"
        );
    }

    #[test]
    fn long_or_bad_names_are_rejected() {
        assert!(problems(&cluster(&"a".repeat(41)))[0].contains("at most 40"));
        assert!(problems(&cluster("9lives"))[0].contains("lowercase letter"));
    }

    #[test]
    fn quantities() {
        for ok in ["1Gi", "500Mi", "1.5G", "10"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "1..2Gi", "-1Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn turn_urls_are_checked() {
        let mut sc = cluster("chat");
        sc.spec.turn = Some(
            serde_json::from_value(serde_json::json!({
                "urls": ["stun:x"], "secretRef": {"name": "t", "key": "k"}
            }))
            .unwrap(),
        );
        let p = problems(&sc);
        assert_eq!(
            p,
            vec!["spec.turn.urls entry \"stun:x\" must start with turn: or turns:".to_string()]
        );
    }
}
