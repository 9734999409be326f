//! Liveness of the cluster, run by every node's maintenance loop: its own
//! heartbeat, re-registering its peers when Redis lost them, retrying
//! detaches that could not reach Redis, reaping the peers of dead nodes,
//! expiring away peers whose resume window passed, and refreshing room TTLs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backend::{not_joined, now_ms, Member};
use crate::protocol::{event, CloseCode, ErrorCode, LeaveReason, ProtocolError};

use super::client::RedisErrorExt;
use super::keys::{node_key, node_rooms_key, reap_key, AWAY_KEY, INDEX_TTL, NODES_KEY, ROOMS_KEY};
use super::reply::{internal, items, text};
use super::RedisBackend;

/// How often rooms with local peers get their TTL refreshed.
pub(super) const TOUCH_INTERVAL: Duration = Duration::from_secs(300);

/// How long one node holds the right to clean up after a dead node.
pub(super) const REAP_LOCK: Duration = Duration::from_secs(30);

/// Away peers expired per sweep (the rest wait for the next one).
pub(super) const EXPIRE_BATCH: isize = 256;

/// A detach that could not reach Redis; retried until it does.
pub(super) struct PendingDetach {
    pub(super) member: Member,
    pub(super) reason: LeaveReason,
    pub(super) written: u64,
    pub(super) deadline: u64,
}

/// What re-registering one live local peer found (see lua/reattach.lua).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reattached {
    /// The peer is the connection's again (re-created, or still there).
    Restored,
    /// Its session was resumed on another connection.
    Moved,
    /// The room saw it leave; it cannot be restored.
    Gone,
}

/// The error for a request of a connection whose peer the cluster removed.
pub(super) fn session_lost() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NotJoined,
        "this peer was removed from the room while its node was out of touch; join again",
    )
}

/// The error for a request made while the node was restoring the peer.
pub(super) fn restoring() -> ProtocolError {
    ProtocolError::unavailable(
        "the cluster is restoring this connection's membership (Redis lost its data); retry",
    )
}

/// Heartbeats, retries, failure detection, expiry, TTL refresh, and dropping
/// idle subscriptions, every heartbeat interval until shutdown.
pub(super) async fn maintenance(backend: Weak<RedisBackend>) {
    let (interval, stop, wake) = match backend.upgrade() {
        Some(b) => (b.timing.heartbeat_interval, b.stop.clone(), b.wake.clone()),
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_touch = Instant::now();
    // Where the next sweep of the room index starts (see `admin`).
    let mut sweep_from = None;
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
            sweep_from = b.sweep_room_index(sweep_from).await;
            last_touch = Instant::now();
        }
    }
}

impl RedisBackend {
    /// Re-registers one live local peer (lua/reattach.lua).
    pub(super) async fn reattach(&self, member: &Member) -> Result<Reattached, ProtocolError> {
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
    pub(super) async fn restore(&self, member: &Member) -> Result<(), ProtocolError> {
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
    pub(super) async fn settle(
        &self,
        status: &str,
        member: &Member,
    ) -> Result<bool, ProtocolError> {
        match status {
            "OK" => Ok(true),
            "STALE" => self.restore(member).await.map(|()| false),
            other => Err(internal(&format!(
                "status {other} for {}/{}",
                member.room, member.peer
            ))),
        }
    }

    /// Runs a room script for `member` whose reply starts with a bare status
    /// (`OK` or `STALE`). After `STALE` the member is restored
    /// ([`Self::settle`]) and the script runs once more; a second `STALE`
    /// answers `UNAVAILABLE` (retryable).
    pub(super) async fn run_as_member(
        &self,
        op: &'static str,
        script: &super::client::Script,
        member: &Member,
        args: &[&str],
    ) -> Result<(), ProtocolError> {
        for _ in 0..2 {
            let v = self.script(op, script, &member.room, args).await?;
            let status = v.first().and_then(text).unwrap_or_default();
            if self.settle(&status, member).await? {
                return Ok(());
            }
        }
        Err(restoring())
    }

    /// One heartbeat: refresh this node's liveness keys; when Redis lost them
    /// (it restarted empty), re-register every live local peer.
    pub(super) async fn heartbeat(&self, registered: bool) -> bool {
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
                .arg(ROOMS_KEY)
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
    pub(super) async fn reregister(&self) -> bool {
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
        // Redis lost the room index too: list these rooms again at once.
        self.index_local_rooms().await;
        info!(
            peers = restored,
            closed, "re-registered live peers after Redis lost them"
        );
        true
    }

    pub(super) async fn retry_pending_detaches(&self) {
        let pending: Vec<PendingDetach> =
            std::mem::take(&mut *crate::sync::lock(&self.pending_detaches));
        for p in pending {
            if let Err(p) = self.detach_remote(p).await {
                crate::sync::lock(&self.pending_detaches).push(p);
            }
        }
    }

    pub(super) async fn detach_remote(&self, p: PendingDetach) -> Result<(), PendingDetach> {
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
    pub(super) async fn reap_dead_nodes(&self) {
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
            self.reap_node(&node).await;
        }
    }

    /// Claims a dead node (one reaper per node) and marks its peers away,
    /// room by room; the node's records go once every room was handled.
    async fn reap_node(&self, node: &str) {
        let claimed: Option<String> = self
            .command(
                "reap",
                redis::cmd("SET")
                    .arg(reap_key(node))
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(REAP_LOCK.as_millis() as u64),
            )
            .await
            .unwrap_or(None);
        if claimed.is_none() {
            return;
        }
        let rooms: Vec<String> = match self
            .command("reap", redis::cmd("SMEMBERS").arg(node_rooms_key(node)))
            .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        // The dead node may have changed these rooms without living to flag
        // them for webhook delivery.
        self.flag_rooms(&rooms).await;
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
                    &[node, &deadline_s],
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
                redis::cmd("DEL").arg(node_rooms_key(node)).clone(),
                redis::cmd("ZREM").arg(NODES_KEY).arg(node).clone(),
                redis::cmd("DEL").arg(reap_key(node)).clone(),
            ];
            let _ = self.each("reap", &cleanup).await;
        }
        warn!(dead_node = %node, rooms = rooms.len(), peers = lost,
            "node stopped heartbeating: its peers are away until they resume or the window ends");
    }

    /// Removes away peers whose window passed.
    pub(super) async fn expire_away(&self) {
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
            // Flagged before the removal is recorded: this node may die right
            // after it, and no other node would know the room has news.
            self.flag_rooms(&[room.to_owned()]).await;
            let result = self
                .script(
                    "expire",
                    &self.scripts.expire,
                    room,
                    &[
                        peer,
                        att,
                        &now_s,
                        &bodies[0],
                        &bodies[1],
                        &bodies[2],
                        self.history_spec(),
                    ],
                )
                .await;
            if let Ok(v) = result {
                if v.first().and_then(text).as_deref() == Some("REMOVED") {
                    self.recorded(room);
                }
                let _: Result<i64, _> = self
                    .command("expire", redis::cmd("ZREM").arg(AWAY_KEY).arg(&member))
                    .await;
            }
        }
    }

    pub(super) async fn touch_local_rooms(&self) {
        let rooms: Vec<String> = self.local().rooms.keys().cloned().collect();
        for room in &rooms {
            let _ = self.script("touch", &self.scripts.touch, room, &[]).await;
        }
        // Heals a listing's prune that raced with a join (see `admin`).
        self.index_local_rooms().await;
    }
}
