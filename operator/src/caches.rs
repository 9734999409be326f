//! The operator's caches of the objects it owns.
//!
//! The controller watches every kind it owns anyway (a change to an owned
//! object triggers a reconcile of its SignalingCluster); each of those watches
//! feeds a reflector [`Store`], and the reconcile loop reads the current
//! objects from there instead of issuing a GET per object. The watches select
//! by the operator's `managed-by` label, so the caches hold the operator's
//! objects only. Secrets are not cached: watching them would need `list` on
//! every Secret, and the operator reads only a few by name.
//!
//! A cache is eventually consistent: an object the operator just wrote may not
//! be in it yet. That is harmless here: the write's own watch event triggers
//! the next reconcile, which then sees it.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crd::SignalingCluster;
use crate::error::{Error, Result};
use crate::resources::{ServiceMonitor, OWNED_SELECTOR};

/// How long a reconcile waits for the caches' first list before it gives up
/// (and backs off).
pub const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A reflector store per owned kind.
#[derive(Clone)]
pub struct Caches {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    services: Store<Service>,
    configmaps: Store<ConfigMap>,
    service_accounts: Store<ServiceAccount>,
    hpas: Store<HorizontalPodAutoscaler>,
    pdbs: Store<PodDisruptionBudget>,
    network_policies: Store<NetworkPolicy>,
    ingresses: Store<Ingress>,
    /// `None` when the cluster had no ServiceMonitor CRD at startup.
    service_monitors: Option<Store<ServiceMonitor>>,
}

/// An owned kind with a cache.
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// This kind's store, `None` when the kind is not watched.
    fn store(caches: &Caches) -> Option<&Store<Self>>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(caches: &Caches) -> Option<&Store<Self>> {
                Some(&caches.$field)
            }
        })*
    };
}

cached!(
    Deployment => deployments,
    StatefulSet => statefulsets,
    Service => services,
    ConfigMap => configmaps,
    ServiceAccount => service_accounts,
    HorizontalPodAutoscaler => hpas,
    PodDisruptionBudget => pdbs,
    NetworkPolicy => network_policies,
    Ingress => ingresses,
);

impl Cached for ServiceMonitor {
    fn store(caches: &Caches) -> Option<&Store<Self>> {
        caches.service_monitors.as_ref()
    }
}

impl Caches {
    /// The cached object `ns/name` of kind `K`, if any.
    pub fn get<K: Cached>(&self, ns: &str, name: &str) -> Option<K> {
        let store = K::store(self)?;
        store
            .get(&ObjectRef::new(name).within(ns))
            .map(|obj| (*obj).clone())
    }

    /// Whether kind `K` is watched (its CRD existed when the operator started).
    pub fn watches<K: Cached>(&self) -> bool {
        K::store(self).is_some()
    }

    /// Waits until every cache has its first list, for at most
    /// [`CACHE_SYNC_TIMEOUT`].
    pub async fn ready(&self) -> Result<()> {
        // One after the other: they fill concurrently anyway (the controller
        // drives every watch), so this takes as long as the slowest.
        let all = async {
            wait(&self.deployments).await;
            wait(&self.statefulsets).await;
            wait(&self.services).await;
            wait(&self.configmaps).await;
            wait(&self.service_accounts).await;
            wait(&self.hpas).await;
            wait(&self.pdbs).await;
            wait(&self.network_policies).await;
            wait(&self.ingresses).await;
            if let Some(s) = &self.service_monitors {
                wait(s).await;
            }
        };
        tokio::time::timeout(CACHE_SYNC_TIMEOUT, all)
            .await
            .map_err(|_| Error::CachesNotReady(CACHE_SYNC_TIMEOUT.as_secs()))
    }
}

async fn wait<K: Cached>(store: &Store<K>) {
    // The writer lives as long as the controller; should it be gone, the
    // controller is stopping and an empty cache does no harm.
    let _ = store.wait_until_ready().await;
}

/// Watches one owned kind for `controller`: a change triggers a reconcile of
/// the owner, and the objects land in the returned store.
fn watch<K: Cached>(
    controller: Controller<SignalingCluster>,
    client: &Client,
    namespace: Option<&str>,
) -> (Controller<SignalingCluster>, Store<K>) {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    // Only the Deployment's field ownership is ever looked at (the HPA
    // handoff); the rest need not keep it in memory.
    let keep_managed_fields = K::kind(&()) == "Deployment";
    let stream = watcher(api, watcher::Config::default().labels(OWNED_SELECTOR))
        .default_backoff()
        .modify(move |obj: &mut K| {
            if !keep_managed_fields {
                obj.managed_fields_mut().clear();
            }
        })
        .reflect(writer)
        .touched_objects();
    (controller.owns_stream(stream), reader)
}

/// Adds a watch of every owned kind to `controller` and returns the caches
/// they fill. `service_monitors`: whether the ServiceMonitor CRD exists.
pub fn attach(
    controller: Controller<SignalingCluster>,
    client: &Client,
    namespace: Option<&str>,
    service_monitors: bool,
) -> (Controller<SignalingCluster>, Caches) {
    let (c, deployments) = watch(controller, client, namespace);
    let (c, statefulsets) = watch(c, client, namespace);
    let (c, services) = watch(c, client, namespace);
    let (c, configmaps) = watch(c, client, namespace);
    let (c, service_accounts) = watch(c, client, namespace);
    let (c, hpas) = watch(c, client, namespace);
    let (c, pdbs) = watch(c, client, namespace);
    let (c, network_policies) = watch(c, client, namespace);
    let (mut c, ingresses) = watch(c, client, namespace);
    let service_monitors = if service_monitors {
        let (next, store) = watch(c, client, namespace);
        c = next;
        Some(store)
    } else {
        None
    };
    let caches = Caches {
        deployments,
        statefulsets,
        services,
        configmaps,
        service_accounts,
        hpas,
        pdbs,
        network_policies,
        ingresses,
        service_monitors,
    };
    (c, caches)
}

/// Test support: caches already filled with `objects` (JSON of any owned
/// kind), as after the watches' first list.
#[cfg(test)]
pub fn filled(objects: &[serde_json::Value], service_monitors: bool) -> Caches {
    fn fill<K: Cached>(objects: &[serde_json::Value]) -> Store<K> {
        let mut writer = reflector::store::Writer::<K>::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects
            .iter()
            .filter(|o| o["kind"] == K::kind(&()).as_ref())
        {
            let obj: K = serde_json::from_value(o.clone()).expect("a valid object");
            writer.apply_watcher_event(&watcher::Event::InitApply(obj));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        writer.as_reader()
    }
    Caches {
        deployments: fill(objects),
        statefulsets: fill(objects),
        services: fill(objects),
        configmaps: fill(objects),
        service_accounts: fill(objects),
        hpas: fill(objects),
        pdbs: fill(objects),
        network_policies: fill(objects),
        ingresses: fill(objects),
        service_monitors: service_monitors.then(|| fill(objects)),
    }
}
