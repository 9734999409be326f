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
    /// Applying the desired objects failed with this message.
    ApplyFailed(String),
    /// Every desired object is in place.
    Applied,
}

/// What the operator observed of the objects it owns.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub deployment: Option<&'a Deployment>,
    /// `None` with an external Redis.
    pub redis: Option<&'a StatefulSet>,
}

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status the SignalingCluster should have now.
pub fn compute(
    sc: &SignalingCluster,
    outcome: &Outcome,
    seen: &Observed<'_>,
    now: Time,
) -> SignalingClusterStatus {
    let generation = sc.metadata.generation;
    let dep_status = seen
        .deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let replicas = dep_status.replicas.unwrap_or(0);
    let ready = dep_status.ready_replicas.unwrap_or(0);
    let updated = dep_status.updated_replicas.unwrap_or(0);
    let desired = seen
        .deployment
        .and_then(|d| d.spec.replicas)
        .unwrap_or(sc.spec.replicas);
    let dep_current = seen.deployment.is_some_and(|d| {
        dep_status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
    });
    let deadline_exceeded = dep_status.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let external = resources::managed_redis(sc).is_none();
    let redis_ready = external
        || seen
            .redis
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= 1;

    let conditions = match outcome {
        Outcome::Invalid(problems) => {
            let msg = format!("Invalid spec: {}", problems.join("; "));
            vec![
                cond(READY, false, "InvalidSpec", msg.clone(), generation, &now),
                cond(
                    PROGRESSING,
                    false,
                    "InvalidSpec",
                    "Waiting for a valid spec".into(),
                    generation,
                    &now,
                ),
                cond(DEGRADED, true, "InvalidSpec", msg, generation, &now),
            ]
        }
        Outcome::ApplyFailed(_) | Outcome::Applied => {
            let servers = format!("{ready}/{desired} server pods ready");
            let redis = if external {
                "external Redis"
            } else if redis_ready {
                "Redis ready"
            } else {
                "Redis not ready"
            };
            let summary = format!("{servers}, {redis}");
            let ready_cond = if desired == 0 {
                cond(
                    READY,
                    false,
                    "ScaledToZero",
                    "spec.replicas is 0".into(),
                    generation,
                    &now,
                )
            } else if ready >= 1 && redis_ready {
                cond(READY, true, "Available", summary.clone(), generation, &now)
            } else if !redis_ready {
                cond(
                    READY,
                    false,
                    "RedisNotReady",
                    summary.clone(),
                    generation,
                    &now,
                )
            } else {
                cond(
                    READY,
                    false,
                    "ServersNotReady",
                    summary.clone(),
                    generation,
                    &now,
                )
            };
            let rolled_out =
                dep_current && updated >= desired && replicas == desired && ready >= desired;
            let progressing = if !rolled_out || !redis_ready {
                cond(
                    PROGRESSING,
                    true,
                    "RollingOut",
                    summary.clone(),
                    generation,
                    &now,
                )
            } else {
                cond(
                    PROGRESSING,
                    false,
                    "RolloutComplete",
                    summary.clone(),
                    generation,
                    &now,
                )
            };
            let degraded = match outcome {
                Outcome::ApplyFailed(msg) => cond(DEGRADED, true, "ReconcileFailed", msg.clone(), generation, &now),
                _ if deadline_exceeded => cond(
                    DEGRADED,
                    true,
                    "ProgressDeadlineExceeded",
                    format!("The server Deployment is not progressing ({summary}); check the pods' events and logs"),
                    generation,
                    &now,
                ),
                _ => cond(DEGRADED, false, "AsExpected", summary, generation, &now),
            };
            vec![ready_cond, progressing, degraded]
        }
    };

    // Nothing was observed for an invalid spec: keep the last counts (the pods
    // that were running keep running).
    let (replicas, ready) = match (outcome, &sc.status) {
        (Outcome::Invalid(_), Some(old)) => (old.replicas, old.ready_replicas),
        _ => (replicas, ready),
    };
    SignalingClusterStatus {
        observed_generation: generation,
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
    let generation = sc.metadata.generation;
    let mut st = sc.status.clone().unwrap_or_default();
    st.observed_generation = generation;
    st.selector = Some(resources::selector_string(sc));
    st.redis = Some(resources::redis_endpoint(sc));
    let mut set =
        |c: Condition, replace: bool| match st.conditions.iter_mut().find(|x| x.type_ == c.type_) {
            Some(x) if replace => *x = c,
            Some(_) => {}
            None => st.conditions.push(c),
        };
    set(
        cond(
            READY,
            false,
            "Reconciling",
            "Not yet reconciled".into(),
            generation,
            &now,
        ),
        false,
    );
    set(
        cond(
            PROGRESSING,
            true,
            "Reconciling",
            "Not yet reconciled".into(),
            generation,
            &now,
        ),
        false,
    );
    set(
        cond(
            DEGRADED,
            true,
            "ReconcileFailed",
            message.to_string(),
            generation,
            &now,
        ),
        true,
    );
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
        let st = compute(&sc, &Outcome::Applied, &seen, time(1));
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
        let st = compute(&sc, &Outcome::Applied, &seen, time(1));
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
        let st = compute(&sc, &Outcome::Applied, &seen, time(1));
        assert_eq!(
            condition(Some(&st), DEGRADED).unwrap().reason,
            "ProgressDeadlineExceeded"
        );
        let st = compute(&sc, &Outcome::ApplyFailed("boom".into()), &seen, time(1));
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
            &Outcome::Applied,
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
            &Outcome::Applied,
            &Observed {
                deployment: Some(&dep),
                redis: Some(&redis),
            },
            time(2),
        );
        assert_eq!(notable_changes(&sc, &good)[0].reason, "Ready");
    }
}
