//! The Redis backend: any number of nodes share rooms through one Redis (or
//! Redis Cluster). Every key and channel is listed in docs/redis.md.
//!
//! - **State**: each room's keys share the hash tag `{room}`, so one Lua
//!   script can change a room atomically, also on a Redis Cluster. Scripts
//!   (in `lua/`) assign each recipient's next `seq`, append the event to the
//!   recipient's bounded list (the recovery buffer, readable from any node)
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
//!
//! Files: [`keys`] (names), [`client`] (scripts and metered calls),
//! [`reply`] (decoding), [`admin`] (the Server API's calls), [`local`]
//! (this node's connections and fan-out), [`liveness`] (heartbeat,
//! re-register, reap, expire), [`history`] (room history and the webhook
//! queue), [`signals`]
//! (batching), [`join`] (join and resume), [`conn`] (the connection); this
//! file holds the backend itself and the `Backend` implementation.

mod admin;
mod client;
mod conn;
mod history;
mod join;
mod keys;
mod liveness;
mod local;
mod reply;
mod signals;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::backend::history::{self as room_history, HistoryPage, Offset};
use crate::backend::hooks::HookQueue;
use async_trait::async_trait;
use redis::Value;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::client::RedisErrorExt;
use self::client::{unavailable, RedisMetrics, Scripts};
use self::conn::Conn;
use self::keys::{node_key, node_rooms_key, peers_key, state_key, NODES_KEY};
use self::liveness::{maintenance, restoring, PendingDetach};
use self::local::{dispatch_pushes, Local};
use self::reply::{int, internal, parse_peers, parse_state, text};
use self::signals::{Batching, Job, Outcome};
use super::{
    not_joined, now_ms, peer_not_found, AdminError, Backend, BackendHealth, BackendStats, JoinArgs,
    JoinOutcome, Member, Recipients, RoomDetail, RoomPage,
};
use crate::config::{Config, Limits, RedisConfig, Timing};
use crate::metrics::Metrics;
use crate::protocol::{event, state, ErrorCode, EventBody, LeaveReason, PeerInfo, ProtocolError};

/// Compare-and-set attempts of `set_state` without `if_version` under contention.
const STATE_CAS_ATTEMPTS: usize = 64;

/// How long startup keeps trying to reach Redis.
const STARTUP_CONNECT_DEADLINE: Duration = Duration::from_secs(30);

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
    /// `MAX:AGE_MS` of the room history, for the recording scripts.
    history_spec: String,
    history_age: Duration,
    /// Where rooms with new history events are announced (webhooks on).
    announce: OnceLock<UnboundedSender<String>>,
    this: Weak<RedisBackend>,
}

pub(super) fn new_attachment() -> u64 {
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
        let backend = Arc::new_cyclic(|this| Self {
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
            history_spec: history::spec(&config.history),
            history_age: config.history.max_age,
            announce: OnceLock::new(),
            this: this.clone(),
        });
        backend.heartbeat(false).await;
        tokio::spawn(dispatch_pushes(Arc::downgrade(&backend), rx));
        tokio::spawn(maintenance(Arc::downgrade(&backend)));
        let weak = Arc::downgrade(&backend);
        tokio::spawn(signals::batch(
            signal_queue,
            Batching::new(redis.cluster, config.timing.signal_linger),
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
        *crate::sync::lock(&self.detail) = detail;
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
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn join(&self, args: JoinArgs<'_>) -> Result<JoinOutcome, ProtocolError> {
        self.join_room(args).await
    }

    async fn leave(&self, member: &Member) -> Result<(), ProtocolError> {
        self.current(member)?;
        let att = member.attachment.to_string();
        let body = event::peer_left(&member.peer, LeaveReason::Left).json;
        self.run_as_member(
            "leave",
            &self.scripts.leave,
            member,
            &[&member.peer, &att, &body, self.history_spec()],
        )
        .await?;
        self.recorded(&member.room);
        self.remove_active(member);
        Ok(())
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
            crate::sync::lock(&self.pending_detaches).push(p);
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
            queued: tokio::time::Instant::now(),
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
        self.run_as_member(
            "broadcast",
            &self.scripts.broadcast,
            member,
            &[&member.peer, &att, &body.json],
        )
        .await
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
            let recorded =
                room_history::state_data(patch, next.version, Some(&member.peer)).to_string();
            let expected = current.version.to_string();
            let r = self
                .script(
                    "set_state",
                    &self.scripts.set_state,
                    &member.room,
                    &[
                        &member.peer,
                        &att,
                        &expected,
                        &data,
                        &body,
                        &recorded,
                        self.history_spec(),
                    ],
                )
                .await?;
            match r.first().and_then(text).as_deref() {
                Some("OK") => {
                    self.recorded(&member.room);
                    return Ok(next.version);
                }
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
        self.run_as_member(
            "update",
            &self.scripts.update,
            member,
            &[&member.peer, &att, &json, &body, self.history_spec()],
        )
        .await?;
        self.recorded(&member.room);
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

    async fn history(
        &self,
        room: &str,
        after: Option<&Offset>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ProtocolError> {
        self.read_history(room, after, limit).await
    }

    fn hooks(&self) -> Option<Arc<dyn HookQueue>> {
        self.this.upgrade().map(|b| b as Arc<dyn HookQueue>)
    }

    async fn list_rooms(&self, cursor: Option<&str>, limit: usize) -> Result<RoomPage, AdminError> {
        self.list_page(cursor, limit).await
    }

    async fn room(&self, room: &str) -> Result<RoomDetail, AdminError> {
        self.detail(room).await
    }

    async fn send_server(
        &self,
        room: &str,
        to: Recipients<'_>,
        body: EventBody,
    ) -> Result<usize, AdminError> {
        self.deliver_server(room, to, &body).await
    }

    async fn patch_state(
        &self,
        room: &str,
        patch: &Map<String, Json>,
        if_version: Option<u64>,
    ) -> Result<u64, AdminError> {
        self.patch_room_state(room, patch, if_version).await
    }

    async fn kick(&self, room: &str, peer: &str) -> Result<(), AdminError> {
        self.kick_peer(room, peer).await
    }

    async fn close_room(&self, room: &str) -> Result<(), AdminError> {
        self.close(room).await
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            healthy: self.healthy.load(Ordering::Acquire),
            detail: crate::sync::lock(&self.detail).clone(),
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
