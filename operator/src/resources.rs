//! Pure builders: one function per owned object, from a `SignalingCluster` to the
//! object the operator wants to exist.
//!
//! Nothing here talks to the API server, so every builder is unit-tested on its
//! own. The reconcile loop applies what these return with server-side apply. Each
//! object carries an owner reference to its SignalingCluster (garbage collection on
//! delete) and the operator's labels.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container,
    ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, LocalObjectReference,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec as K8sServiceSpec, SleepAction, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{AntiAffinity, ManagedRedis, SecretKeyRef, SignalingCluster};

/// Port the server listens on inside the pod.
pub const SERVER_PORT: i32 = 8080;
/// Port of the managed Redis.
pub const REDIS_PORT: i32 = 6379;
/// Pod-template annotation with the hash of the server configuration; a change rolls
/// the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "switchboard.dev/config-hash";
/// Pod-template annotation with the hash of the Secret values the server reads
/// at startup (see [`secret_refs`]); rotating one of them rolls the pods.
pub const SECRETS_HASH_ANNOTATION: &str = "switchboard.dev/secrets-hash";
/// Annotation with the hash of the desired object the operator last applied; equal
/// hashes let the reconcile loop skip a write.
pub const SPEC_HASH_ANNOTATION: &str = "switchboard.dev/spec-hash";
/// Key of the generated Redis password in its Secret.
pub const REDIS_PASSWORD_KEY: &str = "password";
/// Seconds the preStop hook waits before the server sees SIGTERM, so endpoints and
/// load balancers stop sending new connections first.
pub const PRESTOP_SLEEP_SECS: i64 = 5;
/// Margin on top of preStop and drain before the kubelet kills the container.
pub const GRACE_MARGIN_SECS: i64 = 10;
/// Where an external Redis's CA bundle is mounted.
const REDIS_CA_DIR: &str = "/etc/switchboard/redis-ca";
/// Non-root user of the server image.
const SERVER_UID: i64 = 65532;
/// User of the official Redis image.
const REDIS_UID: i64 = 999;

/// Names of every object owned by one SignalingCluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, HPA, PDB and ServiceAccount.
    pub server: String,
    /// Server ConfigMap.
    pub config: String,
    /// Redis StatefulSet and its headless Service.
    pub redis: String,
    /// Redis configuration ConfigMap.
    pub redis_config: String,
    /// Generated Redis password Secret.
    pub redis_auth: String,
}

impl Names {
    /// Names derived from the SignalingCluster's name.
    pub fn new(name: &str) -> Self {
        Self {
            server: name.to_string(),
            config: format!("{name}-config"),
            redis: format!("{name}-redis"),
            redis_config: format!("{name}-redis-config"),
            redis_auth: format!("{name}-redis-auth"),
        }
    }
}

fn names(sc: &SignalingCluster) -> Names {
    Names::new(&sc.name_any())
}

/// Labels that select one component's pods.
pub fn selector_labels(sc: &SignalingCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "switchboard".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), sc.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ])
}

/// The label selector of the server pods as a string, for the scale subresource.
pub fn selector_string(sc: &SignalingCluster) -> String {
    selector_labels(sc, "server")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(sc: &SignalingCluster, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(sc, component);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "switchboard-operator".into(),
    );
    l.insert("app.kubernetes.io/part-of".into(), "switchboard".into());
    l
}

fn owner(sc: &SignalingCluster) -> OwnerReference {
    // A SignalingCluster read from the API server always has a uid; tests build
    // them with one too.
    sc.controller_owner_ref(&())
        .expect("SignalingCluster has a uid")
}

fn meta(sc: &SignalingCluster, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: sc.namespace(),
        labels: Some(labels(sc, component)),
        owner_references: Some(vec![owner(sc)]),
        ..Default::default()
    }
}

/// Hex SHA-256 of a value's JSON form (stable: maps are ordered).
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("Kubernetes objects serialize");
    hex::encode(&Sha256::digest(&json)[..16])
}

/// Stamps `SPEC_HASH_ANNOTATION` with the hash of the object without it.
pub fn with_spec_hash<K: Resource + serde::Serialize>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(SPEC_HASH_ANNOTATION);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    let h = hash_of(&obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.into(), h);
    obj
}

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

