//! The Server API on the Redis backend: every call acts on the cluster's
//! copy of the room, whichever node serves it. Changes are one script each
//! (`lua/server_message.lua`, `api_state.lua`, `kick.lua`, `close_room.lua`),
//! so they are atomic on a Redis Cluster too; a connection on another node
//! is closed by that node when the script's `K <peer> <att> 4003` message
//! arrives.
//!
//! The listing reads the room index `sb:rooms` (one sorted set, every score
//! 0, paged by name with `ZRANGEBYLEX`). A node adds a room after each join
//! and re-adds its rooms with every touch (`touch_local_rooms`); nothing
//! removes a room from it when the room ends, so a listing skips and prunes
//! names whose room has no peers, and [`RedisBackend::sweep_room_index`]
//! prunes a bounded number of names per pass. It is one key, so on a Redis
//! Cluster it lives in one slot apart from the rooms: adding, reading and
//! pruning it are separate commands, never part of a room's script.

use std::collections::HashMap;

use redis::Value;
use serde_json::{Map, Value as Json};

use super::keys::{peers_key, ROOMS_KEY};
use super::reply::{int, internal, items, pairs, parse_state, text};
use super::RedisBackend;
use crate::backend::admin::{server_id_of, RoomPeer, RoomStateView, RoomSummary};
use crate::backend::{AdminError, Recipients, RoomDetail, RoomPage};
use crate::protocol::{event, state, ErrorCode, EventBody, LeaveReason, PeerInfo, ProtocolError};

use super::client::unavailable;

/// Compare-and-set attempts of a state patch without `If-Match` under contention.
const PATCH_CAS_ATTEMPTS: usize = 64;

/// Index reads per listing page: names of rooms that ended are skipped, so
/// a page may take several reads, but never more than this many.
const LIST_READS: usize = 8;

/// Names of the room index checked per sweep, and added per command.
const SWEEP_BATCH: usize = 256;

impl RedisBackend {
    /// Adds a room to the index (after a join, and on every touch).
    pub(super) async fn index_rooms(&self, rooms: &[String]) {
        if rooms.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(ROOMS_KEY);
        for room in rooms {
            cmd.arg(0).arg(room);
        }
        // A failure only delays the room's listing until the next touch.
        let _ = self.command::<i64>("room_index", &cmd).await;
    }

    /// Adds every room where this node holds connections to the index.
    pub(super) async fn index_local_rooms(&self) {
        let rooms: Vec<String> = self.local().rooms.keys().cloned().collect();
        for chunk in rooms.chunks(SWEEP_BATCH) {
            self.index_rooms(chunk).await;
        }
    }

