//! The Redis backend: any number of nodes share rooms through one Redis (or
//! Redis Cluster). Every key and channel is listed in docs/redis.md.
//!
//! - **State**: each room's keys share the hash tag `{room}`, so one Lua
//!   script can change a room atomically, also on a Redis Cluster. Scripts
//!   (in `lua/`) assign each recipient's next `seq`, append the event to the
//!   recipient's bounded stream (the recovery buffer, readable from any node)
//!   and publish it to the nodes that hold recipients.
//! - **Routing**: a node subscribes to `sb:{room}:node:<node>` for each room
//!   where it holds a connection, so directed signals reach only the
//!   recipient's node and room events only nodes with members in the room.
//!   Pub/sub arrives as RESP3 pushes on the connection that runs the scripts.
//! - **Liveness**: nodes heartbeat an expiring key and a sorted set; a node
//!   that sees another's heartbeat go stale marks that node's peers away
//!   (`node_lost`); away peers that do not resume within the window are
//!   removed by whichever node runs the expiry sweep first.
//! - **Faults**: operations fail with `UNAVAILABLE` while Redis is
//!   unreachable; sockets stay open. When Redis comes back without our
//!   heartbeat key (it restarted empty), the node re-registers its live peers.

mod conn;
mod signals;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use redis::{PushInfo, PushKind, Script, Value};
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::conn::Conn;
use self::signals::{Batching, Job, Outcome};
use super::{
    new_peer_id, not_joined, now_ms, peer_id_taken, peer_not_found, room_full, token, Backend,
    BackendHealth, BackendStats, JoinArgs, JoinOutcome, Member,
};
use crate::config::{Config, Limits, RedisConfig, Timing};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::{
    event, stamp, state, CloseCode, ErrorCode, EventBody, LeaveReason, MessageType, PeerInfo,
    ProtocolError, RoomState, DEFAULT_ROLE,
};

/// TTL of every room key, refreshed on writes and by the periodic touch.
const ROOM_KEY_TTL: Duration = Duration::from_secs(3600);
/// How often rooms with local peers get their TTL refreshed.
const TOUCH_INTERVAL: Duration = Duration::from_secs(300);
/// TTL of the cluster-wide indexes (`sb:nodes`, `sb:away`), refreshed by every
/// heartbeat of every node.
const INDEX_TTL: Duration = Duration::from_secs(86_400);
/// How long one node holds the right to clean up after a dead node.
const REAP_LOCK: Duration = Duration::from_secs(30);
/// Away peers expired per sweep (the rest wait for the next one).
const EXPIRE_BATCH: isize = 256;
/// Compare-and-set attempts of `set_state` without `if_version` under contention.
const STATE_CAS_ATTEMPTS: usize = 64;
/// How long startup keeps trying to reach Redis.
const STARTUP_CONNECT_DEADLINE: Duration = Duration::from_secs(30);

const NODES_KEY: &str = "sb:nodes";
const AWAY_KEY: &str = "sb:away";

fn peers_key(room: &str) -> String {
    format!("sb:{{{room}}}:peers")
}
fn state_key(room: &str) -> String {
    format!("sb:{{{room}}}:state")
}
fn channel(room: &str, node: &str) -> String {
    format!("sb:{{{room}}}:node:{node}")
}
fn node_key(node: &str) -> String {
    format!("sb:n:{node}")
}
fn node_rooms_key(node: &str) -> String {
    format!("sb:n:{node}:rooms")
}
fn reap_key(node: &str) -> String {
    format!("sb:reap:{node}")
}

/// The room of a channel name `sb:{room}:node:<node>`.
fn room_of_channel(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix("sb:{")?;
    let end = rest.find("}:node:")?;
    Some(&rest[..end])
}

/// The type of an event read back from Redis; one of ours always, and an
/// unknown name (never written) is counted nowhere.
fn static_kind(kind: &str) -> MessageType {
    MessageType::event(kind).unwrap_or(MessageType::Invalid)
}

struct Scripts {
    join: Script,
    resume: Script,
    signal: Script,
    broadcast: Script,
    leave: Script,
    detach: Script,
    expire: Script,
    node_lost: Script,
    set_state: Script,
    update: Script,
    reattach: Script,
    touch: Script,
}

impl Scripts {
    fn load() -> Self {
        let common = include_str!("lua/common.lua");
        let s = |body: &str| Script::new(&format!("{common}\n{body}"));
        Self {
            join: s(include_str!("lua/join.lua")),
            resume: s(include_str!("lua/resume.lua")),
            signal: s(include_str!("lua/signal.lua")),
            broadcast: s(include_str!("lua/broadcast.lua")),
            leave: s(include_str!("lua/leave.lua")),
            detach: s(include_str!("lua/detach.lua")),
            expire: s(include_str!("lua/expire.lua")),
            node_lost: s(include_str!("lua/node_lost.lua")),
            set_state: s(include_str!("lua/set_state.lua")),
            update: s(include_str!("lua/update.lua")),
            reattach: s(include_str!("lua/reattach.lua")),
            touch: s(include_str!("lua/touch.lua")),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Redis metrics, registered into the node's registry.
struct RedisMetrics {
    latency: Family<OpLabel, Histogram>,
    errors: Family<OpLabel, Counter>,
    pubsub_in: Counter,
    pubsub_out: Counter,
    reconnects: Counter,
    data_loss_recoveries: Counter,
}

impl RedisMetrics {
    fn register(metrics: &mut Metrics) -> Self {
        let latency = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 14))
        });
        let errors = Family::<OpLabel, Counter>::default();
        let pubsub_in = Counter::default();
        let pubsub_out = Counter::default();
        let reconnects = Counter::default();
        let data_loss_recoveries = Counter::default();
        let r = metrics.registry_mut();
        r.register(
            "redis_op_seconds",
            "Latency of Redis operations, by operation",
            latency.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis operations, by operation",
            errors.clone(),
        );
        r.register(
            "redis_pubsub_received",
            "Pub/sub messages received from Redis",
            pubsub_in.clone(),
        );
        r.register(
            "redis_pubsub_published",
            "Pub/sub messages published by this node's scripts",
            pubsub_out.clone(),
        );
        r.register(
            "redis_reconnects",
            "Times the Redis connection was lost",
            reconnects.clone(),
        );
        r.register(
            "redis_reregistrations",
            "Times this node re-registered its peers after Redis lost its data",
            data_loss_recoveries.clone(),
        );
        Self {
            latency,
            errors,
            pubsub_in,
            pubsub_out,
            reconnects,
            data_loss_recoveries,
        }
    }
}

