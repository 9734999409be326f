//! Prometheus metrics of the operator and the HTTP endpoints (`/metrics`,
//! `/healthz`) that serve them.

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Counters and histograms of the reconcile loop.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<Vec<(String, String)>, Counter>,
    duration: Histogram,
    in_flight: Gauge<i64, AtomicI64>,
    /// SignalingClusters waiting for a retry after a failure: the depth of the
    /// retry queue.
    pub backing_off: Gauge<i64, AtomicI64>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard_operator");
        let reconciles = Counter::default();
        let failures = Family::<Vec<(String, String)>, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let leader = Gauge::<i64, AtomicI64>::default();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let backing_off = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "reconciliations",
            "Reconciliations started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciliations by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations",
            duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now",
            in_flight.clone(),
        );
        registry.register(
            "clusters_backing_off",
            "SignalingClusters waiting to be retried after a failed reconcile",
            backing_off.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            in_flight,
            backing_off,
            leader,
        }
    }
}

/// Observes a reconcile's duration, and ends it in the in-flight gauge, when
/// dropped.
pub struct ReconcileTimer {
    start: Instant,
    duration: Histogram,
    in_flight: Gauge<i64, AtomicI64>,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.duration.observe(self.start.elapsed().as_secs_f64());
        self.in_flight.dec();
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        self.in_flight.inc();
        ReconcileTimer {
            start: Instant::now(),
            duration: self.duration.clone(),
            in_flight: self.in_flight.clone(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &str) {
        self.failures
            .get_or_create(&vec![("error".to_string(), kind.to_string())])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Router with `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics)
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

/// Serves the router on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_labelled_by_kind() {
        let m = Metrics::default();
        let running = m.reconcile_started();
        assert!(
            m.render()
                .contains("switchboard_operator_reconciles_in_flight 1"),
            "{}",
            m.render()
        );
        drop(running);
        m.reconcile_failed("api");
        m.reconcile_failed("api");
        let text = m.render();
        assert!(
            text.contains("switchboard_operator_reconciliations_total 1"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_operator_reconcile_failures_total{error=\"api\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_operator_reconciles_in_flight 0"),
            "{text}"
        );
    }
}
