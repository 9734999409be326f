//! The server pods: their ConfigMap (settings as environment variables), their
//! ServiceAccount, and the Deployment with the pod template, built piece by
//! piece (environment, mounted secrets, container, pod, rollout strategy).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    LocalObjectReference, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodTemplateSpec, Probe, SecretVolumeSource, ServiceAccount, SleepAction, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::{
    autoscaling_enabled, hash_of, labels, managed_redis, meta, names, pod_selector,
    restricted_container_security, restricted_pod_security, secret_env, CONFIG_HASH_ANNOTATION,
    REDIS_PASSWORD_KEY, REDIS_PORT, SERVER_PORT,
};
use crate::crd::{AntiAffinity, SecretKeyRef, SignalingCluster};

/// Seconds the preStop hook waits before the server sees SIGTERM, so endpoints and
/// load balancers stop sending new connections first.
pub const PRESTOP_SLEEP_SECS: i64 = 5;
/// Margin on top of preStop and drain before the kubelet kills the container.
pub const GRACE_MARGIN_SECS: i64 = 10;
/// Where an external Redis's CA bundle is mounted.
const REDIS_CA_DIR: &str = "/etc/switchboard/redis-ca";
/// Where the JWT public key is mounted.
const JWT_KEY_DIR: &str = "/etc/switchboard/jwt";
/// Where the JWKS document is mounted (a directory of its own: the server
/// rereads the file, and the kubelet updates a mounted Secret in place).
const JWKS_DIR: &str = "/etc/switchboard/jwks";
/// Non-root user of the server image.
const SERVER_UID: i64 = 65532;

/// Names of the environment variables the operator sets; `spec.env` may not
/// override them.
pub const RESERVED_ENV: &[&str] = &[
    "PORT",
    "HOST",
    "INTERNAL_ADDR",
    "SERVER_ID",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_TLS",
    "REDIS_TLS_CA_FILE",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_JWKS_FILE",
    "ADMIN_TOKEN",
    "TURN_SECRET",
];

/// The image reference of the server container.
pub fn server_image(sc: &SignalingCluster) -> String {
    let tag = sc
        .spec
        .image
        .tag
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    format!("{}:{}", sc.spec.image.repository, tag)
}

/// Port of the internal listener when it is on.
pub fn internal_port(sc: &SignalingCluster) -> Option<i32> {
    let l = &sc.spec.server.internal_listener;
    l.enabled.then_some(l.port)
}

/// Name of the container port that serves `/metrics` and the probes.
pub fn metrics_port_name(sc: &SignalingCluster) -> &'static str {
    if internal_port(sc).is_some() {
        "internal"
    } else {
        "http"
    }
}

/// Seconds the kubelet waits between preStop and SIGKILL: longer than the preStop
/// sleep plus the server's drain timeout.
pub fn termination_grace_seconds(sc: &SignalingCluster) -> i64 {
    PRESTOP_SLEEP_SECS + i64::from(sc.spec.server.drain_timeout_seconds) + GRACE_MARGIN_SECS
}

