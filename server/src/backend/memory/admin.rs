//! The Server API on the embedded backend: rooms read, messaged, patched,
//! kicked from and closed by the application rather than by a member. Each
//! call takes the room's lock like any member's request, so it is ordered
//! with them.

use serde_json::{Map, Value};

use super::MemoryBackend;
use crate::backend::admin::{RoomPeer, RoomStateView, RoomSummary};
use crate::backend::history;
use crate::backend::{AdminError, Recipients, RoomDetail, RoomPage};
use crate::protocol::close::ROOM_CLOSED_REASON;
use crate::protocol::{event, state, CloseCode, EventBody, LeaveReason};

/// What a peer's `node` says when no `SERVER_ID` was handed over.
const UNNAMED_NODE: &str = "local";

impl MemoryBackend {
    fn node_name(&self) -> String {
        self.node_id
            .get()
            .map_or(UNNAMED_NODE, String::as_str)
            .to_owned()
    }

    /// A page of rooms in name order, after `cursor`.
    pub(super) fn list_page(&self, cursor: Option<&str>, limit: usize) -> RoomPage {
        let mut names: Vec<(String, _)> = crate::sync::read(&self.rooms)
            .iter()
            .filter(|(name, _)| cursor.is_none_or(|c| name.as_str() > c))
            .map(|(name, room)| (name.clone(), room.clone()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rooms = Vec::new();
        let mut more = false;
        for (name, room) in names {
            let guard = self.lock(&room);
            // A room emptied meanwhile no longer exists.
            if guard.peers.is_empty() {
                continue;
            }
            if rooms.len() == limit {
                more = true;
                break;
            }
            rooms.push(RoomSummary {
                room: name,
                peers: guard.peers.len(),
                state_version: guard.state.version,
                created_at: guard.created_at,
            });
        }
        let next_cursor = more.then(|| rooms.last().map(|r| r.room.clone())).flatten();
        RoomPage { rooms, next_cursor }
    }

    /// The room with its peers (join order) and state.
    pub(super) fn detail(&self, name: &str) -> Result<RoomDetail, AdminError> {
        let room = self.room(name).ok_or(AdminError::RoomNotFound)?;
        let guard = self.lock(&room);
        if guard.peers.is_empty() {
            return Err(AdminError::RoomNotFound);
        }
        let node = self.node_name();
        let mut peers: Vec<_> = guard.peers.values().collect();
        peers.sort_by_key(|p| p.order);
        let peers = peers
            .into_iter()
            .map(|p| RoomPeer {
                info: p.info.clone(),
                node: p.outbox.is_some().then(|| node.clone()),
                away: p.outbox.is_none(),
            })
            .collect();
        Ok(RoomDetail {
            room: name.to_owned(),
            created_at: guard.created_at,
            peers,
            state: RoomStateView {
                version: guard.state.version,
                data: guard.state.data.clone(),
            },
        })
    }

    /// Delivers a `server` event; returns the number of recipients.
    pub(super) fn deliver_server(
        &self,
        name: &str,
        to: Recipients<'_>,
        body: &EventBody,
    ) -> Result<usize, AdminError> {
        let room = self.room(name).ok_or(AdminError::RoomNotFound)?;
        let mut guard = self.lock(&room);
        if guard.peers.is_empty() {
            return Err(AdminError::RoomNotFound);
        }
        let limits = &self.limits;
        let delivered = match to {
            Recipients::Peer(peer) => {
                guard
                    .deliver_to(peer, body, limits)
                    .map_err(|_| AdminError::PeerNotFound)?;
                1
            }
            Recipients::All => {
                guard.deliver_all_but(None, body, limits);
                guard.peers.len()
            }
        };
        drop(guard);
        self.enforce_node_budget();
        Ok(delivered)
    }

    /// Applies a merge patch as the application (`by: null`).
    pub(super) fn patch_room_state(
        &self,
        name: &str,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<u64, AdminError> {
        let room = self.room(name).ok_or(AdminError::RoomNotFound)?;
        let mut guard = self.lock(&room);
        if guard.peers.is_empty() {
            return Err(AdminError::RoomNotFound);
        }
        let limits = &self.limits;
        let next = state::apply(&guard.state, patch, if_version, limits.max_state_bytes)?;
        let body = event::state_from_api(&next);
        let data = history::state_data(patch, next.version, None);
        self.record(name, history::STATE_CHANGED, data);
        guard.state = next;
        guard.deliver_all_but(None, &body, limits);
        let version = guard.state.version;
        drop(guard);
        self.enforce_node_budget();
        Ok(version)
    }

    /// Removes a peer, connected or away, through the removal every other
    /// one takes, then closes its connection with 4003. Its session token
    /// then finds no peer, so a resume with it is a fresh join.
    pub(super) fn kick_peer(&self, name: &str, peer: &str) -> Result<(), AdminError> {
        let exists = self
            .room(name)
            .is_some_and(|room| !self.lock(&room).peers.is_empty());
        if !exists {
            return Err(AdminError::RoomNotFound);
        }
        let removed = self
            .remove_where(name, peer, LeaveReason::Kicked, |_| true)
            .ok_or(AdminError::PeerNotFound)?;
        if let Some(outbox) = removed.outbox {
            outbox.close(CloseCode::Removed, CloseCode::Removed.reason());
        }
        Ok(())
    }

    /// Drops the room and closes every connection in it with 4003. The
    /// others are not told `peer_left`: every one of them is closed.
    pub(super) fn close(&self, name: &str) -> Result<(), AdminError> {
        let room = crate::sync::write(&self.rooms)
            .remove(name)
            .ok_or(AdminError::RoomNotFound)?;
        let mut guard = self.lock(&room);
        // A join that raced with this looks the room up again.
        guard.removed = true;
        let peers = std::mem::take(&mut guard.peers);
        let had_peers = !peers.is_empty();
        for (_, peer) in peers {
            if let Some(outbox) = peer.outbox {
                outbox.close(CloseCode::Removed, ROOM_CLOSED_REASON);
            }
        }
        guard.state = Default::default();
        // The room's history goes with it (the Redis backend deletes
        // `sb:{ROOM}:history` in close_room.lua).
        self.history.forget(name);
        drop(guard);
        if had_peers {
            Ok(())
        } else {
            Err(AdminError::RoomNotFound)
        }
    }
}
