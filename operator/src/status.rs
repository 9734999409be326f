//! Status of a SignalingCluster, computed (never accumulated) from what the
//! reconcile loop saw: the validation result, the outcome of applying, and the
//! observed server Deployment and Redis StatefulSet.
//!
//! `lastTransitionTime` is carried over from the previous status while a
//! condition's status stays the same, so an unchanged cluster yields a status equal
//! to the stored one and the operator writes nothing (and never triggers itself).

use crate::crd::{SignalingCluster, SignalingClusterStatus};
use crate::resources;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What happened in this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The spec failed validation; nothing was applied.
    Invalid(Vec<String>),
    /// Every desired object was applied, or tried: `failures` are the messages
    /// of those that failed, `pending` the changes that need a manual step.
    Applied {
        failures: Vec<String>,
        pending: Vec<String>,
    },
}

impl Outcome {
    /// Everything applied, nothing pending.
    pub fn applied() -> Self {
        Outcome::Applied {
            failures: Vec::new(),
            pending: Vec::new(),
        }
    }
}

/// What the operator observed of the objects it owns.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub deployment: Option<&'a Deployment>,
    /// `None` with an external Redis.
    pub redis: Option<&'a StatefulSet>,
}

/// Conditions of one status, all stamped with the same generation and time.
struct Stamp<'a> {
    generation: Option<i64>,
    now: &'a Time,
}

impl Stamp<'_> {
    fn cond(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            observed_generation: self.generation,
            last_transition_time: self.now.clone(),
        }
    }
}

/// The numbers the conditions are computed from.
struct Counts {
    replicas: i32,
    ready: i32,
    updated: i32,
    desired: i32,
    /// The Deployment controller has seen the Deployment's latest spec.
    dep_current: bool,
    deadline_exceeded: bool,
    external: bool,
    redis_ready: bool,
}

