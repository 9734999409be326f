//! Checks of a SignalingCluster that the CRD schema does not (or cannot) make.
//!
//! The API server enforces the schema and its CEL rules on write, but objects may
//! predate a schema change, and some rules need context (the object's name, the
//! operator's reserved environment variables). Every problem is reported with the
//! field and what to do, and an invalid object never stops the operator: it is
//! marked `Degraded` and left alone until it changes.

use kube::ResourceExt;

use crate::crd::SignalingCluster;
use crate::resources::{autoscaling_targets, RESERVED_ENV, SERVER_PORT};

/// Longest SignalingCluster name: the Redis StatefulSet's pods carry a
/// `controller-revision-hash` label of `<name>-redis-<10 chars>`, at most 63.
pub const MAX_NAME_LEN: usize = 40;

/// Every problem found, each a sentence saying what is wrong and how to fix it.
/// Empty means valid.
pub fn problems(sc: &SignalingCluster) -> Vec<String> {
    let mut p = Vec::new();
    name(sc, &mut p);
    server(sc, &mut p);
    redis(sc, &mut p);
    autoscaling(sc, &mut p);
    exposure(sc, &mut p);
    auth_and_turn(sc, &mut p);
    p
}

fn name(sc: &SignalingCluster, p: &mut Vec<String>) {
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
}

fn server(sc: &SignalingCluster, p: &mut Vec<String>) {
    let spec = &sc.spec;
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
    let internal = &spec.server.internal_listener;
    if internal.enabled && internal.port == SERVER_PORT {
        p.push(format!(
            "spec.server.internalListener.port is {SERVER_PORT}, the public port; pick \
             another port, such as 9091"
        ));
    }
    for e in &spec.env {
        if RESERVED_ENV.contains(&e.name.as_str()) {
            p.push(format!(
                "spec.env sets {}, which the operator manages; remove it and use \
                 spec.redis, spec.auth, spec.turn or spec.server instead",
                e.name
            ));
        }
    }
}

fn redis(sc: &SignalingCluster, p: &mut Vec<String>) {
    let r = &sc.spec.redis;
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
    let Some(ext) = &r.external else {
        return;
    };
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
    let authority = ext
        .url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next());
    if authority.flatten().is_some_and(|a| a.contains('@')) {
        p.push(
            "spec.redis.external.url contains credentials; remove them from the \
                URL and use spec.redis.external.passwordSecretRef"
                .into(),
        );
    }
    if ext.tls.as_ref().is_some_and(|t| t.ca_secret_ref.is_some()) && !tls {
        p.push(
            "spec.redis.external.tls.caSecretRef needs a rediss:// URL; change \
                the URL scheme to rediss://"
                .into(),
        );
    }
}

/// Bounds, and the requests the HPA needs: without the request of a resource
/// it targets, the HPA cannot compute utilisation and never scales.
fn autoscaling(sc: &SignalingCluster, p: &mut Vec<String>) {
    let Some(a) = &sc.spec.autoscaling else {
        return;
    };
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
    if !a.enabled {
        return;
    }
    let requests = sc.spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    for (resource, pct) in autoscaling_targets(a) {
        if !requests.is_some_and(|r| r.contains_key(resource)) {
            p.push(format!(
                "spec.autoscaling targets {pct}% {resource} utilisation, but \
                 spec.resources.requests.{resource} is not set: the HPA cannot compute \
                 utilisation without it and would never scale; set \
                 spec.resources.requests.{resource}, or turn autoscaling off"
            ));
        }
    }
}

