//! Tests of the server objects: ConfigMap, ServiceAccount and Deployment.

use super::*;
use crate::fixtures::{cluster, json, with_spec};
use k8s_openapi::ByteString;
use serde_json::{json, Value};

/// The server container of a Deployment, as JSON.
fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

fn env_names(c: &Value) -> Vec<&str> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

#[test]
fn deployment_defaults_are_safe() {
    let sc = cluster("chat");
    let d = json(&deployment(&sc));
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(
        spec["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let pod = &spec["template"]["spec"];
    let c = container(&d);
    let image = format!(
        "ghcr.io/switchboard-dev/switchboard:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(c["image"], image.as_str());
    // The probes and metrics use the internal listener, which is on by default.
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/health", "port": "internal"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": "internal"})
    );
    let ports: Vec<_> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("http", 8080), ("internal", 9091)]);
    // preStop 5 s + drain 15 s + margin 10 s.
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        c["lifecycle"]["preStop"]["sleep"]["seconds"],
        PRESTOP_SLEEP_SECS
    );
    let sec = &c["securityContext"];
    assert_eq!(
        (
            &sec["readOnlyRootFilesystem"],
            &sec["runAsNonRoot"],
            &sec["allowPrivilegeEscalation"]
        ),
        (&json!(true), &json!(true), &json!(false))
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let term =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(env_names(c), ["SERVER_ID", "REDIS_PASSWORD"]);
    assert_eq!(
        c["env"][1]["valueFrom"]["secretKeyRef"]["name"],
        "chat-redis-auth"
    );
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "chat-config");
    let ann = &spec["template"]["metadata"]["annotations"];
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], config_hash(&sc).as_str());
}

#[test]
fn deployment_follows_the_spec() {
    let sc = with_spec(json!({
        "replicas": 4,
        "image": {"repository": "reg.example/sb", "tag": "1.2.3", "pullPolicy": "Always", "pullSecrets": ["regcred"]},
        "server": {"drainTimeoutSeconds": 40, "logLevel": "debug"},
        "env": [{"name": "EXTRA", "value": "1"}],
        "podAnnotations": {"a": "b"},
        "nodeSelector": {"pool": "signal"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "antiAffinity": "Required",
        "auth": {"jwtSecretRef": {"name": "jwt", "key": "secret"}, "adminTokenSecretRef": {"name": "admin", "key": "t"}},
        "turn": {"urls": ["turn:t.example:3478"], "secretRef": {"name": "turn", "key": "s"}}
    }));
    let d = json(&deployment(&sc));
    assert_eq!(d["spec"]["replicas"], 4);
    let pod = &d["spec"]["template"]["spec"];
    let c = container(&d);
    assert_eq!(c["image"], "reg.example/sb:1.2.3");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["terminationGracePeriodSeconds"], 55);
    assert_eq!(
        env_names(c),
        [
            "SERVER_ID",
            "REDIS_PASSWORD",
            "JWT_SECRET",
            "ADMIN_TOKEN",
            "TURN_SECRET",
            "EXTRA"
        ]
    );
    assert_eq!(pod["nodeSelector"]["pool"], "signal");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    let tsc = &pod["topologySpreadConstraints"][0];
    assert_eq!(
        tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "chat"
    );
    let aa = &pod["affinity"]["podAntiAffinity"];
    assert!(aa
        .get("preferredDuringSchedulingIgnoredDuringExecution")
        .is_none());
    assert_eq!(
        aa["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // One pod per node: a surge pod would find no node, so pods are replaced
    // one at a time instead of the rollout waiting forever.
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 0, "maxUnavailable": 1})
    );
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["a"], "b");
    assert!(ann[CONFIG_HASH_ANNOTATION].is_string());
}

#[test]
fn no_anti_affinity_when_asked() {
    let d = json(&deployment(&with_spec(json!({"antiAffinity": "None"}))));
    assert!(d["spec"]["template"]["spec"].get("affinity").is_none());
}

#[test]
fn internal_listener_off_keeps_one_port() {
    let sc = with_spec(json!({"server": {"internalListener": {"enabled": false}}}));
    let d = json(&deployment(&sc));
    let c = container(&d);
    assert_eq!(c["ports"].as_array().unwrap().len(), 1);
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert!(!server_config_data(&sc).contains_key("INTERNAL_ADDR"));
    let on = with_spec(json!({"server": {"internalListener": {"port": 9100}}}));
    assert_eq!(server_config_data(&on)["INTERNAL_ADDR"], "0.0.0.0:9100");
}

#[test]
fn config_carries_server_settings() {
    let sc = with_spec(json!({
        "server": {"logLevel": "debug", "drainTimeoutSeconds": 20, "region": "eu", "allowedOrigins": ["https://a", "https://b"], "maxPeersPerRoom": 8},
        "auth": {"jwtSecretRef": {"name": "jwt", "key": "k"}, "issuer": "iss"},
        "turn": {"urls": ["turn:a", "turns:b"], "stunUrls": ["stun:s"], "ttlSeconds": 600}
    }));
    let d = server_config_data(&sc);
    let get = |k: &str| d.get(k).map(String::as_str);
    assert_eq!(get("RUST_LOG"), Some("debug"));
    assert_eq!(get("LOG_FORMAT"), Some("json"));
    assert_eq!(get("DRAIN_TIMEOUT_SECS"), Some("20"));
    assert_eq!(get("SERVER_REGION"), Some("eu"));
    assert_eq!(get("ALLOWED_ORIGINS"), Some("https://a,https://b"));
    assert_eq!(get("MAX_PEERS_PER_ROOM"), Some("8"));
    assert_eq!(get("MAX_CONNECTIONS"), None);
    assert_eq!(get("MAX_PENDING_PER_IP"), Some("1024"));
    assert_eq!(get("REDIS_URL"), Some("redis://chat-redis:6379"));
    assert_eq!(get("INTERNAL_ADDR"), Some("0.0.0.0:9091"));
    assert_eq!(get("JWT_ISSUER"), Some("iss"));
    assert_eq!(get("TURN_URLS"), Some("turn:a,turns:b"));
    assert_eq!(get("STUN_URLS"), Some("stun:s"));
    assert_eq!(get("TURN_TTL_SECS"), Some("600"));
    assert_eq!(server_configmap(&sc).data.unwrap(), d);
}

