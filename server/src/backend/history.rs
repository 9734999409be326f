//! Room history (event sourcing): what is recorded for each membership and
//! state change of a room, the page a reader gets back, and the embedded
//! backend's store of it. The Redis backend keeps the same events in a
//! stream per room (`lua/common.lua`, `history()`).
//!
//! The store lives outside the rooms so that a room's history outlives its
//! last peer; it is bounded per room by count and age
//! ([`crate::config::HistoryConfig`]). Webhook delivery reads it through
//! [`super::hooks::HookQueue`], so the same store keeps each room's delivery
//! cursor.
//!
//! Every join records an event that is kept for the history's age bound, so
//! the store is part of what each connection costs the node: an event is kept
//! as its `data` serialized (one allocation of its JSON text) rather than as a
//! `serde_json::Value` (a tree of maps and strings, about ten times the
//! size), and turned back into a [`HistoryEvent`] only when it is read.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::HistoryConfig;
use crate::protocol::{LeaveReason, PeerInfo};

/// Most events one history read returns.
pub const MAX_PAGE: usize = 1000;

/// Event types of the history, as readers and webhook receivers see them.
pub const ROOM_STARTED: &str = "room_started";
pub const PEER_JOINED: &str = "peer_joined";
pub const PEER_LEFT: &str = "peer_left";
pub const PEER_UPDATED: &str = "peer_updated";
pub const STATE_CHANGED: &str = "state_changed";
pub const ROOM_FINISHED: &str = "room_finished";

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// Opaque; orders the room's events. A read `after` it starts behind it.
    pub offset: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// The room's event number: +1 per event (webhook `seq`).
    #[serde(skip)]
    pub seq: u64,
    pub data: Value,
}

/// One page of a room's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Where the next read starts: the last event's offset, or the `after`
    /// asked for when there was nothing new (without one, the offset before
    /// every event).
    pub next: String,
}

/// `data` of `peer_joined` and `peer_updated`.
pub fn peer_data(info: &PeerInfo) -> Value {
    json!({ "peer": info })
}

/// `data` of `peer_left`.
pub fn left_data(peer: &str, reason: LeaveReason) -> Value {
    json!({ "peer": peer, "reason": reason })
}

/// `data` of `state_changed`: the patch applied, the new version, who.
pub fn state_data(patch: &Map<String, Value>, version: u64, by: Option<&str>) -> Value {
    json!({ "patch": patch, "version": version, "by": by })
}

/// An offset a reader passes back (`after`), parsed where it comes in (the
/// Server API), so that the backends take it as valid and a bad one is
/// refused before any backend is asked. It keeps the text it was given: a
/// page with nothing new hands that back as its `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offset {
    text: String,
    parts: (u64, u64),
}

impl Offset {
    /// `None` for anything but the documented form (see [`offset_parts`]).
    pub fn parse(s: &str) -> Option<Self> {
        offset_parts(s).map(|parts| Self {
            text: s.to_owned(),
            parts,
        })
    }

    /// The offset as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its two numbers; `<a>` alone is `(a, 0)`.
    pub fn parts(&self) -> (u64, u64) {
        self.parts
    }
}

/// The two numbers of an offset, `<a>` or `<a>-<b>` (each 1 to 19 digits:
/// the form the OpenAPI document gives, and what either backend hands out:
/// Redis stream ids `<ms>-<n>`, embedded event numbers `<n>`). `None` for
/// anything else. Both backends read both forms, so that every value of
/// the documented form is a valid request on either.
fn offset_parts(s: &str) -> Option<(u64, u64)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 19 && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<u64>().ok())
            .flatten()
    };
    Some((number(a)?, b.map_or(Some(0), number)?))
}

/// The embedded backend's history of every room.
pub struct MemoryHistory {
    config: HistoryConfig,
    rooms: Mutex<HashMap<String, RoomHistory>>,
}

/// Event types known in advance: stored without an allocation of their own.
const KINDS: [&str; 6] = [
    ROOM_STARTED,
    PEER_JOINED,
    PEER_LEFT,
    PEER_UPDATED,
    STATE_CHANGED,
    ROOM_FINISHED,
];

/// One recorded change as the store keeps it (see the module header); its
/// offset is its seq.
struct StoredEvent {
    seq: u64,
    at: u64,
    kind: Cow<'static, str>,
    /// `data`, serialized.
    data: Box<str>,
}

impl StoredEvent {
    fn new(seq: u64, at: u64, kind: &str, data: &Value) -> Self {
        let kind = match KINDS.iter().find(|k| **k == kind) {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(kind.to_owned()),
        };
        Self {
            seq,
            at,
            kind,
            data: data.to_string().into_boxed_str(),
        }
    }

