//! Applying one SignalingCluster's objects: each built by
//! [`resources`](crate::resources), compared with the cached current object,
//! and applied with server-side apply under one field manager when its spec
//! hash differs.
//!
//! Every object is applied on its own: a failure is recorded and the next
//! object is applied anyway, so one object the API server refuses never holds
//! back the others (an image change still reaches the Deployment while, say,
//! the Redis StatefulSet is stuck). The managed Redis's storage, which a
//! StatefulSet cannot change, is kept as it is and reported with the procedure
//! that changes it ([`Report::pending`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::caches::{Cached, Caches};
use crate::crd::{ManagedRedis, SignalingCluster};
use crate::error::{Error, Result};
use crate::resources::{self as res, Names, RedisStorage, ServiceMonitor, SPEC_HASH_ANNOTATION};

/// The one field manager for every write of the operator.
pub const MANAGER: &str = "switchboard-operator";
/// A second manager that briefly co-owns `spec.replicas` when autoscaling is turned
/// on, so dropping the field from the operator's apply hands it to the HPA instead
/// of resetting it.
pub const HANDOFF_MANAGER: &str = "switchboard-operator-hpa-handoff";

/// What applying did and saw.
#[derive(Debug, Default)]
pub struct Report {
    /// "Kind name" of each object created, updated or deleted.
    pub changed: Vec<String>,
    /// Objects that could not be applied (every other one was).
    pub failures: Vec<Error>,
    /// Changes that cannot be made in place, each with the steps that make it.
    pub pending: Vec<String>,
    /// The server Deployment as applied, or as cached when applying failed.
    pub deployment: Option<Deployment>,
    /// The Redis StatefulSet, likewise (`None` with an external Redis).
    pub redis: Option<StatefulSet>,
}

/// Applies the desired objects of one SignalingCluster.
pub struct Applier<'a> {
    client: Client,
    caches: &'a Caches,
    ns: String,
    sc: &'a SignalingCluster,
    names: Names,
    /// Apply every object even when its spec hash matches (drift correction).
    pub ignore_hashes: bool,
    report: Report,
}

impl<'a> Applier<'a> {
    pub fn new(client: Client, caches: &'a Caches, ns: &str, sc: &'a SignalingCluster) -> Self {
        Self {
            client,
            caches,
            ns: ns.to_string(),
            sc,
            names: Names::new(&sc.name_any()),
            ignore_hashes: false,
            report: Report::default(),
        }
    }

    fn api<K: Cached>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Every object, Redis first (the servers need it), then the server side.
    pub async fn apply_all(mut self) -> Report {
        match res::managed_redis(self.sc) {
            Some(m) => self.managed_redis(&m).await,
            None => self.remove_managed_redis().await,
        }
        self.server().await;
        self.report
    }

