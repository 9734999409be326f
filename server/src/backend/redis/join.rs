//! Joining a room on the Redis backend: a resume when the token's session
//! is still in the room (its missed events replayed from the peer's
//! stream), else a fresh peer. Which of the two follows `backend::rules`;
//! this file holds the scripts' side of it.

use crate::outbox::Utf8Bytes;
use redis::Value;

use super::reply::{int, internal, items, pairs, parse_peers, parse_state, static_kind, text};
use super::{new_attachment, RedisBackend};
use crate::backend::rules::{new_peer, ResumeAttempt};
use crate::backend::{
    new_peer_id, now_ms, peer_id_taken, room_full, token, JoinArgs, JoinOutcome, Member,
};
use crate::outbox::Outbox;
use crate::protocol::{event, stamp, LeaveReason, PeerInfo, ProtocolError};

impl RedisBackend {
    /// A join: a resume when the token's session is in the room, else a
    /// fresh peer (see `rules`).
    pub(super) async fn join_room(&self, args: JoinArgs<'_>) -> Result<JoinOutcome, ProtocolError> {
        let req = args.request;
        // The rules of `rules::ResumeAttempt`, as on the embedded backend.
        let attempt = ResumeAttempt::of(req);
        let recovered = attempt.recovered;
        if let (Some(t), Some(resume)) = (&attempt.token, &req.resume) {
            if let Some(outcome) = self.try_resume(t, resume, &args).await? {
                return Ok(outcome);
            }
        }
        let peer = attempt.fresh_peer(req).unwrap_or_else(new_peer_id);
        let room = &req.room;
        let attachment = new_attachment();
        if !self.add_pending(room, &peer, attachment, &args.outbox) {
            return Err(peer_id_taken(&peer));
        }
        let info = new_peer(req, peer.clone(), now_ms());
        let minted = token::mint(room, &peer);
        let secret = hex::encode(minted.secret_hash);
        let result = async {
            self.ensure_subscribed(room).await?;
            self.join_script(room, &info, attachment, &secret, args.takeover)
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
                // The script only answers TAKEN without takeover.
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
        self.recorded(room);
        self.activate(room, &peer, info.clone(), secret);
        // Listed by the Server API from now on (see `admin`).
        self.index_rooms(std::slice::from_ref(room)).await;
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

    /// Runs `join.lua` for a fresh peer (with `takeover`, replacing a peer
    /// of the same id).
    async fn join_script(
        &self,
        room: &str,
        info: &PeerInfo,
        attachment: u64,
        secret: &str,
        takeover: bool,
    ) -> Result<Vec<Value>, ProtocolError> {
        let info_json = serde_json::to_string(info).map_err(|_| ProtocolError::internal())?;
        let att = attachment.to_string();
        let max = self.limits.max_peers_per_room.to_string();
        let body = event::peer_joined(info).json;
        let takeover = if takeover { "1" } else { "0" };
        let replaced = event::peer_left(&info.peer, LeaveReason::Replaced).json;
        let args = [
            info.peer.as_str(),
            &info_json,
            &self.node,
            &att,
            secret,
            &max,
            &body,
            takeover,
            &replaced,
            self.history_spec(),
        ];
        self.script("join", &self.scripts.join, room, &args).await
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
        replay(&args.outbox, v.get(7).map(items).unwrap_or(&[]));
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

/// Pushes the missed events of a resume (`seq, kind, body` triples, as the
/// script returns them) into the connection's outbox.
fn replay(outbox: &Outbox, events: &[Value]) {
    for e in events.chunks(3) {
        let (Some(seq), Some(kind), Some(body)) = (
            e.first().and_then(int),
            e.get(1).and_then(text),
            e.get(2).and_then(text),
        ) else {
            continue;
        };
        let seq = seq.max(0) as u64;
        let _ = outbox.event(seq, static_kind(&kind), Utf8Bytes::from(stamp(seq, &body)));
    }
}
