//! A real webhook receiver for the tests: an HTTP server on 127.0.0.1 that
//! records every POST (signature header, body, what it answered), can answer
//! 500 instead of 200, and can be stopped and started again on the same port.
//! Also: the signature check a receiver does, written from docs/webhooks.md.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: Option<String>,
    pub body: String,
    pub json: Value,
    /// The status the receiver answered.
    pub status: u16,
}

impl Delivery {
    pub fn acked(&self) -> bool {
        self.status == 200
    }
    pub fn room(&self) -> &str {
        self.json["room"].as_str().unwrap_or("")
    }
    pub fn seq(&self) -> u64 {
        self.json["seq"].as_u64().unwrap_or(0)
    }
    pub fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct Shared {
    failing: AtomicBool,
    got: Mutex<Vec<Delivery>>,
    changed: Notify,
    /// Connections accepted.
    connections: AtomicUsize,
}

/// The receiver. Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

async fn record(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = if shared.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let delivery = Delivery {
        signature: headers
            .get("switchboard-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        json: serde_json::from_str(&body).unwrap_or(Value::Null),
        body,
        status: status.as_u16(),
    };
    shared
        .got
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(delivery);
    shared.changed.notify_waiters();
    status
}

/// Serves until aborted; its connections live in this future, so aborting
/// it also cuts the connections the node keeps alive (a receiver that went
/// down takes them along).
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(shared.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors or the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let app = app.clone();
                let service = hyper::service::service_fn(move |request| app.clone().oneshot(request));
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(serve(listener, shared.clone()));
        Receiver {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// The URL to put in WEBHOOK_URLS.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer 500 (true) or 200 (false) from now on.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Stops listening and cuts the open connections: connections are
    /// refused until `resume`.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind receiver");
        let task = tokio::spawn(serve(listener, self.shared.clone()));
        *self.task.lock().unwrap() = Some(task);
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Delivery> {
        self.shared
            .got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Deliveries answered 200.
    pub fn acked(&self) -> Vec<Delivery> {
        self.all().into_iter().filter(Delivery::acked).collect()
    }

    /// Waits (at most `timeout`) until `done` holds for what was received;
    /// panics with what arrived when it does not.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let all = self.all();
            if done(&all) {
                return all;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let all = self.all();
                if done(&all) {
                    return all;
                }
                let shown: Vec<String> = all
                    .iter()
                    .map(|d| format!("{} {}", d.status, d.body))
                    .collect();
                panic!(
                    "webhook receiver: {what} did not happen within {timeout:?}; received {}:\n{}",
                    all.len(),
                    shown.join("\n")
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks a `Switchboard-Signature` header against `body` as a receiver
/// does: `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, `t` within
/// five minutes of now.
pub fn signature_valid(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&v1).is_ok()
}

/// The acknowledged deliveries per room, first acknowledgement of each id
/// only, in arrival order; panics when an id arrived twice with different
/// bodies (a redelivery must be the same event).
pub fn per_room(deliveries: &[Delivery]) -> HashMap<String, Vec<Delivery>> {
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut rooms: HashMap<String, Vec<Delivery>> = HashMap::new();
    for d in deliveries.iter().filter(|d| d.acked()) {
        let event = d.json.clone();
        if let Some(previous) = seen.get(d.id()) {
            assert_eq!(
                previous,
                &event,
                "id {} was delivered twice with different content",
                d.id()
            );
            continue;
        }
        seen.insert(d.id().to_owned(), event);
        rooms
            .entry(d.room().to_owned())
            .or_default()
            .push(d.clone());
    }
    rooms
}