/// Server configuration (non-secret), as environment variables.
pub fn server_config_data(sc: &SignalingCluster) -> BTreeMap<String, String> {
    let s = &sc.spec.server;
    let mut d = BTreeMap::new();
    d.insert("PORT".into(), SERVER_PORT.to_string());
    d.insert("HOST".into(), "0.0.0.0".into());
    if let Some(port) = internal_port(sc) {
        d.insert("INTERNAL_ADDR".into(), format!("0.0.0.0:{port}"));
    }
    // Behind a Service or an ingress every socket comes from a few proxy
    // addresses: bound sockets not yet upgraded in total, not per address.
    d.insert("MAX_PENDING_PER_IP".into(), "1024".into());
    d.insert("LOG_FORMAT".into(), "json".into());
    d.insert("RUST_LOG".into(), s.log_level.clone());
    d.insert(
        "DRAIN_TIMEOUT_SECS".into(),
        s.drain_timeout_seconds.to_string(),
    );
    if let Some(r) = &s.region {
        d.insert("SERVER_REGION".into(), r.clone());
    }
    if !s.allowed_origins.is_empty() {
        d.insert("ALLOWED_ORIGINS".into(), s.allowed_origins.join(","));
    }
    let limits = [
        ("MAX_CONNECTIONS", s.max_connections),
        ("MAX_PEERS_PER_ROOM", s.max_peers_per_room),
        ("MAX_PAYLOAD_BYTES", s.max_payload_bytes),
        ("RATE_LIMIT_PER_SEC", s.rate_limit_per_sec),
        ("RATE_LIMIT_BURST", s.rate_limit_burst),
        ("RESUME_WINDOW_SECS", s.resume_window_seconds),
    ];
    for (k, v) in limits {
        if let Some(v) = v {
            d.insert(k.into(), v.to_string());
        }
    }
    redis_config(sc, &mut d);
    auth_and_turn_config(sc, &mut d);
    d
}

/// `REDIS_URL` and, for an external Redis with a private CA, its bundle's path.
fn redis_config(sc: &SignalingCluster, d: &mut BTreeMap<String, String>) {
    match &sc.spec.redis.external {
        Some(ext) => {
            d.insert("REDIS_URL".into(), ext.url.clone());
            if ext.tls.as_ref().is_some_and(|t| t.ca_secret_ref.is_some()) {
                d.insert("REDIS_TLS_CA_FILE".into(), format!("{REDIS_CA_DIR}/ca.crt"));
            }
        }
        None => {
            let url = format!("redis://{}:{REDIS_PORT}", names(sc).redis);
            d.insert("REDIS_URL".into(), url);
        }
    }
}

/// The JWT claims and key files, and the ICE servers.
fn auth_and_turn_config(sc: &SignalingCluster, d: &mut BTreeMap<String, String>) {
    if let Some(auth) = &sc.spec.auth {
        if let Some(i) = &auth.issuer {
            d.insert("JWT_ISSUER".into(), i.clone());
        }
        if let Some(a) = &auth.audience {
            d.insert("JWT_AUDIENCE".into(), a.clone());
        }
        if auth.public_key_secret_ref.is_some() {
            let path = format!("{JWT_KEY_DIR}/public.pem");
            d.insert("JWT_PUBLIC_KEY_FILE".into(), path);
        }
        if auth.jwks_secret_ref.is_some() {
            d.insert("JWT_JWKS_FILE".into(), format!("{JWKS_DIR}/jwks.json"));
        }
    }
    if let Some(turn) = &sc.spec.turn {
        if !turn.urls.is_empty() {
            d.insert("TURN_URLS".into(), turn.urls.join(","));
        }
        if !turn.stun_urls.is_empty() {
            d.insert("STUN_URLS".into(), turn.stun_urls.join(","));
        }
        if let Some(t) = turn.ttl_seconds {
            d.insert("TURN_TTL_SECS".into(), t.to_string());
        }
    }
}

/// The server ConfigMap.
pub fn server_configmap(sc: &SignalingCluster) -> ConfigMap {
    ConfigMap {
        metadata: meta(sc, &names(sc).config, "server"),
        data: Some(server_config_data(sc)),
        ..Default::default()
    }
}

/// The ServiceAccount the server pods run as (no API access).
pub fn service_account(sc: &SignalingCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(sc, &names(sc).server, "server"),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The Secret keys given in the spec that the server pods read at startup: an
/// external Redis's password and CA bundle, the JWT secret or public key, the
/// admin token and the TURN secret. (The managed Redis password is generated
/// once and never rotated; a JWKS document is reread by the server.)
pub fn secret_refs(sc: &SignalingCluster) -> Vec<&SecretKeyRef> {
    let spec = &sc.spec;
    let mut refs = Vec::new();
    if let Some(ext) = &spec.redis.external {
        refs.extend(ext.password_secret_ref.as_ref());
        refs.extend(ext.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()));
    }
    if let Some(a) = &spec.auth {
        refs.extend(a.jwt_secret_ref.as_ref());
        refs.extend(a.public_key_secret_ref.as_ref());
        refs.extend(a.admin_token_secret_ref.as_ref());
    }
    refs.extend(spec.turn.as_ref().and_then(|t| t.secret_ref.as_ref()));
    refs
}