impl Counts {
    fn observe(sc: &SignalingCluster, seen: &Observed<'_>) -> Self {
        let dep_status = seen
            .deployment
            .and_then(|d| d.status.clone())
            .unwrap_or_default();
        let dep_current = seen.deployment.is_some_and(|d| {
            dep_status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        });
        let deadline_exceeded = dep_status.conditions.iter().flatten().any(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.status.as_deref() == Some("False")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        let external = resources::managed_redis(sc).is_none();
        let redis_ready = seen
            .redis
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= 1;
        Self {
            replicas: dep_status.replicas.unwrap_or(0),
            ready: dep_status.ready_replicas.unwrap_or(0),
            updated: dep_status.updated_replicas.unwrap_or(0),
            desired: seen
                .deployment
                .and_then(|d| d.spec.replicas)
                .unwrap_or(sc.spec.replicas),
            dep_current,
            deadline_exceeded,
            external,
            redis_ready: external || redis_ready,
        }
    }

    fn summary(&self) -> String {
        let redis = if self.external {
            "external Redis"
        } else if self.redis_ready {
            "Redis ready"
        } else {
            "Redis not ready"
        };
        format!("{}/{} server pods ready, {redis}", self.ready, self.desired)
    }

    fn rolled_out(&self) -> bool {
        let d = self.desired;
        self.dep_current && self.updated >= d && self.replicas == d && self.ready >= d
    }
}

fn invalid_conditions(stamp: &Stamp<'_>, problems: &[String]) -> Vec<Condition> {
    let msg = format!("Invalid spec: {}", problems.join("; "));
    let waiting = "Waiting for a valid spec".to_string();
    vec![
        stamp.cond(READY, false, "InvalidSpec", msg.clone()),
        stamp.cond(PROGRESSING, false, "InvalidSpec", waiting),
        stamp.cond(DEGRADED, true, "InvalidSpec", msg),
    ]
}

fn ready_condition(stamp: &Stamp<'_>, c: &Counts) -> Condition {
    let summary = c.summary();
    if c.desired == 0 {
        stamp.cond(READY, false, "ScaledToZero", "spec.replicas is 0".into())
    } else if c.ready >= 1 && c.redis_ready {
        stamp.cond(READY, true, "Available", summary)
    } else if !c.redis_ready {
        stamp.cond(READY, false, "RedisNotReady", summary)
    } else {
        stamp.cond(READY, false, "ServersNotReady", summary)
    }
}

fn progressing_condition(stamp: &Stamp<'_>, c: &Counts) -> Condition {
    if !c.rolled_out() || !c.redis_ready {
        stamp.cond(PROGRESSING, true, "RollingOut", c.summary())
    } else {
        stamp.cond(PROGRESSING, false, "RolloutComplete", c.summary())
    }
}

/// `Degraded`, most urgent first: objects that failed to apply, changes that
/// need a manual step, a rollout that stopped progressing.
fn degraded_condition(
    stamp: &Stamp<'_>,
    c: &Counts,
    failures: &[String],
    pending: &[String],
) -> Condition {
    if !failures.is_empty() {
        stamp.cond(DEGRADED, true, "ReconcileFailed", failures.join("; "))
    } else if !pending.is_empty() {
        stamp.cond(DEGRADED, true, "ManualStepNeeded", pending.join("; "))
    } else if c.deadline_exceeded {
        let msg = format!(
            "The server Deployment is not progressing ({}); check the pods' events and logs",
            c.summary()
        );
        stamp.cond(DEGRADED, true, "ProgressDeadlineExceeded", msg)
    } else {
        stamp.cond(DEGRADED, false, "AsExpected", c.summary())
    }
}

/// The status the SignalingCluster should have now.
pub fn compute(
    sc: &SignalingCluster,
    outcome: &Outcome,
    seen: &Observed<'_>,
    now: Time,
) -> SignalingClusterStatus {
    let stamp = Stamp {
        generation: sc.metadata.generation,
        now: &now,
    };
    let counts = Counts::observe(sc, seen);
    let conditions = match outcome {
        Outcome::Invalid(problems) => invalid_conditions(&stamp, problems),
        Outcome::Applied { failures, pending } => vec![
            ready_condition(&stamp, &counts),
            progressing_condition(&stamp, &counts),
            degraded_condition(&stamp, &counts, failures, pending),
        ],
    };
    // Nothing was observed for an invalid spec: keep the last counts (the pods
    // that were running keep running).
    let (replicas, ready) = match (outcome, &sc.status) {
        (Outcome::Invalid(_), Some(old)) => (old.replicas, old.ready_replicas),
        _ => (counts.replicas, counts.ready),
    };
    SignalingClusterStatus {
        observed_generation: sc.metadata.generation,
        replicas,
        ready_replicas: ready,
        selector: Some(resources::selector_string(sc)),
        redis: Some(resources::redis_endpoint(sc)),
        conditions,
    }
}

/// The stored status with `Degraded` set to the failure `message`; the other
/// conditions keep what was last observed (nothing new was observed).
pub fn with_failure(sc: &SignalingCluster, message: &str, now: Time) -> SignalingClusterStatus {
    let stamp = Stamp {
        generation: sc.metadata.generation,
        now: &now,
    };
    let mut st = sc.status.clone().unwrap_or_default();
    st.observed_generation = sc.metadata.generation;
    st.selector = Some(resources::selector_string(sc));
    st.redis = Some(resources::redis_endpoint(sc));
    let not_yet = || "Not yet reconciled".to_string();
    let keep = [
        stamp.cond(READY, false, "Reconciling", not_yet()),
        stamp.cond(PROGRESSING, true, "Reconciling", not_yet()),
    ];
    for c in keep {
        if !st.conditions.iter().any(|x| x.type_ == c.type_) {
            st.conditions.push(c);
        }
    }
    let failed = stamp.cond(DEGRADED, true, "ReconcileFailed", message.to_string());
    match st.conditions.iter_mut().find(|x| x.type_ == DEGRADED) {
        Some(x) => *x = failed,
        None => st.conditions.push(failed),
    }
    st
}

/// Keeps each condition's previous `lastTransitionTime` when its status did not
/// change.
pub fn carry_transition_times(
    old: Option<&SignalingClusterStatus>,
    mut new: SignalingClusterStatus,
) -> SignalingClusterStatus {
    if let Some(old) = old {
        for c in &mut new.conditions {
            if let Some(prev) = old.conditions.iter().find(|p| p.type_ == c.type_) {
                if prev.status == c.status {
                    c.last_transition_time = prev.last_transition_time.clone();
                }
            }
        }
    }
    new
}

/// A condition of a status by type.
pub fn condition<'a>(
    status: Option<&'a SignalingClusterStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// A notable change between two statuses, worth a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notable {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events for transitions: becoming ready or not ready, and every new degradation
/// (a changed reason or message).
pub fn notable_changes(sc: &SignalingCluster, new: &SignalingClusterStatus) -> Vec<Notable> {
    let old = sc.status.as_ref();
    let mut out = Vec::new();
    let was = |t: &str| {
        condition(old, t).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if let Some(d) = condition(Some(new), DEGRADED) {
        let changed =
            was(DEGRADED) != Some((d.status.clone(), d.reason.clone(), d.message.clone()));
        if d.status == "True" && changed {
            out.push(Notable {
                warning: true,
                reason: d.reason.clone(),
                note: d.message.clone(),
            });
        }
    }
    if let Some(r) = condition(Some(new), READY) {
        let was_status = was(READY).map(|(s, _, _)| s);
        if r.status == "True" && was_status.as_deref() != Some("True") {
            out.push(Notable {
                warning: false,
                reason: "Ready".into(),
                note: r.message.clone(),
            });
        }
        if r.status == "False" && was_status.as_deref() == Some("True") {
            out.push(Notable {
                warning: true,
                reason: "NotReady".into(),
                note: r.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cluster, ready_deployment, ready_redis, time};

    #[test]
    fn invalid_spec_is_degraded_with_the_problems() {
        let sc = cluster("chat");
        let st = compute(
            &sc,
            &Outcome::Invalid(vec!["a is bad".into(), "b too".into()]),
            &Observed::default(),
            time(1),
        );
        let d = condition(Some(&st), DEGRADED).unwrap();
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(d.message, "Invalid spec: a is bad; b too");
        assert_eq!(condition(Some(&st), READY).unwrap().status, "False");
    }

    #[test]
    fn invalid_spec_keeps_the_last_counts() {
        let mut sc = cluster("chat");
        sc.status = Some(SignalingClusterStatus {
            replicas: 3,
            ready_replicas: 2,
            ..Default::default()
        });
        let st = compute(
            &sc,
            &Outcome::Invalid(vec!["x".into()]),
            &Observed::default(),
            time(1),
        );
        assert_eq!((st.replicas, st.ready_replicas), (3, 2));
    }

    #[test]
    fn ready_when_servers_and_redis_are_ready() {
        let sc = cluster("chat");
        let dep = ready_deployment(&sc, 2);
        let redis = ready_redis(&sc);
        let seen = Observed {
            deployment: Some(&dep),
            redis: Some(&redis),
        };
        let st = compute(&sc, &Outcome::applied(), &seen, time(1));
        assert_eq!((st.replicas, st.ready_replicas), (2, 2));
        assert_eq!(st.redis.as_deref(), Some("chat-redis:6379"));
        assert_eq!(st.selector.as_deref(), Some("app.kubernetes.io/component=server,app.kubernetes.io/instance=chat,app.kubernetes.io/name=switchboard"));
        let r = condition(Some(&st), READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.message.as_str()),
            ("True", "Available", "2/2 server pods ready, Redis ready")
        );
        assert_eq!(condition(Some(&st), PROGRESSING).unwrap().status, "False");
        assert_eq!(condition(Some(&st), DEGRADED).unwrap().status, "False");
    }

    #[test]
    fn not_ready_while_redis_is_down_and_progressing_while_rolling() {
        let sc = cluster("chat");
        let mut dep = ready_deployment(&sc, 2);
        dep.status.as_mut().unwrap().updated_replicas = Some(1);
        let seen = Observed {
            deployment: Some(&dep),
            redis: None,
        };
        let st = compute(&sc, &Outcome::applied(), &seen, time(1));
        assert_eq!(condition(Some(&st), READY).unwrap().reason, "RedisNotReady");
        assert_eq!(condition(Some(&st), PROGRESSING).unwrap().status, "True");
    }

    #[test]
    fn deadline_exceeded_and_apply_failures_are_degraded() {
        let sc = cluster("chat");
        let mut dep = ready_deployment(&sc, 2);
        dep.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: Some("Progressing".into()),
                status: Some("False".into()),
                reason: Some("ProgressDeadlineExceeded".into()),
                ..Default::default()
            }]);
        let redis = ready_redis(&sc);
        let seen = Observed {
            deployment: Some(&dep),
            redis: Some(&redis),
        };
        let st = compute(&sc, &Outcome::applied(), &seen, time(1));
        assert_eq!(
            condition(Some(&st), DEGRADED).unwrap().reason,
            "ProgressDeadlineExceeded"
        );
        let st = compute(
            &sc,
            &Outcome::Applied {
                failures: vec!["boom".into()],
                pending: vec![],
            },
            &seen,
            time(1),
        );
        let d = condition(Some(&st), DEGRADED).unwrap();
        assert_eq!(
            (d.reason.as_str(), d.message.as_str()),
            ("ReconcileFailed", "boom")
        );
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let sc = cluster("chat");
        let old = compute(
            &sc,
            &Outcome::Invalid(vec!["x".into()]),
            &Observed::default(),
            time(1),
        );
        let new = compute(
            &sc,
            &Outcome::Invalid(vec!["x".into()]),
            &Observed::default(),
            time(50),
        );
        assert_eq!(carry_transition_times(Some(&old), new), old);
        let dep = ready_deployment(&sc, 2);
        let changed = compute(
            &sc,
            &Outcome::applied(),
            &Observed {
                deployment: Some(&dep),
                redis: None,
            },
            time(50),
        );
        let carried = carry_transition_times(Some(&old), changed);
        // Degraded flipped True -> False: new time. Ready stayed False: old time.
        assert_eq!(
            condition(Some(&carried), DEGRADED)
                .unwrap()
                .last_transition_time,
            time(50)
        );
        assert_eq!(
            condition(Some(&carried), READY)
                .unwrap()
                .last_transition_time,
            time(1)
        );
    }

    #[test]
    fn events_only_on_transitions() {
        let mut sc = cluster("chat");
        let bad = compute(
            &sc,
            &Outcome::Invalid(vec!["x".into()]),
            &Observed::default(),
            time(1),
        );
        let n = notable_changes(&sc, &bad);
        assert_eq!(
            n,
            vec![Notable {
                warning: true,
                reason: "InvalidSpec".into(),
                note: "Invalid spec: x".into()
            }]
        );
        sc.status = Some(bad.clone());
        assert!(notable_changes(&sc, &bad).is_empty());
        let dep = ready_deployment(&sc, 2);
        let redis = ready_redis(&sc);
        let good = compute(
            &sc,
            &Outcome::applied(),
            &Observed {
                deployment: Some(&dep),
                redis: Some(&redis),
            },
            time(2),
        );
        assert_eq!(notable_changes(&sc, &good)[0].reason, "Ready");
    }
}
