//! Prometheus metrics of one node.
//!
//! Hot-path counters (messages by type, errors by code) are resolved once at
//! startup into arrays indexed by type or code, so counting costs an atomic
//! add, not a label lookup. Gauges that describe rooms are computed at scrape
//! time from the backend, so they can never drift from the truth.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::backend::BackendStats;
use crate::protocol::ErrorCode;

/// Message types counted inbound and outbound. `invalid` and `unknown` count
/// frames that could not be parsed or named no known type.
pub const MESSAGE_TYPES: [&str; 20] = [
    "join",
    "leave",
    "signal",
    "broadcast",
    "discover",
    "set_state",
    "update",
    "ping",
    "invalid",
    "unknown",
    "joined",
    "peers",
    "ok",
    "pong",
    "error",
    "peer_joined",
    "peer_left",
    "peer_updated",
    "state",
    "reconnect",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections_total: Counter,
    rejected: Family<ReasonLabel, Counter>,
    closes: Family<ReasonLabel, Counter>,
    messages_in: Vec<Counter>,
    messages_out: Vec<Counter>,
    errors: Vec<Counter>,
    handling: Vec<Histogram>,
    pub slow_consumer_closes: Counter,
    pub rate_limited: Counter,
    /// Sockets accepted but not (yet) upgraded; set at scrape time.
    pub pending_connections: Gauge,
    pub header_timeouts: Counter,
    pub pending_evictions: Counter,
    pub accept_errors: Counter,
    rooms_active: Gauge,
    peers_active: Gauge,
}

