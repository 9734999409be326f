//! Switchboard: a WebRTC signaling server.
//!
//! # Layout
//! Each module imports only the ones listed after it (docs/architecture.md
//! has the picture and the check):
//! - [`cli`]: flags and environment into validated settings (`ServeArgs`,
//!   `AuthArgs`, `IceArgs`, [`cli::ConfigError`]).
//! - [`http`]: routes (`/ws`, `/health`, `/ready`, `/metrics`, `/status`,
//!   `/`, `/demo`); [`listener`]: the accept loop and HTTP/1.1 serving
//!   (request-head deadline, accept-error backoff); [`pending`]: sockets not
//!   upgraded yet, against their overall and per-address limits.
//! - [`api`]: the Server API (`/api/v1`) for application backends: rooms
//!   listed, read, messaged, patched, kicked from and closed.
//! - [`session`]: one WebSocket connection (read loop, dispatch, write loop,
//!   lingering close, rate limit).
//! - [`node`]: the shared handle of one node; [`shutdown`]: the graceful
//!   drain; [`webhook`]: delivery of room-history events to `WEBHOOK_URLS`.
//! - [`backend`]: rooms, peers, state, per-peer event sequencing, replay and
//!   routing, behind one trait with an in-memory ([`backend::memory`]) and a
//!   Redis ([`backend::redis`]) implementation; the join/resume rules both
//!   follow are in [`backend::rules`]; room history in
//!   [`backend::history`], the webhook queue in [`backend::hooks`].
//! - [`config`]: the validated settings; [`telemetry`]: logging.
//! - [`auth`]: JWT verification, room/peer/role grants, origin allow-list,
//!   admin token, token minting; [`ice`]: STUN/TURN servers with TURN REST
//!   credentials; [`metrics`]: Prometheus; [`outbox`]: the bounded outbound
//!   queue of a connection.
//! - [`protocol`]: the wire vocabulary — message types, close codes, error
//!   codes, parsing, events, replies, `discover` filters, state merge
//!   patches (no I/O).
//! - [`limits`]: the sizes and rates every layer checks; [`sync`]: locks
//!   that survive poisoning.
//!
//! The binary (`main.rs`) only parses the command line and calls [`run`].
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod http;
pub mod ice;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod pending;
pub mod protocol;
pub mod session;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api::keys::ApiKeys;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::Backend;
use crate::config::{BackendConfig, Config};
use crate::metrics::Metrics;
use crate::node::Node;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot serve on the listening socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend: {0}")]
    Backend(String),
    #[error("webhooks: {0}")]
    Webhooks(String),
}

/// Builds the backend the configuration asks for.
pub async fn build_backend(
    config: &Config,
    metrics: &mut Metrics,
) -> Result<Arc<dyn Backend>, Error> {
    match &config.backend {
        BackendConfig::Memory => {
            let backend = MemoryBackend::with_history(
                config.limits.clone(),
                config.timing.resume_window,
                config.history.clone(),
            );
            backend.set_node_id(&config.node_id);
            Ok(backend)
        }
        BackendConfig::Redis(redis) => {
            // rustls needs a process-wide crypto provider for rediss:// URLs;
            // installing it twice (several nodes in one test process) is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let backend = RedisBackend::start(config, redis, metrics)
                .await
                .map_err(Error::Backend)?;
            Ok(backend)
        }
    }
}

/// Serves one node on `listener` until `shutdown` resolves, then drains:
/// `/ready` turns 503, clients get `reconnect` and close 1001, and the call
/// returns once they are gone or the drain timeout passed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // The signal may come at any moment, also while start-up still waits for
    // Redis (up to half a minute): it must stop the process then too.
    let stopping = tokio_util::sync::CancellationToken::new();
    let signalled = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        signalled.cancel();
    });
    let mut metrics = Metrics::new();
    let backend = tokio::select! {
        backend = build_backend(&config, &mut metrics) => backend?,
        () = stopping.cancelled() => {
            warn!("shutdown signal received during start-up: stopping before serving");
            return Ok(());
        }
    };
    let hooks_stop = tokio_util::sync::CancellationToken::new();
    start_webhooks(&config, &backend, &mut metrics, hooks_stop.clone())?;
    let node = Node::new(config, backend, metrics);
    let addr = listener.local_addr()?;
    info!(
        node = %node.config.node_id,
        region = %node.config.region,
        backend = node.backend.kind(),
        "switchboard {} starting",
        env!("CARGO_PKG_VERSION")
    );
    match &node.verifier {
        Some(verifier) => info!("authentication is on: {}", verifier.describe()),
        None => warn!("authentication is off: the server is open, any client may join any room (configure JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE to require tokens)"),
    }
    let internal = bind_internal(&node).await?;
    info!(addr = %addr, "listening");

    let drained = drain(node.clone(), stopping);
    let stopped = tokio_util::sync::CancellationToken::new();
    let stop = stopped.clone();
    tokio::spawn(async move {
        drained.await;
        stop.cancel();
    });
    let public = listener::serve(
        listener,
        http::app(node.clone()),
        node.clone(),
        stopped.clone().cancelled_owned(),
    );
    match internal {
        Some(internal) => {
            let internal = listener::serve(
                internal,
                http::internal_app(node.clone()),
                node.clone(),
                stopped.cancelled_owned(),
            );
            tokio::join!(public, internal);
        }
        None => public.await,
    }
    hooks_stop.cancel();
    node.backend.shutdown().await;
    info!("stopped");
    Ok(())
}

/// Starts webhook delivery when WEBHOOK_URLS is set. A room's delivery
/// lease lasts three node TTLs: long enough that a live sender renews it in
/// time, short enough that a dead node's rooms move on within seconds.
fn start_webhooks(
    config: &Config,
    backend: &Arc<dyn Backend>,
    metrics: &mut Metrics,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), Error> {
    let Some(webhooks) = &config.webhooks else {
        return Ok(());
    };
    let Some(queue) = backend.hooks() else {
        return Ok(());
    };
    let lease = config.timing.node_ttl * 3;
    webhook::start(webhooks, queue, lease, metrics, stop).map_err(Error::Webhooks)
}

/// Binds the internal listener (probes, metrics, status, and the Server API
/// when API keys are set: `http::internal_app`) when INTERNAL_ADDR is set.
async fn bind_internal(node: &Node) -> Result<Option<TcpListener>, Error> {
    let Some(at) = node.config.internal_addr else {
        return Ok(None);
    };
    let internal = TcpListener::bind(at).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on INTERNAL_ADDR {at}: {e}"),
        ))
    })?;
    // What it serves, so that an operator sees where the Server API went.
    let serves = if ApiKeys::new(&node.config.auth.api_keys).enabled() {
        "/health /ready /metrics /status /api/v1 (Server API)"
    } else {
        "/health /ready /metrics /status (no Server API: API_KEYS unset)"
    };
    info!(addr = %internal.local_addr()?, serves, "internal listener");
    Ok(Some(internal))
}

/// Once `stopping` fires: tells every connection to reconnect elsewhere and
/// waits, at most the drain timeout, for them to go.
async fn drain(node: Arc<Node>, stopping: tokio_util::sync::CancellationToken) {
    stopping.cancelled().await;
    info!(
        connections = node.drain.active(),
        "shutdown signal received: draining"
    );
    node.drain.start();
    let timeout = node.config.timing.drain_timeout;
    if tokio::time::timeout(timeout, node.drain.wait_idle())
        .await
        .is_err()
    {
        warn!(
            connections = node.drain.active(),
            "drain timeout ({}s) passed with connections still open; closing them",
            timeout.as_secs()
        );
    }
}
