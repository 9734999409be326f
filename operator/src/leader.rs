//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator
//! replicas can run and only one reconciles. It follows client-go's
//! `leaderelection` package:
//!
//! - **Expiry is judged on the local clock, from the last change seen.** A
//!   replica remembers the Lease record it last read and when (its own
//!   monotonic clock) it saw that record change. The holder counts as gone
//!   once the record has stayed unchanged for `leaseDurationSeconds` since then.
//!   The holder's `renewTime` is never compared with the local wall clock, so
//!   clock skew between nodes cannot make a live leader look expired.
//! - **Renewal has a deadline.** The leader renews every `retry_period`; each
//!   attempt runs under a timeout ending `renew_deadline` after the last
//!   successful renewal. A hung request therefore cannot keep a leader going:
//!   it steps down at that deadline, before any follower can take over (a
//!   follower waits a whole `lease_duration`, longer than `renew_deadline`,
//!   after it saw the last renewal).
//! - **Writes are conditional** on the `resourceVersion` read, so of two
//!   replicas racing for an expired Lease exactly one wins (409 for the other).
//! - **Release on shutdown** empties the holder, so another replica takes over
//!   at its next attempt.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a Lease stays valid without renewal (client-go's LeaseDuration).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the leader keeps trying to renew before it steps down (client-go's
/// RenewDeadline); shorter than [`LEASE_DURATION`].
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between attempts, to renew or to acquire (client-go's RetryPeriod).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

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
    pub lease_duration: Duration,
    /// How long the leader tries to renew before it steps down.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Settings with client-go's default timings.
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// The Lease record as last read, and when it was first seen in that state.
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observed>,
    /// When this replica last wrote the Lease as its holder.
    renewed_at: Option<Instant>,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            renewed_at: None,
        }
    }

    /// Remembers `spec` as the current record; the clock restarts only when it
    /// differs from the one seen before.
    fn observe(&mut self, spec: LeaseSpec) {
        if self.observed.as_ref().is_none_or(|o| o.spec != spec) {
            self.observed = Some(Observed {
                spec,
                at: Instant::now(),
            });
        }
    }

    /// Whether another replica holds the Lease and its record changed less than
    /// a lease duration ago (on this replica's clock).
    fn held_by_another(&self) -> bool {
        let Some(o) = &self.observed else {
            return false;
        };
        let holder = o.spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() || holder == self.cfg.identity {
            return false;
        }
        let d = o.spec.lease_duration_seconds.unwrap_or(0);
        let valid_for = Duration::from_secs(u64::try_from(d).unwrap_or(0));
        o.at.elapsed() < valid_for
    }

    /// Our record: renewed now, acquired now unless we already held it.
    fn our_record(&self, current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
        let ours = current.holder_identity.as_deref() == Some(&self.cfg.identity);
        let transitions = current.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(secs(self.cfg.lease_duration)),
            renew_time: Some(MicroTime(now)),
            acquire_time: if ours {
                current.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..current.clone()
        }
    }

    /// One attempt to take or renew the Lease; `Ok(true)` when this replica
    /// holds it afterwards. `now` is only written into the record.
    pub async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return self.create(now).await;
        };
        let current = lease.spec.clone().unwrap_or_default();
        self.observe(current.clone());
        if self.held_by_another() {
            return Ok(false);
        }
        let next = self.our_record(&current, now);
        lease.spec = Some(next.clone());
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observe(next);
                self.renewed_at = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self, now: Timestamp) -> Result<bool, kube::Error> {
        let spec = self.our_record(&LeaseSpec::default(), now);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                lease_transitions: Some(0),
                ..spec
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.observe(created.spec.unwrap_or_default());
                self.renewed_at = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the Lease. Each attempt is bounded by the
    /// renew deadline, so a hung request only delays the next one.
    pub async fn acquire(&mut self) {
        let mut waiting_logged = false;
        loop {
            let limit = self.cfg.renew_deadline;
            let attempt = self.try_acquire_or_renew(Timestamp::now());
            match tokio::time::timeout(limit, attempt).await {
                Ok(Ok(true)) => {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
                    return;
                }
                Ok(Ok(false)) if !waiting_logged => {
                    info!(lease = %self.cfg.name, "another replica is leader; waiting");
                    waiting_logged = true;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %self.cfg.name, "leader election failed; retrying")
                }
                Err(_) => {
                    warn!(lease = %self.cfg.name, "leader election request timed out; retrying")
                }
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost:
    /// another replica holds the Lease, or no renewal succeeded within the
    /// renew deadline of the last one (a hung request included).
    pub async fn keep(&mut self) {
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let last = self.renewed_at.unwrap_or_else(Instant::now);
            let deadline = last + self.cfg.renew_deadline;
            if Instant::now() >= deadline {
                warn!(lease = %self.cfg.name, deadline_secs = self.cfg.renew_deadline.as_secs(),
                    "could not renew the leader lease in time; stepping down");
                return;
            }
            let attempt = self.try_acquire_or_renew(Timestamp::now());
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    warn!(lease = %self.cfg.name, "lost the leader lease to another replica");
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "could not renew the leader lease; retrying"),
                Err(_) => {
                    warn!(lease = %self.cfg.name, deadline_secs = self.cfg.renew_deadline.as_secs(),
                        "renewing the leader lease hung past the deadline; stepping down");
                    return;
                }
            }
        }
    }

    /// Gives the Lease up on shutdown so another replica takes over at once.
    pub async fn release(&mut self) {
        let limit = self.cfg.renew_deadline;
        let give_up = async {
            let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(&self.cfg.identity) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            let params = PostParams::default();
            self.api
                .replace(&self.cfg.name, &params, &lease)
                .await
                .map(|_| true)
        };
        match tokio::time::timeout(limit, give_up).await {
            Ok(Ok(true)) => info!(lease = %self.cfg.name, "released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not release the leader lease"),
            Err(_) => warn!("releasing the leader lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests;