/// The hash of the values of `secret_refs`, in that order (`None`: the Secret
/// or the key does not exist yet).
pub fn secrets_hash(values: &[(&SecretKeyRef, Option<&ByteString>)]) -> String {
    let listed: Vec<_> = values
        .iter()
        .map(|(r, value)| (&r.name, &r.key, value))
        .collect();
    hash_of(&listed)
}

/// Sets an annotation on the pod template of a Deployment.
pub fn annotate_pods(d: &mut Deployment, key: &str, value: String) {
    let template = &mut d.spec.template;
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value);
}

/// Hash of everything that, when changed, must restart the server pods: the
/// ConfigMap data and the Secret references the pods read.
pub fn config_hash(sc: &SignalingCluster) -> String {
    let secrets = (
        &sc.spec.auth,
        &sc.spec.turn.as_ref().map(|t| &t.secret_ref),
        &sc.spec
            .redis
            .external
            .as_ref()
            .map(|e| (&e.password_secret_ref, &e.tls)),
    );
    hash_of(&(server_config_data(sc), secrets))
}

fn http_probe(port: &str, path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn anti_affinity(sc: &SignalingCluster) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(pod_selector(sc, "server")),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let paa = match sc.spec.anti_affinity {
        AntiAffinity::None => return None,
        AntiAffinity::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..Default::default()
        },
        AntiAffinity::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(paa),
        ..Default::default()
    })
}

