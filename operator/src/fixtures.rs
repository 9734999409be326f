//! Test fixtures: SignalingCluster builders and a mock API server.
//!
//! A [`Scenario`] is the exact list of API calls a reconcile must make, in order:
//! method, path and the reply to send. The mock panics on any other call (naming
//! the call it expected) and, once the client is dropped, on calls left over, so a
//! test fails when the operator writes something it should not or skips a write.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use crate::controller::Context;
use crate::crd::{SignalingCluster, SignalingClusterSpec};
use crate::metrics::Metrics;

/// Namespace of every fixture.
pub const NS: &str = "default";

/// A SignalingCluster as the API server returns it: spec defaults filled in, with
/// a uid and generation 1.
pub fn cluster(name: &str) -> SignalingCluster {
    let spec: SignalingClusterSpec = serde_json::from_value(json!({})).unwrap();
    let mut sc = SignalingCluster::new(name, spec);
    sc.metadata.namespace = Some(NS.into());
    sc.metadata.uid = Some(format!("uid-{name}"));
    sc.metadata.generation = Some(1);
    sc.metadata.resource_version = Some("1".into());
    sc
}

/// A fixed point in time, `secs` after the epoch.
pub fn time(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
}

/// The Deployment the operator would build, with every pod ready.
pub fn ready_deployment(sc: &SignalingCluster, n: i32) -> Deployment {
    let mut d = crate::resources::with_spec_hash(crate::resources::deployment(sc));
    d.metadata.generation = Some(1);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(n),
        ready_replicas: Some(n),
        updated_replicas: Some(n),
        available_replicas: Some(n),
        ..Default::default()
    });
    d
}

/// The Redis StatefulSet the operator would build, ready.
pub fn ready_redis(sc: &SignalingCluster) -> StatefulSet {
    let mut s = crate::resources::with_spec_hash(crate::resources::redis_statefulset(sc).unwrap());
    s.status = Some(StatefulSetStatus {
        replicas: 1,
        ready_replicas: Some(1),
        ..Default::default()
    });
    s
}

/// What the mock sends back.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Json(Value),
    /// 200 echoing the request body (what server-side apply returns, near enough).
    Echo,
    /// 404 Not Found.
    NotFound,
    /// An error Status with this code and message.
    Status(u16, String),
}

/// One expected API call.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    pub reply: Reply,
}

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub body: Value,
}

/// Paths of the objects of cluster `name` in [`NS`].
pub fn path(kind: &str, name: &str) -> String {
    let base = match kind {
        "secrets" | "configmaps" | "services" | "serviceaccounts" => {
            format!("/api/v1/namespaces/{NS}/{kind}")
        }
        "statefulsets" | "deployments" => format!("/apis/apps/v1/namespaces/{NS}/{kind}"),
        "horizontalpodautoscalers" => format!("/apis/autoscaling/v2/namespaces/{NS}/{kind}"),
        "poddisruptionbudgets" => format!("/apis/policy/v1/namespaces/{NS}/{kind}"),
        "networkpolicies" => format!("/apis/networking.k8s.io/v1/namespaces/{NS}/{kind}"),
        "signalingclusters" => format!("/apis/switchboard.dev/v1alpha1/namespaces/{NS}/{kind}"),
        "events" => format!("/apis/events.k8s.io/v1/namespaces/{NS}/{kind}"),
        "leases" => format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/{kind}"),
        other => panic!("fixture has no path for {other}"),
    };
    if name.is_empty() {
        base
    } else {
        format!("{base}/{name}")
    }
}

/// Builds the list of expected calls.
#[derive(Default)]
pub struct Scenario {
    pub calls: Vec<Call>,
}

