//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator
//! replicas can run and only one reconciles.
//!
//! The holder renews the Lease every `renew_every`; another replica takes it over
//! once `renewTime + leaseDurationSeconds` has passed. Writes use the Lease's
//! `resourceVersion`, so of two replicas racing for an expired Lease exactly one
//! wins (the other gets 409 Conflict). A leader that cannot renew before its lease
//! runs out stops reconciling, and a leader that shuts down releases the Lease so
//! the other replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews, and a follower retries.
    pub renew_every: Duration,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// One attempt to take or renew the Lease at time `now`. `Ok(true)` when this
/// replica holds it afterwards.
pub async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let Some(current) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(secs(cfg.duration)),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == cfg.identity;
    let expired = holder.is_empty()
        || match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(t)), Some(d)) => *t + SignedDuration::from_secs(i64::from(d)) < now,
            _ => true,
        };
    if !ours && !expired {
        return Ok(false);
    }
    let mut next = current;
    next.spec = Some(LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs(cfg.duration)),
        renew_time: Some(MicroTime(now)),
        acquire_time: if ours {
            spec.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut waiting_logged = false;
    loop {
        match try_acquire(&api, cfg, Timestamp::now()).await {
            Ok(true) => {
                info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                return;
            }
            Ok(false) if !waiting_logged => {
                info!(lease = %cfg.name, "another replica is leader; waiting");
                waiting_logged = true;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, lease = %cfg.name, "leader election failed; retrying"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews the Lease until a renewal has failed for longer than the lease duration
/// (another replica may hold it by then), then returns.
pub async fn keep(client: Client, cfg: LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_acquire(&api, &cfg, Timestamp::now()).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                warn!(lease = %cfg.name, "lost the leader lease to another replica");
                return;
            }
            Err(e) => warn!(error = %e, "could not renew the leader lease"),
        }
        // Stop while the lease (renewed at last_ok) is still ours.
        if last_ok.elapsed() + cfg.renew_every >= cfg.duration {
            warn!(lease = %cfg.name, "could not renew the leader lease in time");
            return;
        }
    }
}

/// Gives the Lease up on shutdown so another replica takes over at once.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(&cfg.identity) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the leader lease"),
        Err(e) => warn!(error = %e, "could not release the leader lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Reply, Scenario, NS};
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    fn cfg() -> LeaseConfig {
        LeaseConfig {
            name: "switchboard-operator".into(),
            namespace: NS.into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn lease(holder: &str, renewed_at: i64, transitions: i32) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "switchboard-operator", "namespace": NS, "resourceVersion": "7"},
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
                "renewTime": Timestamp::from_second(renewed_at).unwrap().to_string(),
                "acquireTime": Timestamp::from_second(renewed_at).unwrap().to_string(),
            }
        })
    }

    async fn attempt(s: Scenario, now: i64) -> (bool, Vec<crate::fixtures::Seen>) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mock = s.run(handle);
        let api: Api<Lease> = Api::namespaced(Client::new(svc, NS), NS);
        let got = try_acquire(&api, &cfg(), Timestamp::from_second(now).unwrap())
            .await
            .unwrap();
        drop(api);
        (got, mock.await.unwrap())
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let s = Scenario::default()
            .get_missing("leases", "switchboard-operator")
            .create("leases");
        let (got, seen) = attempt(s, 1000).await;
        assert!(got);
        assert_eq!(seen[1].body["spec"]["holderIdentity"], "me");
        assert_eq!(seen[1].body["spec"]["leaseDurationSeconds"], 15);
    }

    #[tokio::test]
    async fn leaves_a_fresh_lease_of_another_replica_alone() {
        let s = Scenario::default().get(
            "leases",
            "switchboard-operator",
            Reply::Json(lease("other", 1000, 3)),
        );
        let (got, seen) = attempt(s, 1010).await;
        assert!(!got);
        assert_eq!(seen.len(), 1, "no write: {seen:?}");
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease() {
        let s = Scenario::default()
            .get(
                "leases",
                "switchboard-operator",
                Reply::Json(lease("other", 1000, 3)),
            )
            .call(
                http::Method::PUT,
                crate::fixtures::path("leases", "switchboard-operator"),
                Reply::Echo,
            );
        let (got, seen) = attempt(s, 1016).await;
        assert!(got);
        let spec = &seen[1].body["spec"];
        assert_eq!(
            (
                spec["holderIdentity"].as_str(),
                spec["leaseTransitions"].as_i64()
            ),
            (Some("me"), Some(4))
        );
        // The write is conditional on the version read.
        assert_eq!(seen[1].body["metadata"]["resourceVersion"], "7");
    }

    #[tokio::test]
    async fn renews_its_own_lease_and_loses_races() {
        let s = Scenario::default()
            .get(
                "leases",
                "switchboard-operator",
                Reply::Json(lease("me", 1000, 2)),
            )
            .call(
                http::Method::PUT,
                crate::fixtures::path("leases", "switchboard-operator"),
                Reply::Echo,
            );
        let (got, seen) = attempt(s, 1005).await;
        assert!(got);
        assert_eq!(seen[1].body["spec"]["leaseTransitions"], 2);
        // Renewing keeps the time it was acquired (t = 1000 s).
        let acquired = seen[1].body["spec"]["acquireTime"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(acquired.starts_with("1970-01-01T00:16:40"), "{acquired}");

        let s = Scenario::default()
            .get(
                "leases",
                "switchboard-operator",
                Reply::Json(lease("other", 1000, 3)),
            )
            .call(
                http::Method::PUT,
                crate::fixtures::path("leases", "switchboard-operator"),
                Reply::Status(409, "the object has been modified".into()),
            );
        let (got, _) = attempt(s, 1100).await;
        assert!(!got, "a conflicting write means another replica won");
    }
}
