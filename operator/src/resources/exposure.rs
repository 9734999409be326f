//! How the server pods are reached: the public Service (WebSockets only), the
//! Service of the internal port (metrics and status, for Prometheus), an
//! Ingress with cookie stickiness and the server NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec as K8sServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, NetworkPolicy,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{internal_port, meta, names, pod_selector, selector_labels};
use crate::crd::{IngressSpec, SameSite, SignalingCluster};

/// Label telling the public Service from the internal one (the ServiceMonitor
/// selects by it).
pub const ENDPOINT_LABEL: &str = "switchboard.dev/endpoint";
/// ingress-nginx annotation prefix.
const NGINX: &str = "nginx.ingress.kubernetes.io";

fn tcp_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The Service clients connect to. It carries the public port only: with the
/// internal listener on, `/metrics` and `/status` are not behind it.
pub fn service(sc: &SignalingCluster) -> Service {
    let s = &sc.spec.service;
    let mut metadata = meta(sc, &names(sc).server, "server");
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(ENDPOINT_LABEL.into(), "public".into());
    }
    if !s.annotations.is_empty() {
        metadata.annotations = Some(s.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(K8sServiceSpec {
            type_: Some(s.type_.as_str().into()),
            selector: Some(selector_labels(sc, "server")),
            session_affinity: Some(s.session_affinity.as_str().into()),
            ports: Some(vec![tcp_port("http", s.port)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A ClusterIP Service of the internal port, when the internal listener is on:
/// what Prometheus scrapes, never exposed outside the cluster.
pub fn internal_service(sc: &SignalingCluster) -> Option<Service> {
    let port = internal_port(sc)?;
    let mut metadata = meta(sc, &names(sc).internal, "server");
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(ENDPOINT_LABEL.into(), "internal".into());
    }
    Some(Service {
        metadata,
        spec: Some(K8sServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(sc, "server")),
            ports: Some(vec![tcp_port("internal", port)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// ingress-nginx annotations: cookie stickiness and WebSocket timeouts, then the
/// user's own (which win).
fn ingress_annotations(i: &IngressSpec) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        a.insert(format!("{NGINX}/{k}"), v);
    };
    let s = &i.sticky_sessions;
    if s.enabled {
        put("affinity", "cookie".into());
        put("affinity-mode", "persistent".into());
        put("session-cookie-name", s.cookie_name.clone());
        put("session-cookie-max-age", s.max_age_seconds.to_string());
        put("session-cookie-samesite", s.same_site.as_str().into());
        // Browsers drop a SameSite=None cookie that is not Secure; the
        // conditional flag omits None for the few clients that mishandle it.
        if s.same_site == SameSite::None || i.tls_secret_name.is_some() {
            put("session-cookie-secure", "true".into());
        }
        if s.same_site == SameSite::None {
            put("session-cookie-conditional-samesite-none", "true".into());
        }
    }
    if i.timeout_seconds > 0 {
        put("proxy-read-timeout", i.timeout_seconds.to_string());
        put("proxy-send-timeout", i.timeout_seconds.to_string());
    }
    a.extend(i.annotations.clone());
    a
}

/// The Ingress, when enabled: only `spec.ingress.paths` (the WebSocket by
/// default) of each host lead to the public Service.
pub fn ingress(sc: &SignalingCluster) -> Option<Ingress> {
    let i = sc.spec.ingress.as_ref().filter(|i| i.enabled)?;
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: names(sc).server,
            port: Some(ServiceBackendPort {
                name: Some("http".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let paths: Vec<HTTPIngressPath> = i
        .paths
        .iter()
        .map(|p| HTTPIngressPath {
            path: Some(p.clone()),
            path_type: "Prefix".into(),
            backend: backend.clone(),
        })
        .collect();
    let rules = i
        .hosts
        .iter()
        .map(|h| IngressRule {
            host: Some(h.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: paths.clone(),
            }),
        })
        .collect();
    let tls = i.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: Some(i.hosts.clone()),
            secret_name: Some(secret.clone()),
        }]
    });
    let mut metadata = meta(sc, &names(sc).server, "server");
    metadata.annotations = Some(ingress_annotations(i));
    Some(Ingress {
        metadata,
        spec: Some(K8sIngressSpec {
            ingress_class_name: i.class_name.clone(),
            rules: Some(rules),
            tls,
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn np_rule(port: &str, from: &[NetworkPolicyPeer]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: (!from.is_empty()).then(|| from.to_vec()),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::String(port.into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// The server NetworkPolicy, when enabled: the public port from
/// `clientsFrom` (anyone when empty), the internal port from `internalFrom`
/// (this namespace's pods when empty).
pub fn server_network_policy(sc: &SignalingCluster) -> Option<NetworkPolicy> {
    let p = sc.spec.network_policy.as_ref().filter(|p| p.enabled)?;
    let mut rules = vec![np_rule("http", &p.clients_from)];
    if internal_port(sc).is_some() {
        let same_namespace = [NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        }];
        let from = if p.internal_from.is_empty() {
            &same_namespace[..]
        } else {
            &p.internal_from[..]
        };
        rules.push(np_rule("internal", from));
    }
    Some(NetworkPolicy {
        metadata: meta(sc, &names(sc).server, "server"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector(sc, "server")),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    })
}