    /// The summary of `room`, `None` when it has no peers.
    async fn summary(&self, room: &str) -> Result<Option<RoomSummary>, ProtocolError> {
        let v = self
            .script("room_info", &self.scripts.room_info, room, &["summary"])
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => {}
            Some("NO_ROOM") => return Ok(None),
            other => return Err(internal(&format!("room_info status {other:?}"))),
        }
        let (Some(peers), Some(version)) = (v.get(2).and_then(int), v.get(3).and_then(int)) else {
            return Err(internal("room_info summary reply"));
        };
        let created_at = match v.get(4).and_then(int) {
            Some(c) => c.max(0) as u64,
            // Re-created after Redis lost it: the full read knows the peers.
            None => self.detail(room).await.map_or(0, |d| d.created_at),
        };
        Ok(Some(RoomSummary {
            room: room.to_owned(),
            peers: peers.max(0) as usize,
            state_version: version.max(0) as u64,
            created_at,
        }))
    }

    /// A page of the index after `cursor`, skipping (and pruning) rooms that
    /// ended. When the reads run out before the page is full, the page is
    /// short and `next_cursor` is the last name looked at.
    pub(super) async fn list_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage, AdminError> {
        let mut rooms: Vec<RoomSummary> = Vec::new();
        let mut last_seen = cursor.map(str::to_owned);
        for _ in 0..LIST_READS {
            let from = last_seen
                .as_deref()
                .map_or_else(|| "-".to_owned(), |name| format!("({name}"));
            // One more than needed tells whether another page follows.
            let want = limit + 1 - rooms.len();
            let names: Vec<String> = self
                .command(
                    "room_index",
                    redis::cmd("ZRANGEBYLEX")
                        .arg(ROOMS_KEY)
                        .arg(&from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want),
                )
                .await
                .map_err(|e| unavailable("room_index", &e))?;
            let exhausted = names.len() < want;
            for name in names {
                match self.summary(&name).await? {
                    Some(_) if rooms.len() == limit => {
                        let next_cursor = rooms.last().map(|r| r.room.clone());
                        return Ok(RoomPage { rooms, next_cursor });
                    }
                    Some(summary) => rooms.push(summary),
                    None => self.unindex(&name).await,
                }
                last_seen = Some(name);
            }
            if exhausted {
                return Ok(RoomPage {
                    rooms,
                    next_cursor: None,
                });
            }
        }
        Ok(RoomPage {
            rooms,
            next_cursor: last_seen,
        })
    }

    async fn unindex(&self, room: &str) {
        let _ = self
            .command::<i64>("room_index", redis::cmd("ZREM").arg(ROOMS_KEY).arg(room))
            .await;
    }

    /// Prunes names of rooms that ended from the index, `SWEEP_BATCH` at a
    /// time starting after `after`; returns where the next sweep starts
    /// (`None`: from the beginning).
    pub(super) async fn sweep_room_index(&self, after: Option<String>) -> Option<String> {
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let names: Vec<String> = self
            .command(
                "room_index",
                redis::cmd("ZRANGEBYLEX")
                    .arg(ROOMS_KEY)
                    .arg(&from)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SWEEP_BATCH),
            )
            .await
            .ok()?;
        for name in &names {
            let exists = self
                .command::<i64>("room_index", redis::cmd("EXISTS").arg(peers_key(name)))
                .await;
            if exists == Ok(0) {
                self.unindex(name).await;
            }
        }
        (names.len() == SWEEP_BATCH)
            .then(|| names.last().cloned())
            .flatten()
    }

    pub(super) async fn detail(&self, room: &str) -> Result<RoomDetail, AdminError> {
        let v = self
            .script("room_info", &self.scripts.room_info, room, &["full"])
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => room_detail(room, &v).ok_or_else(|| internal("room_info reply").into()),
            Some("NO_ROOM") => Err(AdminError::RoomNotFound),
            other => Err(internal(&format!("room_info status {other:?}")).into()),
        }
    }

    pub(super) async fn deliver_server(
        &self,
        room: &str,
        to: Recipients<'_>,
        body: &EventBody,
    ) -> Result<usize, AdminError> {
        let to = match to {
            Recipients::All => "",
            Recipients::Peer(peer) => peer,
        };
        let v = self
            .script(
                "server_message",
                &self.scripts.server_message,
                room,
                &[to, &body.json],
            )
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => Ok(v.get(2).and_then(int).unwrap_or(0).max(0) as usize),
            other => Err(not_found(other, "server_message")),
        }
    }

    pub(super) async fn patch_room_state(
        &self,
        room: &str,
        patch: &Map<String, Json>,
        if_version: Option<u64>,
    ) -> Result<u64, AdminError> {
        for _ in 0..PATCH_CAS_ATTEMPTS {
            let v: Vec<Value> = self
                .command(
                    "state",
                    redis::cmd("HMGET")
                        .arg(super::keys::state_key(room))
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
            let body = event::state_from_api(&next).json;
            let recorded =
                crate::backend::history::state_data(patch, next.version, None).to_string();
            let expected = current.version.to_string();
            let r = self
                .script(
                    "api_state",
                    &self.scripts.api_state,
                    room,
                    &[&expected, &data, &body, &recorded, self.history_spec()],
                )
                .await?;
            match r.first().and_then(text).as_deref() {
                Some("OK") => {
                    self.recorded(room);
                    return Ok(next.version);
                }
                Some("CONFLICT") if if_version.is_some() => {
                    let now = r.get(2).and_then(int).unwrap_or(0).max(0) as u64;
                    return Err(AdminError::Protocol(ProtocolError {
                        code: ErrorCode::VersionConflict,
                        message: format!(
                            "state is at version {now}, not {}; re-read it and retry",
                            current.version
                        ),
                        version: Some(now),
                    }));
                }
                // Changed between the read and the script: read it again.
                Some("CONFLICT") => {}
                other => return Err(not_found(other, "api_state")),
            }
        }
        Err(AdminError::Contended)
    }

    pub(super) async fn kick_peer(&self, room: &str, peer: &str) -> Result<(), AdminError> {
        let body = event::peer_left(peer, LeaveReason::Kicked).json;
        let v = self
            .script(
                "kick",
                &self.scripts.kick,
                room,
                &[peer, &body, self.history_spec()],
            )
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => {
                self.recorded(room);
                Ok(())
            }
            other => Err(not_found(other, "kick")),
        }
    }

    pub(super) async fn close(&self, room: &str) -> Result<(), AdminError> {
        let v = self
            .script("close_room", &self.scripts.close_room, room, &[])
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => {
                self.unindex(room).await;
                Ok(())
            }
            other => Err(not_found(other, "close_room")),
        }
    }
}

/// The error of a script status other than `OK`.
fn not_found(status: Option<&str>, op: &str) -> AdminError {
    match status {
        Some("NO_ROOM") => AdminError::RoomNotFound,
        Some("NO_PEER") => AdminError::PeerNotFound,
        other => internal(&format!("{op} status {other:?}")).into(),
    }
}

/// Decodes `room_info.lua`'s reply.
fn room_detail(room: &str, v: &[Value]) -> Option<RoomDetail> {
    let infos = pairs(v.get(2)?);
    let state = parse_state(v.get(3)?, v.get(4)?);
    let created = v.get(5).and_then(int);
    // peer, node, away for every peer.
    let where_: HashMap<String, (String, bool)> = items(v.get(6)?)
        .chunks(3)
        .filter_map(|c| {
            let away = c.get(2).and_then(int).unwrap_or(0) != 0;
            Some((text(c.first()?)?, (text(c.get(1)?)?, away)))
        })
        .collect();
    let mut peers: Vec<RoomPeer> = Vec::with_capacity(infos.len());
    for (id, json) in infos {
        // A record that does not parse was not written by a node of ours.
        let Ok(info) = serde_json::from_str::<PeerInfo>(&json) else {
            continue;
        };
        let (node, away) = where_.get(&id).cloned().unwrap_or_default();
        peers.push(RoomPeer {
            info,
            node: (!node.is_empty()).then(|| server_id_of(&node).to_owned()),
            away,
        });
    }
    peers.sort_by(|a, b| {
        a.info
            .joined_at
            .cmp(&b.info.joined_at)
            .then_with(|| a.info.peer.cmp(&b.info.peer))
    });
    let oldest = peers.iter().map(|p| p.info.joined_at).min().unwrap_or(0);
    Some(RoomDetail {
        room: room.to_owned(),
        created_at: created.map_or(oldest, |c| c.max(0) as u64),
        peers,
        state: RoomStateView {
            version: state.version,
            data: state.data,
        },
    })
}