fn type_index(kind: &str) -> usize {
    MESSAGE_TYPES.iter().position(|t| *t == kind).unwrap_or(8)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let connections_active = Gauge::default();
        registry.register(
            "connections_active",
            "WebSocket connections open on this node",
            connections_active.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections",
            "WebSocket connections accepted since start",
            connections_total.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_rejected",
            "Upgrade requests and sockets refused, by reason",
            rejected.clone(),
        );
        let closes = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connection_closes",
            "Connections closed, by reason",
            closes.clone(),
        );

        let in_family = Family::<TypeLabel, Counter>::default();
        registry.register(
            "messages_in",
            "Client messages received, by type",
            in_family.clone(),
        );
        let out_family = Family::<TypeLabel, Counter>::default();
        registry.register(
            "messages_out",
            "Messages sent to clients, by type",
            out_family.clone(),
        );
        let messages_in = MESSAGE_TYPES
            .iter()
            .map(|t| in_family.get_or_create(&TypeLabel { r#type: t }).clone())
            .collect();
        let messages_out = MESSAGE_TYPES
            .iter()
            .map(|t| out_family.get_or_create(&TypeLabel { r#type: t }).clone())
            .collect();

        let err_family = Family::<CodeLabel, Counter>::default();
        registry.register("errors", "Error replies sent, by code", err_family.clone());
        let errors = ErrorCode::ALL
            .iter()
            .map(|c| {
                err_family
                    .get_or_create(&CodeLabel { code: c.as_str() })
                    .clone()
            })
            .collect();

        let hist_family = Family::<TypeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 2.5, 14))
        });
        registry.register(
            "message_handling_seconds",
            "Time from receiving a client message to queuing its reply, by type",
            hist_family.clone(),
        );
        let handling = MESSAGE_TYPES[..10]
            .iter()
            .map(|t| hist_family.get_or_create(&TypeLabel { r#type: t }).clone())
            .collect();

        let slow_consumer_closes = Counter::default();
        registry.register(
            "slow_consumer_closes",
            "Connections closed because their outbound queue overflowed",
            slow_consumer_closes.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_messages",
            "Client messages refused by the per-connection rate limit",
            rate_limited.clone(),
        );
        let pending_connections = Gauge::default();
        registry.register(
            "pending_connections",
            "Sockets accepted that are not WebSockets (yet): HTTP requests and upgrades in progress",
            pending_connections.clone(),
        );
        let header_timeouts = Counter::default();
        registry.register(
            "header_read_timeouts",
            "HTTP connections closed because no complete request head arrived within HEADER_READ_TIMEOUT_SECS (stalled or idle)",
            header_timeouts.clone(),
        );
        let pending_evictions = Counter::default();
        registry.register(
            "pending_evictions",
            "Pending sockets closed, oldest first, to make room for new ones (MAX_PENDING_CONNECTIONS reached)",
            pending_evictions.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Failures to accept a connection other than the client giving up (such as too many open files)",
            accept_errors.clone(),
        );
        let rooms_active = Gauge::default();
        registry.register(
            "rooms_active",
            "Rooms with peers on this node",
            rooms_active.clone(),
        );
        let peers_active = Gauge::default();
        registry.register(
            "peers_active",
            "Peers joined through this node",
            peers_active.clone(),
        );

        Self {
            registry,
            connections_active,
            connections_total,
            rejected,
            closes,
            messages_in,
            messages_out,
            errors,
            handling,
            slow_consumer_closes,
            rate_limited,
            pending_connections,
            header_timeouts,
            pending_evictions,
            accept_errors,
            rooms_active,
            peers_active,
        }
    }

    /// Counts an inbound message.
    pub fn message_in(&self, kind: &str) {
        self.messages_in[type_index(kind)].inc();
    }

    /// Counts an outbound message.
    pub fn message_out(&self, kind: &str) {
        self.messages_out[type_index(kind)].inc();
    }

    /// Counts an error reply.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].inc();
        }
    }

    /// Records how long handling a message took.
    pub fn handled(&self, kind: &str, seconds: f64) {
        if let Some(h) = self.handling.get(type_index(kind)) {
            h.observe(seconds);
        }
    }

    /// Counts a refused upgrade.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a closed connection.
    pub fn closed(&self, reason: &'static str) {
        self.closes.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Registers extra metrics (the Redis backend's).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders the Prometheus text exposition, with room gauges from `stats`.
    pub fn render(&self, stats: &BackendStats) -> String {
        self.rooms_active.set(stats.rooms as i64);
        self.peers_active.set(stats.peers as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return "# metrics encoding failed\n".into();
        }
        // Peers per room as a histogram computed from the current rooms.
        let bounds = [1usize, 2, 4, 8, 16, 32, 64, 128, 256];
        let mut section = String::from(
            "# HELP switchboard_room_peers Peers per room, over rooms with peers on this node.\n\
             # TYPE switchboard_room_peers histogram\n",
        );
        for b in bounds {
            let n = stats.room_sizes.iter().filter(|s| **s <= b).count();
            section.push_str(&format!(
                "switchboard_room_peers_bucket{{le=\"{b}\"}} {n}\n"
            ));
        }
        let sum: usize = stats.room_sizes.iter().sum();
        section.push_str(&format!(
            "switchboard_room_peers_bucket{{le=\"+Inf\"}} {}\nswitchboard_room_peers_sum {sum}\nswitchboard_room_peers_count {}\n",
            stats.room_sizes.len(),
            stats.room_sizes.len()
        ));
        match out.rfind("# EOF") {
            Some(i) => out.insert_str(i, &section),
            None => out.push_str(&section),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.message_in("signal");
        m.message_out("peer_joined");
        m.error(ErrorCode::RoomFull);
        m.handled("signal", 0.0001);
        let text = m.render(&BackendStats {
            rooms: 2,
            peers: 3,
            room_sizes: vec![1, 2],
        });
        for needle in [
            "switchboard_messages_in_total{type=\"signal\"} 1",
            "switchboard_messages_out_total{type=\"peer_joined\"} 1",
            "switchboard_errors_total{code=\"ROOM_FULL\"} 1",
            "switchboard_rooms_active 2",
            "switchboard_peers_active 3",
            "switchboard_room_peers_bucket{le=\"1\"} 1",
            "switchboard_room_peers_count 2",
            "switchboard_message_handling_seconds_bucket",
            "switchboard_connections_active 0",
            "switchboard_pending_connections 0",
            "switchboard_header_read_timeouts_total 0",
            "switchboard_accept_errors_total 0",
            "switchboard_pending_evictions_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
