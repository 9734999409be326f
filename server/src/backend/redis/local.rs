//! This node's side of the cluster: the connections it holds (joined, and
//! joins in flight), the room channels it subscribes to for them, and the
//! fan-out of published events into their outboxes.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, Weak};

use crate::outbox::Utf8Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use crate::backend::{not_joined, Member};
use crate::outbox::Outbox;
use crate::protocol::close::ROOM_CLOSED_REASON;
use crate::protocol::{stamp, CloseCode, PeerInfo, ProtocolError};

use super::client::unavailable;
use super::keys::{channel, node_rooms_key, room_of_channel};
use super::reply::{parse_events, static_kind};
use super::RedisBackend;

/// A connection of this node joined to a room.
pub(super) struct LocalPeer {
    pub(super) outbox: Arc<Outbox>,
    pub(super) attachment: u64,
    pub(super) info: PeerInfo,
    pub(super) secret: String,
}

/// This node's connections, by room and peer.
#[derive(Default)]
pub(super) struct Local {
    pub(super) active: HashMap<(String, String), LocalPeer>,
    /// Joins and resumes in flight: they receive events before the script
    /// returns, so nothing published right after it is missed.
    pub(super) pending: HashMap<(String, String), (u64, Arc<Outbox>)>,
    /// Active plus pending entries per room (subscriptions follow this).
    pub(super) rooms: HashMap<String, usize>,
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

/// Routes pushes (pub/sub messages, disconnect notices) to the backend.
pub(super) async fn dispatch_pushes(
    backend: Weak<RedisBackend>,
    mut rx: UnboundedReceiver<PushInfo>,
) {
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

impl RedisBackend {
    pub(super) fn local(&self) -> MutexGuard<'_, Local> {
        // Critical sections only move map entries (see `sync`).
        crate::sync::lock(&self.local)
    }

    /// Subscribes to the room's channel for this node unless subscribed.
    pub(super) async fn ensure_subscribed(&self, room: &str) -> Result<(), ProtocolError> {
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
    pub(super) async fn unsubscribe_idle(&self) {
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

    pub(super) fn add_pending(
        &self,
        room: &str,
        peer: &str,
        attachment: u64,
        outbox: &Arc<Outbox>,
    ) -> bool {
        let mut local = self.local();
        let key = (room.to_owned(), peer.to_owned());
        if local.pending.contains_key(&key) {
            return false;
        }
        local.pending.insert(key, (attachment, outbox.clone()));
        local.add_room(room);
        true
    }

    pub(super) fn drop_pending(&self, room: &str, peer: &str) {
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
    pub(super) fn activate(&self, room: &str, peer: &str, info: PeerInfo, secret: String) {
        let mut local = self.local();
        let key = (room.to_owned(), peer.to_owned());
        let Some((attachment, outbox)) = local.pending.remove(&key) else {
            return;
        };
        if outbox.close_code() == Some(CloseCode::Removed) {
            // Kicked (or its room closed) while the join was in flight: the
            // cluster no longer holds it, so it never becomes active here.
            local.drop_room(room);
            return;
        }
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

    pub(super) fn current(&self, member: &Member) -> Result<(), ProtocolError> {
        let local = self.local();
        match local
            .active
            .get(&(member.room.clone(), member.peer.clone()))
        {
            Some(p) if p.attachment == member.attachment => Ok(()),
            _ => Err(not_joined()),
        }
    }

    pub(super) fn remove_active(&self, member: &Member) -> bool {
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
    pub(super) fn retire(&self, member: &Member, code: CloseCode) {
        self.retire_with(member, code, code.reason());
    }

    /// [`Self::retire`] with a reason of the caller's.
    pub(super) fn retire_with(&self, member: &Member, code: CloseCode, reason: &'static str) {
        let key = (member.room.clone(), member.peer.clone());
        let (active, pending) = {
            let local = self.local();
            let active = local
                .active
                .get(&key)
                .filter(|p| p.attachment == member.attachment)
                .map(|p| p.outbox.clone());
            let pending = local
                .pending
                .get(&key)
                .filter(|(att, _)| *att == member.attachment)
                .map(|(_, outbox)| outbox.clone());
            (active, pending)
        };
        if let Some(outbox) = active {
            self.remove_active(member);
            outbox.close(code, reason);
        } else if let Some(outbox) = pending.filter(|_| code == CloseCode::Removed) {
            // A join or resume whose script already ran, removed before it
            // was answered: `activate` sees the close and drops it.
            outbox.close(code, reason);
        }
    }

    /// Queues one published event for the listed local peers (`peer=seq,...`).
    pub(super) fn deliver_local(
        &self,
        local: &Local,
        room: &str,
        kind: &str,
        list: &str,
        body: &str,
    ) {
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
    pub(super) fn on_message(&self, channel: &str, payload: &[u8]) {
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
            // `K <peer> <att>`: resumed elsewhere (4000); `K <peer> <att>
            // 4003 <kicked|closed>`: removed through the Server API.
            let mut parts = rest.split(' ');
            let (Some(peer), Some(att)) = (parts.next(), parts.next()) else {
                return;
            };
            let Ok(att) = att.parse::<u64>() else { return };
            let member = Member {
                room: room.to_owned(),
                peer: peer.to_owned(),
                attachment: att,
            };
            match (parts.next(), parts.next()) {
                (Some("4003"), why) => self.retire_with(
                    &member,
                    CloseCode::Removed,
                    if why == Some("closed") {
                        ROOM_CLOSED_REASON
                    } else {
                        CloseCode::Removed.reason()
                    },
                ),
                _ => self.retire(&member, CloseCode::SessionMoved),
            }
        }
    }
}