fn exposure(sc: &SignalingCluster, p: &mut Vec<String>) {
    let spec = &sc.spec;
    if !(1..=65535).contains(&spec.service.port) {
        p.push(format!(
            "spec.service.port {} is out of range; use 1-65535",
            spec.service.port
        ));
    }
    if let Some(i) = spec.ingress.as_ref().filter(|i| i.enabled) {
        if i.hosts.is_empty() {
            p.push("spec.ingress is enabled without hosts; add spec.ingress.hosts".into());
        }
        if i.paths.is_empty() || i.paths.iter().any(|x| !x.starts_with('/')) {
            p.push(format!(
                "spec.ingress.paths {:?} must be absolute paths such as /ws",
                i.paths
            ));
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
}

fn auth_and_turn(sc: &SignalingCluster, p: &mut Vec<String>) {
    if let Some(a) = &sc.spec.auth {
        let sources = [
            a.jwt_secret_ref.is_some(),
            a.public_key_secret_ref.is_some(),
            a.jwks_secret_ref.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            p.push(
                "spec.auth sets more than one key source; keep one of jwtSecretRef, \
                 publicKeySecretRef and jwksSecretRef"
                    .into(),
            );
        }
        if (a.issuer.is_some() || a.audience.is_some()) && !a.has_key_source() {
            p.push(
                "spec.auth.issuer and .audience need a key source to check tokens \
                 against; set jwtSecretRef, publicKeySecretRef or jwksSecretRef"
                    .into(),
            );
        }
    }
    let Some(t) = &sc.spec.turn else {
        return;
    };
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
    use crate::fixtures::{cluster, with_spec};

    #[test]
    fn default_cluster_is_valid() {
        assert_eq!(problems(&cluster("chat")), Vec::<String>::new());
    }

    #[test]
    fn each_problem_names_the_field_and_the_fix() {
        let mut sc = cluster("chat");
        sc.spec.autoscaling = Some(
            serde_json::from_value(serde_json::json!({
                "enabled": false, "minReplicas": 5, "maxReplicas": 2
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

    #[test]
    fn example_is_a_valid_signalingcluster() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../k8s/operator/example-signalingcluster.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut sc: SignalingCluster =
            serde_yaml::from_str(&text).expect("example parses as a SignalingCluster");
        sc.metadata.uid = Some("x".into());
        assert_eq!(problems(&sc), Vec::<String>::new());
    }

    #[test]
    fn autoscaling_needs_the_requests_it_targets() {
        let mut sc = with_spec(serde_json::json!({"autoscaling": {"enabled": true}}));
        let p = problems(&sc);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("spec.autoscaling targets 70% cpu utilisation, but spec.resources.requests.cpu is not set"), "{p:?}");
        sc.spec.resources =
            serde_json::from_value(serde_json::json!({"requests": {"cpu": "100m"}})).unwrap();
        assert_eq!(problems(&sc), Vec::<String>::new());
        sc.spec
            .autoscaling
            .as_mut()
            .unwrap()
            .target_memory_utilization_percentage = Some(80);
        let p = problems(&sc);
        assert!(
            p.len() == 1 && p[0].contains("spec.resources.requests.memory is not set"),
            "{p:?}"
        );
        // Autoscaling off: nothing to compute.
        sc.spec.autoscaling.as_mut().unwrap().enabled = false;
        assert_eq!(problems(&sc), Vec::<String>::new());
    }

    #[test]
    fn auth_ingress_and_listener_rules() {
        let sc = with_spec(serde_json::json!({
            "auth": {"jwtSecretRef": {"name": "a", "key": "k"}, "jwksSecretRef": {"name": "b", "key": "k"}},
            "ingress": {"enabled": true, "paths": ["ws"]},
            "server": {"internalListener": {"port": 8080}},
        }));
        let p = problems(&sc);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("internalListener.port is 8080"), "{p:?}");
        assert!(p[1].contains("enabled without hosts"), "{p:?}");
        assert!(p[2].contains("must be absolute paths"), "{p:?}");
        assert!(p[3].contains("more than one key source"), "{p:?}");
        let sc = with_spec(serde_json::json!({"auth": {"issuer": "https://id"}}));
        assert!(problems(&sc)[0].contains("need a key source"));
    }
}
