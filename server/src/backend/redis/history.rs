//! Room history and the webhook queue on Redis.
//!
//! The room scripts record history events into the room's stream
//! `sb:{ROOM}:history` (`history()` in `lua/common.lua`), atomically with
//! the change. Webhook delivery needs no second copy: `lua/hook.lua` keeps a
//! per-room cursor and a per-room lease (one sender per room at a time), and
//! the global set `sb:hooks` lists rooms that may have undelivered events so
//! that any node's poll finds them. A room is added to it right after each
//! recording script (by the local delivery loop, see `crate::webhook`); the
//! crash window between the script and that `SADD` is closed by the node
//! that reaps a dead node (`liveness.rs`), which flags every room of the
//! dead node, and by the expiry sweep, which flags a room before it removes
//! a peer there.

use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use serde_json::Value as Json;
use tokio::sync::mpsc::UnboundedSender;

use super::client::unavailable;
use super::keys::{history_key, HOOKS_KEY, INDEX_TTL};
use super::reply::{int, internal, items, text};
use super::RedisBackend;
use crate::backend::history::{HistoryEvent, HistoryPage, Offset};
use crate::backend::hooks::{HookBatch, HookQueue};
use crate::protocol::ProtocolError;

/// A stream entry `[id, [t, TYPE, n, SEQ, d, DATA]]` as an event.
fn parse_entry(entry: &Value) -> Option<HistoryEvent> {
    let parts = items(entry);
    let offset = text(parts.first()?)?;
    let at = offset.split_once('-')?.0.parse().ok()?;
    let fields = items(parts.get(1)?);
    let (mut kind, mut seq, mut data) = (None, 0, Json::Null);
    for pair in fields.chunks(2) {
        let (Some(name), Some(value)) = (pair.first().and_then(text), pair.get(1)) else {
            continue;
        };
        match name.as_str() {
            "t" => kind = text(value),
            "n" => seq = text(value).and_then(|s| s.parse().ok()).unwrap_or(0),
            "d" => data = text(value).and_then(|s| serde_json::from_str(&s).ok())?,
            _ => {}
        }
    }
    Some(HistoryEvent {
        offset,
        kind: kind?,
        at,
        seq,
        data,
    })
}

fn parse_entries(v: &Value) -> Vec<HistoryEvent> {
    items(v).iter().filter_map(parse_entry).collect()
}

/// The `MAX:AGE_MS` argument of the recording scripts (`0:…`: off).
pub(super) fn spec(config: &crate::config::HistoryConfig) -> String {
    format!("{}:{}", config.max_events, config.max_age.as_millis())
}

impl RedisBackend {
    /// The `MAX:AGE_MS` argument of the recording scripts.
    pub(super) fn history_spec(&self) -> &str {
        &self.history_spec
    }

    /// A recording script succeeded in `room`: tell the delivery loop.
    pub(super) fn recorded(&self, room: &str) {
        if let Some(tx) = self.announce.get() {
            // Closed only when the node stops.
            let _ = tx.send(room.to_owned());
        }
    }

    /// Whether webhooks are on (rooms are flagged in `sb:hooks`).
    pub(super) fn webhooks_on(&self) -> bool {
        self.announce.get().is_some()
    }

    /// Flags rooms of a node that died, or of a peer about to be expired:
    /// their events may never have been announced.
    pub(super) async fn flag_rooms(&self, rooms: &[String]) {
        if !self.webhooks_on() {
            return;
        }
        if self.flag(rooms).await.is_err() {
            // The next event of each room flags it again.
            tracing::debug!(
                rooms = rooms.len(),
                "could not flag rooms for webhook delivery"
            );
        }
    }