/// Environment variables of the server container: its pod name, the secrets,
/// then the user's extra variables.
fn server_env(sc: &SignalingCluster) -> Vec<EnvVar> {
    let spec = &sc.spec;
    let mut env = vec![EnvVar {
        name: "SERVER_ID".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    match (&spec.redis.external, managed_redis(sc)) {
        (Some(ext), _) => {
            if let Some(r) = &ext.password_secret_ref {
                env.push(secret_env("REDIS_PASSWORD", &r.name, &r.key));
            }
        }
        (None, Some(m)) if m.auth => {
            let secret = names(sc).redis_auth;
            env.push(secret_env("REDIS_PASSWORD", &secret, REDIS_PASSWORD_KEY));
        }
        _ => {}
    }
    if let Some(auth) = &spec.auth {
        if let Some(r) = &auth.jwt_secret_ref {
            env.push(secret_env("JWT_SECRET", &r.name, &r.key));
        }
        if let Some(r) = &auth.admin_token_secret_ref {
            env.push(secret_env("ADMIN_TOKEN", &r.name, &r.key));
        }
    }
    if let Some(r) = spec.turn.as_ref().and_then(|t| t.secret_ref.as_ref()) {
        env.push(secret_env("TURN_SECRET", &r.name, &r.key));
    }
    env.extend(spec.env.iter().cloned());
    env
}

/// A Secret key mounted read-only as `dir/file`.
fn secret_file(name: &str, r: &SecretKeyRef, dir: &str, file: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(r.name.clone()),
            items: Some(vec![KeyToPath {
                key: r.key.clone(),
                path: file.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: name.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..Default::default()
    };
    (volume, mount)
}

/// Volumes of the server pod and their mounts: a writable `/tmp`, and the
/// Secret keys the server reads as files.
fn server_volumes(sc: &SignalingCluster) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    let spec = &sc.spec;
    let ca = spec.redis.external.as_ref().and_then(|e| e.tls.as_ref());
    let auth = spec.auth.as_ref();
    let files = [
        (
            "redis-ca",
            ca.and_then(|t| t.ca_secret_ref.as_ref()),
            REDIS_CA_DIR,
            "ca.crt",
        ),
        (
            "jwt-key",
            auth.and_then(|a| a.public_key_secret_ref.as_ref()),
            JWT_KEY_DIR,
            "public.pem",
        ),
        (
            "jwks",
            auth.and_then(|a| a.jwks_secret_ref.as_ref()),
            JWKS_DIR,
            "jwks.json",
        ),
    ];
    for (name, r, dir, file) in files {
        if let Some(r) = r {
            let (v, m) = secret_file(name, r, dir, file);
            volumes.push(v);
            mounts.push(m);
        }
    }
    (volumes, mounts)
}

/// The server container. Probes go to the internal port when it is on.
fn server_container(sc: &SignalingCluster, mounts: Vec<VolumeMount>) -> Container {
    let spec = &sc.spec;
    let mut ports = vec![ContainerPort {
        name: Some("http".into()),
        container_port: SERVER_PORT,
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    if let Some(port) = internal_port(sc) {
        ports.push(ContainerPort {
            name: Some("internal".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let probe_port = metrics_port_name(sc);
    Container {
        name: "switchboard".into(),
        image: Some(server_image(sc)),
        image_pull_policy: spec.image.pull_policy.map(|p| p.as_str().to_string()),
        ports: Some(ports),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names(sc).config,
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        env: Some(server_env(sc)),
        resources: spec.resources.clone(),
        liveness_probe: Some(http_probe(probe_port, "/health", 10, 3)),
        readiness_probe: Some(http_probe(probe_port, "/ready", 5, 2)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRESTOP_SLEEP_SECS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The server pod: placement, security and the container.
fn server_pod(sc: &SignalingCluster) -> PodSpec {
    let spec = &sc.spec;
    let (volumes, mounts) = server_volumes(sc);
    let topology_spread = (!spec.topology_spread_constraints.is_empty()).then(|| {
        let mut constraints = spec.topology_spread_constraints.clone();
        for c in &mut constraints {
            c.label_selector
                .get_or_insert_with(|| pod_selector(sc, "server"));
        }
        constraints
    });
    let pull_secrets = spec.image.pull_secrets.iter();
    PodSpec {
        service_account_name: Some(names(sc).server),
        automount_service_account_token: Some(false),
        containers: vec![server_container(sc, mounts)],
        termination_grace_period_seconds: Some(termination_grace_seconds(sc)),
        security_context: Some(restricted_pod_security(SERVER_UID)),
        affinity: anti_affinity(sc),
        topology_spread_constraints: topology_spread,
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        image_pull_secrets: (!spec.image.pull_secrets.is_empty()).then(|| {
            pull_secrets
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect()
        }),
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// Start a new pod before a draining one goes away (no capacity dip), except
/// with one pod per node required: a surge pod would find no free node and the
/// rollout would wait forever, so that case replaces one pod at a time.
pub fn rollout_strategy(sc: &SignalingCluster) -> DeploymentStrategy {
    let (surge, unavailable) = match sc.spec.anti_affinity {
        AntiAffinity::Required => (0, 1),
        AntiAffinity::Preferred | AntiAffinity::None => (1, 0),
    };
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_unavailable: Some(IntOrString::Int(unavailable)),
            max_surge: Some(IntOrString::Int(surge)),
        }),
    }
}

/// The server Deployment. `replicas` is left out while autoscaling is on, so the
/// operator's field manager does not own it and never fights the HPA.
pub fn deployment(sc: &SignalingCluster) -> Deployment {
    let spec = &sc.spec;
    let mut pod_annotations = spec.pod_annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(sc));
    Deployment {
        metadata: meta(sc, &names(sc).server, "server"),
        spec: DeploymentSpec {
            replicas: (!autoscaling_enabled(sc)).then_some(spec.replicas),
            selector: pod_selector(sc, "server"),
            strategy: Some(rollout_strategy(sc)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(sc, "server")),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(server_pod(sc)),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}
