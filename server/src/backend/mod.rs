//! The backend interface: room membership, room state, per-peer event
//! sequencing with a recovery buffer, and delivery of events to whichever node
//! holds each recipient's socket.
//!
//! The session loop speaks only to this trait, so the protocol handling is the
//! same on every backend. Two implementations exist:
//! - [`memory::MemoryBackend`], the embedded default: one node, state in this
//!   process;
//! - [`redis::RedisBackend`]: any number of nodes sharing state in Redis and
//!   routing events over Redis pub/sub.
//!
//! A backend delivers an event to a local connection by pushing it into that
//! connection's [`Outbox`] with the event's per-peer `seq`.
//!
//! The Server API's calls ([`admin`]) act on rooms without being a member
//! of them: listing, reading, messages, state patches, kicks and closes.
//!
//! What either backend keeps for replay is bounded per peer, per room and
//! (embedded) per node; [`budget`] says how it is counted.

pub mod admin;
pub mod budget;
pub mod history;
pub mod hooks;
pub mod memory;
pub mod redis;
pub mod rules;
pub mod token;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use admin::{AdminError, Recipients, RoomDetail, RoomPage};
pub use rules::{not_joined, peer_id_taken, peer_not_found, room_full};

use self::history::{HistoryPage, Offset};
use self::hooks::HookQueue;
use crate::outbox::Outbox;
use crate::protocol::{EventBody, JoinRequest, LeaveReason, PeerInfo, ProtocolError, RoomState};

/// The identity of one joined connection: which peer of which room it is, and
/// which attachment of that peer (a resumed session gets a new attachment, and
/// the old connection's calls are then refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub room: String,
    pub peer: String,
    pub attachment: u64,
}

/// What a join needs besides the request itself.
pub struct JoinArgs<'a> {
    pub request: &'a JoinRequest,
    /// Where this connection's events go.
    pub outbox: Arc<Outbox>,
    /// The peer id is proven by the connection's token (auth on): a join
    /// that finds the peer in the room and resumes nothing takes it over
    /// instead of failing with `PEER_ID_TAKEN` (see `rules`).
    pub takeover: bool,
}

/// The result of a successful join or resume.
#[derive(Debug)]
pub struct JoinOutcome {
    pub member: Member,
    pub me: PeerInfo,
    pub session: String,
    /// Everyone else in the room.
    pub peers: Vec<PeerInfo>,
    pub state: RoomState,
    /// `Some` when the join carried a resume token: whether every missed event
    /// was replayed.
    pub recovered: Option<bool>,
}

/// Health of the shared backend, for `/ready` and `/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendHealth {
    pub healthy: bool,
    pub detail: String,
}

/// Counts for `/status` and metrics.
#[derive(Debug, Clone, Default)]
pub struct BackendStats {
    /// Rooms with at least one peer connected to this node.
    pub rooms: usize,
    /// Peers connected to this node, and the room size of each room with local peers.
    pub peers: usize,
    pub room_sizes: Vec<usize>,
}

/// Room and peer state plus event routing. See the module docs.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;

    /// Joins (or, with a valid resume token, re-attaches to) a room. On success
    /// the connection's outbox receives every event for this peer from the
    /// moment of the join on; replayed events are pushed before returning.
    async fn join(&self, args: JoinArgs<'_>) -> Result<JoinOutcome, ProtocolError>;

    /// Leaves the room for good (`peer_left{reason:"left"}` to the others).
    async fn leave(&self, member: &Member) -> Result<(), ProtocolError>;

    /// The connection closed without `leave`: keep the peer for the resume
    /// window, buffering its events, then remove it with `reason`.
    /// `written_seq` is the last event seq written to the socket.
    async fn detach(&self, member: &Member, reason: LeaveReason, written_seq: u64);

    /// Delivers `body` to peer `to` of the member's room.
    async fn signal(&self, member: &Member, to: &str, body: EventBody)
        -> Result<(), ProtocolError>;

    /// Delivers several signals of the member, in order, with one result per
    /// signal. A backend that can do the work of many in one step (one Redis
    /// round trip) overrides this; the default sends them one by one.
    async fn signals(
        &self,
        member: &Member,
        batch: Vec<(String, EventBody)>,
    ) -> Vec<Result<(), ProtocolError>> {
        let mut results = Vec::with_capacity(batch.len());
        for (to, body) in batch {
            results.push(self.signal(member, &to, body).await);
        }
        results
    }

    /// Delivers `body` to every other peer of the member's room.
    async fn broadcast(&self, member: &Member, body: EventBody) -> Result<(), ProtocolError>;

    /// Everyone in the member's room except the member.
    async fn peers(&self, member: &Member) -> Result<Vec<PeerInfo>, ProtocolError>;

    /// Applies a merge patch to the room state; returns the new version.
    async fn set_state(
        &self,
        member: &Member,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<u64, ProtocolError>;

    /// Replaces the member's role and/or metadata.
    async fn update(
        &self,
        member: &Member,
        role: Option<String>,
        metadata: Option<Map<String, Value>>,
    ) -> Result<(), ProtocolError>;

    /// Up to `limit` events of the room's history after offset `after` (from
    /// the oldest kept without it); `None` when the room has no history
    /// (never had, or all of it aged out). `after` was parsed by the caller,
    /// so any value is one the backend can read.
    async fn history(
        &self,
        room: &str,
        after: Option<&Offset>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ProtocolError>;

    /// The webhook queue over this backend's history.
    fn hooks(&self) -> Option<Arc<dyn HookQueue>>;
    /// Rooms in name order after `cursor` (a room name; `None`: from the
    /// start), at most `limit` of them (Server API).
    async fn list_rooms(&self, cursor: Option<&str>, limit: usize) -> Result<RoomPage, AdminError>;

    /// One room with its peers and state (Server API).
    async fn room(&self, room: &str) -> Result<RoomDetail, AdminError>;

    /// Delivers a `server` event to one peer or every peer of the room, away
    /// peers included (buffered for their resume); returns how many peers
    /// it was delivered to.
    async fn send_server(
        &self,
        room: &str,
        to: Recipients<'_>,
        body: EventBody,
    ) -> Result<usize, AdminError>;

    /// Applies a merge patch to the room state on behalf of the application
    /// (`state` event with `by: null`); returns the new version.
    async fn patch_state(
        &self,
        room: &str,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<u64, AdminError>;

    /// Removes a peer, connected or away: its connection (on whichever node)
    /// closes with 4003, its session cannot be resumed, and the others get
    /// `peer_left{reason:"kicked"}`.
    async fn kick(&self, room: &str, peer: &str) -> Result<(), AdminError>;

    /// Closes every connection of the room with 4003 and deletes the room:
    /// peers, state, replay buffers and history.
    async fn close_room(&self, room: &str) -> Result<(), AdminError>;

    /// Whether the shared backend is reachable.
    fn health(&self) -> BackendHealth;

    /// Local counts.
    fn stats(&self) -> BackendStats;

    /// The node is shutting down: stop background work, deregister.
    async fn shutdown(&self);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh server-assigned peer id.
pub fn new_peer_id() -> String {
    let n: u64 = rand::random();
    format!("p-{:012x}", n & 0xffff_ffff_ffff)
}