    pub(super) async fn read_history(
        &self,
        room: &str,
        after: Option<&Offset>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ProtocolError> {
        let from = match after.map(Offset::parts) {
            // Stream ids are what this backend hands out; a bare number
            // (the embedded form) reads as `<n>-0`.
            Some((ms, n)) => format!("({ms}-{n}"),
            None => "-".to_owned(),
        };
        let key = history_key(room);
        let v: Value = self
            .command(
                "history",
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await
            .map_err(|e| unavailable("history", &e))?;
        let events = parse_entries(&v);
        if events.is_empty() {
            let exists: i64 = self
                .command("history", redis::cmd("EXISTS").arg(&key))
                .await
                .map_err(|e| unavailable("history", &e))?;
            if exists == 0 {
                return Ok(None);
            }
        }
        let next = events
            .last()
            .map(|e| e.offset.clone())
            .or_else(|| after.map(|a| a.as_str().to_owned()))
            .unwrap_or_else(|| "0-0".to_owned());
        Ok(Some(HistoryPage { events, next }))
    }

    async fn hook_op(&self, room: &str, args: &[&str]) -> Result<Vec<Value>, ProtocolError> {
        self.script("hook", &self.scripts.hook, room, args).await
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[async_trait]
impl HookQueue for RedisBackend {
    fn announce_to(&self, tx: UnboundedSender<String>) {
        let _ = self.announce.set(tx);
    }

    async fn flag(&self, rooms: &[String]) -> Result<(), ProtocolError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut sadd = redis::cmd("SADD");
        sadd.arg(HOOKS_KEY).arg(rooms);
        let expire = redis::cmd("PEXPIRE")
            .arg(HOOKS_KEY)
            .arg(INDEX_TTL.as_millis() as u64)
            .clone();
        self.each("hooks", &[sadd, expire])
            .await
            .map_err(|e| unavailable("hooks", &e))
    }

    async fn flagged(&self, limit: usize) -> Result<Vec<String>, ProtocolError> {
        // A random sample: with many flagged rooms every node's poll picks
        // different ones, and none is starved for long.
        self.command("hooks", redis::cmd("SRANDMEMBER").arg(HOOKS_KEY).arg(limit))
            .await
            .map_err(|e| unavailable("hooks", &e))
    }

    async fn next(
        &self,
        room: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Option<HookBatch>, ProtocolError> {
        let count = limit.max(1).to_string();
        let v = self
            .hook_op(room, &["next", &self.node, &ms(lease), &count])
            .await?;
        match v.first().and_then(text).as_deref() {
            Some("OK") => {
                let delivered = v
                    .get(2)
                    .and_then(|x| {
                        text(x)
                            .and_then(|s| s.parse().ok())
                            .or_else(|| int(x).map(|i| i.max(0) as u64))
                    })
                    .unwrap_or(0);
                let events = v.get(3).map(parse_entries).unwrap_or_default();
                Ok(Some(HookBatch { delivered, events }))
            }
            Some("BUSY") => Ok(None),
            other => Err(internal(&format!("hook next status {other:?}"))),
        }
    }

    async fn ack(
        &self,
        room: &str,
        offset: &str,
        seq: u64,
        lease: Duration,
    ) -> Result<bool, ProtocolError> {
        let keep = ms(self.history_age);
        let seq = seq.to_string();
        let v = self
            .hook_op(room, &["ack", &self.node, &ms(lease), offset, &seq, &keep])
            .await?;
        Ok(v.first().and_then(text).as_deref() == Some("OK"))
    }

    async fn renew(&self, room: &str, lease: Duration) -> Result<bool, ProtocolError> {
        let v = self
            .hook_op(room, &["renew", &self.node, &ms(lease)])
            .await?;
        Ok(v.first().and_then(text).as_deref() == Some("OK"))
    }

    async fn unflag(&self, room: &str) -> Result<(), ProtocolError> {
        self.command::<i64>("hooks", redis::cmd("SREM").arg(HOOKS_KEY).arg(room))
            .await
            .map_err(|e| unavailable("hooks", &e))?;
        Ok(())
    }

    async fn release(&self, room: &str) -> Result<(), ProtocolError> {
        self.hook_op(room, &["release", &self.node, "1"]).await?;
        Ok(())
    }
}
