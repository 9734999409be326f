//! The webhook queue as a backend keeps it: which rooms have history events
//! not yet delivered, a per-room delivery lease (so that each event is sent
//! by one node), and the per-room cursor that says how far delivery got.
//!
//! The queue is the room history itself plus that cursor: nothing is copied,
//! and an event recorded before a node crashes is still there for the next
//! node that takes the room's lease. The delivery loop that drives this
//! trait (HTTP, signatures, retries) lives in `crate::webhook`.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use super::history::HistoryEvent;
use crate::protocol::ProtocolError;

/// What a delivery lease gives: the last seq delivered (or given up) in the
/// room, 0 when unknown, and the next events after it.
#[derive(Debug, Clone)]
pub struct HookBatch {
    pub delivered: u64,
    pub events: Vec<HistoryEvent>,
}

/// A backend's webhook queue. See the module docs.
#[async_trait]
pub trait HookQueue: Send + Sync + 'static {
    /// From now on, the name of every room that records an event is sent to
    /// `tx` right after the change (the local delivery loop starts at once
    /// instead of at its next poll).
    fn announce_to(&self, tx: UnboundedSender<String>);

    /// Makes the rooms findable by every node's poll (cluster-wide).
    async fn flag(&self, rooms: &[String]) -> Result<(), ProtocolError>;

    /// Rooms that may have undelivered events, at most `limit` of them.
    async fn flagged(&self, limit: usize) -> Result<Vec<String>, ProtocolError>;

    /// Takes (or renews) the room's lease for `lease` and returns up to
    /// `limit` undelivered events; `None` when another node holds the lease.
    async fn next(
        &self,
        room: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Option<HookBatch>, ProtocolError>;

    /// Delivery is done (acknowledged or given up) up to the event at
    /// `offset` with `seq`; renews the lease. False when the lease was lost
    /// (another node carries on from the cursor).
    async fn ack(
        &self,
        room: &str,
        offset: &str,
        seq: u64,
        lease: Duration,
    ) -> Result<bool, ProtocolError>;

    /// Renews the lease while an event is being retried; false when lost.
    async fn renew(&self, room: &str, lease: Duration) -> Result<bool, ProtocolError>;

    /// The room looked idle: unflag it. The caller then looks once more:
    /// an event recorded before the unflag shows up in that look, and one
    /// recorded after it flags the room again.
    async fn unflag(&self, room: &str) -> Result<(), ProtocolError>;

    /// Gives the room's lease up (nothing left to send).
    async fn release(&self, room: &str) -> Result<(), ProtocolError>;
}
