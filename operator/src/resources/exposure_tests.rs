//! Tests of the objects that expose and watch the servers: Services, Ingress,
//! NetworkPolicy and ServiceMonitor.

use super::*;
use crate::fixtures::{cluster, json, with_spec};
use serde_json::json;

#[test]
fn service_follows_the_spec_and_carries_the_public_port_only() {
    let sc = with_spec(
        json!({"service": {"type": "LoadBalancer", "port": 443, "annotations": {"lb": "x"}, "sessionAffinity": "ClientIP"}}),
    );
    let s = json(&service(&sc));
    assert_eq!(s["metadata"]["annotations"]["lb"], "x");
    assert_eq!(s["metadata"]["labels"][ENDPOINT_LABEL], "public");
    let spec = &s["spec"];
    assert_eq!(
        (&spec["type"], &spec["sessionAffinity"]),
        (&json!("LoadBalancer"), &json!("ClientIP"))
    );
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(spec["selector"]["app.kubernetes.io/component"], "server");
}

#[test]
fn internal_service_is_cluster_internal_and_exists_with_the_listener() {
    let s = json(&internal_service(&cluster("chat")).unwrap());
    assert_eq!(s["metadata"]["name"], "chat-internal");
    assert_eq!(s["metadata"]["labels"][ENDPOINT_LABEL], "internal");
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["ports"][0]["port"], 9091);
    let off = with_spec(json!({"server": {"internalListener": {"enabled": false}}}));
    assert!(internal_service(&off).is_none());
}

#[test]
fn ingress_routes_only_the_websocket_with_a_cross_site_sticky_cookie() {
    let sc = with_spec(json!({"ingress": {
        "enabled": true, "className": "nginx", "hosts": ["a.example", "b.example"],
        "tlsSecretName": "sig-tls", "annotations": {"cert-manager.io/cluster-issuer": "le"}
    }}));
    let i = json(&ingress(&sc).unwrap());
    let a = &i["metadata"]["annotations"];
    let nginx = |k: &str| a[format!("nginx.ingress.kubernetes.io/{k}")].clone();
    assert_eq!(nginx("affinity"), "cookie");
    assert_eq!(nginx("session-cookie-name"), "SWITCHBOARD_AFFINITY");
    assert_eq!(nginx("session-cookie-samesite"), "None");
    assert_eq!(nginx("session-cookie-secure"), "true");
    assert_eq!(nginx("proxy-read-timeout"), "3600");
    assert_eq!(a["cert-manager.io/cluster-issuer"], "le");
    assert_eq!(i["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        i["spec"]["tls"],
        json!([{"hosts": ["a.example", "b.example"], "secretName": "sig-tls"}])
    );
    let rules = i["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["http"]["paths"],
        json!([{"path": "/ws", "pathType": "Prefix", "backend": {"service": {"name": "chat", "port": {"name": "http"}}}}])
    );

    let lax = with_spec(
        json!({"ingress": {"enabled": true, "hosts": ["a"], "timeoutSeconds": 0,
        "stickySessions": {"sameSite": "Lax"}}}),
    );
    let a = json(&ingress(&lax).unwrap())["metadata"]["annotations"].clone();
    assert_eq!(
        a["nginx.ingress.kubernetes.io/session-cookie-samesite"],
        "Lax"
    );
    assert!(a
        .get("nginx.ingress.kubernetes.io/session-cookie-secure")
        .is_none());
    assert!(a
        .get("nginx.ingress.kubernetes.io/proxy-read-timeout")
        .is_none());
    let off = with_spec(
        json!({"ingress": {"enabled": true, "hosts": ["a"], "stickySessions": {"enabled": false}}}),
    );
    let a = json(&ingress(&off).unwrap())["metadata"]["annotations"].clone();
    assert!(a.get("nginx.ingress.kubernetes.io/affinity").is_none());
    assert!(ingress(&with_spec(json!({"ingress": {"hosts": ["a"]}}))).is_none());
}

#[test]
fn network_policy_opens_the_internal_port_to_its_namespace_by_default() {
    let peer = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}});
    let sc = with_spec(json!({"networkPolicy": {"enabled": true, "clientsFrom": [peer]}}));
    let np = json(&server_network_policy(&sc).unwrap());
    let rules = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules[0]["ports"][0]["port"], "http");
    assert_eq!(rules[0]["from"], json!([peer]));
    assert_eq!(rules[1]["ports"][0]["port"], "internal");
    assert_eq!(rules[1]["from"], json!([{"podSelector": {}}]));
    let single = with_spec(
        json!({"networkPolicy": {"enabled": true}, "server": {"internalListener": {"enabled": false}}}),
    );
    let np = json(&server_network_policy(&single).unwrap());
    assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 1);
    assert!(
        np["spec"]["ingress"][0].get("from").is_none(),
        "no clientsFrom: anyone"
    );
    assert!(server_network_policy(&cluster("chat")).is_none());
}

#[test]
fn service_monitor_scrapes_the_internal_service() {
    let sc = with_spec(
        json!({"monitoring": {"serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prom"}}}}),
    );
    let sm = json(&service_monitor(&sc).unwrap());
    assert_eq!(
        (&sm["apiVersion"], &sm["kind"]),
        (&json!("monitoring.coreos.com/v1"), &json!("ServiceMonitor"))
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"][ENDPOINT_LABEL],
        "internal"
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "internal", "path": "/metrics", "interval": "15s"}])
    );
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!(["default"])
    );
    // The selected Service has that label and port.
    let internal = json(&internal_service(&sc).unwrap());
    assert_eq!(internal["metadata"]["labels"][ENDPOINT_LABEL], "internal");
    assert_eq!(internal["spec"]["ports"][0]["name"], "internal");

    let single = with_spec(
        json!({"monitoring": {"serviceMonitor": {"enabled": true}}, "server": {"internalListener": {"enabled": false}}}),
    );
    let sm = json(&service_monitor(&single).unwrap());
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"][ENDPOINT_LABEL],
        "public"
    );
    assert!(service_monitor(&cluster("chat")).is_none());
}
