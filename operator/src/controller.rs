//! The reconcile loop: validate, apply the desired objects, write status.
//!
//! `reconcile` is thin: it validates the spec and hands over to an [`Applier`],
//! which applies each object built by [`resources`] with server-side apply under
//! one field manager. Before writing, it reads the current object and skips the
//! write when the spec-hash annotation matches, so reconciling an unchanged
//! cluster writes nothing (and status is written only when it changed), which keeps
//! the operator from triggering itself. Errors go to [`error_policy`], which backs
//! off per SignalingCluster.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use crate::crd::{SignalingCluster, SignalingClusterStatus};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resources::{self, SPEC_HASH_ANNOTATION};
use crate::status::{self, Observed, Outcome};
use crate::validate;

/// The one field manager for every write of the operator.
pub const MANAGER: &str = "switchboard-operator";
/// A second manager that briefly co-owns `spec.replicas` when autoscaling is turned
/// on, so dropping the field from the operator's apply hands it to the HPA instead
/// of resetting it.
pub const HANDOFF_MANAGER: &str = "switchboard-operator-hpa-handoff";
/// Periodic resync of a healthy cluster.
pub const RESYNC: Duration = Duration::from_secs(300);
/// First retry delay after a failure; doubled per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often every object is applied even when its spec hash matches, so edits
/// made behind the operator's back (say `kubectl edit deployment`) are undone.
pub const DRIFT_CHECK: Duration = Duration::from_secs(600);

/// Shared state of the reconcile loop.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per SignalingCluster. A std Mutex: it is only held for a
    /// map lookup, never across an await.
    failures: Mutex<HashMap<ObjectRef<SignalingCluster>, u32>>,
    /// When each SignalingCluster last had all its objects applied regardless of
    /// their hash (same locking rule as `failures`).
    full_applies: Mutex<HashMap<ObjectRef<SignalingCluster>, Instant>>,
}

