//! What the Server API (`/api/v1`) asks of a backend, and what it gets back:
//! rooms listed a page at a time, one room in full, and the errors an
//! application backend can act on (no such room, no such peer) besides the
//! protocol's own. Both backends answer for the whole cluster, whichever node
//! serves the call.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::protocol::{PeerInfo, ProtocolError};

/// One room of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomSummary {
    pub room: String,
    /// Peers in the room, away (resumable) ones included.
    pub peers: usize,
    pub state_version: u64,
    /// When the room got its first peer (Unix ms).
    pub created_at: u64,
}

/// A page of rooms in name order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomPage {
    pub rooms: Vec<RoomSummary>,
    /// The cursor of the next page, `None` at the end.
    pub next_cursor: Option<String>,
}

/// A peer as the Server API shows it: its PeerInfo, the node that holds its
/// connection and whether it is away (disconnected, within its resume window).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomPeer {
    #[serde(flatten)]
    pub info: PeerInfo,
    /// `SERVER_ID` of the node holding the connection; `None` while away.
    pub node: Option<String>,
    pub away: bool,
}

/// A room in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomDetail {
    pub room: String,
    pub created_at: u64,
    /// In join order.
    pub peers: Vec<RoomPeer>,
    pub state: RoomStateView,
}

/// The room state as the Server API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomStateView {
    pub version: u64,
    pub data: Map<String, Value>,
}

/// Why a Server API call on a backend failed.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminError {
    /// The room has no peers (rooms exist while they have peers).
    RoomNotFound,
    /// The room has no such peer.
    PeerNotFound,
    /// A state patch lost every compare-and-set to concurrent changes.
    Contended,
    /// A protocol-level failure: `VERSION_CONFLICT`, `PAYLOAD_TOO_LARGE`,
    /// `UNAVAILABLE` or `INTERNAL`.
    Protocol(ProtocolError),
}

impl From<ProtocolError> for AdminError {
    fn from(e: ProtocolError) -> Self {
        AdminError::Protocol(e)
    }
}

/// Where a message of the Server API goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients<'a> {
    /// Every peer of the room.
    All,
    /// One peer.
    Peer(&'a str),
}

/// The `SERVER_ID` part of a node incarnation `SERVER_ID~suffix` (see
/// `redis::RedisBackend::start`): the name operators know a node by.
pub fn server_id_of(incarnation: &str) -> &str {
    incarnation
        .rsplit_once('~')
        .map_or(incarnation, |(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_name_their_server_id() {
        assert_eq!(server_id_of("node-a~0000abcd"), "node-a");
        assert_eq!(server_id_of("plain"), "plain");
    }
}
