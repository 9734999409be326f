//! Webhooks: every room-history event POSTed, signed, to each configured
//! URL; at least once, in order per room, retried with exponential backoff
//! and given up after a bounded time (docs/webhooks.md).
//!
//! The queue is the backend's history plus a per-room cursor
//! ([`HookQueue`]): on Redis it survives the node that recorded the events,
//! and a per-room lease makes one node at a time the room's sender. This
//! module is the delivery loop over it:
//! - rooms announced by the backend right after a change start at once (and
//!   are flagged cluster-wide first, so another node finds them if this one
//!   dies); every [`POLL`] the flagged rooms are sampled, which is how a
//!   room left behind by a dead node (or a lease that expired) is picked up;
//! - one task per room delivers its events in order: the next event only
//!   after every URL acknowledged (2xx) or gave up on the previous one, and
//!   the cursor moves only then.
//!
//! Files: [`sign`] (the signature header), [`client`] (POSTs over kept-alive
//! connections).

pub mod client;
pub mod sign;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backend::history::HistoryEvent;
use crate::backend::hooks::HookQueue;
use crate::config::{parse_http_url, HttpUrl, WebhookConfig};
use crate::metrics::Metrics;

/// How often flagged rooms are looked for (rooms of dead nodes, expired
/// leases, announcements lost to a restart).
pub const POLL: Duration = Duration::from_secs(1);

/// Rooms sampled per poll.
const POLL_ROOMS: usize = 256;

/// Events read per lease round trip.
const BATCH: usize = 32;

/// Webhook metrics, registered in the node's registry.
#[derive(Clone)]
struct HookMetrics {
    sent: Counter,
    failed: Counter,
    retried: Counter,
    given_up: Counter,
    depth: Gauge,
    latency: Histogram,
    connections: Counter,
}

impl HookMetrics {
    fn register(metrics: &mut Metrics) -> Self {
        let m = Self {
            sent: Counter::default(),
            failed: Counter::default(),
            retried: Counter::default(),
            given_up: Counter::default(),
            depth: Gauge::default(),
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 22)),
            connections: Counter::default(),
        };
        let r = metrics.registry_mut();
        r.register(
            "webhook_sent",
            "Webhook deliveries acknowledged with 2xx (one per event and URL)",
            m.sent.clone(),
        );
        r.register(
            "webhook_failed",
            "Webhook attempts that failed (error, timeout or non-2xx answer)",
            m.failed.clone(),
        );
        r.register(
            "webhook_retried",
            "Webhook attempts that were retries",
            m.retried.clone(),
        );
        r.register(
            "webhook_given_up",
            "Webhook deliveries given up (WEBHOOK_GIVE_UP_SECS passed, or the event left the history first), per event and URL",
            m.given_up.clone(),
        );
        r.register(
            "webhook_queue_depth",
            "Undelivered webhook events in the rooms this node is delivering",
            m.depth.clone(),
        );
        r.register(
            "webhook_delivery_seconds",
            "From an event's recording to its acknowledgement by a receiver",
            m.latency.clone(),
        );
        r.register(
            "webhook_connections",
            "Connections opened to webhook receivers; kept alive and reused, so far fewer than switchboard_webhook_sent_total while receivers keep them open",
            m.connections.clone(),
        );
        m
    }
}

/// How one delivery of one event to one URL ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    GaveUp,
    /// The lease went to another node, or this node is stopping: leave the
    /// cursor where it is for the next sender.
    Abandoned,
}

struct Engine {
    queue: Arc<dyn HookQueue>,
    config: WebhookConfig,
    urls: Vec<HttpUrl>,
    client: client::Client,
    lease: Duration,
    metrics: HookMetrics,
    /// Rooms with a delivery task on this node; `true` when it must look
    /// again before it ends (an announcement came while it ran).
    active: Mutex<HashMap<String, bool>>,
    /// Undelivered events seen per active room (the depth gauge's parts).
    depth: Mutex<HashMap<String, u64>>,
    /// (room, URL index) pairs in a failure streak: one warning per streak.
    failing: Mutex<HashSet<(String, usize)>>,
    stop: CancellationToken,
}