impl Context {
    /// A context for `client`, reporting Events as `instance` (the pod name).
    pub fn new(client: Client, instance: Option<String>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            full_applies: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `obj` is due for an apply of every object regardless of hashes. The
    /// first sighting only starts the clock: a restart does not rewrite everything.
    pub fn full_apply_due(&self, obj: &ObjectRef<SignalingCluster>) -> bool {
        let mut m = self.full_applies.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match m.get(obj) {
            Some(last) if now.duration_since(*last) >= DRIFT_CHECK => {
                m.insert(obj.clone(), now);
                true
            }
            Some(_) => false,
            None => {
                m.insert(obj.clone(), now);
                false
            }
        }
    }

    /// Makes the next reconcile of `obj` a full apply.
    #[cfg(test)]
    pub fn make_full_apply_due(&self, obj: &ObjectRef<SignalingCluster>) {
        let past = Instant::now()
            .checked_sub(DRIFT_CHECK)
            .expect("monotonic clock is past DRIFT_CHECK");
        self.full_applies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(obj.clone(), past);
    }

    /// Records one more failure of `obj` and returns how long to wait.
    pub fn next_backoff(&self, obj: &ObjectRef<SignalingCluster>) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(obj.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(*n - 1).unwrap_or(u32::MAX);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
    }

    /// Forgets the failures of `obj` after a successful reconcile.
    pub fn reset_backoff(&self, obj: &ObjectRef<SignalingCluster>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(obj);
    }

    async fn event(&self, sc: &SignalingCluster, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &sc.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Reconciles one SignalingCluster.
pub async fn reconcile(sc: Arc<SignalingCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let ns = sc.namespace().ok_or(Error::MissingNamespace)?;
    let action = sc.reconcile(&ctx, &ns).await?;
    ctx.reset_backoff(&ObjectRef::from_obj(&*sc));
    Ok(action)
}

/// What to do after a failed reconcile: retry this object later, backing off
/// exponentially per object so one broken cluster never floods the API server nor
/// delays the others.
pub fn error_policy(sc: Arc<SignalingCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&ObjectRef::from_obj(&*sc));
    warn!(name = %sc.name_any(), namespace = ?sc.namespace(), %error, retry_in_secs = delay.as_secs(), "reconcile failed");
    ctx.metrics.reconcile_failed(error.metric_label());
    Action::requeue(delay)
}

impl SignalingCluster {
    async fn reconcile(&self, ctx: &Context, ns: &str) -> Result<Action> {
        let problems = validate::problems(self);
        if !problems.is_empty() {
            warn!(name = %self.name_any(), namespace = ns, ?problems, "invalid SignalingCluster");
            let st = status::compute(
                self,
                &Outcome::Invalid(problems),
                &Observed::default(),
                now(),
            );
            self.write_status(ctx, ns, st).await?;
            // Nothing to retry: a fix to the spec triggers the next reconcile.
            return Ok(Action::await_change());
        }

        let mut applier = Applier::new(ctx.client.clone(), ns, self);
        applier.ignore_hashes = ctx.full_apply_due(&ObjectRef::from_obj(self));
        match applier.apply_all().await {
            Ok(seen) => {
                if !applier.changed.is_empty() {
                    info!(name = %self.name_any(), namespace = ns, changed = ?applier.changed, "applied");
                    ctx.event(
                        self,
                        false,
                        "Applied",
                        format!("Applied {}", applier.changed.join(", ")),
                    )
                    .await;
                }
                let observed = Observed {
                    deployment: seen.deployment.as_ref(),
                    redis: seen.redis.as_ref(),
                };
                let st = status::compute(self, &Outcome::Applied, &observed, now());
                self.write_status(ctx, ns, st).await?;
                Ok(Action::requeue(RESYNC))
            }
            Err(e) => {
                let st = status::with_failure(self, &e.to_string(), now());
                if let Err(se) = self.write_status(ctx, ns, st).await {
                    warn!(error = %se, "could not record the failure in status");
                }
                Err(e)
            }
        }
    }

    /// Writes `new` as status unless it equals the stored one (after carrying over
    /// transition times), and publishes Events for notable transitions.
    async fn write_status(
        &self,
        ctx: &Context,
        ns: &str,
        new: SignalingClusterStatus,
    ) -> Result<()> {
        let new = status::carry_transition_times(self.status.as_ref(), new);
        if self.status.as_ref() == Some(&new) {
            return Ok(());
        }
        let notable = status::notable_changes(self, &new);
        let api: Api<SignalingCluster> = Api::namespaced(ctx.client.clone(), ns);
        let body = serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1",
            "kind": "SignalingCluster",
            "status": new,
        });
        api.patch_status(
            &self.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| {
            Error::kube(
                format!("writing status of SignalingCluster {}", self.name_any()),
                e,
            )
        })?;
        for n in notable {
            ctx.event(self, n.warning, &n.reason, n.note).await;
        }
        Ok(())
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Objects observed while applying, for status.
#[derive(Default)]
pub struct Seen {
    pub deployment: Option<Deployment>,
    pub redis: Option<StatefulSet>,
}

/// Applies the desired objects of one SignalingCluster and remembers what it
/// changed.
pub struct Applier<'a> {
    client: Client,
    ns: String,
    sc: &'a SignalingCluster,
    /// "Kind name" of each object created, updated or deleted.
    pub changed: Vec<String>,
    /// Apply every object even when its spec hash matches (drift correction).
    pub ignore_hashes: bool,
}

impl<'a> Applier<'a> {
    pub fn new(client: Client, ns: &str, sc: &'a SignalingCluster) -> Self {
        Self {
            client,
            ns: ns.to_string(),
            sc,
            changed: Vec::new(),
            ignore_hashes: false,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Every object, Redis first (the servers need it), then the server side.
    pub async fn apply_all(&mut self) -> Result<Seen> {
        let sc = self.sc;
        let names = resources::Names::new(&sc.name_any());
        let mut seen = Seen::default();

        match resources::managed_redis(sc) {
            Some(m) => {
                if m.auth {
                    self.ensure_redis_secret(&names.redis_auth).await?;
                }
                if let Some(cm) = resources::redis_configmap(sc) {
                    self.apply(cm).await?;
                }
                if let Some(svc) = resources::redis_service(sc) {
                    self.apply(svc).await?;
                }
                if let Some(np) = resources::redis_network_policy(sc) {
                    self.apply(np).await?;
                }
                if let Some(sts) = resources::redis_statefulset(sc) {
                    seen.redis = Some(self.apply(sts).await?);
                }
            }
            None => {
                // Switched to an external Redis: remove the managed one. The password
                // Secret stays, so switching back does not rotate it.
                self.delete_owned::<StatefulSet>(&names.redis).await?;
                self.delete_owned::<Service>(&names.redis).await?;
                self.delete_owned::<NetworkPolicy>(&names.redis).await?;
                self.delete_owned::<ConfigMap>(&names.redis_config).await?;
            }
        }

        self.apply(resources::service_account(sc)).await?;
        self.apply(resources::server_configmap(sc)).await?;
        seen.deployment = Some(self.apply_deployment().await?);
        self.apply(resources::service(sc)).await?;
        match resources::hpa(sc) {
            Some(h) => drop(self.apply(h).await?),
            None => {
                self.delete_owned::<HorizontalPodAutoscaler>(&names.server)
                    .await?
            }
        }
        match resources::pdb(sc) {
            Some(p) => drop(self.apply(p).await?),
            None => {
                self.delete_owned::<PodDisruptionBudget>(&names.server)
                    .await?
            }
        }
        Ok(seen)
    }

    /// Reads the current object; returns it when it already carries the desired
    /// spec hash, else applies the desired object.
    async fn apply<K>(&mut self, desired: K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let desired = resources::with_spec_hash(desired);
        let current = self.get::<K>(&desired.name_any()).await?;
        self.apply_over(desired, current).await
    }

    async fn get<K>(&self, name: &str) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading {} {name}", K::kind(&())), e))
    }

    async fn apply_over<K>(&mut self, desired: K, current: Option<K>) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let name = desired.name_any();
        let kind = K::kind(&());
        if let Some(cur) = &current {
            let same =
                hash_annotation(cur).is_some() && hash_annotation(cur) == hash_annotation(&desired);
            if same && !self.ignore_hashes {
                return Ok(current.expect("checked above"));
            }
        }
        let applied = self
            .api::<K>()
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(|e| Error::kube(format!("applying {kind} {name}"), e))?;
        // An apply that changed nothing leaves the resourceVersion as it was.
        let unchanged = current.as_ref().is_some_and(|c| {
            c.meta().resource_version.is_some()
                && c.meta().resource_version == applied.meta().resource_version
        });
        if !unchanged {
            self.changed.push(format!("{kind} {name}"));
        }
        Ok(applied)
    }