    /// Keeps the value of a step that worked; records the failure of one that did not.
    fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        r.map_err(|e| self.report.failures.push(e)).ok()
    }

    async fn managed_redis(&mut self, m: &ManagedRedis) {
        if m.auth {
            let r = self.ensure_redis_secret().await;
            self.check(r);
        }
        let sc = self.sc;
        self.want(res::redis_configmap(sc), &self.names.redis_config.clone())
            .await;
        self.want(res::redis_service(sc), &self.names.redis.clone())
            .await;
        self.want(res::redis_network_policy(sc), &self.names.redis.clone())
            .await;
        let r = self.apply_redis_statefulset(m).await;
        let applied = self.check(r);
        self.report.redis = applied.or_else(|| self.cached(&self.names.redis));
    }

    /// Switched to an external Redis: remove the managed one. The password
    /// Secret stays, so switching back does not rotate it.
    async fn remove_managed_redis(&mut self) {
        let (redis, config) = (self.names.redis.clone(), self.names.redis_config.clone());
        self.want::<StatefulSet>(None, &redis).await;
        self.want::<Service>(None, &redis).await;
        self.want::<NetworkPolicy>(None, &redis).await;
        self.want::<ConfigMap>(None, &config).await;
    }

    async fn server(&mut self) {
        let sc = self.sc;
        let (server, internal) = (self.names.server.clone(), self.names.internal.clone());
        let config = self.names.config.clone();
        self.want(Some(res::service_account(sc)), &server).await;
        self.want(Some(res::server_configmap(sc)), &config).await;
        let r = self.apply_deployment().await;
        let applied = self.check(r);
        self.report.deployment = applied.or_else(|| self.cached(&server));
        self.want(Some(res::service(sc)), &server).await;
        self.want(res::internal_service(sc), &internal).await;
        self.want::<HorizontalPodAutoscaler>(res::hpa(sc), &server)
            .await;
        self.want::<PodDisruptionBudget>(res::pdb(sc), &server)
            .await;
        self.want::<Ingress>(res::ingress(sc), &server).await;
        self.want(res::server_network_policy(sc), &server).await;
        self.service_monitor().await;
    }

    /// The ServiceMonitor, when the cluster serves the kind; asking for one
    /// when it does not is a failure that says how to fix it.
    async fn service_monitor(&mut self) {
        let desired = res::service_monitor(self.sc);
        if !self.caches.watches::<ServiceMonitor>() {
            if desired.is_some() {
                self.report.failures.push(Error::KindNotServed {
                    field: "spec.monitoring.serviceMonitor.enabled",
                    kind: "ServiceMonitor",
                    group: "monitoring.coreos.com/v1",
                });
            }
            return;
        }
        let name = self.names.server.clone();
        self.want(desired, &name).await;
    }

    fn cached<K: Cached>(&self, name: &str) -> Option<K> {
        self.caches.get::<K>(&self.ns, name)
    }

    /// Applies `desired`; with `None`, deletes the object `name` if this
    /// SignalingCluster owns it. A failure is recorded, not returned.
    async fn want<K: Cached>(&mut self, desired: Option<K>, name: &str) {
        let r = match desired {
            Some(d) => self.apply(d).await.map(drop),
            None => self.delete_owned::<K>(name).await,
        };
        self.check(r);
    }

    /// Applies the desired object unless the cached one carries its spec hash.
    async fn apply<K: Cached>(&mut self, desired: K) -> Result<K> {
        let desired = res::with_spec_hash(desired);
        let current = self.cached::<K>(&desired.name_any());
        self.apply_over(desired, current).await
    }

    async fn apply_over<K: Cached>(&mut self, desired: K, current: Option<K>) -> Result<K> {
        let (name, kind) = (desired.name_any(), K::kind(&()));
        if let Some(cur) = current.as_ref() {
            let same =
                hash_annotation(cur).is_some() && hash_annotation(cur) == hash_annotation(&desired);
            if same && !self.ignore_hashes {
                return Ok(cur.clone());
            }
        }
        let params = PatchParams::apply(MANAGER).force();
        let applied = self
            .api::<K>()
            .patch(&name, &params, &Patch::Apply(&desired))
            .await
            .map_err(|e| Error::kube(format!("applying {kind} {name}"), e))?;
        // An apply that changed nothing leaves the resourceVersion as it was.
        let version = |o: &K| o.meta().resource_version.clone();
        let unchanged = current
            .as_ref()
            .is_some_and(|c| version(c).is_some() && version(c) == version(&applied));
        if !unchanged {
            self.report.changed.push(format!("{kind} {name}"));
        }
        Ok(applied)
    }

    /// The Redis StatefulSet with the storage it already has: a StatefulSet's
    /// volume claim template cannot change, so a changed `persistence` or
    /// `storage` is reported (with the procedure) instead of failing the apply.
    async fn apply_redis_statefulset(&mut self, m: &ManagedRedis) -> Result<StatefulSet> {
        let wanted = RedisStorage::wanted(m);
        let current = self.cached::<StatefulSet>(&self.names.redis);
        let storage = match &current {
            Some(cur) => {
                let live = RedisStorage::of(cur);
                if live != wanted {
                    let msg = res::storage_change_message(self.sc, &live, &wanted);
                    self.report.pending.push(msg);
                }
                live
            }
            None => wanted,
        };
        let desired = res::with_spec_hash(res::redis_statefulset_with(self.sc, m, &storage));
        self.apply_over(desired, current).await
    }

    /// The Deployment, with the hash of the Secret values its pods read, and
    /// handing `spec.replicas` over to the HPA when autoscaling was just turned on.
    async fn apply_deployment(&mut self) -> Result<Deployment> {
        let mut desired = res::deployment(self.sc);
        // Secrets reach the pods as environment variables and files read at
        // startup, so a rotated value takes effect only in new pods: the
        // values' hash on the pod template rolls them.
        if let Some(hash) = self.secrets_hash().await? {
            res::annotate_pods(&mut desired, res::SECRETS_HASH_ANNOTATION, hash);
        }
        let desired = res::with_spec_hash(desired);
        let current = self.cached::<Deployment>(&self.names.server);
        if let Some(cur) = &current {
            if res::autoscaling_enabled(self.sc) && owns_replicas(cur) {
                self.hand_replicas_to_hpa(cur).await?;
            }
        }
        self.apply_over(desired, current).await
    }

    /// The hash of the referenced Secret values (each Secret read once, by
    /// name), or `None` when the spec references none.
    async fn secrets_hash(&self) -> Result<Option<String>> {
        let refs = res::secret_refs(self.sc);
        if refs.is_empty() {
            return Ok(None);
        }
        let mut secrets: BTreeMap<&str, Option<Secret>> = BTreeMap::new();
        for r in &refs {
            if !secrets.contains_key(r.name.as_str()) {
                secrets.insert(&r.name, self.read_secret(&r.name).await?);
            }
        }
        let values: Vec<_> = refs
            .iter()
            .map(|r| {
                let data = secrets[r.name.as_str()]
                    .as_ref()
                    .and_then(|s| s.data.as_ref());
                (*r, data.and_then(|d| d.get(&r.key)))
            })
            .collect();
        Ok(Some(res::secrets_hash(&values)))
    }

    /// Another manager co-owns the current replica count, so removing it from
    /// the operator's apply keeps it (instead of resetting it to 1) until the
    /// HPA changes it.
    async fn hand_replicas_to_hpa(&self, cur: &Deployment) -> Result<()> {
        let Some(n) = cur.spec.replicas else {
            return Ok(());
        };
        let name = cur.name_any();
        let body = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": n},
        });
        let params = PatchParams::apply(HANDOFF_MANAGER).force();
        self.api::<Deployment>()
            .patch(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| {
                Error::kube(
                    format!("handing replicas of Deployment {name} to the HPA"),
                    e,
                )
            })?;
        Ok(())
    }

    /// Deletes an object if the cache has it and this SignalingCluster owns it.
    async fn delete_owned<K: Cached>(&mut self, name: &str) -> Result<()> {
        let Some(obj) = self.cached::<K>(name) else {
            return Ok(());
        };
        let uid = self.sc.uid();
        if !obj
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref())
        {
            return Ok(());
        }
        let kind = K::kind(&());
        match self
            .api::<K>()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(Error::kube(format!("deleting {kind} {name}"), e)),
        }
        self.report.changed.push(format!("deleted {kind} {name}"));
        Ok(())
    }

    /// A Secret read by name (Secrets are not cached: see [`crate::caches`]).
    async fn read_secret(&self, name: &str) -> Result<Option<Secret>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {name}"), e))
    }

    /// Creates the Redis password Secret when missing; never touches an existing one.
    async fn ensure_redis_secret(&mut self) -> Result<()> {
        let name = self.names.redis_auth.clone();
        if self.read_secret(&name).await?.is_some() {
            return Ok(());
        }
        let secret = res::redis_auth_secret(self.sc, &res::generate_password());
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            // Created by a concurrent reconcile: keep that password.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(Error::kube(format!("creating Secret {name}"), e)),
        }
        self.report.changed.push(format!("Secret {name}"));
        Ok(())
    }
}

fn hash_annotation<K: Resource>(obj: &K) -> Option<&String> {
    obj.meta().annotations.as_ref()?.get(SPEC_HASH_ANNOTATION)
}

/// Whether the operator's field manager owns `spec.replicas` of a Deployment.
fn owns_replicas(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|mf| {
        mf.manager.as_deref() == Some(MANAGER)
            && mf
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|s| s.get("f:replicas"))
                .is_some()
    })
}
