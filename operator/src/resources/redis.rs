//! The managed Redis: a one-replica StatefulSet with its headless Service,
//! redis.conf ConfigMap, NetworkPolicy (only the server pods reach it) and the
//! generated password Secret.
//!
//! A StatefulSet's volume claim template cannot change, so a changed
//! `persistence` or `storage` would make every apply of it fail. The builder
//! therefore takes the storage to use as an argument ([`RedisStorage`]): the
//! reconcile loop passes what the existing StatefulSet has, applies everything
//! else, and reports the difference with the procedure that makes it
//! ([`storage_change_message`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, ResourceFieldSelector, ResourceRequirements, Secret, Service,
    ServicePort, ServiceSpec as K8sServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    hash_of, labels, managed_redis, meta, names, pod_selector, restricted_container_security,
    restricted_pod_security, secret_env, selector_labels, CONFIG_HASH_ANNOTATION, REDIS_PORT,
};
use crate::crd::{ManagedRedis, SignalingCluster};

/// Key of the generated Redis password in its Secret.
pub const REDIS_PASSWORD_KEY: &str = "password";
/// User of the official Redis image.
const REDIS_UID: i64 = 999;
/// Memory limit of the managed Redis when the spec gives no resources.
pub const DEFAULT_REDIS_MEMORY_LIMIT: &str = "512Mi";
/// The variable that hands the container's memory limit (bytes) to the start
/// command, which derives `maxmemory` from it.
pub const MEMORY_LIMIT_ENV: &str = "REDIS_MEMORY_LIMIT";

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

/// redis.conf of the managed Redis. `maxmemory` is not here: the start command
/// derives it from the container's memory limit.
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
            pod_selector: Some(pod_selector(sc, "redis")),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(pod_selector(sc, "server")),
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

/// The part of the Redis StatefulSet Kubernetes does not let change: whether
/// data is on a claim, and the claim's size and class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisStorage {
    pub persistence: bool,
    pub size: String,
    pub class: Option<String>,
}

impl RedisStorage {
    /// The storage the spec asks for.
    pub fn wanted(m: &ManagedRedis) -> Self {
        Self {
            persistence: m.persistence,
            size: m.storage.size.clone(),
            class: m.storage.storage_class_name.clone(),
        }
    }

    /// The storage an existing StatefulSet has.
    pub fn of(sts: &StatefulSet) -> Self {
        let claim = sts
            .spec
            .volume_claim_templates
            .as_ref()
            .and_then(|c| c.first())
            .and_then(|c| c.spec.as_ref());
        let size = claim
            .and_then(|c| c.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone());
        Self {
            persistence: claim.is_some(),
            size: size.unwrap_or_default(),
            class: claim.and_then(|c| c.storage_class_name.clone()),
        }
    }
}

/// What to tell the user when the spec asks for `wanted` storage but the
/// StatefulSet has `live`: which field, what was kept, and the safe procedure.
pub fn storage_change_message(
    sc: &SignalingCluster,
    live: &RedisStorage,
    wanted: &RedisStorage,
) -> String {
    let ns = sc.namespace().unwrap_or_default();
    let sts = names(sc).redis;
    let pvc = format!("data-{sts}-0");
    let field = "spec.redis.managed";
    if live.persistence && wanted.persistence && live.class == wanted.class {
        return format!(
            "{field}.storage.size is {} but the Redis volume was created with {}, and a \
             StatefulSet's volume claim template cannot change: the Redis StatefulSet keeps \
             {} (every other change was applied). To resize without losing data (the \
             StorageClass must allow expansion): kubectl -n {ns} patch pvc {pvc} -p \
             '{{\"spec\":{{\"resources\":{{\"requests\":{{\"storage\":\"{}\"}}}}}}}}', then \
             kubectl -n {ns} delete statefulset {sts} --cascade=orphan (Redis keeps running; \
             the operator recreates the StatefulSet with the new size)",
            wanted.size, live.size, live.size, wanted.size
        );
    }
    let what = if live.persistence != wanted.persistence {
        format!("{field}.persistence is {}", wanted.persistence)
    } else {
        format!(
            "{field}.storage.storageClassName is {:?}",
            wanted.class.as_deref().unwrap_or("(cluster default)")
        )
    };
    format!(
        "{what} but the Redis StatefulSet was created otherwise, and a StatefulSet's volume \
         claim template cannot change: Redis keeps its current storage (every other change \
         was applied). To switch, let Redis restart empty (the servers restore their rooms \
         and sessions, see docs/redis.md): kubectl -n {ns} delete statefulset {sts}, and \
         kubectl -n {ns} delete pvc {pvc} --ignore-not-found; the operator recreates it"
    )
}

