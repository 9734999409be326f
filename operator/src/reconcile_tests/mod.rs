//! Reconcile tests against the mock API server: each states the exact calls the
//! operator makes for one situation, with the owned objects in the caches as
//! a previous reconcile left them, and checks the bodies that matter.
//!
//! - `lifecycle`: create, no-op, change, switch Redis, invalid specs, errors,
//!   drift correction, back-off;
//! - `day2`: what happens after the first install (storage changes, failures
//!   that must not block other objects, autoscaling, rotated Secrets, the
//!   objects that expose and monitor the servers);
//! - `rbac`: the RBAC manifests grant exactly what the operator uses.

mod day2;
mod lifecycle;
mod rbac;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use k8s_openapi::ByteString;
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::controller::{reconcile, Context};
use crate::crd::SignalingCluster;
use crate::error::Error;
use crate::fixtures::context::context_with;
use crate::fixtures::mock::{MockHandle, Scenario, Seen};
use crate::fixtures::{ready_deployment, ready_redis, time, NS};
use crate::status::{self, Observed, Outcome};

/// What a new default cluster applies after creating its Redis password, in
/// order: Redis first, then the server side.
const NEW_CLUSTER_APPLIES: &[(&str, &str)] = &[
    ("configmaps", "chat-redis-config"),
    ("services", "chat-redis"),
    ("networkpolicies", "chat-redis"),
    ("statefulsets", "chat-redis"),
    ("serviceaccounts", "chat"),
    ("configmaps", "chat-config"),
    ("deployments", "chat"),
    ("services", "chat"),
    ("services", "chat-internal"),
    ("poddisruptionbudgets", "chat"),
];

/// Reconciles `sc` once with `cached` in the caches; returns the result and
/// the calls the mock saw.
async fn run_with(
    sc: SignalingCluster,
    cached: &[Value],
    scenario: Scenario,
) -> (Result<Action, Error>, Vec<Seen>) {
    let (ctx, handle) = context_with(cached);
    run_in(ctx, handle, sc, scenario.knowing(cached)).await
}

/// Reconciles `sc` once in a context prepared by the test.
async fn run_in(
    ctx: Arc<Context>,
    handle: MockHandle,
    sc: SignalingCluster,
    scenario: Scenario,
) -> (Result<Action, Error>, Vec<Seen>) {
    let mock = scenario.run(handle);
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(sc), ctx))
        .await
        .expect("reconcile finished");
    let seen = tokio::time::timeout(Duration::from_secs(10), mock)
        .await
        .expect("mock finished")
        .expect("mock scenario held");
    (result, seen)
}

/// The writes among the calls seen, as "METHOD path".
fn writes(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.method != Method::GET)
        .map(|s| format!("{} {}", s.method, s.uri.split('?').next().unwrap()))
        .collect()
}

fn body_of<'a>(seen: &'a [Seen], method: Method, path_end: &str) -> &'a Value {
    &seen
        .iter()
        .find(|s| s.method == method && s.uri.split('?').next().unwrap().ends_with(path_end))
        .unwrap_or_else(|| panic!("no {method} .../{path_end}"))
        .body
}

/// Condition `type_` of the status written.
fn written_condition(seen: &[Seen], type_: &str) -> Value {
    let st = &body_of(seen, Method::PATCH, "chat/status")["status"];
    st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {st}"))
        .clone()
}

/// Asserts the status and reason of the written condition `type_`; returns
/// its message.
fn expect_condition(seen: &[Seen], type_: &str, status: &str, reason: &str) -> String {
    let c = written_condition(seen, type_);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some(status), Some(reason)),
        "{c}"
    );
    c["message"].as_str().unwrap_or_default().to_string()
}

/// A Secret holding one key.
fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

/// Marks `spec.replicas` as owned by the operator's field manager.
fn owned_replicas(mut d: Deployment) -> Deployment {
    d.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(crate::apply::MANAGER.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
        ..Default::default()
    }]);
    d
}

/// `sc` with the status a previous reconcile of the existing objects wrote.
fn settled(mut sc: SignalingCluster) -> SignalingCluster {
    let dep = ready_deployment(&sc, 2);
    let redis = ready_redis(&sc);
    let seen = Observed {
        deployment: Some(&dep),
        redis: Some(&redis),
    };
    sc.status = Some(status::compute(&sc, &Outcome::applied(), &seen, time(1)));
    sc
}

/// `old` changed by `spec` (merged into its spec), at generation 2.
fn edited(old: &SignalingCluster, spec: Value) -> SignalingCluster {
    let mut merged = crate::fixtures::json(&old.spec);
    merge(&mut merged, spec);
    let mut sc = old.clone();
    sc.spec = serde_json::from_value(merged).unwrap();
    sc.metadata.generation = Some(2);
    sc
}

/// JSON merge patch (RFC 7386), enough for test edits.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}