/// Starts delivering. `lease` bounds how long a room stays with a node that
/// stopped renewing it (a dead node's rooms move on after it).
pub fn start(
    config: &WebhookConfig,
    queue: Arc<dyn HookQueue>,
    lease: Duration,
    metrics: &mut Metrics,
    stop: CancellationToken,
) -> Result<(), String> {
    let urls = config
        .urls
        .iter()
        .map(|u| parse_http_url(u).map_err(|why| format!("WEBHOOK_URLS: {u:?} {why}")))
        .collect::<Result<Vec<_>, _>>()?;
    let need_tls = urls.iter().any(|u| u.tls);
    let metrics = HookMetrics::register(metrics);
    let client = client::Client::new(config.timeout, need_tls, metrics.connections.clone())?;
    let (tx, rx) = unbounded_channel();
    queue.announce_to(tx);
    let engine = Arc::new(Engine {
        queue,
        config: config.clone(),
        urls,
        client,
        lease,
        metrics,
        active: Mutex::new(HashMap::new()),
        depth: Mutex::new(HashMap::new()),
        failing: Mutex::new(HashSet::new()),
        stop,
    });
    info!(
        urls = engine.urls.len(),
        "webhooks on: every room-history event is POSTed to each WEBHOOK_URLS entry"
    );
    tokio::spawn(engine.run(rx));
    Ok(())
}