#[test]
fn jwt_key_files_are_mounted_from_their_secrets() {
    for (auth, var, path, volume) in [
        (
            json!({"publicKeySecretRef": {"name": "keys", "key": "pub.pem"}}),
            "JWT_PUBLIC_KEY_FILE",
            "/etc/switchboard/jwt/public.pem",
            "jwt-key",
        ),
        (
            json!({"jwksSecretRef": {"name": "keys", "key": "set.json"}}),
            "JWT_JWKS_FILE",
            "/etc/switchboard/jwks/jwks.json",
            "jwks",
        ),
    ] {
        let sc = with_spec(json!({"auth": auth}));
        assert_eq!(server_config_data(&sc)[var], path);
        let d = json(&deployment(&sc));
        let pod = &d["spec"]["template"]["spec"];
        let v = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .unwrap();
        assert_eq!(v["secret"]["secretName"], "keys");
        let file = path.rsplit('/').next().unwrap();
        assert_eq!(v["secret"]["items"][0]["path"], file);
        let m = container(&d)["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap();
        assert_eq!(format!("{}/{file}", m["mountPath"].as_str().unwrap()), path);
        assert!(!env_names(container(&d)).contains(&"JWT_SECRET"));
    }
}

#[test]
fn secret_refs_are_the_secrets_the_server_reads_at_startup() {
    let mut sc = cluster("chat");
    assert!(secret_refs(&sc).is_empty(), "managed Redis, no auth");
    sc.spec = serde_json::from_value(json!({
        "redis": {"external": {
            "url": "rediss://cache:6380",
            "passwordSecretRef": {"name": "cache", "key": "pw"},
            "tls": {"caSecretRef": {"name": "cache-ca", "key": "ca.crt"}}}},
        "auth": {"publicKeySecretRef": {"name": "jwt", "key": "k"}, "adminTokenSecretRef": {"name": "admin", "key": "t"}},
        "turn": {"urls": ["turn:t:3478"], "secretRef": {"name": "turn", "key": "k"}},
    }))
    .unwrap();
    let names: Vec<_> = secret_refs(&sc)
        .iter()
        .map(|r| format!("{}/{}", r.name, r.key))
        .collect();
    assert_eq!(
        names,
        ["cache/pw", "cache-ca/ca.crt", "jwt/k", "admin/t", "turn/k"]
    );
    // A JWKS document is reread by the server: rotating it needs no restart.
    let jwks = with_spec(json!({"auth": {"jwksSecretRef": {"name": "jwks", "key": "k"}}}));
    assert!(secret_refs(&jwks).is_empty());

    let refs = secret_refs(&sc);
    let (a, b) = (ByteString(b"a".to_vec()), ByteString(b"b".to_vec()));
    let hash = |v: Option<&ByteString>| {
        let mut values: Vec<_> = refs.iter().map(|r| (*r, Some(&a))).collect();
        values[2].1 = v;
        secrets_hash(&values)
    };
    assert_eq!(hash(Some(&a)), hash(Some(&a)));
    assert_ne!(hash(Some(&a)), hash(Some(&b)));
    assert_ne!(hash(Some(&a)), hash(None));
}

#[test]
fn config_hash_changes_with_config_only() {
    let a = cluster("chat");
    let mut b = a.clone();
    b.spec.replicas = 7;
    assert_eq!(config_hash(&a), config_hash(&b));
    b.spec.server.log_level = "debug".into();
    assert_ne!(config_hash(&a), config_hash(&b));
}

#[test]
fn external_redis_with_tls() {
    let sc = with_spec(json!({"redis": {"external": {
        "url": "rediss://cache.example:6380",
        "passwordSecretRef": {"name": "redis", "key": "pw"},
        "tls": {"caSecretRef": {"name": "redis-ca", "key": "ca.pem"}}
    }}}));
    assert!(
        redis_statefulset(&sc).is_none()
            && redis_service(&sc).is_none()
            && redis_configmap(&sc).is_none()
    );
    let d = server_config_data(&sc);
    assert_eq!(d["REDIS_URL"], "rediss://cache.example:6380");
    assert_eq!(d["REDIS_TLS_CA_FILE"], "/etc/switchboard/redis-ca/ca.crt");
    let dep = json(&deployment(&sc));
    let c = container(&dep);
    let pw = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "REDIS_PASSWORD")
        .unwrap();
    assert_eq!(pw["valueFrom"]["secretKeyRef"]["name"], "redis");
    let vols = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let vol = vols.iter().find(|v| v["name"] == "redis-ca").unwrap();
    assert_eq!(vol["secret"]["items"][0]["key"], "ca.pem");
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/etc/switchboard/redis-ca"));
    assert_eq!(redis_endpoint(&sc), "rediss://cache.example:6380");
}