    /// The Deployment, handing `spec.replicas` over to the HPA when autoscaling was
    /// just turned on.
    async fn apply_deployment(&mut self) -> Result<Deployment> {
        let mut desired = resources::deployment(self.sc);
        // Secrets reach the pods as environment variables and files read at
        // startup, so a rotated value takes effect only in new pods: the
        // values' hash on the pod template rolls them.
        let refs = resources::secret_refs(self.sc);
        if !refs.is_empty() {
            let mut secrets: BTreeMap<&str, Option<Secret>> = BTreeMap::new();
            for r in &refs {
                if !secrets.contains_key(r.name.as_str()) {
                    secrets.insert(&r.name, self.get::<Secret>(&r.name).await?);
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
            resources::annotate_pods(
                &mut desired,
                resources::SECRETS_HASH_ANNOTATION,
                resources::secrets_hash(&values),
            );
        }
        let desired = resources::with_spec_hash(desired);
        let name = desired.name_any();
        let current = self.get::<Deployment>(&name).await?;
        if let Some(cur) = &current {
            let replicas = cur.spec.replicas;
            if resources::autoscaling_enabled(self.sc) && owns_replicas(cur) {
                if let Some(n) = replicas {
                    // Another manager co-owns the current value, so removing it from
                    // our apply keeps it (instead of resetting it to 1) until the HPA
                    // changes it.
                    let body = serde_json::json!({
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {"name": name},
                        "spec": {"replicas": n},
                    });
                    self.api::<Deployment>()
                        .patch(
                            &name,
                            &PatchParams::apply(HANDOFF_MANAGER).force(),
                            &Patch::Apply(&body),
                        )
                        .await
                        .map_err(|e| {
                            Error::kube(
                                format!("handing replicas of Deployment {name} to the HPA"),
                                e,
                            )
                        })?;
                }
            }
        }
        self.apply_over(desired, current).await
    }

    /// Deletes an object if it exists and this SignalingCluster owns it.
    async fn delete_owned<K>(&mut self, name: &str) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        let Some(obj) = self.get::<K>(name).await? else {
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
        self.changed.push(format!("deleted {kind} {name}"));
        Ok(())
    }

    /// Creates the Redis password Secret when missing; never touches an existing one.
    async fn ensure_redis_secret(&mut self, name: &str) -> Result<()> {
        if self.get::<Secret>(name).await?.is_some() {
            return Ok(());
        }
        let secret = resources::redis_auth_secret(self.sc, &resources::generate_password());
        match self
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => {}
            // Created by a concurrent reconcile: keep that password.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(Error::kube(format!("creating Secret {name}"), e)),
        }
        self.changed.push(format!("Secret {name}"));
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

/// Errors that stop the operator at startup.
#[derive(thiserror::Error, Debug)]
pub enum StartupError {
    #[error(
        "the SignalingCluster CRD is not installed; install it with \
         `kubectl apply -f k8s/operator/crd.yaml` (or `switchboard-operator crd | kubectl apply -f -`)"
    )]
    CrdMissing,
    #[error("cannot list SignalingClusters: {0}")]
    Kube(#[from] kube::Error),
}

/// Fails with a one-line install hint when the CRD is missing. Lists in the
/// watched namespace only, so a namespace-scoped Role suffices.
pub async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), StartupError> {
    let api: Api<SignalingCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(StartupError::CrdMissing),
        Err(e) => Err(e.into()),
    }
}

/// Runs the controller until `shutdown` resolves (or SIGTERM/SIGINT).
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    watch_namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (scs, owned) = match &watch_namespace {
        Some(ns) => (
            Api::<SignalingCluster>::namespaced(client.clone(), ns),
            Some(ns.clone()),
        ),
        None => (Api::<SignalingCluster>::all(client.clone()), None),
    };
    fn owned_api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let cfg =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=switchboard-operator");
    Controller::new(scs, watcher::Config::default().any_semantic())
        .owns(owned_api::<Deployment>(&client, &owned), cfg.clone())
        .owns(owned_api::<StatefulSet>(&client, &owned), cfg.clone())
        .owns(owned_api::<Service>(&client, &owned), cfg.clone())
        .owns(owned_api::<ConfigMap>(&client, &owned), cfg.clone())
        .owns(
            owned_api::<HorizontalPodAutoscaler>(&client, &owned),
            cfg.clone(),
        )
        .owns(
            owned_api::<PodDisruptionBudget>(&client, &owned),
            cfg.clone(),
        )
        .owns(owned_api::<NetworkPolicy>(&client, &owned), cfg.clone())
        .owns(owned_api::<ServiceAccount>(&client, &owned), cfg)
        .shutdown_on_signal()
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                // Reconcile failures are logged by error_policy; what arrives here
                // are watch errors (RBAC, API server trouble), worth seeing.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => warn!(error = %e, "controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{test_context, Reply, Scenario};

    #[tokio::test]
    async fn missing_crd_gives_an_install_hint() {
        let (ctx, handle) = test_context();
        let mock = Scenario::default()
            .call(
                http::Method::GET,
                "/apis/switchboard.dev/v1alpha1/signalingclusters".into(),
                Reply::NotFound,
            )
            .run(handle);
        let err = check_crd(&ctx.client, None).await.unwrap_err();
        drop(ctx);
        mock.await.unwrap();
        assert!(matches!(err, StartupError::CrdMissing));
        let msg = err.to_string();
        assert!(
            msg.contains("kubectl apply -f k8s/operator/crd.yaml") && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn crd_check_lists_only_the_watched_namespace() {
        let (ctx, handle) = test_context();
        let mock = Scenario::default()
            .call(
                http::Method::GET,
                crate::fixtures::path("signalingclusters", ""),
                Reply::Json(serde_json::json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "SignalingClusterList", "metadata": {}, "items": []})),
            )
            .run(handle);
        check_crd(&ctx.client, Some(crate::fixtures::NS))
            .await
            .unwrap();
        drop(ctx);
        mock.await.unwrap();
    }
}