/// A connection of this node joined to a room.
struct LocalPeer {
    outbox: Arc<Outbox>,
    attachment: u64,
    info: PeerInfo,
    secret: String,
}

/// This node's connections, by room and peer.
#[derive(Default)]
struct Local {
    active: HashMap<(String, String), LocalPeer>,
    /// Joins and resumes in flight: they receive events before the script
    /// returns, so nothing published right after it is missed.
    pending: HashMap<(String, String), (u64, Arc<Outbox>)>,
    /// Active plus pending entries per room (subscriptions follow this).
    rooms: HashMap<String, usize>,
}

impl Local {
    fn add_room(&mut self, room: &str) {
        *self.rooms.entry(room.to_owned()).or_default() += 1;
    }
    fn drop_room(&mut self, room: &str) {
        if let Some(n) = self.rooms.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                self.rooms.remove(room);
            }
        }
    }
}

/// A detach that could not reach Redis; retried until it does.
struct PendingDetach {
    member: Member,
    reason: LeaveReason,
    written: u64,
    deadline: u64,
}

/// The Redis-backed cluster backend.
pub struct RedisBackend {
    conn: Conn,
    publish: &'static str,
    node: String,
    limits: Limits,
    timing: Timing,
    scripts: Scripts,
    local: Mutex<Local>,
    subscribed: tokio::sync::Mutex<HashSet<String>>,
    healthy: AtomicBool,
    detail: Mutex<String>,
    pending_detaches: Mutex<Vec<PendingDetach>>,
    metrics: RedisMetrics,
    stop: CancellationToken,
    /// Signals waiting to go to Redis (see `signals`).
    signal_jobs: UnboundedSender<Job>,
    /// Set when Redis lost (some of) this node's peers; cleared once every
    /// live local peer was re-registered.
    reregister_needed: AtomicBool,
    /// Wakes the maintenance loop before its next tick.
    wake: Arc<tokio::sync::Notify>,
}

/// What re-registering one live local peer found (see lua/reattach.lua).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reattached {
    /// The peer is the connection's again (re-created, or still there).
    Restored,
    /// Its session was resumed on another connection.
    Moved,
    /// The room saw it leave; it cannot be restored.
    Gone,
}

/// The error for a request of a connection whose peer the cluster removed.
fn session_lost() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NotJoined,
        "this peer was removed from the room while its node was out of touch; join again",
    )
}

/// The error for a request made while the node was restoring the peer.
fn restoring() -> ProtocolError {
    ProtocolError::unavailable(
        "the cluster is restoring this connection's membership (Redis lost its data); retry",
    )
}

fn unavailable(op: &str, e: &redis::RedisError) -> ProtocolError {
    ProtocolError::unavailable(format!(
        "the shared backend is unreachable ({op}: {}); retry shortly",
        e.kind_str()
    ))
}

trait RedisErrorExt {
    fn kind_str(&self) -> String;
}

impl RedisErrorExt for redis::RedisError {
    fn kind_str(&self) -> String {
        if self.is_timeout() {
            "timeout".into()
        } else if self.is_io_error() || self.is_connection_dropped() || self.is_connection_refusal()
        {
            "connection lost".into()
        } else {
            format!("{:?}", self.kind())
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Flat `HGETALL` reply (array of field, value; or a RESP3 map) to pairs.
fn pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        other => items(other)
            .chunks(2)
            .filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
            .collect(),
    }
}

fn parse_peers(v: &Value, except: &str) -> Vec<PeerInfo> {
    let mut peers: Vec<PeerInfo> = pairs(v)
        .into_iter()
        .filter(|(id, _)| id != except)
        .filter_map(|(_, json)| serde_json::from_str(&json).ok())
        .collect();
    peers.sort_by(|a, b| {
        a.joined_at
            .cmp(&b.joined_at)
            .then_with(|| a.peer.cmp(&b.peer))
    });
    peers
}

fn parse_state(version: &Value, data: &Value) -> RoomState {
    let version = int(version).unwrap_or(0).max(0) as u64;
    let data = text(data)
        .and_then(|d| serde_json::from_str::<Map<String, Json>>(&d).ok())
        .unwrap_or_default();
    RoomState { version, data }
}

/// One event of a room channel message: its type, `peer=seq,...` and body.
#[derive(Debug, PartialEq)]
struct Published<'a> {
    kind: &'a str,
    recipients: &'a str,
    body: &'a str,
}

/// Parses `E <kind> <recipients>\n<body>` (one event) or `M\n` followed by
/// `<kind> <recipients> <length>\n<body>` per event (see lua/common.lua).
/// `None` when the message is malformed.
fn parse_events(payload: &str) -> Option<Vec<Published<'_>>> {
    if let Some(rest) = payload.strip_prefix("E ") {
        let (head, body) = rest.split_once('\n')?;
        let (kind, recipients) = head.split_once(' ')?;
        return Some(vec![Published {
            kind,
            recipients,
            body,
        }]);
    }
    let mut rest = payload.strip_prefix("M\n")?;
    let mut events = Vec::new();
    while !rest.is_empty() {
        let (head, tail) = rest.split_once('\n')?;
        let (kind, head) = head.split_once(' ')?;
        let (recipients, len) = head.rsplit_once(' ')?;
        let len = len.parse::<usize>().ok()?;
        let body = tail.get(..len)?;
        events.push(Published {
            kind,
            recipients,
            body,
        });
        rest = &tail[len..];
    }
    Some(events)
}

fn internal(what: &str) -> ProtocolError {
    warn!("unexpected reply from Redis: {what}");
    ProtocolError::internal()
}

fn new_attachment() -> u64 {
    // Never 0, so that "no attachment" is never a valid one.
    rand::random::<u64>() | 1
}

