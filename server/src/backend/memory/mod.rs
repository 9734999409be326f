//! The embedded backend: one node, every room in this process.
//!
//! Each room sits behind its own mutex, so rooms never contend with each
//! other, and every change to a room (join, leave, delivery, state) is one
//! critical section: that is what makes joins race-free (each of two
//! simultaneous joiners sees the other exactly once) and keeps per-peer `seq`
//! gapless. No lock is held across an await.
//!
//! Replay buffers are bounded per peer, per room and per node (see
//! [`super::budget`]): an event's body is stored once and shared by the
//! buffers of all its recipients, each room's bytes are metered as bodies and
//! entries come and go, and every room lock settles the room's change into
//! the node's total when it is released.
//!
//! Room history is recorded under the room's lock, so a room's events are in
//! the order of its changes; it is kept in [`MemoryHistory`], outside the
//! rooms, so that it outlives the room's last peer. The same store is the
//! webhook queue ([`HookQueue`]): one node, so the lease is always ours.

use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, TryLockError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::budget::DropLog;
use super::history::{self, HistoryPage, MemoryHistory, Offset};
use super::hooks::{HookBatch, HookQueue};
use super::rules::{new_peer, on_taken, ResumeAttempt};
use super::{
    new_peer_id, not_joined, now_ms, room_full, token, AdminError, Backend, BackendHealth,
    BackendStats, JoinArgs, JoinOutcome, Member, Recipients, RoomDetail, RoomPage,
};
use crate::config::HistoryConfig;
use crate::limits::Limits;
use crate::protocol::{event, state, CloseCode, EventBody, LeaveReason, PeerInfo, ProtocolError};

mod admin;
mod room;

use self::room::{Peer, Room};

/// The in-memory backend.
pub struct MemoryBackend {
    rooms: RwLock<HashMap<String, Arc<Mutex<Room>>>>,
    limits: Limits,
    resume_window: Duration,
    attachments: AtomicU64,
    /// Replay bytes of every room, as last settled by each room's lock.
    recovery_bytes: AtomicUsize,
    /// Held while dropping buffers for the node budget (one evictor at a time).
    evicting: Mutex<()>,
    drops: DropLog,
    history: MemoryHistory,
    /// Where rooms with new history events are announced (webhooks).
    announce: OnceLock<UnboundedSender<String>>,
    /// This node's `SERVER_ID`, shown as every peer's `node` by the Server
    /// API (see [`MemoryBackend::set_node_id`]).
    node_id: OnceLock<String>,
    this: Weak<MemoryBackend>,
}

/// A locked room. Releasing it adds the room's change in replay bytes to the
/// node's total and reports buffers dropped for the room budget, so no
/// operation can forget to.
struct Locked<'a> {
    room: MutexGuard<'a, Room>,
    backend: &'a MemoryBackend,
}

impl Locked<'_> {
    fn settle(&mut self) {
        let now = self.room.meter.bytes();
        let before = std::mem::replace(&mut self.room.reported, now);
        let total = &self.backend.recovery_bytes;
        if now > before {
            total.fetch_add(now - before, Ordering::Relaxed);
        } else if now < before {
            total.fetch_sub(before - now, Ordering::Relaxed);
        }
    }
}

impl Deref for Locked<'_> {
    type Target = Room;
    fn deref(&self) -> &Room {
        &self.room
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Room {
        &mut self.room
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.settle();
        let dropped = std::mem::take(&mut self.room.dropped);
        if dropped > 0 {
            self.backend
                .drops
                .dropped(dropped, "ROOM_RECOVERY_BYTES", now_ms());
        }
    }
}

impl MemoryBackend {
    /// A new, empty backend with the default history bounds.
    pub fn new(limits: Limits, resume_window: Duration) -> Arc<Self> {
        Self::with_history(limits, resume_window, HistoryConfig::default())
    }