    /// The event as readers get it.
    fn event(&self) -> HistoryEvent {
        HistoryEvent {
            offset: self.seq.to_string(),
            kind: self.kind.clone().into_owned(),
            at: self.at,
            seq: self.seq,
            // Text this store serialized from a `Value` parses back to it.
            data: serde_json::from_str(&self.data).unwrap_or(Value::Null),
        }
    }
}

/// One room's events and webhook cursor.
#[derive(Default)]
struct RoomHistory {
    events: VecDeque<StoredEvent>,
    /// Last seq given out.
    seq: u64,
    /// Last seq delivered (or given up) by webhooks.
    delivered: u64,
    /// When the room last recorded an event (ms).
    last_at: u64,
}

impl RoomHistory {
    fn prune(&mut self, max_events: usize, cutoff: u64) {
        while self.events.len() > max_events || self.events.front().is_some_and(|e| e.at < cutoff) {
            self.events.pop_front();
        }
    }
}

/// Events recorded between two sweeps of idle rooms.
const SWEEP_EVERY: u64 = 1024;

impl MemoryHistory {
    pub fn new(config: HistoryConfig) -> Self {
        Self {
            config,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn max_age_ms(&self) -> u64 {
        u64::try_from(self.config.max_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records an event for `room` at `now` (ms); returns its seq, or `None`
    /// when history is off. Callers hold the room's lock, so a room's events
    /// are recorded in the order of its changes.
    pub fn record(&self, room: &str, kind: &str, data: Value, now: u64) -> Option<u64> {
        if !self.config.enabled() {
            return None;
        }
        let cutoff = now.saturating_sub(self.max_age_ms());
        let mut rooms = crate::sync::lock(&self.rooms);
        let h = rooms.entry(room.to_owned()).or_default();
        h.seq += 1;
        let seq = h.seq;
        h.last_at = now;
        h.events.push_back(StoredEvent::new(seq, now, kind, &data));
        h.prune(self.config.max_events, cutoff);
        if seq % SWEEP_EVERY == 0 {
            rooms.retain(|_, h| h.last_at >= cutoff);
        }
        Some(seq)
    }

    /// Up to `limit` events of `room` after `after`; `None` when the room
    /// has no history.
    pub fn read(
        &self,
        room: &str,
        after: Option<&Offset>,
        limit: usize,
        now: u64,
    ) -> Option<HistoryPage> {
        // An embedded offset is one number; a stream id's first part orders
        // the same way (documented form, never handed out here).
        let after_seq = after.map_or(0, |a| a.parts().0);
        let cutoff = now.saturating_sub(self.max_age_ms());
        let mut rooms = crate::sync::lock(&self.rooms);
        let h = rooms.get_mut(room)?;
        h.prune(self.config.max_events, cutoff);
        if h.events.is_empty() && h.last_at < cutoff {
            rooms.remove(room);
            return None;
        }
        let events: Vec<HistoryEvent> = h
            .events
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit)
            .map(StoredEvent::event)
            .collect();
        let next = events
            .last()
            .map(|e| e.offset.clone())
            .or_else(|| after.map(|a| a.as_str().to_owned()))
            .unwrap_or_else(|| "0".to_owned());
        Some(HistoryPage { events, next })
    }

    /// Deletes the room's history (the room was closed through the API).
    pub fn forget(&self, room: &str) {
        crate::sync::lock(&self.rooms).remove(room);
    }

    /// Rooms with events not yet delivered by webhooks.
    pub fn undelivered_rooms(&self) -> Vec<String> {
        crate::sync::lock(&self.rooms)
            .iter()
            .filter(|(_, h)| h.delivered < h.seq)
            .map(|(room, _)| room.clone())
            .collect()
    }

    /// The last delivered seq of `room` and up to `limit` events after it.
    pub fn undelivered(&self, room: &str, limit: usize, now: u64) -> (u64, Vec<HistoryEvent>) {
        let cutoff = now.saturating_sub(self.max_age_ms());
        let mut rooms = crate::sync::lock(&self.rooms);
        let Some(h) = rooms.get_mut(room) else {
            return (0, Vec::new());
        };
        h.prune(self.config.max_events, cutoff);
        let events: Vec<HistoryEvent> = h
            .events
            .iter()
            .filter(|e| e.seq > h.delivered)
            .take(limit)
            .map(StoredEvent::event)
            .collect();
        if events.is_empty() {
            // Whatever was not delivered aged out or was pushed out by newer
            // events: nothing is left to send.
            h.delivered = h.seq;
        }
        (h.delivered, events)
    }

    /// Records that webhooks are done with `room`'s events up to `seq`.
    pub fn delivered(&self, room: &str, seq: u64) {
        if let Some(h) = crate::sync::lock(&self.rooms).get_mut(room) {
            h.delivered = h.delivered.max(seq);
        }
    }

    /// Events recorded and not yet delivered, over every room.
    pub fn pending_count(&self) -> u64 {
        crate::sync::lock(&self.rooms)
            .values()
            .map(|h| h.seq - h.delivered.min(h.seq))
            .sum()
    }

    /// The history's age bound (webhooks keep their cursor as long).
    pub fn max_age(&self) -> Duration {
        self.config.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_one_or_two_numbers() {
        assert_eq!(
            offset_parts("1700000000000-3"),
            Some((1_700_000_000_000, 3))
        );
        assert_eq!(offset_parts("12"), Some((12, 0)));
        let parsed = Offset::parse("007-1").unwrap();
        assert_eq!((parsed.parts(), parsed.as_str()), ((7, 1), "007-1"));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-1-1",
            "1 ",
            "+1",
            "99999999999999999999-0",
            "GU%F1%8A",
        ] {
            assert_eq!(offset_parts(bad), None, "{bad}");
            assert_eq!(Offset::parse(bad), None, "{bad}");
        }
    }

    fn store(max_events: usize) -> MemoryHistory {
        MemoryHistory::new(HistoryConfig {
            max_events,
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn bounded_by_count_and_paged_by_offset() {
        let h = store(3);
        for i in 0..5 {
            h.record("r", PEER_JOINED, json!({ "i": i }), 1000 + i);
        }
        let offset = |s: &str| Offset::parse(s).unwrap();
        let page = h.read("r", None, 2, 2000).unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4]);
        let page = h.read("r", Some(&offset(&page.next)), 10, 2000).unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.next, "5");
        let empty = h.read("r", Some(&offset("5")), 10, 2000).unwrap();
        assert!(empty.events.is_empty());
        assert_eq!(empty.next, "5");
        // The documented two-number form orders by its first number, and an
        // empty page hands it back as given.
        let page = h.read("r", Some(&offset("4-9")), 10, 2000).unwrap();
        assert_eq!(page.events.len(), 1);
        let empty = h.read("r", Some(&offset("05-0")), 10, 2000).unwrap();
        assert_eq!(empty.next, "05-0");
        assert!(h.read("other", None, 10, 2000).is_none());
    }

    #[test]
    fn bounded_by_age_and_off_at_zero() {
        let h = store(10);
        h.record("r", ROOM_STARTED, json!({}), 1000);
        h.record("r", PEER_JOINED, json!({}), 50_000);
        let page = h.read("r", None, 10, 70_000).unwrap();
        assert_eq!(page.events.len(), 1);
        assert!(h.read("r", None, 10, 200_000).is_none());
        assert_eq!(store(0).record("r", ROOM_STARTED, json!({}), 1), None);
    }

    #[test]
    fn events_read_back_as_recorded() {
        let h = store(10);
        let data = json!({ "peer": { "peer": "a", "role": "", "metadata": { "n": [1, -2, 0.5, null, "é"] }, "joined_at": 7 } });
        h.record("r", PEER_JOINED, data.clone(), 5);
        h.record("r", "custom_kind", json!({}), 6);
        let page = h.read("r", None, 10, 7).unwrap();
        assert_eq!(
            page.events,
            vec![
                HistoryEvent {
                    offset: "1".into(),
                    kind: PEER_JOINED.into(),
                    at: 5,
                    seq: 1,
                    data: data.clone(),
                },
                HistoryEvent {
                    offset: "2".into(),
                    kind: "custom_kind".into(),
                    at: 6,
                    seq: 2,
                    data: json!({}),
                },
            ]
        );
        let (_, undelivered) = h.undelivered("r", 1, 7);
        assert_eq!(undelivered[0].data, data);
    }

    #[test]
    fn delivery_cursor() {
        let h = store(10);
        h.record("r", ROOM_STARTED, json!({}), 1);
        h.record("r", PEER_JOINED, json!({}), 2);
        assert_eq!(h.undelivered_rooms(), vec!["r".to_owned()]);
        assert_eq!(h.pending_count(), 2);
        h.delivered("r", 1);
        let (done, next) = h.undelivered("r", 10, 3);
        assert_eq!((done, next.len()), (1, 1));
        h.delivered("r", 2);
        assert!(h.undelivered_rooms().is_empty());
    }
}