impl Engine {
    async fn run(self: Arc<Self>, mut announced: UnboundedReceiver<String>) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                room = announced.recv() => {
                    let Some(room) = room else { return };
                    let mut rooms = vec![room];
                    while let Ok(more) = announced.try_recv() {
                        rooms.push(more);
                    }
                    rooms.sort();
                    rooms.dedup();
                    // Flag before delivering: if this node dies mid-way,
                    // another one finds the rooms.
                    if let Err(e) = self.queue.flag(&rooms).await {
                        debug!(rooms = rooms.len(), "could not flag rooms for webhooks: {}", e.message);
                    }
                    for room in rooms {
                        self.clone().start_room(room);
                    }
                }
                _ = poll.tick() => {
                    self.client.close_expired();
                    match self.queue.flagged(POLL_ROOMS).await {
                        Ok(rooms) => for room in rooms {
                            self.clone().start_room(room);
                        },
                        Err(e) => debug!("webhook poll failed: {}", e.message),
                    }
                }
            }
        }
    }

    fn start_room(self: Arc<Self>, room: String) {
        {
            let mut active = crate::sync::lock(&self.active);
            if let Some(again) = active.get_mut(&room) {
                *again = true;
                return;
            }
            active.insert(room.clone(), false);
        }
        tokio::spawn(async move {
            loop {
                self.drain_room(&room).await;
                if !self.finish(&room) {
                    return;
                }
            }
        });
    }

    /// The room's task is about to end: true when it must look again.
    fn finish(&self, room: &str) -> bool {
        let mut active = crate::sync::lock(&self.active);
        match active.get_mut(room) {
            Some(again) if *again && !self.stop.is_cancelled() => {
                *again = false;
                true
            }
            _ => {
                active.remove(room);
                drop(active);
                self.set_depth(room, 0);
                false
            }
        }
    }

    fn set_depth(&self, room: &str, n: u64) {
        let mut depth = crate::sync::lock(&self.depth);
        if n == 0 {
            depth.remove(room);
        } else {
            depth.insert(room.to_owned(), n);
        }
        self.metrics.depth.set(depth.values().sum::<u64>() as i64);
    }

    /// Delivers the room's events until none are left, the lease is
    /// another node's, or Redis fails (the room stays flagged; a later
    /// poll retries).
    async fn drain_room(&self, room: &str) {
        let mut rechecked = false;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let batch = match self.queue.next(room, BATCH, self.lease).await {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(e) => {
                    debug!(room = %room, "webhook queue unreachable: {}", e.message);
                    return;
                }
            };
            if batch.events.is_empty() {
                if rechecked || self.queue.unflag(room).await.is_err() {
                    let _ = self.queue.release(room).await;
                    return;
                }
                // Unflagged; an event recorded since re-flags the room, and
                // one recorded before shows up in this second look.
                rechecked = true;
                continue;
            }
            rechecked = false;
            let mut delivered = batch.delivered;
            let mut left = batch.events.len() as u64;
            self.set_depth(room, left);
            for event in batch.events {
                if delivered > 0 && event.seq > delivered + 1 {
                    self.skipped(room, event.seq - delivered - 1);
                }
                if !self.deliver(room, &event).await {
                    return;
                }
                match self
                    .queue
                    .ack(room, &event.offset, event.seq, self.lease)
                    .await
                {
                    Ok(true) => {}
                    _ => return,
                }
                delivered = event.seq;
                left -= 1;
                self.set_depth(room, left);
            }
        }
    }

    /// Events that left the history (count or age bound) before delivery.
    fn skipped(&self, room: &str, n: u64) {
        self.metrics
            .given_up
            .inc_by(n.saturating_mul(self.urls.len() as u64));
        warn!(room = %room, events = n,
            "webhook events left the room history before they could be delivered (HISTORY_MAX_EVENTS or HISTORY_MAX_AGE_SECS reached while receivers were failing); they are counted as given up");
    }

    /// Sends `event` to every URL at once; true when each acknowledged or
    /// gave up (the cursor may move on).
    async fn deliver(&self, room: &str, event: &HistoryEvent) -> bool {
        let body = json!({
            "id": format!("{room}/{}", event.offset),
            "type": event.kind,
            "room": room,
            "seq": event.seq,
            "at": event.at,
            "data": event.data,
        });
        let body = Bytes::from(body.to_string());
        let sends = (0..self.urls.len()).map(|i| self.deliver_to(room, i, body.clone()));
        let outcomes = futures_util::future::join_all(sends).await;
        if outcomes.iter().all(|o| *o != Outcome::Abandoned) {
            let age = crate::backend::now_ms().saturating_sub(event.at);
            self.metrics.latency.observe(age as f64 / 1000.0);
            true
        } else {
            false
        }
    }

    async fn deliver_to(&self, room: &str, url: usize, body: Bytes) -> Outcome {
        let target = &self.urls[url];
        let first = Instant::now();
        let mut wait = self.config.retry_initial;
        let mut attempts = 0u32;
        loop {
            if attempts > 0 {
                self.metrics.retried.inc();
            }
            attempts += 1;
            let signature = sign::signature(&self.config.secret, crate::auth::unix_now(), &body);
            let failure = match self.client.post(target, body.clone(), &signature).await {
                Ok(status) if (200..300).contains(&status) => {
                    self.metrics.sent.inc();
                    self.streak_over(room, url);
                    return Outcome::Acked;
                }
                Ok(status) => format!("the receiver answered HTTP {status}"),
                Err(e) => e,
            };
            self.metrics.failed.inc();
            self.streak_failure(room, url, &failure);
            if first.elapsed() + wait > self.config.give_up {
                self.metrics.given_up.inc();
                warn!(room = %room, url = %self.config.urls[url], attempts,
                    "gave up a webhook event after WEBHOOK_GIVE_UP_SECS ({} s) without a 2xx answer: {failure}; moving on to the room's next event",
                    self.config.give_up.as_secs());
                return Outcome::GaveUp;
            }
            if !self.wait_renewing(room, wait).await {
                return Outcome::Abandoned;
            }
            wait = (wait * 2).min(self.config.retry_max);
        }
    }

    /// Sleeps `wait`, renewing the room's lease meanwhile; false when the
    /// lease was lost or the node is stopping.
    async fn wait_renewing(&self, room: &str, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let step = (self.lease / 3).max(Duration::from_millis(50));
        loop {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep((until - now).min(step)) => {}
            }
            match self.queue.renew(room, self.lease).await {
                Ok(true) => {}
                Ok(false) => return false,
                // Redis unreachable: keep trying; the ack tells whether
                // the lease survived.
                Err(_) => {}
            }
        }
    }

    fn streak_failure(&self, room: &str, url: usize, failure: &str) {
        let new = crate::sync::lock(&self.failing).insert((room.to_owned(), url));
        if new {
            warn!(room = %room, url = %self.config.urls[url],
                "webhook delivery failed: {failure}; retrying with backoff (from {} ms, doubling up to {} ms, for up to {} s). Check that the receiver is up, reachable from this node, and answers 2xx within WEBHOOK_TIMEOUT_MS",
                self.config.retry_initial.as_millis(), self.config.retry_max.as_millis(), self.config.give_up.as_secs());
        }
    }

    fn streak_over(&self, room: &str, url: usize) {
        if crate::sync::lock(&self.failing).remove(&(room.to_owned(), url)) {
            info!(room = %room, url = %self.config.urls[url], "webhook delivery works again");
        }
    }
}