/// Small requests and a memory limit, so that `maxmemory` has a limit to
/// derive from when the spec gives no resources.
fn default_redis_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("50m")),
            ("memory".to_string(), q("128Mi")),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            q(DEFAULT_REDIS_MEMORY_LIMIT),
        )])),
        ..Default::default()
    }
}

/// The container's memory limit in bytes, from the downward API.
fn memory_limit_env() -> EnvVar {
    EnvVar {
        name: MEMORY_LIMIT_ENV.into(),
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some("redis".into()),
                resource: "limits.memory".into(),
                divisor: Some(Quantity("1".into())),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Liveness (the port answers) and readiness (an authenticated PING: the
/// password comes from `REDISCLI_AUTH`, not the command line).
fn redis_probes() -> (Probe, Probe) {
    let liveness = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let ping = "redis-cli ping | grep -q PONG";
    let readiness = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), ping.into()]),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    (liveness, readiness)
}

/// The Redis container: its start command sets `maxmemory` to a share of the
/// memory limit (passed in by the downward API), so Redis refuses writes when
/// full instead of being OOM-killed.
fn redis_container(sc: &SignalingCluster, m: &ManagedRedis) -> Container {
    let auth_secret = names(sc).redis_auth;
    let mut env = vec![memory_limit_env()];
    let mut start = format!(
        "exec redis-server /etc/redis/redis.conf --maxmemory \"$(( {MEMORY_LIMIT_ENV} / 100 * {} ))\"",
        m.max_memory_percent
    );
    if m.auth {
        env.push(secret_env(
            "REDIS_PASSWORD",
            &auth_secret,
            REDIS_PASSWORD_KEY,
        ));
        // redis-cli reads this, so the probe needs no password on its command line.
        env.push(secret_env(
            "REDISCLI_AUTH",
            &auth_secret,
            REDIS_PASSWORD_KEY,
        ));
        start.push_str(r#" --requirepass "$REDIS_PASSWORD""#);
    }
    let (liveness, readiness) = redis_probes();
    let mount = |name: &str, path: &str, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: ro.then_some(true),
        ..Default::default()
    };
    Container {
        name: "redis".into(),
        image: Some(m.image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), start]),
        // Redis keeps its files in its working directory: the data volume.
        working_dir: Some("/data".into()),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(env),
        resources: Some(m.resources.clone().unwrap_or_else(default_redis_resources)),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            mount("data", "/data", false),
            mount("config", "/etc/redis", true),
        ]),
        ..Default::default()
    }
}

/// The data claim template, or an emptyDir volume without persistence.
fn redis_data(
    sc: &SignalingCluster,
    storage: &RedisStorage,
) -> (Option<Vec<PersistentVolumeClaim>>, Option<Volume>) {
    if !storage.persistence {
        let volume = Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
        return (None, Some(volume));
    }
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector_labels(sc, "redis")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    (Some(vec![claim]), None)
}

/// The managed Redis StatefulSet (one replica) with the storage the spec asks for.
pub fn redis_statefulset(sc: &SignalingCluster) -> Option<StatefulSet> {
    let m = managed_redis(sc)?;
    Some(redis_statefulset_with(sc, &m, &RedisStorage::wanted(&m)))
}

/// The managed Redis StatefulSet of `m` with the given storage.
pub fn redis_statefulset_with(
    sc: &SignalingCluster,
    m: &ManagedRedis,
    storage: &RedisStorage,
) -> StatefulSet {
    let n = names(sc);
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: n.redis_config.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let (claims, data_volume) = redis_data(sc, storage);
    volumes.extend(data_volume);
    let annotations =
        BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash_of(&redis_conf(m)))]);
    StatefulSet {
        metadata: meta(sc, &n.redis, "redis"),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(n.redis.clone()),
            selector: pod_selector(sc, "redis"),
            // The claim lives as long as the SignalingCluster's Redis does: deleting
            // the cluster (or switching it to an external Redis) removes the data.
            persistent_volume_claim_retention_policy: storage.persistence.then(|| {
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
                    containers: vec![redis_container(sc, m)],
                    volumes: Some(volumes),
                    security_context: Some(restricted_pod_security(REDIS_UID)),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claims,
            ..Default::default()
        },
        ..Default::default()
    }
}