impl RedisBackend {
    /// Connects (retrying for a while at startup) and starts the background
    /// tasks: pub/sub dispatch and the heartbeat/cleanup loop.
    pub async fn start(
        config: &Config,
        redis: &RedisConfig,
        metrics: &mut Metrics,
    ) -> Result<Arc<Self>, String> {
        let (tx, rx) = unbounded_channel();
        let (signal_jobs, signal_queue) = unbounded_channel();
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let conn = loop {
            match Conn::connect(redis, tx.clone()).await {
                Ok(conn) => break conn,
                Err(e) if e.retryable && started.elapsed() < STARTUP_CONNECT_DEADLINE => {
                    warn!("{}; retrying in {} ms", e.message, delay.as_millis());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.retryable => {
                    return Err(format!(
                        "{}; gave up after {}s (check REDIS_URL and that Redis is running)",
                        e.message,
                        STARTUP_CONNECT_DEADLINE.as_secs()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{} (check REDIS_URL, REDIS_PASSWORD and REDIS_TLS_CA_FILE)",
                        e.message
                    ))
                }
            }
        };
        let backend = Arc::new(Self {
            publish: conn.publish_command(),
            conn,
            // This process's identity in Redis. SERVER_ID may be fixed (a pod
            // or compose service name), so a restarted process must not pass
            // for the one that died: the dead one's peers would never be
            // reaped. Each incarnation adds a random suffix.
            node: format!("{}~{:08x}", config.node_id, rand::random::<u32>()),
            limits: config.limits.clone(),
            timing: config.timing.clone(),
            scripts: Scripts::load(),
            local: Mutex::new(Local::default()),
            subscribed: tokio::sync::Mutex::new(HashSet::new()),
            healthy: AtomicBool::new(true),
            detail: Mutex::new("connected".into()),
            pending_detaches: Mutex::new(Vec::new()),
            metrics: RedisMetrics::register(metrics),
            stop: CancellationToken::new(),
            signal_jobs,
            reregister_needed: AtomicBool::new(false),
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        backend.heartbeat(false).await;
        tokio::spawn(dispatch_pushes(Arc::downgrade(&backend), rx));
        tokio::spawn(maintenance(Arc::downgrade(&backend)));
        let weak = Arc::downgrade(&backend);
        tokio::spawn(signals::batch(
            signal_queue,
            Batching::new(redis.cluster),
            move |lot| {
                let backend = weak.upgrade();
                async move {
                    // Without the backend the jobs are dropped; their senders
                    // then see their reply channel closed.
                    if let Some(backend) = backend {
                        backend.send_signals(lot).await;
                    }
                }
            },
        ));
        info!(incarnation = %backend.node, cluster = redis.cluster, "joined the Redis-backed cluster");
        Ok(backend)
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        // Critical sections only move map entries; a panic in one cannot leave
        // the maps inconsistent in a way worth crashing the node for.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_health(&self, healthy: bool, detail: impl Into<String>) {
        let was = self.healthy.swap(healthy, Ordering::AcqRel);
        let detail = detail.into();
        if was != healthy {
            if healthy {
                info!("Redis reachable again: {detail}");
            } else {
                warn!(
                    "Redis unreachable: {detail}; operations answer UNAVAILABLE until it returns"
                );
            }
        }
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = detail;
    }

    /// Runs a room script: KEYS = the room's peer hash; ARGV = the common
    /// prefix (publish command, stream length, TTL) plus `args`.
    async fn script(
        &self,
        op: &'static str,
        script: &Script,
        room: &str,
        args: &[&str],
    ) -> Result<Vec<Value>, ProtocolError> {
        self.script_keys(op, script, &[peers_key(room)], args).await
    }

    /// [`Self::script`] with the peer hashes of several rooms (one room, or
    /// rooms in one hash slot, on a Redis Cluster).
    async fn script_keys(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[String],
        args: &[&str],
    ) -> Result<Vec<Value>, ProtocolError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation
            .arg(self.publish)
            .arg(self.limits.recovery_buffer_events)
            .arg(ROOM_KEY_TTL.as_millis() as u64);
        for a in args {
            invocation.arg(*a);
        }
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<Value> = invocation.invoke_async(&mut conn).await;
        self.metrics
            .latency
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Value::Array(values)) => {
                if let Some(n) = values.get(1).and_then(int) {
                    self.metrics.pubsub_out.inc_by(n.max(0) as u64);
                }
                Ok(values)
            }
            Ok(other) => Err(internal(&format!("{op} returned {other:?}"))),
            Err(e) => {
                self.metrics.errors.get_or_create(&OpLabel { op }).inc();
                Err(unavailable(op, &e))
            }
        }
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let result = cmd.query_async(&mut conn).await;
        self.metrics
            .latency
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.get_or_create(&OpLabel { op }).inc();
        }
        result
    }

    /// Runs commands one after the other (keys in different cluster slots).
    async fn each(&self, op: &'static str, cmds: &[redis::Cmd]) -> Result<(), redis::RedisError> {
        for cmd in cmds {
            self.command::<Value>(op, cmd).await?;
        }
        Ok(())
    }

    /// Subscribes to the room's channel for this node unless subscribed.
    async fn ensure_subscribed(&self, room: &str) -> Result<(), ProtocolError> {
        let mut subscribed = self.subscribed.lock().await;
        if subscribed.contains(room) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        conn.subscribe(&channel(room, &self.node))
            .await
            .map_err(|e| unavailable("subscribe", &e))?;
        self.command::<i64>(
            "sadd",
            redis::cmd("SADD").arg(node_rooms_key(&self.node)).arg(room),
        )
        .await
        .map_err(|e| unavailable("sadd", &e))?;
        subscribed.insert(room.to_owned());
        Ok(())
    }

    /// Drops subscriptions of rooms where this node has no connection left.
    async fn unsubscribe_idle(&self) {
        let mut subscribed = self.subscribed.lock().await;
        let idle: Vec<String> = {
            let local = self.local();
            subscribed
                .iter()
                .filter(|r| !local.rooms.contains_key(*r))
                .cloned()
                .collect()
        };
        for room in idle {
            let mut conn = self.conn.clone();
            if conn.unsubscribe(&channel(&room, &self.node)).await.is_err() {
                return;
            }
            let _ = self
                .command::<i64>(
                    "srem",
                    redis::cmd("SREM")
                        .arg(node_rooms_key(&self.node))
                        .arg(&room),
                )
                .await;
            subscribed.remove(&room);
        }
    }

    fn add_pending(&self, room: &str, peer: &str, attachment: u64, outbox: &Arc<Outbox>) -> bool {
        let mut local = self.local();
        let key = (room.to_owned(), peer.to_owned());
        if local.pending.contains_key(&key) {
            return false;
        }
        local.pending.insert(key, (attachment, outbox.clone()));
        local.add_room(room);
        true
    }

    fn drop_pending(&self, room: &str, peer: &str) {
        let mut local = self.local();
        if local
            .pending
            .remove(&(room.to_owned(), peer.to_owned()))
            .is_some()
        {
            local.drop_room(room);
        }
    }

    /// Turns a pending entry into the active one, retiring any older
    /// connection of the same peer on this node.
    fn activate(&self, room: &str, peer: &str, info: PeerInfo, secret: String) {
        let mut local = self.local();
        let key = (room.to_owned(), peer.to_owned());
        let Some((attachment, outbox)) = local.pending.remove(&key) else {
            return;
        };
        let local_outbox = outbox.clone();
        let previous = local.active.insert(
            key,
            LocalPeer {
                outbox,
                attachment,
                info,
                secret,
            },
        );
        if let Some(old) = previous {
            // Never retire the connection that is joining right now.
            if !Arc::ptr_eq(&old.outbox, &local_outbox) {
                old.outbox
                    .close(CloseCode::SessionMoved, CloseCode::SessionMoved.reason());
            }
            local.drop_room(room);
        }
    }

    fn current(&self, member: &Member) -> Result<(), ProtocolError> {
        let local = self.local();
        match local
            .active
            .get(&(member.room.clone(), member.peer.clone()))
        {
            Some(p) if p.attachment == member.attachment => Ok(()),
            _ => Err(not_joined()),
        }
    }

    fn remove_active(&self, member: &Member) -> bool {
        let mut local = self.local();
        let key = (member.room.clone(), member.peer.clone());
        match local.active.get(&key) {
            Some(p) if p.attachment == member.attachment => {
                local.active.remove(&key);
                local.drop_room(&member.room);
                true
            }
            _ => false,
        }
    }

    /// Forgets a local connection and closes it with `code` and its reason.
    fn retire(&self, member: &Member, code: CloseCode) {
        let outbox = self
            .local()
            .active
            .get(&(member.room.clone(), member.peer.clone()))
            .filter(|p| p.attachment == member.attachment)
            .map(|p| p.outbox.clone());
        if let Some(outbox) = outbox {
            self.remove_active(member);
            outbox.close(code, code.reason());
        }
    }

    /// Re-registers one live local peer (lua/reattach.lua).
    async fn reattach(&self, member: &Member) -> Result<Reattached, ProtocolError> {
        let found = {
            let local = self.local();
            local
                .active
                .get(&(member.room.clone(), member.peer.clone()))
                .filter(|p| p.attachment == member.attachment)
                .map(|p| {
                    let info = serde_json::to_string(&p.info).unwrap_or_default();
                    (info, p.secret.clone(), p.outbox.last_seq())
                })
        };
        let Some((info, secret, seq)) = found else {
            return Err(not_joined());
        };
        let att = member.attachment.to_string();
        let seq = seq.to_string();
        let v = self
            .script(
                "reattach",
                &self.scripts.reattach,
                &member.room,
                &[&member.peer, &info, &self.node, &att, &secret, &seq],
            )
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("CREATED" | "KEPT") => Ok(Reattached::Restored),
            Some("MOVED") => {
                self.retire(member, CloseCode::SessionMoved);
                Ok(Reattached::Moved)
            }
            Some("GONE") => {
                warn!(room = %member.room, peer = %member.peer,
                    "the cluster removed this live peer while this node was out of touch; closing it (4001)");
                self.retire(member, CloseCode::SessionLost);
                Ok(Reattached::Gone)
            }
            other => Err(internal(&format!("reattach status {other:?}"))),
        }
    }

    /// A script answered `STALE` (Redis no longer has this attachment) for a
    /// connection this node holds. A joined connection is never left
    /// answering `NOT_JOINED`: when Redis lost the peer (it restarted empty,
    /// or this node was out of touch) it is re-created here and every other
    /// local peer soon after, and `Ok` says the operation may be tried again;
    /// otherwise the connection is closed (4000 resumed elsewhere, 4001
    /// removed) and the error is what to answer meanwhile.
    async fn restore(&self, member: &Member) -> Result<(), ProtocolError> {
        match self.reattach(member).await? {
            Reattached::Restored => {
                // Redis lost this peer, so probably the node's other peers too.
                self.reregister_needed.store(true, Ordering::Release);
                self.wake.notify_one();
                Ok(())
            }
            Reattached::Moved => Err(not_joined()),
            Reattached::Gone => Err(session_lost()),
        }
    }

    /// Maps the status of a room script run for `member`: `OK`, or `STALE`
    /// handled by [`Self::restore`]. `Ok(false)` asks to run it once more.
    async fn settle(&self, status: &str, member: &Member) -> Result<bool, ProtocolError> {
        match status {
            "OK" => Ok(true),
            "STALE" => self.restore(member).await.map(|()| false),
            other => Err(internal(&format!(
                "status {other} for {}/{}",
                member.room, member.peer
            ))),
        }
    }

    /// Runs one `signal.lua` call for a lot of jobs and answers each job.
    async fn send_signals(&self, lot: Vec<Job>) {
        let keys: Vec<String> = lot.iter().map(|j| peers_key(&j.member.room)).collect();
        let args = signals::arguments(&lot);
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        let reply = self
            .script_keys("signal", &self.scripts.signal, &keys, &args)
            .await;
        let outcomes = match &reply {
            Ok(v) if v.first().and_then(text).as_deref() == Some("OK") => {
                signals::outcomes(v, &lot)
            }
            _ => None,
        };
        let mut outcomes = outcomes.map(Vec::into_iter);
        for job in lot {
            let n = job.signals.len();
            let results = match (&reply, outcomes.as_mut().and_then(Iterator::next)) {
                (Err(e), _) => vec![Err(e.clone()); n],
                (Ok(_), Some(Outcome::Delivered(delivered))) => job
                    .signals
                    .iter()
                    .zip(delivered)
                    .map(|((to, _), ok)| if ok { Ok(()) } else { Err(peer_not_found(to)) })
                    .collect(),
                (Ok(_), Some(Outcome::Stale)) => match self.restore(&job.member).await {
                    Ok(()) if !job.retried => {
                        let job = Job {
                            retried: true,
                            ..job
                        };
                        if let Err(e) = self.signal_jobs.send(job) {
                            let _ = e.0.done.send(vec![Err(restoring()); n]);
                        }
                        continue;
                    }
                    Ok(()) => vec![Err(restoring()); n],
                    Err(e) => vec![Err(e); n],
                },
                (Ok(v), None) => vec![Err(internal(&format!("signal returned {v:?}"))); n],
            };
            // The connection may be gone meanwhile.
            let _ = job.done.send(results);
        }
    }

    /// Queues one published event for the listed local peers (`peer=seq,...`).
    fn deliver_local(&self, local: &Local, room: &str, kind: &str, list: &str, body: &str) {
        let kind = static_kind(kind);
        for entry in list.split(',') {
            let Some((peer, seq)) = entry.split_once('=') else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            let key = (room.to_owned(), peer.to_owned());
            let active = local.active.get(&key).map(|p| &p.outbox);
            let pending = local.pending.get(&key).map(|(_, o)| o);
            if active.is_none() && pending.is_none() {
                continue;
            }
            let text = Utf8Bytes::from(stamp(seq, body));
            for outbox in active.into_iter().chain(pending) {
                let _ = outbox.event(seq, kind, text.clone());
            }
        }
    }

    /// Delivers a pub/sub message to local connections.
    fn on_message(&self, channel: &str, payload: &[u8]) {
        self.metrics.pubsub_in.inc();
        let Some(room) = room_of_channel(channel) else {
            return;
        };
        let Ok(payload) = std::str::from_utf8(payload) else {
            return;
        };
        if payload.starts_with("E ") || payload.starts_with("M\n") {
            let Some(events) = parse_events(payload) else {
                warn!(
                    channel,
                    "malformed event message on a room channel; dropped"
                );
                return;
            };
            let local = self.local();
            for e in events {
                self.deliver_local(&local, room, e.kind, e.recipients, e.body);
            }
        } else if let Some(rest) = payload.strip_prefix("K ") {
            let Some((peer, att)) = rest.split_once(' ') else {
                return;
            };
            let Ok(att) = att.parse::<u64>() else { return };
            let member = Member {
                room: room.to_owned(),
                peer: peer.to_owned(),
                attachment: att,
            };
            self.retire(&member, CloseCode::SessionMoved);
        }
    }

    /// One heartbeat: refresh this node's liveness keys; when Redis lost them
    /// (it restarted empty), re-register every live local peer.
    async fn heartbeat(&self, registered: bool) -> bool {
        let ttl = self.timing.node_ttl.as_millis() as u64;
        let previous: Result<Option<String>, _> = self
            .command(
                "heartbeat",
                redis::cmd("SET")
                    .arg(node_key(&self.node))
                    .arg(now_ms())
                    .arg("PX")
                    .arg(ttl)
                    .arg("GET"),
            )
            .await;
        let previous = match previous {
            Ok(p) => p,
            Err(e) => {
                self.set_health(false, format!("heartbeat failed: {}", e.kind_str()));
                return false;
            }
        };
        // Separate commands, not a pipeline: in a Redis Cluster these keys
        // live in different slots.
        let refresh = [
            redis::cmd("ZADD")
                .arg(NODES_KEY)
                .arg(now_ms())
                .arg(&self.node)
                .clone(),
            redis::cmd("PEXPIRE")
                .arg(NODES_KEY)
                .arg(INDEX_TTL.as_millis() as u64)
                .clone(),
            redis::cmd("PEXPIRE")
                .arg(AWAY_KEY)
                .arg(INDEX_TTL.as_millis() as u64)
                .clone(),
            redis::cmd("PEXPIRE")
                .arg(node_rooms_key(&self.node))
                .arg(INDEX_TTL.as_millis() as u64)
                .clone(),
        ];
        if let Err(e) = self.each("heartbeat", &refresh).await {
            self.set_health(false, format!("heartbeat failed: {}", e.kind_str()));
            return false;
        }
        if registered && previous.is_none() {
            warn!("this node's heartbeat key was missing: Redis lost its data or this node was declared dead; re-registering live peers");
            self.metrics.data_loss_recoveries.inc();
            self.reregister_needed.store(true, Ordering::Release);
        }
        // Until one pass succeeds: a failure halfway (Redis gone again) must
        // not leave the rest of the peers unregistered.
        if self.reregister_needed.swap(false, Ordering::AcqRel) && !self.reregister().await {
            self.reregister_needed.store(true, Ordering::Release);
            return false;
        }
        self.set_health(true, "connected");
        true
    }

    /// Re-creates the Redis records of every live local peer; closes those
    /// the cluster cannot give back (4000 resumed elsewhere, 4001 removed).
    /// False when Redis failed meanwhile (the caller tries again later).
    async fn reregister(&self) -> bool {
        let members: Vec<Member> = {
            let local = self.local();
            local
                .active
                .iter()
                .map(|((room, peer), p)| Member {
                    room: room.clone(),
                    peer: peer.clone(),
                    attachment: p.attachment,
                })
                .collect()
        };
        let rooms: HashSet<&String> = members.iter().map(|m| &m.room).collect();
        for room in rooms {
            if self
                .command::<i64>(
                    "sadd",
                    redis::cmd("SADD").arg(node_rooms_key(&self.node)).arg(room),
                )
                .await
                .is_err()
            {
                return false;
            }
        }
        let (mut restored, mut closed) = (0usize, 0usize);
        for member in &members {
            match self.reattach(member).await {
                Ok(Reattached::Restored) => restored += 1,
                Ok(Reattached::Moved | Reattached::Gone) => closed += 1,
                // Closed meanwhile: nothing to restore.
                Err(e) if e.code == ErrorCode::NotJoined => {}
                Err(_) => return false,
            }
        }
        info!(
            peers = restored,
            closed, "re-registered live peers after Redis lost them"
        );
        true
    }

    async fn retry_pending_detaches(&self) {
        let pending: Vec<PendingDetach> = std::mem::take(
            &mut *self
                .pending_detaches
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for p in pending {
            if let Err(p) = self.detach_remote(p).await {
                self.pending_detaches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(p);
            }
        }
    }

    async fn detach_remote(&self, p: PendingDetach) -> Result<(), PendingDetach> {
        let m = &p.member;
        let att = m.attachment.to_string();
        let deadline = p.deadline.to_string();
        let written = p.written.to_string();
        let result = self
            .script(
                "detach",
                &self.scripts.detach,
                &m.room,
                &[&m.peer, &att, &deadline, p.reason.as_str(), &written],
            )
            .await;
        match result {
            Ok(v) if v.first().and_then(text).as_deref() == Some("OK") => {
                let member = format!("{}\n{}\n{}", m.room, m.peer, m.attachment);
                let added: Result<i64, _> = self
                    .command(
                        "zadd",
                        redis::cmd("ZADD").arg(AWAY_KEY).arg(p.deadline).arg(member),
                    )
                    .await;
                added.map(|_| ()).map_err(|_| p)
            }
            Ok(_) => Ok(()), // stale: resumed elsewhere already
            Err(_) => Err(p),
        }
    }

    /// Marks the peers of nodes whose heartbeat stopped as away.
    async fn reap_dead_nodes(&self) {
        let cutoff = now_ms().saturating_sub(self.timing.node_ttl.as_millis() as u64);
        let dead: Vec<String> = match self
            .command(
                "reap",
                redis::cmd("ZRANGEBYSCORE")
                    .arg(NODES_KEY)
                    .arg("-inf")
                    .arg(cutoff),
            )
            .await
        {
            Ok(d) => d,
            Err(_) => return,
        };
        for node in dead.into_iter().filter(|n| n != &self.node) {
            let claimed: Option<String> = self
                .command(
                    "reap",
                    redis::cmd("SET")
                        .arg(reap_key(&node))
                        .arg(&self.node)
                        .arg("NX")
                        .arg("PX")
                        .arg(REAP_LOCK.as_millis() as u64),
                )
                .await
                .unwrap_or(None);
            if claimed.is_none() {
                continue;
            }
            let rooms: Vec<String> = match self
                .command("reap", redis::cmd("SMEMBERS").arg(node_rooms_key(&node)))
                .await
            {
                Ok(r) => r,
                Err(_) => continue,
            };
            let deadline = now_ms() + self.timing.resume_window.as_millis() as u64;
            let deadline_s = deadline.to_string();
            let mut lost = 0usize;
            let mut complete = true;
            for room in &rooms {
                let Ok(v) = self
                    .script(
                        "node_lost",
                        &self.scripts.node_lost,
                        room,
                        &[&node, &deadline_s],
                    )
                    .await
                else {
                    complete = false;
                    continue;
                };
                let marked = v.get(2).map(items).unwrap_or(&[]);
                for pair in marked.chunks(2) {
                    let (Some(peer), Some(att)) =
                        (pair.first().and_then(text), pair.get(1).and_then(text))
                    else {
                        continue;
                    };
                    let member = format!("{room}\n{peer}\n{att}");
                    if self
                        .command::<i64>(
                            "zadd",
                            redis::cmd("ZADD").arg(AWAY_KEY).arg(deadline).arg(member),
                        )
                        .await
                        .is_err()
                    {
                        complete = false;
                    }
                    lost += 1;
                }
            }
            if complete {
                let cleanup = [
                    redis::cmd("DEL").arg(node_rooms_key(&node)).clone(),
                    redis::cmd("ZREM").arg(NODES_KEY).arg(&node).clone(),
                    redis::cmd("DEL").arg(reap_key(&node)).clone(),
                ];
                let _ = self.each("reap", &cleanup).await;
            }
            warn!(dead_node = %node, rooms = rooms.len(), peers = lost,
                "node stopped heartbeating: its peers are away until they resume or the window ends");
        }
    }

    /// Removes away peers whose window passed.
    async fn expire_away(&self) {
        let now = now_ms();
        let due: Vec<String> = match self
            .command(
                "expire",
                redis::cmd("ZRANGEBYSCORE")
                    .arg(AWAY_KEY)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(EXPIRE_BATCH),
            )
            .await
        {
            Ok(d) => d,
            Err(_) => return,
        };
        let now_s = now.to_string();
        for member in due {
            let mut parts = member.splitn(3, '\n');
            let (Some(room), Some(peer), Some(att)) = (parts.next(), parts.next(), parts.next())
            else {
                let _: Result<i64, _> = self
                    .command("expire", redis::cmd("ZREM").arg(AWAY_KEY).arg(&member))
                    .await;
                continue;
            };
            let bodies: Vec<String> = [
                LeaveReason::Disconnected,
                LeaveReason::Timeout,
                LeaveReason::NodeLost,
            ]
            .into_iter()
            .map(|r| event::peer_left(peer, r).json)
            .collect();
            if self
                .script(
                    "expire",
                    &self.scripts.expire,
                    room,
                    &[peer, att, &now_s, &bodies[0], &bodies[1], &bodies[2]],
                )
                .await
                .is_ok()
            {
                let _: Result<i64, _> = self
                    .command("expire", redis::cmd("ZREM").arg(AWAY_KEY).arg(&member))
                    .await;
            }
        }
    }

    async fn touch_local_rooms(&self) {
        let rooms: Vec<String> = self.local().rooms.keys().cloned().collect();
        for room in rooms {
            let _ = self.script("touch", &self.scripts.touch, &room, &[]).await;
        }
    }

    async fn try_resume(
        &self,
        parsed: &token::Parsed,
        token: &str,
        args: &JoinArgs<'_>,
    ) -> Result<Option<JoinOutcome>, ProtocolError> {
        let room = &args.request.room;
        let peer = &parsed.peer;
        let attachment = new_attachment();
        if !self.add_pending(room, peer, attachment, &args.outbox) {
            return Err(peer_id_taken(peer));
        }
        let secret = hex::encode(parsed.secret_hash);
        let result = async {
            self.ensure_subscribed(room).await?;
            let att = attachment.to_string();
            let last = args
                .request
                .last_seq
                .map(|s| s as i64)
                .unwrap_or(-1)
                .to_string();
            self.script(
                "resume",
                &self.scripts.resume,
                room,
                &[peer, &secret, &self.node, &att, &last],
            )
            .await
        }
        .await;
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                self.drop_pending(room, peer);
                return Err(e);
            }
        };
        if v.first().and_then(text).as_deref() != Some("OK") {
            self.drop_pending(room, peer);
            return Ok(None);
        }
        let (Some(peers), Some(version), Some(data), Some(recovered), Some(from)) = (
            v.get(2),
            v.get(3),
            v.get(4),
            v.get(5).and_then(int),
            v.get(6).and_then(int),
        ) else {
            self.drop_pending(room, peer);
            return Err(internal("resume reply"));
        };
        let all = pairs(peers);
        let me: Option<PeerInfo> = all
            .iter()
            .find(|(id, _)| id == peer)
            .and_then(|(_, j)| serde_json::from_str(j).ok());
        let Some(me) = me else {
            self.drop_pending(room, peer);
            return Err(internal("resumed peer missing from its room"));
        };
        args.outbox.set_last_seq(from.max(0) as u64);
        let events = v.get(7).map(items).unwrap_or(&[]);
        for e in events.chunks(3) {
            let (Some(seq), Some(kind), Some(body)) = (
                e.first().and_then(int),
                e.get(1).and_then(text),
                e.get(2).and_then(text),
            ) else {
                continue;
            };
            let seq = seq.max(0) as u64;
            let _ = args
                .outbox
                .event(seq, static_kind(&kind), Utf8Bytes::from(stamp(seq, &body)));
        }
        self.activate(room, peer, me.clone(), secret);
        Ok(Some(JoinOutcome {
            member: Member {
                room: room.clone(),
                peer: peer.clone(),
                attachment,
            },
            me,
            session: token.to_owned(),
            peers: parse_peers(peers, peer),
            state: parse_state(version, data),
            recovered: Some(recovered == 1),
        }))
    }
}

