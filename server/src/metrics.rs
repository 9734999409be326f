//! Prometheus metrics of one node.
//!
//! Hot-path counters (messages by type, errors by code) are resolved once at
//! startup into arrays indexed by type or code, so counting costs an atomic
//! add, not a label lookup. Gauges that describe rooms are computed at scrape
//! time from the backend, so they can never drift from the truth.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::protocol::{ErrorCode, MessageType};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    call: &'static str,
    status: u16,
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    pub connections_active: Gauge,
    pub connections_total: Counter,
    rejected: Family<ReasonLabel, Counter>,
    closes: Family<ReasonLabel, Counter>,
    messages_in: Vec<Option<Counter>>,
    messages_out: Vec<Option<Counter>>,
    errors: Vec<Counter>,
    handling: Vec<Option<Histogram>>,
    pub slow_consumer_closes: Counter,
    pub rate_limited: Counter,
    /// Sockets accepted but not (yet) upgraded; set at scrape time.
    pub pending_connections: Gauge,
    pub header_timeouts: Counter,
    pub pending_evictions: Counter,
    pub accept_errors: Counter,
    rooms_active: Gauge,
    peers_active: Gauge,
    api_requests: Family<ApiLabel, Counter>,
}

/// A new metric of type `M`, registered under `name`.
fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// One series per message type that can occur in a direction, indexed by
/// `MessageType as usize`; `None` for the types that cannot.
fn by_type<M: Clone, C: MetricConstructor<M>>(
    family: &Family<TypeLabel, M, C>,
    types: &[MessageType],
) -> Vec<Option<M>> {
    let mut series = vec![None; MessageType::COUNT];
    for t in types {
        series[*t as usize] = Some(
            family
                .get_or_create(&TypeLabel { r#type: t.as_str() })
                .clone(),
        );
    }
    series
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric. Long, but one flat list: each metric's name,
    /// help and type side by side reads better than the same list spread
    /// over helpers.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let connections_active: Gauge = register(
            &mut registry,
            "connections_active",
            "WebSocket connections open on this node",
        );
        let connections_total: Counter = register(
            &mut registry,
            "connections",
            "WebSocket connections accepted since start",
        );
        let rejected: Family<ReasonLabel, Counter> = register(
            &mut registry,
            "connections_rejected",
            "Upgrade requests and sockets refused, by reason",
        );
        let closes: Family<ReasonLabel, Counter> = register(
            &mut registry,
            "connection_closes",
            "Connections closed, by reason",
        );

        let in_family: Family<TypeLabel, Counter> = register(
            &mut registry,
            "messages_in",
            "Client messages received, by type",
        );
        let out_family: Family<TypeLabel, Counter> = register(
            &mut registry,
            "messages_out",
            "Messages sent to clients, by type",
        );
        let messages_in = by_type(&in_family, &MessageType::INBOUND);
        let messages_out = by_type(&out_family, &MessageType::OUTBOUND);

        let err_family: Family<CodeLabel, Counter> =
            register(&mut registry, "errors", "Error replies sent, by code");
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
        let handling = by_type(&hist_family, &MessageType::INBOUND);

        let slow_consumer_closes: Counter = register(
            &mut registry,
            "slow_consumer_closes",
            "Connections closed because their outbound queue overflowed",
        );
        let rate_limited: Counter = register(
            &mut registry,
            "rate_limited_messages",
            "Client messages refused by the per-connection rate limit",
        );
        let pending_connections: Gauge = register(&mut registry, "pending_connections", "Sockets accepted that are not WebSockets (yet): HTTP requests and upgrades in progress");
        let header_timeouts: Counter = register(&mut registry, "header_read_timeouts", "HTTP connections closed because no complete request head arrived within HEADER_READ_TIMEOUT_SECS (stalled or idle)");
        let pending_evictions: Counter = register(&mut registry, "pending_evictions", "Pending sockets closed, oldest first, to make room for new ones (MAX_PENDING_CONNECTIONS reached)");
        let accept_errors: Counter = register(&mut registry, "accept_errors", "Failures to accept a connection other than the client giving up (such as too many open files)");
        let rooms_active: Gauge = register(
            &mut registry,
            "rooms_active",
            "Rooms with peers on this node",
        );
        let peers_active: Gauge = register(
            &mut registry,
            "peers_active",
            "Peers joined through this node",
        );

        let api_requests: Family<ApiLabel, Counter> = register(
            &mut registry,
            "api_requests",
            "Server API (/api/v1) requests answered, by call and HTTP status",
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
            api_requests,
        }
    }

    /// Counts a Server API request by its call and answer's status.
    pub fn api_request(&self, call: &'static str, status: u16) {
        self.api_requests
            .get_or_create(&ApiLabel { call, status })
            .inc();
    }

    /// Counts an inbound message.
    pub fn message_in(&self, kind: MessageType) {
        if let Some(Some(c)) = self.messages_in.get(kind as usize) {
            c.inc();
        }
    }

    /// Counts an outbound message.
    pub fn message_out(&self, kind: MessageType) {
        if let Some(Some(c)) = self.messages_out.get(kind as usize) {
            c.inc();
        }
    }

    /// Counts an error reply.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].inc();
        }
    }

    /// Records how long handling a message took.
    pub fn handled(&self, kind: MessageType, seconds: f64) {
        if let Some(Some(h)) = self.handling.get(kind as usize) {
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

    /// Renders the Prometheus text exposition, with the room gauges from
    /// the backend's figures (passed in so that this module stays below the
    /// backends, which register their own metrics here).
    pub fn render(&self, rooms: usize, peers: usize, room_sizes: &[usize]) -> String {
        self.rooms_active.set(rooms as i64);
        self.peers_active.set(peers as i64);
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
            let n = room_sizes.iter().filter(|s| **s <= b).count();
            section.push_str(&format!(
                "switchboard_room_peers_bucket{{le=\"{b}\"}} {n}\n"
            ));
        }
        let sum: usize = room_sizes.iter().sum();
        section.push_str(&format!(
            "switchboard_room_peers_bucket{{le=\"+Inf\"}} {}\nswitchboard_room_peers_sum {sum}\nswitchboard_room_peers_count {}\n",
            room_sizes.len(),
            room_sizes.len()
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
        m.message_in(MessageType::Signal);
        m.message_out(MessageType::PeerJoined);
        m.error(ErrorCode::RoomFull);
        m.handled(MessageType::Signal, 0.0001);
        m.api_request("get_room", 404);
        let text = m.render(2, 3, &[1, 2]);
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
            "switchboard_api_requests_total{call=\"get_room\",status=\"404\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
        // Only the types that can occur in a direction have a series there.
        assert!(text.contains("switchboard_messages_out_total{type=\"signal\"} 0"));
        assert!(!text.contains("switchboard_messages_out_total{type=\"join\"}"));
        assert!(!text.contains("switchboard_messages_in_total{type=\"peer_joined\"}"));
    }
}
