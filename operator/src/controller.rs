//! The reconcile loop: validate, apply the desired objects, write status.
//!
//! `reconcile` is thin: it validates the spec and hands over to an
//! [`Applier`], which applies each object built by
//! [`resources`](crate::resources) with server-side apply under one field
//! manager, reading the current objects from the controller's caches
//! ([`caches`](crate::caches)) and skipping the write when the spec-hash
//! annotation matches. So reconciling an unchanged cluster writes nothing (and
//! status is written only when it changed), which keeps the operator from
//! triggering itself. Errors go to [`error_policy`], which backs off per
//! SignalingCluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::apply::{Applier, MANAGER};
use crate::caches::{self, Caches};
use crate::crd::{SignalingCluster, SignalingClusterStatus};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resources::ServiceMonitor;
use crate::status::{self, Observed, Outcome};
use crate::validate;

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
    /// The owned objects, as the controller's watches last saw them.
    pub caches: Caches,
    /// Consecutive failures per SignalingCluster. A std Mutex: it is only held for a
    /// map lookup, never across an await.
    failures: Mutex<HashMap<ObjectRef<SignalingCluster>, u32>>,
    /// When each SignalingCluster last had all its objects applied regardless of
    /// their hash (same locking rule as `failures`).
    full_applies: Mutex<HashMap<ObjectRef<SignalingCluster>, Instant>>,
}

impl Context {
    /// A context for `client`, reporting Events as `instance` (the pod name).
    pub fn new(
        client: Client,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        caches: Caches,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            caches,
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
        let waiting = i64::try_from(f.len()).unwrap_or(i64::MAX);
        self.metrics.backing_off.set(waiting);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
    }

    /// Forgets the failures of `obj` after a successful reconcile.
    pub fn reset_backoff(&self, obj: &ObjectRef<SignalingCluster>) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(obj);
        let waiting = i64::try_from(f.len()).unwrap_or(i64::MAX);
        self.metrics.backing_off.set(waiting);
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
            let outcome = Outcome::Invalid(problems);
            let st = status::compute(self, &outcome, &Observed::default(), now());
            self.write_status(ctx, ns, st).await?;
            // Nothing to retry: a fix to the spec triggers the next reconcile.
            return Ok(Action::await_change());
        }
        if let Err(e) = ctx.caches.ready().await {
            let st = status::with_failure(self, &e.to_string(), now());
            if let Err(se) = self.write_status(ctx, ns, st).await {
                warn!(error = %se, "could not record the failure in status");
            }
            return Err(e);
        }
        self.apply(ctx, ns).await
    }

    /// Applies every object, then writes status from what was applied and seen.
    /// Objects that failed make the reconcile fail (and back off) after the
    /// others were applied and the status says which.
    async fn apply(&self, ctx: &Context, ns: &str) -> Result<Action> {
        let mut applier = Applier::new(ctx.client.clone(), &ctx.caches, ns, self);
        applier.ignore_hashes = ctx.full_apply_due(&ObjectRef::from_obj(self));
        let report = applier.apply_all().await;
        if !report.changed.is_empty() {
            info!(name = %self.name_any(), namespace = ns, changed = ?report.changed, "applied");
            let note = format!("Applied {}", report.changed.join(", "));
            ctx.event(self, false, "Applied", note).await;
        }
        let outcome = Outcome::Applied {
            failures: report.failures.iter().map(ToString::to_string).collect(),
            pending: report.pending.clone(),
        };
        let observed = Observed {
            deployment: report.deployment.as_ref(),
            redis: report.redis.as_ref(),
        };
        let st = status::compute(self, &outcome, &observed, now());
        let written = self.write_status(ctx, ns, st).await;
        match report.failures.len() {
            0 => written.map(|()| Action::requeue(RESYNC)),
            1 => Err(report.failures.into_iter().next().expect("one failure")),
            _ => Err(Error::Partial(report.failures)),
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
        let params = PatchParams::apply(MANAGER).force();
        api.patch_status(&self.name_any(), &params, &Patch::Apply(&body))
            .await
            .map_err(|e| {
                let action = format!("writing status of SignalingCluster {}", self.name_any());
                Error::kube(action, e)
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

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a one-line install hint when the CRD is missing. Lists in the
/// watched namespace only, so a namespace-scoped Role suffices.
pub async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), StartupError> {
    let api: Api<SignalingCluster> = scoped(client, namespace);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(StartupError::CrdMissing),
        Err(e) => Err(e.into()),
    }
}

/// Whether the cluster serves ServiceMonitors (the Prometheus Operator's CRD)
/// to this operator: only then are they watched and created.
pub async fn serves_service_monitors(client: &Client, namespace: Option<&str>) -> bool {
    let api: Api<ServiceMonitor> = scoped(client, namespace);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            info!("no ServiceMonitor CRD (monitoring.coreos.com/v1): spec.monitoring.serviceMonitor is unavailable");
            false
        }
        Err(e) => {
            warn!(error = %e, "cannot list ServiceMonitors (RBAC?): spec.monitoring.serviceMonitor is unavailable");
            false
        }
    }
}

/// Runs the controller until `shutdown` resolves (or SIGTERM/SIGINT).
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    watch_namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = watch_namespace.as_deref();
    let service_monitors = serves_service_monitors(&client, ns).await;
    let scs: Api<SignalingCluster> = scoped(&client, ns);
    let controller = Controller::new(scs, watcher::Config::default().any_semantic());
    let (controller, caches) = caches::attach(controller, &client, ns, service_monitors);
    let ctx = Arc::new(Context::new(client, instance, metrics, caches));
    controller
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
    use crate::fixtures::context::test_context;
    use crate::fixtures::mock::{path, Reply, Scenario};
    use crate::fixtures::NS;
    use serde_json::json;

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
        let list = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "SignalingClusterList", "metadata": {}, "items": []});
        let mock = Scenario::default()
            .call(
                http::Method::GET,
                path("signalingclusters", ""),
                Reply::Json(list),
            )
            .run(handle);
        check_crd(&ctx.client, Some(NS)).await.unwrap();
        drop(ctx);
        mock.await.unwrap();
    }

    #[tokio::test]
    async fn service_monitors_are_used_only_when_served() {
        let list = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitorList", "metadata": {}, "items": []});
        for (reply, served) in [
            (Reply::Json(list), true),
            (Reply::NotFound, false),
            (Reply::Status(403, "forbidden".into()), false),
        ] {
            let (ctx, handle) = test_context();
            let mock = Scenario::default()
                .call(http::Method::GET, path("servicemonitors", ""), reply)
                .run(handle);
            assert_eq!(serves_service_monitors(&ctx.client, Some(NS)).await, served);
            drop(ctx);
            mock.await.unwrap();
        }
    }
}