    /// A new, empty backend.
    pub fn with_history(
        limits: Limits,
        resume_window: Duration,
        history: HistoryConfig,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            rooms: RwLock::new(HashMap::new()),
            limits,
            resume_window,
            attachments: AtomicU64::new(1),
            recovery_bytes: AtomicUsize::new(0),
            evicting: Mutex::new(()),
            drops: DropLog::default(),
            history: MemoryHistory::new(history),
            announce: OnceLock::new(),
            node_id: OnceLock::new(),
            this: this.clone(),
        })
    }

    fn lock<'a>(&'a self, room: &'a Mutex<Room>) -> Locked<'a> {
        Locked {
            room: crate::sync::lock(room),
            backend: self,
        }
    }

    /// Names this node for the Server API's `node` field (once; later calls
    /// are ignored). Unset, peers show `local`.
    pub fn set_node_id(&self, id: &str) {
        let _ = self.node_id.set(id.to_owned());
    }

    /// Replay bytes held by every room of this node (the node budget's measure).
    pub fn recovery_bytes(&self) -> usize {
        self.recovery_bytes.load(Ordering::Relaxed)
    }

    /// Over the node budget: drops buffers, largest first in the rooms that
    /// hold the most, until the node is down to 7/8 of its budget (so that a
    /// flood does not scan the rooms for every event). Called with no room
    /// locked; rooms are locked one at a time.
    fn enforce_node_budget(&self) {
        let budget = self.limits.node_recovery_bytes;
        if self.recovery_bytes() <= budget {
            return;
        }
        let _evicting = match self.evicting.try_lock() {
            Ok(guard) => guard,
            // A panic while evicting left nothing half-done worth refusing for.
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Another thread is already bringing the total down.
            Err(TryLockError::WouldBlock) => return,
        };
        let target = budget - budget / 8;
        let rooms: Vec<Arc<Mutex<Room>>> =
            crate::sync::read(&self.rooms).values().cloned().collect();
        let mut sized: Vec<(usize, Arc<Mutex<Room>>)> = rooms
            .into_iter()
            .map(|room| {
                let bytes = self.lock(&room).meter.bytes();
                (bytes, room)
            })
            .collect();
        sized.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
        let mut dropped = 0;
        for (_, room) in sized {
            if self.recovery_bytes() <= target {
                break;
            }
            let mut guard = self.lock(&room);
            while self.recovery_bytes() > target && guard.drop_largest_buffer() {
                guard.dropped -= 1;
                dropped += 1;
                guard.settle();
            }
        }
        if dropped > 0 {
            self.drops.dropped(dropped, "NODE_RECOVERY_BYTES", now_ms());
        }
    }

    /// Records a history event of `room`; the caller holds the room's lock.
    fn record(&self, room: &str, kind: &str, data: Value) {
        if self.history.record(room, kind, data, now_ms()).is_some() {
            if let Some(tx) = self.announce.get() {
                // The delivery loop is gone only when the node stops.
                let _ = tx.send(room.to_owned());
            }
        }
    }

    fn room(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        crate::sync::read(&self.rooms).get(name).cloned()
    }

    fn room_or_create(&self, name: &str) -> Arc<Mutex<Room>> {
        if let Some(room) = self.room(name) {
            return room;
        }
        let mut rooms = crate::sync::write(&self.rooms);
        rooms.entry(name.to_owned()).or_default().clone()
    }

    /// Drops a room from the map once it has no peers left.
    fn remove_if_empty(&self, name: &str) {
        let mut rooms = crate::sync::write(&self.rooms);
        if let Some(room) = rooms.get(name) {
            let mut guard = self.lock(room);
            if guard.peers.is_empty() {
                guard.removed = true;
                drop(guard);
                rooms.remove(name);
            }
        }
    }

    fn with_member<T>(
        &self,
        member: &Member,
        f: impl FnOnce(&mut Room) -> Result<T, ProtocolError>,
    ) -> Result<T, ProtocolError> {
        let room = self.room(&member.room).ok_or_else(not_joined)?;
        let mut guard = self.lock(&room);
        guard.member(member)?;
        let result = f(&mut guard);
        drop(guard);
        self.enforce_node_budget();
        result
    }

    fn remove_peer(&self, member: &Member, reason: LeaveReason, only_if_away: bool) -> bool {
        self.remove_where(&member.room, &member.peer, reason, |p| {
            p.attachment == member.attachment && !(only_if_away && p.outbox.is_some())
        })
        .is_some()
    }

    /// Removes `peer` from `room` if `allowed(peer)` (see
    /// [`Self::remove_locked`]) and returns it; the last peer out finishes
    /// the room. Leave, expiry after the resume window and kick come here.
    fn remove_where(
        &self,
        room: &str,
        peer: &str,
        reason: LeaveReason,
        allowed: impl FnOnce(&Peer) -> bool,
    ) -> Option<Peer> {
        let handle = self.room(room)?;
        let mut guard = self.lock(&handle);
        if !guard.peers.get(peer).is_some_and(allowed) {
            return None;
        }
        let removed = self.remove_locked(room, &mut guard, peer, reason);
        let empty = guard.peers.is_empty();
        if empty {
            self.record(room, history::ROOM_FINISHED, Value::Object(Map::new()));
        }
        drop(guard);
        if empty {
            self.remove_if_empty(room);
        }
        self.enforce_node_budget();
        removed
    }

    fn join_locked(
        &self,
        room: &mut Room,
        args: &JoinArgs<'_>,
    ) -> Result<JoinOutcome, ProtocolError> {
        let req = args.request;
        let limits = &self.limits;
        // The rules of `rules::ResumeAttempt`: only a token of this room and
        // peer resumes, and only while the room holds its session.
        let attempt = ResumeAttempt::of(req);
        let recovered = attempt.recovered;
        if let (Some(t), Some(resume)) = (&attempt.token, &req.resume) {
            let valid = room
                .peers
                .get(&t.peer)
                .is_some_and(|p| token::same_hash(&p.secret_hash, &t.secret_hash));
            if valid {
                return Ok(self.resume_locked(room, &t.peer, resume, args));
            }
        }

        // Decided before a takeover, which may empty the room only for a moment.
        let starts = room.peers.is_empty();
        let peer_id = match attempt.fresh_peer(req) {
            Some(id) => {
                if room.peers.contains_key(&id) {
                    on_taken(&id, args.takeover)?;
                    self.replace_locked(&req.room, room, &id);
                }
                id
            }
            None => loop {
                let id = new_peer_id();
                if !room.peers.contains_key(&id) {
                    break id;
                }
            },
        };
        if room.peers.len() >= limits.max_peers_per_room {
            return Err(room_full(limits.max_peers_per_room));
        }
        let info = new_peer(req, peer_id.clone(), now_ms());
        if starts {
            room.created_at = info.joined_at;
            self.record(&req.room, history::ROOM_STARTED, Value::Object(Map::new()));
        }
        self.record(&req.room, history::PEER_JOINED, history::peer_data(&info));
        room.deliver_all_but(Some(&peer_id), &event::peer_joined(&info), limits);
        let minted = token::mint(&req.room, &peer_id);
        let attachment = self.attachments.fetch_add(1, Ordering::Relaxed);
        room.joins += 1;
        let peers = room.others(&peer_id);
        room.peers.insert(
            peer_id.clone(),
            Peer {
                info: info.clone(),
                order: room.joins,
                secret_hash: minted.secret_hash,
                attachment,
                seq: 0,
                buffer: VecDeque::new(),
                buffer_bytes: 0,
                outbox: Some(args.outbox.clone()),
                written_seq: 0,
            },
        );
        Ok(JoinOutcome {
            member: Member {
                room: req.room.clone(),
                peer: peer_id,
                attachment,
            },
            me: info,
            session: minted.token,
            peers,
            state: room.state.clone(),
            recovered,
        })
    }

    /// Removes peer `id` from `room` (named `name`), whose lock the caller
    /// holds: its session and replay buffer go, the others get
    /// `peer_left{reason}`, the history records it. Every removal of a peer
    /// comes here (through [`Self::remove_where`], or the takeover), so
    /// whatever must follow one hooks one place. Returns the peer, whose
    /// connection is the caller's to close; an emptied room is the caller's
    /// too (a takeover refills it at once).
    fn remove_locked(
        &self,
        name: &str,
        room: &mut Room,
        id: &str,
        reason: LeaveReason,
    ) -> Option<Peer> {
        let mut removed = room.peers.remove(id)?;
        // Freed under the lock, so that the room's replay bytes settle into
        // the node's total when it is released (the caller keeps the peer,
        // but only for its outbox).
        removed.drop_buffer();
        let body = event::peer_left(id, reason);
        room.deliver_all_but(Some(id), &body, &self.limits);
        self.record(name, history::PEER_LEFT, history::left_data(id, reason));
        Some(removed)
    }

    /// Removes peer `id` for a takeover: its connection (if any) closes with
    /// 4000, the others see `peer_left{reason:"replaced"}`. The room stays
    /// (the new peer joins next), so its state is kept even if the old peer
    /// was alone.
    fn replace_locked(&self, name: &str, room: &mut Room, id: &str) {
        let old = self.remove_locked(name, room, id, LeaveReason::Replaced);
        if let Some(outbox) = old.and_then(|p| p.outbox) {
            outbox.close(CloseCode::SessionMoved, CloseCode::SessionMoved.reason());
        }
    }

    fn resume_locked(
        &self,
        room: &mut Room,
        peer_id: &str,
        token: &str,
        args: &JoinArgs<'_>,
    ) -> JoinOutcome {
        let attachment = self.attachments.fetch_add(1, Ordering::Relaxed);
        let peers = room.others(peer_id);
        let state = room.state.clone();
        let Some(peer) = room.peers.get_mut(peer_id) else {
            unreachable!("caller checked the peer exists")
        };
        if let Some(old) = peer.outbox.take() {
            // The old connection is still open (the client noticed the break
            // before the server did): retire it.
            peer.written_seq = old.written_seq();
            old.close(CloseCode::SessionMoved, CloseCode::SessionMoved.reason());
        }
        let from = args.request.last_seq.unwrap_or(peer.written_seq);
        let recovered = peer.replay(from, &args.outbox);
        peer.attachment = attachment;
        peer.outbox = Some(args.outbox.clone());
        JoinOutcome {
            member: Member {
                room: args.request.room.clone(),
                peer: peer_id.to_owned(),
                attachment,
            },
            me: peer.info.clone(),
            session: token.to_owned(),
            peers,
            state,
            recovered: Some(recovered),
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn join(&self, args: JoinArgs<'_>) -> Result<JoinOutcome, ProtocolError> {
        loop {
            let room = self.room_or_create(&args.request.room);
            let mut guard = self.lock(&room);
            if guard.removed {
                continue;
            }
            let result = self.join_locked(&mut guard, &args);
            let empty = guard.peers.is_empty();
            drop(guard);
            if empty {
                self.remove_if_empty(&args.request.room);
            }
            self.enforce_node_budget();
            return result;
        }
    }

    async fn leave(&self, member: &Member) -> Result<(), ProtocolError> {
        if self.remove_peer(member, LeaveReason::Left, false) {
            Ok(())
        } else {
            Err(not_joined())
        }
    }

    async fn detach(&self, member: &Member, reason: LeaveReason, written_seq: u64) {
        let detached = self
            .with_member(member, |room| {
                let peer = room.member(member)?;
                peer.outbox = None;
                peer.written_seq = written_seq;
                Ok(())
            })
            .is_ok();
        if !detached {
            return;
        }
        let this = self.this.clone();
        let member = member.clone();
        let window = self.resume_window;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            if let Some(backend) = this.upgrade() {
                backend.remove_peer(&member, reason, true);
            }
        });
    }

    async fn signal(
        &self,
        member: &Member,
        to: &str,
        body: EventBody,
    ) -> Result<(), ProtocolError> {
        let limits = &self.limits;
        self.with_member(member, |room| room.deliver_to(to, &body, limits))
    }

    async fn broadcast(&self, member: &Member, body: EventBody) -> Result<(), ProtocolError> {
        let limits = &self.limits;
        self.with_member(member, |room| {
            room.deliver_all_but(Some(&member.peer), &body, limits);
            Ok(())
        })
    }

    async fn peers(&self, member: &Member) -> Result<Vec<PeerInfo>, ProtocolError> {
        self.with_member(member, |room| Ok(room.others(&member.peer)))
    }

    async fn set_state(
        &self,
        member: &Member,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<u64, ProtocolError> {
        let limits = &self.limits;
        self.with_member(member, |room| {
            let next = state::apply(&room.state, patch, if_version, limits.max_state_bytes)?;
            let body = event::state(&next, &member.peer);
            let data = history::state_data(patch, next.version, Some(&member.peer));
            self.record(&member.room, history::STATE_CHANGED, data);
            room.state = next;
            room.deliver_all_but(None, &body, limits);
            Ok(room.state.version)
        })
    }

    async fn update(
        &self,
        member: &Member,
        role: Option<String>,
        metadata: Option<Map<String, Value>>,
    ) -> Result<(), ProtocolError> {
        let limits = &self.limits;
        self.with_member(member, |room| {
            let peer = room.member(member)?;
            if let Some(role) = role {
                peer.info.role = role;
            }
            if let Some(metadata) = metadata {
                peer.info.metadata = metadata;
            }
            let body = event::peer_updated(&peer.info);
            let data = history::peer_data(&peer.info);
            self.record(&member.room, history::PEER_UPDATED, data);
            room.deliver_all_but(Some(&member.peer), &body, limits);
            Ok(())
        })
    }

    async fn history(
        &self,
        room: &str,
        after: Option<&Offset>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ProtocolError> {
        Ok(self.history.read(room, after, limit, now_ms()))
    }

    fn hooks(&self) -> Option<Arc<dyn HookQueue>> {
        self.this.upgrade().map(|b| b as Arc<dyn HookQueue>)
    }

    async fn list_rooms(&self, cursor: Option<&str>, limit: usize) -> Result<RoomPage, AdminError> {
        Ok(self.list_page(cursor, limit))
    }

    async fn room(&self, room: &str) -> Result<RoomDetail, AdminError> {
        self.detail(room)
    }

    async fn send_server(
        &self,
        room: &str,
        to: Recipients<'_>,
        body: EventBody,
    ) -> Result<usize, AdminError> {
        self.deliver_server(room, to, &body)
    }

    async fn patch_state(
        &self,
        room: &str,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<u64, AdminError> {
        self.patch_room_state(room, patch, if_version)
    }

    async fn kick(&self, room: &str, peer: &str) -> Result<(), AdminError> {
        self.kick_peer(room, peer)
    }

    async fn close_room(&self, room: &str) -> Result<(), AdminError> {
        self.close(room)
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            healthy: true,
            detail: "in-memory".into(),
        }
    }

    fn stats(&self) -> BackendStats {
        let rooms = crate::sync::read(&self.rooms);
        let mut stats = BackendStats {
            rooms: rooms.len(),
            ..Default::default()
        };
        for room in rooms.values() {
            let n = self.lock(room).peers.len();
            stats.peers += n;
            stats.room_sizes.push(n);
        }
        stats
    }

    async fn shutdown(&self) {}
}

/// One node: every room's lease is this node's, and "flagged" means "has
/// undelivered events", read straight from the history.
#[async_trait]
impl HookQueue for MemoryBackend {
    fn announce_to(&self, tx: UnboundedSender<String>) {
        let _ = self.announce.set(tx);
    }

    async fn flag(&self, _rooms: &[String]) -> Result<(), ProtocolError> {
        Ok(())
    }

    async fn flagged(&self, limit: usize) -> Result<Vec<String>, ProtocolError> {
        let mut rooms = self.history.undelivered_rooms();
        rooms.truncate(limit);
        Ok(rooms)
    }

    async fn next(
        &self,
        room: &str,
        limit: usize,
        _lease: Duration,
    ) -> Result<Option<HookBatch>, ProtocolError> {
        let (delivered, events) = self.history.undelivered(room, limit, now_ms());
        Ok(Some(HookBatch { delivered, events }))
    }

    async fn ack(
        &self,
        room: &str,
        _offset: &str,
        seq: u64,
        _lease: Duration,
    ) -> Result<bool, ProtocolError> {
        self.history.delivered(room, seq);
        Ok(true)
    }

    async fn renew(&self, _room: &str, _lease: Duration) -> Result<bool, ProtocolError> {
        Ok(true)
    }

    async fn unflag(&self, _room: &str) -> Result<(), ProtocolError> {
        Ok(())
    }

    async fn release(&self, _room: &str) -> Result<(), ProtocolError> {
        Ok(())
    }
}
