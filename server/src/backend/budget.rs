//! Byte budgets of replay (resume) data: what is counted, and the pieces the
//! embedded backend counts with. The Redis backend applies the same rules in
//! its Lua scripts (`redis/lua/common.lua`); [`redis_limits`] hands them over.
//!
//! Three budgets bound what the server keeps so that peers can resume:
//! - **per peer** (`RECOVERY_BUFFER_EVENTS`, `RECOVERY_BUFFER_BYTES`): the
//!   peer's buffer keeps its newest events within both limits, counting each
//!   event's body in full even when the body is shared with other peers (it
//!   is what a replay to that peer would send). Older events are trimmed.
//! - **per room** (`ROOM_RECOVERY_BYTES`): the memory all buffers of the room
//!   hold, away peers included: every body once, however many buffers refer
//!   to it, plus [`BODY_OVERHEAD`] per body and [`ENTRY_OVERHEAD`] per buffered
//!   event for the bookkeeping around them.
//! - **per node** (`NODE_RECOVERY_BYTES`, embedded backend): the same sum over
//!   every room of the node.
//!
//! When the room or node budget is exceeded, whole buffers are dropped,
//! largest first (by the per-peer measure), until the budget holds again; a
//! peer whose buffer was dropped resumes with `recovered: false` unless it had
//! already seen everything before the drop. Connected peers count too: their
//! buffer is what a resume after a dropped connection replays.
//!
//! The overheads are estimates of the allocations around a body or an event
//! (the reference-counted cell, the buffer slot with its spare capacity),
//! not measurements; allocator rounding and fragmentation are not counted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::limits::Limits;
use crate::protocol::MessageType;

/// Bytes counted per buffered event besides its body (room and node budgets).
pub const ENTRY_OVERHEAD: usize = 64;
/// Bytes counted per stored body besides its text (room and node budgets).
pub const BODY_OVERHEAD: usize = 64;
/// Shortest time between two warnings about dropped buffers, so a flood does
/// not flood the log too.
const DROP_LOG_INTERVAL_MS: u64 = 10_000;

/// Bytes of replay data of one room. Bodies and entries update it when they
/// are created and dropped, so every way a buffer shrinks (trim, drop, peer
/// removed, room removed) is counted without bookkeeping at each call site.
#[derive(Debug, Default)]
pub struct Meter(AtomicUsize);

impl Meter {
    /// Bytes currently counted.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One event body (compact JSON without `seq`), stored once and shared by the
/// buffers of every recipient; `seq` is stamped per recipient on replay.
#[derive(Debug)]
pub struct Body {
    text: Box<str>,
    meter: Arc<Meter>,
}

impl Body {
    /// A body counted against `meter`.
    pub fn new(text: &str, meter: &Arc<Meter>) -> Arc<Body> {
        meter.add(text.len() + BODY_OVERHEAD);
        Arc::new(Body {
            text: text.into(),
            meter: meter.clone(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.meter.sub(self.text.len() + BODY_OVERHEAD);
    }
}

/// One buffered event of one peer.
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    pub kind: MessageType,
    body: Arc<Body>,
}

impl Entry {
    pub fn new(seq: u64, kind: MessageType, body: &Arc<Body>) -> Entry {
        body.meter.add(ENTRY_OVERHEAD);
        Entry {
            seq,
            kind,
            body: body.clone(),
        }
    }

    /// The body, without `seq`.
    pub fn body(&self) -> &str {
        self.body.text()
    }

    /// What this event counts against its peer's budget: the body's length.
    pub fn body_len(&self) -> usize {
        self.body.text.len()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.body.meter.sub(ENTRY_OVERHEAD);
    }
}

/// The budgets as the Redis scripts take them, in the argument that once held
/// only the event count: `EVENTS:PEER_BYTES:ROOM_BYTES`.
pub fn redis_limits(limits: &Limits) -> String {
    format!(
        "{}:{}:{}",
        limits.recovery_buffer_events, limits.recovery_buffer_bytes, limits.room_recovery_bytes
    )
}

/// Counts buffers dropped because a budget was exceeded and warns about them
/// at most every [`DROP_LOG_INTERVAL_MS`].
#[derive(Debug, Default)]
pub struct DropLog {
    /// Drops since the last warning.
    pending: AtomicU64,
    /// When the last warning was written (ms since the epoch).
    last_ms: AtomicU64,
}

impl DropLog {
    /// Records `n` dropped buffers because the `budget` (a setting name) was
    /// exceeded; warns when the interval since the last warning passed.
    pub fn dropped(&self, n: u64, budget: &'static str, now_ms: u64) {
        if n == 0 {
            return;
        }
        let pending = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < DROP_LOG_INTERVAL_MS
            || self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.pending.fetch_sub(pending, Ordering::Relaxed);
        tracing::warn!(
            dropped = pending,
            budget,
            "replay buffers dropped to stay within {budget}: those peers resume with recovered:false; \
             raise the budget if ordinary traffic reaches it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_count_once_and_entries_each() {
        let meter = Arc::new(Meter::default());
        let body = Body::new("{\"a\":1}", &meter);
        assert_eq!(meter.bytes(), 7 + BODY_OVERHEAD);
        let a = Entry::new(1, MessageType::Broadcast, &body);
        let b = Entry::new(4, MessageType::Broadcast, &body);
        drop(body);
        assert_eq!(meter.bytes(), 7 + BODY_OVERHEAD + 2 * ENTRY_OVERHEAD);
        assert_eq!((a.body_len(), a.body()), (7, "{\"a\":1}"));
        drop(a);
        assert_eq!(meter.bytes(), 7 + BODY_OVERHEAD + ENTRY_OVERHEAD);
        drop(b);
        assert_eq!(meter.bytes(), 0, "the last holder frees the body");
    }

    #[test]
    fn redis_limits_carry_all_three() {
        let limits = Limits {
            recovery_buffer_events: 10,
            recovery_buffer_bytes: 2000,
            room_recovery_bytes: 30000,
            ..Limits::default()
        };
        assert_eq!(redis_limits(&limits), "10:2000:30000");
    }
}