/// The managed Redis settings, or `None` when the cluster uses an external Redis.
pub fn managed_redis(sc: &SignalingCluster) -> Option<ManagedRedis> {
    match (&sc.spec.redis.managed, &sc.spec.redis.external) {
        (_, Some(_)) => None,
        (Some(m), None) => Some(m.clone()),
        (None, None) => Some(ManagedRedis::default()),
    }
}

/// The Redis endpoint shown in status: host and port, never a password.
pub fn redis_endpoint(sc: &SignalingCluster) -> String {
    match &sc.spec.redis.external {
        Some(ext) => strip_userinfo(&ext.url),
        None => format!("{}:{REDIS_PORT}", names(sc).redis),
    }
}

/// `redis://user:pw@host:1/0` -> `redis://host:1/0`.
pub fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// Replica count the PDB default and the Deployment look at: the HPA minimum while
/// autoscaling, else `spec.replicas`.
pub fn autoscaling_enabled(sc: &SignalingCluster) -> bool {
    sc.spec.autoscaling.as_ref().is_some_and(|a| a.enabled)
}

fn effective_min_replicas(sc: &SignalingCluster) -> i32 {
    match &sc.spec.autoscaling {
        Some(a) if a.enabled => a.min_replicas,
        _ => sc.spec.replicas,
    }
}

/// Whether a PodDisruptionBudget should exist.
pub fn pdb_enabled(sc: &SignalingCluster) -> bool {
    match sc
        .spec
        .pod_disruption_budget
        .as_ref()
        .and_then(|p| p.enabled)
    {
        Some(on) => on,
        None => effective_min_replicas(sc) > 1,
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
    let mut put = |k: &str, v: String| {
        d.insert(k.to_string(), v);
    };
    put("PORT", SERVER_PORT.to_string());
    put("HOST", "0.0.0.0".into());
    put("LOG_FORMAT", "json".into());
    put("RUST_LOG", s.log_level.clone());
    put("DRAIN_TIMEOUT_SECS", s.drain_timeout_seconds.to_string());
    if let Some(r) = &s.region {
        put("SERVER_REGION", r.clone());
    }
    if !s.allowed_origins.is_empty() {
        put("ALLOWED_ORIGINS", s.allowed_origins.join(","));
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
            put(k, v.to_string());
        }
    }
    match &sc.spec.redis.external {
        Some(ext) => {
            put("REDIS_URL", ext.url.clone());
            if ext
                .tls
                .as_ref()
                .and_then(|t| t.ca_secret_ref.as_ref())
                .is_some()
            {
                put("REDIS_TLS_CA_FILE", format!("{REDIS_CA_DIR}/ca.crt"));
            }
        }
        None => put(
            "REDIS_URL",
            format!("redis://{}:{REDIS_PORT}", names(sc).redis),
        ),
    }
    if let Some(auth) = &sc.spec.auth {
        if let Some(i) = &auth.issuer {
            put("JWT_ISSUER", i.clone());
        }
        if let Some(a) = &auth.audience {
            put("JWT_AUDIENCE", a.clone());
        }
    }
    if let Some(turn) = &sc.spec.turn {
        if !turn.urls.is_empty() {
            put("TURN_URLS", turn.urls.join(","));
        }
        if !turn.stun_urls.is_empty() {
            put("STUN_URLS", turn.stun_urls.join(","));
        }
        if let Some(t) = turn.ttl_seconds {
            put("TURN_TTL_SECS", t.to_string());
        }
    }
    d
}

/// Names of the environment variables the operator sets; `spec.env` may not
/// override them.
pub const RESERVED_ENV: &[&str] = &[
    "PORT",
    "HOST",
    "SERVER_ID",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_TLS",
    "REDIS_TLS_CA_FILE",
    "JWT_SECRET",
    "TURN_SECRET",
];

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
/// external Redis's password and CA bundle, the JWT secret and the TURN secret.
/// (The managed Redis password is generated once and never rotated.)
pub fn secret_refs(sc: &SignalingCluster) -> Vec<&SecretKeyRef> {
    let spec = &sc.spec;
    let mut refs = Vec::new();
    if let Some(ext) = &spec.redis.external {
        refs.extend(ext.password_secret_ref.as_ref());
        refs.extend(ext.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()));
    }
    refs.extend(spec.auth.as_ref().map(|a| &a.jwt_secret_ref));
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

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".into()),
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
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(sc, "server")),
            ..Default::default()
        }),
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