impl Scenario {
    pub fn call(mut self, method: Method, path: String, reply: Reply) -> Self {
        self.calls.push(Call {
            method,
            path,
            reply,
        });
        self
    }
    pub fn get(self, kind: &str, name: &str, reply: Reply) -> Self {
        self.call(Method::GET, path(kind, name), reply)
    }
    pub fn get_missing(self, kind: &str, name: &str) -> Self {
        self.get(kind, name, Reply::NotFound)
    }
    pub fn get_object<T: serde::Serialize>(self, kind: &str, name: &str, obj: &T) -> Self {
        self.get(kind, name, Reply::Json(serde_json::to_value(obj).unwrap()))
    }
    pub fn apply(self, kind: &str, name: &str) -> Self {
        self.call(Method::PATCH, path(kind, name), Reply::Echo)
    }
    pub fn create(self, kind: &str) -> Self {
        self.call(Method::POST, path(kind, ""), Reply::Echo)
    }
    pub fn delete(self, kind: &str, name: &str) -> Self {
        self.call(
            Method::DELETE,
            path(kind, name),
            Reply::Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
            ),
        )
    }
    pub fn status(self, name: &str) -> Self {
        self.call(
            Method::PATCH,
            format!("{}/status", path("signalingclusters", name)),
            Reply::Echo,
        )
    }
    pub fn event(self) -> Self {
        self.create("events")
    }

    /// Serves the scenario; resolves to the requests seen once the client is gone.
    pub fn run(
        self,
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> tokio::task::JoinHandle<Vec<Seen>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            // Last object returned per path: an apply does not change status, so an
            // echoed apply keeps the status the object had.
            let mut last: std::collections::HashMap<String, Value> =
                std::collections::HashMap::new();
            for (i, call) in self.calls.into_iter().enumerate() {
                let Some((req, send)) = handle.next_request().await else {
                    panic!(
                        "call #{i} never came: expected {} {}; calls so far: {:#?}",
                        call.method,
                        call.path,
                        summary(&seen)
                    );
                };
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let uri = parts.uri.to_string();
                let got_path = parts.uri.path().to_string();
                seen.push(Seen {
                    method: parts.method.clone(),
                    uri: uri.clone(),
                    body: body.clone(),
                });
                assert_eq!(
                    (&parts.method, got_path.as_str()),
                    (&call.method, call.path.as_str()),
                    "call #{i}: got {} {uri}, expected {} {}; calls so far: {:#?}",
                    parts.method,
                    call.method,
                    call.path,
                    summary(&seen)
                );
                let (code, reply) = match call.reply {
                    Reply::Json(v) => (200, v),
                    Reply::Echo => {
                        let mut b = body;
                        if let Some(obj) = b.as_object_mut() {
                            // A status patch carries no metadata or spec; the server
                            // answers with the whole object.
                            if !obj.contains_key("metadata") {
                                let name = call
                                    .path
                                    .trim_end_matches("/status")
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or_default();
                                obj.insert(
                                    "metadata".into(),
                                    json!({"name": name, "namespace": NS}),
                                );
                                obj.insert("spec".into(), json!({}));
                            }
                        }
                        if let (Some(obj), Some(prev)) = (b.as_object_mut(), last.get(&call.path)) {
                            if !obj.contains_key("status") {
                                if let Some(st) = prev.get("status") {
                                    obj.insert("status".into(), st.clone());
                                }
                            }
                        }
                        (200, b)
                    }
                    Reply::NotFound => (404, status_body(404, "NotFound", "not found")),
                    Reply::Status(code, msg) => (code, status_body(code, "Failure", &msg)),
                };
                if code == 200 {
                    last.insert(call.path.clone(), reply.clone());
                }
                let resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                send.send_response(resp);
            }
            if let Some((req, _)) = handle.next_request().await {
                panic!(
                    "unexpected extra call {} {}; calls so far: {:#?}",
                    req.method(),
                    req.uri(),
                    summary(&seen)
                );
            }
            seen
        })
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})
}

fn summary(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect()
}

/// A context whose client talks to a mock; drive the mock with [`Scenario::run`].
pub fn test_context() -> (
    Arc<Context>,
    tower_test::mock::Handle<Request<Body>, Response<Body>>,
) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, NS);
    (
        Arc::new(Context::new(
            client,
            Some("test".into()),
            Arc::new(Metrics::default()),
        )),
        handle,
    )
}
