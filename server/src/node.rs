//! The node: the cheap-to-clone handle every task shares (configuration,
//! backend, metrics, drain state, pending sockets), and the place where per-node services such
//! as ICE server lists are computed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::auth::Verifier;
use crate::backend::Backend;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pending::Pending;
use crate::shutdown::Drain;

/// Everything a connection or HTTP handler needs from its node.
pub struct Node {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub metrics: Metrics,
    pub drain: Drain,
    /// Sockets accepted but not (yet) upgraded, against their limits.
    pub pending: Pending,
    pub started: Instant,
    /// Checks upgrade tokens; `None` when auth is off.
    pub verifier: Option<Verifier>,
    connection_ids: AtomicU64,
}

impl Node {
    /// A node over `backend`.
    pub fn new(config: Config, backend: Arc<dyn Backend>, metrics: Metrics) -> Arc<Self> {
        let verifier = Verifier::new(&config.auth);
        let pending = Pending::new(
            config.limits.max_pending_connections,
            config.limits.max_pending_per_ip,
        );
        Arc::new(Self {
            config,
            backend,
            metrics,
            drain: Drain::new(),
            pending,
            started: Instant::now(),
            verifier,
            connection_ids: AtomicU64::new(1),
        })
    }

    /// A process-unique id for logging one connection.
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// The `ice_servers` of a `joined` for `peer`, with TURN credentials
    /// valid from now.
    pub fn ice_servers(&self, peer: &str) -> Value {
        crate::ice::ice_servers(&self.config.ice, peer, crate::auth::unix_now())
    }

    /// Whether the node accepts new connections: not draining and its backend
    /// reachable.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.drain.is_draining() {
            return Err("draining");
        }
        if !self.backend.health().healthy {
            return Err("backend_unavailable");
        }
        Ok(())
    }
}