/// Routes pushes (pub/sub messages, disconnect notices) to the backend.
async fn dispatch_pushes(backend: Weak<RedisBackend>, mut rx: UnboundedReceiver<PushInfo>) {
    while let Some(push) = rx.recv().await {
        let Some(backend) = backend.upgrade() else {
            return;
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                if let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
                    (push.data.first(), push.data.get(1))
                {
                    if let Ok(ch) = std::str::from_utf8(ch) {
                        backend.on_message(ch, payload);
                    }
                }
            }
            PushKind::Disconnection => {
                backend.metrics.reconnects.inc();
                backend.set_health(false, "connection to Redis lost; reconnecting");
            }
            _ => {}
        }
    }
}

/// Heartbeats, retries, failure detection, expiry, TTL refresh, and dropping
/// idle subscriptions, every heartbeat interval until shutdown.
async fn maintenance(backend: Weak<RedisBackend>) {
    let (interval, stop, wake) = match backend.upgrade() {
        Some(b) => (b.timing.heartbeat_interval, b.stop.clone(), b.wake.clone()),
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_touch = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
            _ = wake.notified() => {}
        }
        let Some(b) = backend.upgrade() else { return };
        if !b.heartbeat(true).await {
            continue;
        }
        b.retry_pending_detaches().await;
        b.reap_dead_nodes().await;
        b.expire_away().await;
        b.unsubscribe_idle().await;
        if last_touch.elapsed() >= TOUCH_INTERVAL {
            b.touch_local_rooms().await;
            last_touch = Instant::now();
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn join(&self, args: JoinArgs<'_>) -> Result<JoinOutcome, ProtocolError> {
        let req = args.request;
        let mut recovered = None;
        let mut peer = req.peer.clone();
        if let Some(resume) = &req.resume {
            // Same rules as the embedded backend: only a token of this room
            // and peer resumes; anything else joins afresh.
            recovered = Some(false);
            let parsed = token::for_join(req);
            if let Some(t) = parsed {
                if let Some(outcome) = self.try_resume(&t, resume, &args).await? {
                    return Ok(outcome);
                }
                peer = Some(t.peer);
            }
        }
        let peer = peer.unwrap_or_else(new_peer_id);
        let room = &req.room;
        let attachment = new_attachment();
        if !self.add_pending(room, &peer, attachment, &args.outbox) {
            return Err(peer_id_taken(&peer));
        }
        let info = PeerInfo {
            peer: peer.clone(),
            role: req.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_owned()),
            metadata: req.metadata.clone(),
            joined_at: now_ms(),
        };
        let minted = token::mint(room, &peer);
        let secret = hex::encode(minted.secret_hash);
        let result = async {
            self.ensure_subscribed(room).await?;
            let info_json = serde_json::to_string(&info).map_err(|_| ProtocolError::internal())?;
            let att = attachment.to_string();
            let max = self.limits.max_peers_per_room.to_string();
            let body = event::peer_joined(&info).json;
            self.script(
                "join",
                &self.scripts.join,
                room,
                &[&peer, &info_json, &self.node, &att, &secret, &max, &body],
            )
            .await
        }
        .await;
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                self.drop_pending(room, &peer);
                return Err(e);
            }
        };
        match v.first().and_then(text).as_deref() {
            Some("OK") => {}
            Some("TAKEN") => {
                self.drop_pending(room, &peer);
                return Err(peer_id_taken(&peer));
            }
            Some("FULL") => {
                self.drop_pending(room, &peer);
                return Err(room_full(self.limits.max_peers_per_room));
            }
            other => {
                self.drop_pending(room, &peer);
                return Err(internal(&format!("join status {other:?}")));
            }
        }
        let (Some(peers), Some(version), Some(data)) = (v.get(2), v.get(3), v.get(4)) else {
            self.drop_pending(room, &peer);
            return Err(internal("join reply"));
        };
        self.activate(room, &peer, info.clone(), secret);
        Ok(JoinOutcome {
            member: Member {
                room: room.clone(),
                peer: peer.clone(),
                attachment,
            },
            me: info,
            session: minted.token,
            peers: parse_peers(peers, &peer),
            state: parse_state(version, data),
            recovered,
        })
    }

    async fn leave(&self, member: &Member) -> Result<(), ProtocolError> {
        self.current(member)?;
        let att = member.attachment.to_string();
        let body = event::peer_left(&member.peer, LeaveReason::Left).json;
        for _ in 0..2 {
            let v = self
                .script(
                    "leave",
                    &self.scripts.leave,
                    &member.room,
                    &[&member.peer, &att, &body],
                )
                .await?;
            let status = v.first().and_then(text).unwrap_or_default();
            if self.settle(&status, member).await? {
                self.remove_active(member);
                return Ok(());
            }
        }
        Err(restoring())
    }

    async fn detach(&self, member: &Member, reason: LeaveReason, written_seq: u64) {
        if !self.remove_active(member) {
            return;
        }
        let pending = PendingDetach {
            member: member.clone(),
            reason,
            written: written_seq,
            deadline: now_ms() + self.timing.resume_window.as_millis() as u64,
        };
        if let Err(p) = self.detach_remote(pending).await {
            debug!(room = %member.room, peer = %member.peer, "detach deferred until Redis is back");
            self.pending_detaches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(p);
        }
    }

    async fn signal(
        &self,
        member: &Member,
        to: &str,
        body: EventBody,
    ) -> Result<(), ProtocolError> {
        let mut results = self.signals(member, vec![(to.to_owned(), body)]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(internal("signal reply")))
    }

    async fn signals(
        &self,
        member: &Member,
        batch: Vec<(String, EventBody)>,
    ) -> Vec<Result<(), ProtocolError>> {
        let n = batch.len();
        if let Err(e) = self.current(member) {
            return vec![Err(e); n];
        }
        let (done, result) = oneshot::channel();
        let job = Job {
            member: member.clone(),
            signals: batch,
            done,
            retried: false,
        };
        if self.signal_jobs.send(job).is_err() {
            return vec![Err(internal("signal queue closed")); n];
        }
        result
            .await
            .unwrap_or_else(|_| vec![Err(internal("signal dropped")); n])
    }

    async fn broadcast(&self, member: &Member, body: EventBody) -> Result<(), ProtocolError> {
        self.current(member)?;
        let att = member.attachment.to_string();
        for _ in 0..2 {
            let v = self
                .script(
                    "broadcast",
                    &self.scripts.broadcast,
                    &member.room,
                    &[&member.peer, &att, &body.json],
                )
                .await?;
            let status = v.first().and_then(text).unwrap_or_default();
            if self.settle(&status, member).await? {
                return Ok(());
            }
        }
        Err(restoring())
    }

    async fn peers(&self, member: &Member) -> Result<Vec<PeerInfo>, ProtocolError> {
        self.current(member)?;
        let v: Value = self
            .command("peers", redis::cmd("HGETALL").arg(peers_key(&member.room)))
            .await
            .map_err(|e| unavailable("peers", &e))?;
        Ok(parse_peers(&v, &member.peer))
    }

    async fn set_state(
        &self,
        member: &Member,
        patch: &Map<String, Json>,
        if_version: Option<u64>,
    ) -> Result<u64, ProtocolError> {
        self.current(member)?;
        let att = member.attachment.to_string();
        for _ in 0..STATE_CAS_ATTEMPTS {
            let v: Vec<Value> = self
                .command(
                    "state",
                    redis::cmd("HMGET")
                        .arg(state_key(&member.room))
                        .arg("v")
                        .arg("d"),
                )
                .await
                .map_err(|e| unavailable("state", &e))?;
            let current = parse_state(
                v.first().unwrap_or(&Value::Nil),
                v.get(1).unwrap_or(&Value::Nil),
            );
            let next = state::apply(&current, patch, if_version, self.limits.max_state_bytes)?;
            let data = serde_json::to_string(&next.data).map_err(|_| ProtocolError::internal())?;
            let body = event::state(&next, &member.peer).json;
            let expected = current.version.to_string();
            let r = self
                .script(
                    "set_state",
                    &self.scripts.set_state,
                    &member.room,
                    &[&member.peer, &att, &expected, &data, &body],
                )
                .await?;
            match r.first().and_then(text).as_deref() {
                Some("OK") => return Ok(next.version),
                Some("STALE") => {
                    // Restored: the next attempt runs as this member again.
                    self.settle("STALE", member).await?;
                }
                Some("CONFLICT") => {
                    let now = r.get(2).and_then(int).unwrap_or(0).max(0) as u64;
                    if if_version.is_some() {
                        return Err(ProtocolError {
                            code: ErrorCode::VersionConflict,
                            message: format!(
                                "state is at version {now}, not {}; re-read it and retry",
                                current.version
                            ),
                            version: Some(now),
                        });
                    }
                }
                other => return Err(internal(&format!("set_state status {other:?}"))),
            }
        }
        Err(ProtocolError::unavailable(
            "the room state is changing too fast to apply this patch; retry",
        ))
    }

    async fn update(
        &self,
        member: &Member,
        role: Option<String>,
        metadata: Option<Map<String, Json>>,
    ) -> Result<(), ProtocolError> {
        let mut info = {
            let local = self.local();
            match local
                .active
                .get(&(member.room.clone(), member.peer.clone()))
            {
                Some(p) if p.attachment == member.attachment => p.info.clone(),
                _ => return Err(not_joined()),
            }
        };
        if let Some(role) = role {
            info.role = role;
        }
        if let Some(metadata) = metadata {
            info.metadata = metadata;
        }
        let att = member.attachment.to_string();
        let json = serde_json::to_string(&info).map_err(|_| ProtocolError::internal())?;
        let body = event::peer_updated(&info).json;
        let mut applied = false;
        for _ in 0..2 {
            let v = self
                .script(
                    "update",
                    &self.scripts.update,
                    &member.room,
                    &[&member.peer, &att, &json, &body],
                )
                .await?;
            let status = v.first().and_then(text).unwrap_or_default();
            if self.settle(&status, member).await? {
                applied = true;
                break;
            }
        }
        if !applied {
            return Err(restoring());
        }
        let mut local = self.local();
        if let Some(p) = local
            .active
            .get_mut(&(member.room.clone(), member.peer.clone()))
        {
            if p.attachment == member.attachment {
                p.info = info;
            }
        }
        Ok(())
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            healthy: self.healthy.load(Ordering::Acquire),
            detail: self
                .detail
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn stats(&self) -> BackendStats {
        let local = self.local();
        BackendStats {
            rooms: local.rooms.len(),
            peers: local.active.len(),
            room_sizes: local.rooms.values().copied().collect(),
        }
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        self.retry_pending_detaches().await;
        let deregister = [
            redis::cmd("ZREM").arg(NODES_KEY).arg(&self.node).clone(),
            redis::cmd("DEL").arg(node_key(&self.node)).clone(),
            redis::cmd("DEL").arg(node_rooms_key(&self.node)).clone(),
        ];
        if let Err(e) = self.each("deregister", &deregister).await {
            warn!("could not deregister from Redis on shutdown ({}); other nodes will time this node out", e.kind_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let ch = channel("room:1@x", "node-a");
        assert_eq!(ch, "sb:{room:1@x}:node:node-a");
        assert_eq!(room_of_channel(&ch), Some("room:1@x"));
        assert_eq!(room_of_channel("other"), None);
        assert_eq!(peers_key("r"), "sb:{r}:peers");
    }

    #[test]
    fn event_messages_parse() {
        let one = |kind, recipients, body| Published {
            kind,
            recipients,
            body,
        };
        assert_eq!(
            parse_events("E peer_left a=1,b=7\n{\"x\":\"y z\\n\"}"),
            Some(vec![one("peer_left", "a=1,b=7", "{\"x\":\"y z\\n\"}")])
        );
        // Bodies may hold anything, newlines and multi-byte text included:
        // only the length says where they end.
        let body2 = "{\"é\":\"\n3 \"}";
        let multi = format!("M\nsignal b=4 2\n{{}}signal c=9 {}\n{body2}", body2.len());
        assert_eq!(
            parse_events(&multi),
            Some(vec![
                one("signal", "b=4", "{}"),
                one("signal", "c=9", body2)
            ])
        );
        for bad in [
            "E signal",
            "E signal b=1",
            "M\nsignal b=1 3\n{}",
            "M\nsignal b=1 x\n{}",
            "M\nsignal 2\n{}",
            "M\nsignal b=1 2\n{}trailing",
            "M\nsignal b=1 1\né",
            "K b 1",
        ] {
            assert_eq!(parse_events(bad), None, "{bad:?}");
        }
        assert_eq!(parse_events("M\n"), Some(vec![]));
    }

    #[test]
    fn replies_parse() {
        let v = Value::Array(vec![
            Value::BulkString(b"bob".to_vec()),
            Value::BulkString(
                br#"{"peer":"bob","role":"peer","metadata":{},"joined_at":2}"#.to_vec(),
            ),
            Value::BulkString(b"al".to_vec()),
            Value::BulkString(
                br#"{"peer":"al","role":"peer","metadata":{},"joined_at":1}"#.to_vec(),
            ),
        ]);
        let peers = parse_peers(&v, "x");
        assert_eq!(
            peers.iter().map(|p| p.peer.as_str()).collect::<Vec<_>>(),
            ["al", "bob"]
        );
        let s = parse_state(
            &Value::BulkString(b"3".to_vec()),
            &Value::BulkString(br#"{"a":1}"#.to_vec()),
        );
        assert_eq!(s.version, 3);
        assert_eq!(parse_state(&Value::Nil, &Value::Nil), RoomState::default());
    }
}