/// Hash of everything that, when changed, must restart the server pods: the
/// ConfigMap data and the Secret references the pods read.
pub fn config_hash(sc: &SignalingCluster) -> String {
    let secrets = (
        &sc.spec.auth.as_ref().map(|a| &a.jwt_secret_ref),
        &sc.spec.turn.as_ref().map(|t| &t.secret_ref),
        &sc.spec
            .redis
            .external
            .as_ref()
            .map(|e| (&e.password_secret_ref, &e.tls)),
    );
    hash_of(&(server_config_data(sc), secrets))
}

/// The server Deployment. `replicas` is left out while autoscaling is on, so the
/// operator's field manager does not own it and never fights the HPA.
pub fn deployment(sc: &SignalingCluster) -> Deployment {
    let n = names(sc);
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
    match (&spec.redis.external, managed_redis(sc)) {
        (Some(ext), _) => {
            if let Some(r) = &ext.password_secret_ref {
                env.push(secret_env("REDIS_PASSWORD", &r.name, &r.key));
            }
            if let Some(ca) = ext.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()) {
                volumes.push(Volume {
                    name: "redis-ca".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(ca.name.clone()),
                        items: Some(vec![KeyToPath {
                            key: ca.key.clone(),
                            path: "ca.crt".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                mounts.push(VolumeMount {
                    name: "redis-ca".into(),
                    mount_path: REDIS_CA_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                });
            }
        }
        (None, Some(m)) if m.auth => {
            env.push(secret_env(
                "REDIS_PASSWORD",
                &n.redis_auth,
                REDIS_PASSWORD_KEY,
            ));
        }
        _ => {}
    }
    if let Some(auth) = &spec.auth {
        env.push(secret_env(
            "JWT_SECRET",
            &auth.jwt_secret_ref.name,
            &auth.jwt_secret_ref.key,
        ));
    }
    if let Some(r) = spec.turn.as_ref().and_then(|t| t.secret_ref.as_ref()) {
        env.push(secret_env("TURN_SECRET", &r.name, &r.key));
    }
    env.extend(spec.env.iter().cloned());

    let container = Container {
        name: "switchboard".into(),
        image: Some(server_image(sc)),
        image_pull_policy: spec.image.pull_policy.map(|p| p.as_str().to_string()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: n.config.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        env: Some(env),
        resources: spec.resources.clone(),
        liveness_probe: Some(http_probe("/health", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
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
    };

    let mut pod_annotations = spec.pod_annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(sc));

    let topology_spread = (!spec.topology_spread_constraints.is_empty()).then(|| {
        spec.topology_spread_constraints
            .iter()
            .cloned()
            .map(|mut c| {
                if c.label_selector.is_none() {
                    c.label_selector = Some(LabelSelector {
                        match_labels: Some(selector_labels(sc, "server")),
                        ..Default::default()
                    });
                }
                c
            })
            .collect()
    });

    let pod = PodSpec {
        service_account_name: Some(n.server.clone()),
        automount_service_account_token: Some(false),
        containers: vec![container],
        termination_grace_period_seconds: Some(termination_grace_seconds(sc)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SERVER_UID),
            run_as_group: Some(SERVER_UID),
            fs_group: Some(SERVER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        affinity: anti_affinity(sc),
        topology_spread_constraints: topology_spread,
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        image_pull_secrets: (!spec.image.pull_secrets.is_empty()).then(|| {
            spec.image
                .pull_secrets
                .iter()
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect()
        }),
        volumes: Some(volumes),
        ..Default::default()
    };

    Deployment {
        metadata: meta(sc, &n.server, "server"),
        spec: DeploymentSpec {
            replicas: (!autoscaling_enabled(sc)).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(sc, "server")),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(sc, "server")),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Service clients connect to.
pub fn service(sc: &SignalingCluster) -> Service {
    let s = &sc.spec.service;
    let mut metadata = meta(sc, &names(sc).server, "server");
    if !s.annotations.is_empty() {
        metadata.annotations = Some(s.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(K8sServiceSpec {
            type_: Some(s.type_.as_str().into()),
            selector: Some(selector_labels(sc, "server")),
            session_affinity: Some(s.session_affinity.as_str().into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: s.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The autoscaling/v2 HPA, when autoscaling is enabled.
pub fn hpa(sc: &SignalingCluster) -> Option<HorizontalPodAutoscaler> {
    let a = sc.spec.autoscaling.as_ref().filter(|a| a.enabled)?;
    let resource = |name: &str, pct: i32| MetricSpec {
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
    };
    let mut metrics = Vec::new();
    if let Some(c) = a.target_cpu_utilization_percentage {
        metrics.push(resource("cpu", c));
    }
    if let Some(m) = a.target_memory_utilization_percentage {
        metrics.push(resource("memory", m));
    }
    if metrics.is_empty() {
        metrics.push(resource("cpu", 70));
    }
    Some(HorizontalPodAutoscaler {
        metadata: meta(sc, &names(sc).server, "server"),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names(sc).server,
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            ..Default::default()
        },
        ..Default::default()
    })
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
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(sc, "server")),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Secret holding a freshly generated Redis password. Created once (never
/// applied again), so the password is never rotated by a reconcile.
pub fn redis_auth_secret(sc: &SignalingCluster, password: &str) -> Secret {
    Secret {
        metadata: meta(sc, &names(sc).redis_auth, "redis"),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            REDIS_PASSWORD_KEY.to_string(),
            password.to_string(),
        )])),
        ..Default::default()
    }
}

/// A random password: 32 bytes of the OS generator, hex encoded.
pub fn generate_password() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// redis.conf of the managed Redis.
pub fn redis_conf(m: &ManagedRedis) -> String {
    let mut conf =
        String::from("bind * -::*\nport 6379\nprotected-mode no\nmaxmemory-policy noeviction\n");
    if m.persistence {
        conf.push_str("appendonly yes\nappendfsync everysec\nsave \"\"\n");
    } else {
        conf.push_str("appendonly no\nsave \"\"\n");
    }
    conf
}

/// ConfigMap with redis.conf, when Redis is managed.
pub fn redis_configmap(sc: &SignalingCluster) -> Option<ConfigMap> {
    let m = managed_redis(sc)?;
    Some(ConfigMap {
        metadata: meta(sc, &names(sc).redis_config, "redis"),
        data: Some(BTreeMap::from([("redis.conf".to_string(), redis_conf(&m))])),
        ..Default::default()
    })
}

/// Headless Service of the managed Redis (the StatefulSet's governing service).
pub fn redis_service(sc: &SignalingCluster) -> Option<Service> {
    managed_redis(sc)?;
    Some(Service {
        metadata: meta(sc, &names(sc).redis, "redis"),
        spec: Some(K8sServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(sc, "redis")),
            publish_not_ready_addresses: Some(false),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: REDIS_PORT,
                target_port: Some(IntOrString::String("redis".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// NetworkPolicy letting only this cluster's server pods reach the managed Redis.
pub fn redis_network_policy(sc: &SignalingCluster) -> Option<NetworkPolicy> {
    managed_redis(sc)?;
    Some(NetworkPolicy {
        metadata: meta(sc, &names(sc).redis, "redis"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(sc, "redis")),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(sc, "server")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    })
}

/// The managed Redis StatefulSet (one replica).
pub fn redis_statefulset(sc: &SignalingCluster) -> Option<StatefulSet> {
    let m = managed_redis(sc)?;
    let n = names(sc);
    let mut env = Vec::new();
    if m.auth {
        env.push(secret_env(
            "REDIS_PASSWORD",
            &n.redis_auth,
            REDIS_PASSWORD_KEY,
        ));
        // redis-cli reads this, so the probe needs no password on its command line.
        env.push(secret_env(
            "REDISCLI_AUTH",
            &n.redis_auth,
            REDIS_PASSWORD_KEY,
        ));
    }
    let start = if m.auth {
        r#"exec redis-server /etc/redis/redis.conf --requirepass "$REDIS_PASSWORD""#
    } else {
        "exec redis-server /etc/redis/redis.conf"
    };
    let container = Container {
        name: "redis".into(),
        image: Some(m.image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), start.into()]),
        // Redis keeps its files in its working directory: the data volume.
        working_dir: Some("/data".into()),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        resources: m.resources.clone(),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".into()),
                ..Default::default()
            }),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "redis-cli ping | grep -q PONG".into(),
                ]),
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            ..Default::default()
        }),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: "/etc/redis".into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: n.redis_config.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut claims = None;
    if m.persistence {
        claims = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                labels: Some(selector_labels(sc, "redis")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: m.storage.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(m.storage.size.clone()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    } else {
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), hash_of(&redis_conf(&m)));
    Some(StatefulSet {
        metadata: meta(sc, &n.redis, "redis"),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(n.redis.clone()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(sc, "redis")),
                ..Default::default()
            },
            // The claim lives as long as the SignalingCluster's Redis does: deleting
            // the cluster (or switching it to an external Redis) removes the data.
            persistent_volume_claim_retention_policy: m.persistence.then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                }
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(sc, "redis")),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(REDIS_UID),
                        run_as_group: Some(REDIS_UID),
                        fs_group: Some(REDIS_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claims,
            ..Default::default()
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cluster;
    use serde_json::json;

    fn with(spec: serde_json::Value) -> SignalingCluster {
        let mut sc = cluster("chat");
        sc.spec = serde_json::from_value(spec).unwrap();
        sc
    }

    #[test]
    fn every_object_is_owned_labelled_and_namespaced() {
        let sc = cluster("chat");
        let metas = [
            server_configmap(&sc).metadata,
            service_account(&sc).metadata,
            deployment(&sc).metadata,
            service(&sc).metadata,
            pdb(&sc).unwrap().metadata,
            redis_configmap(&sc).unwrap().metadata,
            redis_service(&sc).unwrap().metadata,
            redis_network_policy(&sc).unwrap().metadata,
            redis_statefulset(&sc).unwrap().metadata,
            redis_auth_secret(&sc, "pw").metadata,
        ];
        for m in metas {
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
                ("SignalingCluster", "chat", "uid-chat")
            );
            assert_eq!(owner.controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("default"));
            let l = m.labels.unwrap();
            assert_eq!(l["app.kubernetes.io/instance"], "chat");
            assert_eq!(l["app.kubernetes.io/managed-by"], "switchboard-operator");
        }
    }

    #[test]
    fn deployment_defaults_are_safe() {
        let sc = cluster("chat");
        let d = deployment(&sc);
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(2));
        let ru = spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some(
                format!(
                    "ghcr.io/switchboard-dev/switchboard:{}",
                    env!("CARGO_PKG_VERSION")
                )
                .as_str()
            )
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/health")
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/ready")
        );
        // preStop 5 s + drain 15 s + margin 10 s.
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        assert!(pod.termination_grace_period_seconds.unwrap() > PRESTOP_SLEEP_SECS + 15);
        let pre = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre.sleep.as_ref().unwrap().seconds, PRESTOP_SLEEP_SECS);
        let sec = c.security_context.as_ref().unwrap();
        assert_eq!(
            (
                sec.read_only_root_filesystem,
                sec.run_as_non_root,
                sec.allow_privilege_escalation
            ),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_user,
            Some(65532)
        );
        let aa = pod
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        assert_eq!(
            aa.preferred_during_scheduling_ignored_during_execution
                .as_ref()
                .unwrap()[0]
                .pod_affinity_term
                .topology_key,
            "kubernetes.io/hostname"
        );
        let env: Vec<_> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, ["SERVER_ID", "REDIS_PASSWORD"]);
        assert_eq!(
            c.env.as_ref().unwrap()[1]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "chat-redis-auth"
        );
        assert_eq!(
            c.env_from.as_ref().unwrap()[0]
                .config_map_ref
                .as_ref()
                .unwrap()
                .name,
            "chat-config"
        );
        let ann = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(ann[CONFIG_HASH_ANNOTATION], config_hash(&sc));
    }

    #[test]
    fn deployment_follows_the_spec() {
        let sc = with(json!({
            "replicas": 4,
            "image": {"repository": "reg.example/sb", "tag": "1.2.3", "pullPolicy": "Always", "pullSecrets": ["regcred"]},
            "server": {"drainTimeoutSeconds": 40, "logLevel": "debug"},
            "env": [{"name": "EXTRA", "value": "1"}],
            "podAnnotations": {"a": "b"},
            "nodeSelector": {"pool": "signal"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
            "antiAffinity": "Required",
            "auth": {"jwtSecretRef": {"name": "jwt", "key": "secret"}},
            "turn": {"urls": ["turn:t.example:3478"], "secretRef": {"name": "turn", "key": "s"}}
        }));
        let d = deployment(&sc);
        assert_eq!(d.spec.replicas, Some(4));
        let pod = d.spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("reg.example/sb:1.2.3"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(pod.termination_grace_period_seconds, Some(55));
        let env: Vec<_> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            env,
            [
                "SERVER_ID",
                "REDIS_PASSWORD",
                "JWT_SECRET",
                "TURN_SECRET",
                "EXTRA"
            ]
        );
        assert_eq!(pod.node_selector.unwrap()["pool"], "signal");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let tsc = &pod.topology_spread_constraints.unwrap()[0];
        assert_eq!(
            tsc.label_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app.kubernetes.io/instance"],
            "chat"
        );
        let aa = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(aa
            .preferred_during_scheduling_ignored_during_execution
            .is_none());
        assert_eq!(
            aa.required_during_scheduling_ignored_during_execution
                .unwrap()
                .len(),
            1
        );
        let ann = d.spec.template.metadata.unwrap().annotations.unwrap();
        assert_eq!(ann["a"], "b");
        assert!(ann.contains_key(CONFIG_HASH_ANNOTATION));
    }

    #[test]
    fn no_anti_affinity_when_asked() {
        let sc = with(json!({"antiAffinity": "None"}));
        assert!(deployment(&sc)
            .spec
            .template
            .spec
            .unwrap()
            .affinity
            .is_none());
    }

    #[test]
    fn autoscaling_leaves_replicas_to_the_hpa() {
        let sc = with(
            json!({"replicas": 3, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 8, "targetMemoryUtilizationPercentage": 80}}),
        );
        assert_eq!(deployment(&sc).spec.replicas, None);
        let json = serde_json::to_value(deployment(&sc)).unwrap();
        assert!(
            json["spec"].get("replicas").is_none(),
            "replicas must not be in the applied object"
        );
        let h = hpa(&sc).unwrap();
        assert_eq!((h.spec.min_replicas, h.spec.max_replicas), (Some(2), 8));
        assert_eq!(h.spec.scale_target_ref.name, "chat");
        let m = h.spec.metrics.unwrap();
        assert_eq!(m.len(), 1);
        let r = m[0].resource.as_ref().unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("memory", Some(80))
        );
    }

    #[test]
    fn hpa_defaults_to_cpu_and_is_absent_when_disabled() {
        let sc = with(json!({"autoscaling": {"enabled": true}}));
        let r = hpa(&sc).unwrap().spec.metrics.unwrap()[0]
            .resource
            .clone()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("cpu", Some(70))
        );
        assert!(hpa(&with(json!({"autoscaling": {"enabled": false}}))).is_none());
        assert!(hpa(&cluster("chat")).is_none());
    }

    #[test]
    fn pdb_is_on_by_default_only_with_several_replicas() {
        assert!(pdb(&with(json!({"replicas": 1}))).is_none());
        let p = pdb(&with(json!({"replicas": 3}))).unwrap();
        assert_eq!(p.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
        assert!(pdb(&with(
            json!({"replicas": 3, "podDisruptionBudget": {"enabled": false}})
        ))
        .is_none());
        assert!(pdb(&with(
            json!({"replicas": 1, "podDisruptionBudget": {"enabled": true}})
        ))
        .is_some());
        assert!(pdb(&with(
            json!({"replicas": 1, "autoscaling": {"enabled": true, "minReplicas": 2}})
        ))
        .is_some());
    }

    #[test]
    fn service_follows_the_spec() {
        let sc = with(
            json!({"service": {"type": "LoadBalancer", "port": 443, "annotations": {"lb": "x"}, "sessionAffinity": "ClientIP"}}),
        );
        let s = service(&sc);
        assert_eq!(s.metadata.annotations.unwrap()["lb"], "x");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (443, Some(IntOrString::String("http".into())))
        );
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            "server"
        );
    }

    #[test]
    fn config_carries_server_settings() {
        let sc = with(json!({
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
        assert_eq!(get("REDIS_URL"), Some("redis://chat-redis:6379"));
        assert_eq!(get("JWT_ISSUER"), Some("iss"));
        assert_eq!(get("TURN_URLS"), Some("turn:a,turns:b"));
        assert_eq!(get("STUN_URLS"), Some("stun:s"));
        assert_eq!(get("TURN_TTL_SECS"), Some("600"));
        assert_eq!(server_configmap(&sc).data.unwrap(), d);
    }

    #[test]
    fn secret_refs_are_the_secrets_the_server_reads() {
        let mut sc = cluster("chat");
        assert!(secret_refs(&sc).is_empty(), "managed Redis, no auth");
        sc.spec.redis = serde_json::from_value(json!({"external": {
            "url": "rediss://cache:6380",
            "passwordSecretRef": {"name": "cache", "key": "pw"},
            "tls": {"caSecretRef": {"name": "cache-ca", "key": "ca.crt"}}}}))
        .unwrap();
        sc.spec.auth = Some(
            serde_json::from_value(json!({"jwtSecretRef": {"name": "jwt", "key": "k"}})).unwrap(),
        );
        sc.spec.turn = Some(
            serde_json::from_value(
                json!({"urls": ["turn:t:3478"], "secretRef": {"name": "turn", "key": "k"}}),
            )
            .unwrap(),
        );
        let names: Vec<_> = secret_refs(&sc)
            .iter()
            .map(|r| format!("{}/{}", r.name, r.key))
            .collect();
        assert_eq!(names, ["cache/pw", "cache-ca/ca.crt", "jwt/k", "turn/k"]);

        let refs = secret_refs(&sc);
        let (a, b) = (ByteString(b"a".to_vec()), ByteString(b"b".to_vec()));
        let hash = |v: Option<&ByteString>| {
            secrets_hash(&[
                (refs[0], Some(&a)),
                (refs[1], Some(&a)),
                (refs[2], v),
                (refs[3], Some(&a)),
            ])
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
        let sc = with(json!({"redis": {"external": {
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
        let pod = deployment(&sc).spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let pw = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "REDIS_PASSWORD")
            .unwrap();
        assert_eq!(
            pw.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "redis"
        );
        let vol = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "redis-ca")
            .unwrap();
        assert_eq!(vol.secret.unwrap().items.unwrap()[0].key, "ca.pem");
        assert!(c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/switchboard/redis-ca"));
        assert_eq!(redis_endpoint(&sc), "rediss://cache.example:6380");
    }

    #[test]
    fn endpoint_never_shows_a_password() {
        assert_eq!(strip_userinfo("redis://u:p@h:1/0"), "redis://h:1/0");
        assert_eq!(strip_userinfo("rediss://h:1"), "rediss://h:1");
    }

    #[test]
    fn managed_redis_statefulset() {
        let sc = cluster("chat");
        let s = redis_statefulset(&sc).unwrap();
        assert_eq!(s.spec.replicas, Some(1));
        assert_eq!(s.spec.service_name.as_deref(), Some("chat-redis"));
        let claim = &s.spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(
            claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "1Gi"
        );
        let c = &s.spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_REDIS_IMAGE));
        assert!(c.command.as_ref().unwrap()[2].contains("--requirepass \"$REDIS_PASSWORD\""));
        let env: Vec<_> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, ["REDIS_PASSWORD", "REDISCLI_AUTH"]);
        assert!(redis_conf(&ManagedRedis::default()).contains("appendonly yes"));
        let svc = redis_service(&sc).unwrap().spec.unwrap();
        assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
        let np = redis_network_policy(&sc).unwrap().spec.unwrap();
        assert_eq!(
            np.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            "redis"
        );
        let rule = &np.ingress.unwrap()[0];
        let from = rule.from.as_ref().unwrap()[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(
            (
                from["app.kubernetes.io/component"].as_str(),
                from["app.kubernetes.io/instance"].as_str()
            ),
            ("server", "chat")
        );
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(6379))
        );
    }

    #[test]
    fn managed_redis_without_persistence_or_auth() {
        let sc = with(
            json!({"redis": {"managed": {"persistence": false, "auth": false, "storage": {"storageClassName": "fast"}}}}),
        );
        let s = redis_statefulset(&sc).unwrap();
        assert!(s.spec.volume_claim_templates.is_none());
        let pod = s.spec.template.spec.unwrap();
        assert!(pod
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "data" && v.empty_dir.is_some()));
        assert!(pod.containers[0].env.is_none());
        assert!(!pod.containers[0].command.as_ref().unwrap()[2].contains("requirepass"));
        let env: Vec<_> = deployment(&sc).spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(env.iter().all(|e| e.name != "REDIS_PASSWORD"));
        assert!(redis_conf(&managed_redis(&sc).unwrap()).contains("appendonly no"));
    }

    #[test]
    fn passwords_are_random_and_long() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let s = redis_auth_secret(&cluster("chat"), &a);
        assert_eq!(s.string_data.unwrap()[REDIS_PASSWORD_KEY], a);
    }

    #[test]
    fn spec_hash_is_stable_and_sensitive() {
        let sc = cluster("chat");
        let a = with_spec_hash(deployment(&sc));
        let again = with_spec_hash(a.clone());
        assert_eq!(a.metadata.annotations, again.metadata.annotations);
        let mut other = sc.clone();
        other.spec.replicas = 5;
        let b = with_spec_hash(deployment(&other));
        assert_ne!(
            a.metadata.annotations.unwrap()[SPEC_HASH_ANNOTATION],
            b.metadata.annotations.unwrap()[SPEC_HASH_ANNOTATION]
        );
    }
}

/// The managed Redis's configuration, start command and probe, run for real
/// against a local `redis-server` (the test runner installs it).
#[cfg(test)]
mod redis_tests {
    use super::*;
    use crate::fixtures::cluster;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts Redis the way the StatefulSet does; returns it with its port.
    fn start(sc: &SignalingCluster, dir: &std::path::Path, password: &str) -> (Killed, u16) {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok(),
            "redis-server is not installed (apt-get install redis-server, or run `make test`)"
        );
        let m = managed_redis(sc).unwrap();
        let conf = dir.join("redis.conf");
        std::fs::write(&conf, redis_conf(&m)).unwrap();
        let sts = redis_statefulset(sc).unwrap();
        let c = &sts.spec.template.spec.as_ref().unwrap().containers[0];
        let cmd = c.command.as_ref().unwrap();
        let port = free_port();
        let script = format!(
            "{} --port {port}",
            cmd[2].replace("/etc/redis/redis.conf", conf.to_str().unwrap())
        );
        assert_eq!(c.working_dir.as_deref(), Some("/data"));
        let child = Command::new(&cmd[0])
            .current_dir(dir)
            .arg(&cmd[1])
            .arg(script)
            .env("REDIS_PASSWORD", password)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        (Killed(child), port)
    }

    /// Runs the readiness probe against `port`; true when it passes.
    fn probe(sc: &SignalingCluster, port: u16, auth: Option<&str>) -> bool {
        let sts = redis_statefulset(sc).unwrap();
        let c = &sts.spec.template.spec.as_ref().unwrap().containers[0];
        let exec = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap()
            .command
            .clone()
            .unwrap();
        let script = exec[2].replace("redis-cli", &format!("redis-cli -p {port}"));
        let mut cmd = Command::new(&exec[0]);
        cmd.arg(&exec[1]).arg(script);
        match auth {
            Some(pw) => cmd.env("REDISCLI_AUTH", pw),
            None => cmd.env_remove("REDISCLI_AUTH"),
        };
        cmd.output().unwrap().status.success()
    }

    fn wait_ready(sc: &SignalingCluster, port: u16, auth: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !probe(sc, port, auth) {
            assert!(
                Instant::now() < deadline,
                "managed Redis did not become ready on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sb-op-redis-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn managed_redis_starts_requires_its_password_and_keeps_an_aof() {
        let sc = cluster("chat");
        let dir = tempdir("aof");
        let (_redis, port) = start(&sc, &dir, "s3cret");
        wait_ready(&sc, port, Some("s3cret"));
        assert!(
            !probe(&sc, port, None),
            "Redis answered PING without the password"
        );
        assert!(
            !probe(&sc, port, Some("wrong")),
            "Redis accepted a wrong password"
        );
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "CONFIG", "GET", "appendonly"])
            .env("REDISCLI_AUTH", "s3cret")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("yes"));
        // The append-only file lands in the working directory (the data volume).
        assert!(
            dir.join("appendonlydir").is_dir(),
            "no AOF in {}",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn managed_redis_without_auth_or_persistence() {
        let mut sc = cluster("chat");
        sc.spec.redis = serde_json::from_value(
            serde_json::json!({"managed": {"auth": false, "persistence": false}}),
        )
        .unwrap();
        let dir = tempdir("plain");
        let (_redis, port) = start(&sc, &dir, "");
        wait_ready(&sc, port, None);
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "CONFIG", "GET", "appendonly"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("no"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
