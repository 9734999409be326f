//! The outbound queue of one connection.
//!
//! Everything a connection is sent (replies and events) goes through its
//! `Outbox`; a writer task drains it into the socket. Pushing never blocks and
//! never waits on the client: the queue is bounded in bytes, and a connection
//! whose queue overflows is closed with 1008 (slow consumer) instead of growing
//! memory or stalling the peers that send to it.
//!
//! Events carry their per-peer `seq`; the outbox drops any event whose seq it
//! has already queued, which makes redelivery (replay plus live delivery racing
//! on resume, or a duplicated cross-node message) harmless. While the
//! connection waits for its `joined` reply to be queued, events are held back
//! so that `joined` is always the first message after a `join`; likewise while
//! a `set_state` is in flight, so that its `ok` comes before the `state` event
//! it caused on every backend.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::protocol::{CloseCode, MessageType};

/// The text of a queued frame: what the WebSocket layer writes, so that it
/// goes out without a copy or a second UTF-8 check.
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text frame; `kind` is the message type for metrics, `seq` is 0 for
    /// replies and the event's seq otherwise.
    Text {
        kind: MessageType,
        seq: u64,
        text: Utf8Bytes,
    },
    /// Close the connection with this code and reason after what is queued.
    Close {
        code: CloseCode,
        reason: Cow<'static, str>,
    },
}

/// What the writer should do next.
pub enum Next {
    /// Frames to write, in order.
    Frames(Vec<Outgoing>),
    /// The queue overflowed: close with 1008 now.
    Overflowed,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    /// Events that arrived while held (before `joined` was queued).
    held: Option<Vec<(u64, MessageType, Utf8Bytes)>>,
    /// Highest event seq accepted into the queue.
    last_seq: u64,
    overflowed: bool,
    closed: bool,
    /// The code of the queued close, once there is one.
    close_code: Option<CloseCode>,
}

/// The outbound queue of one connection.
pub struct Outbox {
    // A std Mutex: it is never held across an await, and every critical
    // section is a few pointer moves.
    inner: Mutex<Inner>,
    notify: Notify,
    limit: usize,
    written_seq: AtomicU64,
    /// Set once a close is queued or the queue overflowed, so that the
    /// reader and a writer blocked on a stalled socket both stop.
    closing: Signal,
    /// Set only on overflow: tells a writer blocked on the socket to give up.
    killed: Signal,
    /// Set while the writer has a batch on its way to the socket: its bytes
    /// may have reached the client before `mark_written` records them.
    writing: Busy,
}

/// A flag the writer raises around each batch, and a wait for it to fall.
#[derive(Default)]
struct Busy {
    busy: AtomicBool,
    idle: Notify,
}

/// Lowers the writer's busy flag when dropped (every path out of a batch).
pub struct Writing<'a>(&'a Busy);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        self.0.idle.notify_waiters();
    }
}

/// A flag that can be awaited, set once and never cleared. Lighter than a
/// `CancellationToken` (no allocation of its own), which matters once per
/// connection.
#[derive(Default)]
struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches every
            // `Notified` that exists, polled or not.
            let notified = self.notify.notified();
            if self.set.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closed or closing.
    Closed,
    /// The queue is over its byte limit; the connection is being closed.
    Overflow,
}

impl Outbox {
    /// An empty queue holding at most `limit` bytes of text.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            limit,
            written_seq: AtomicU64::new(0),
            closing: Signal::default(),
            killed: Signal::default(),
            writing: Busy::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Queues a direct reply (no seq).
    pub fn reply(&self, kind: MessageType, text: impl Into<Utf8Bytes>) -> Result<(), PushError> {
        let text = text.into();
        let mut inner = self.lock();
        self.enqueue(&mut inner, Outgoing::Text { kind, seq: 0, text })
    }

    /// Queues an event with its seq; duplicates (seq already queued) are
    /// dropped silently. Returns `Overflow` when the connection must close.
    pub fn event(&self, seq: u64, kind: MessageType, text: Utf8Bytes) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(PushError::Closed);
        }
        if let Some(held) = inner.held.as_mut() {
            // Replayed and live events may arrive here in any order while
            // held; `release` sorts and de-duplicates them.
            held.push((seq, kind, text));
            return Ok(());
        }
        if seq <= inner.last_seq {
            return Ok(());
        }
        inner.last_seq = seq;
        self.enqueue(&mut inner, Outgoing::Text { kind, seq, text })
    }

    fn enqueue(&self, inner: &mut Inner, item: Outgoing) -> Result<(), PushError> {
        if inner.closed {
            return Err(PushError::Closed);
        }
        if inner.overflowed {
            return Err(PushError::Overflow);
        }
        if let Outgoing::Text { text, .. } = &item {
            if inner.bytes + text.len() > self.limit {
                inner.overflowed = true;
                inner.queue.clear();
                inner.bytes = 0;
                self.notify.notify_one();
                self.killed.set();
                self.closing.set();
                return Err(PushError::Overflow);
            }
            inner.bytes += text.len();
        }
        inner.queue.push_back(item);
        self.notify.notify_one();
        Ok(())
    }

    /// Starts holding events back (until [`Outbox::release`]); replies still flow.
    /// `after_seq` is the seq the events of this attachment continue from.
    pub fn hold(&self, after_seq: u64) {
        let mut inner = self.lock();
        inner.held = Some(Vec::new());
        inner.last_seq = after_seq;
    }

    /// Starts holding events back (until [`Outbox::release`]) within the
    /// current attachment, so that a reply queued meanwhile goes before
    /// them: a request's reply then precedes the events it caused.
    pub fn hold_events(&self) {
        let mut inner = self.lock();
        if inner.held.is_none() {
            inner.held = Some(Vec::new());
        }
    }

    /// Sets the seq below which events are duplicates (used on resume).
    pub fn set_last_seq(&self, seq: u64) {
        let mut inner = self.lock();
        inner.last_seq = seq;
        self.written_seq.store(seq, Ordering::Relaxed);
    }

    /// Queues the held events after everything queued so far, in seq order
    /// without duplicates and skipping those at or below the last seq, and
    /// stops holding.
    pub fn release(&self) -> Result<(), PushError> {
        let mut inner = self.lock();
        let Some(mut held) = inner.held.take() else {
            return Ok(());
        };
        held.sort_by_key(|(seq, _, _)| *seq);
        for (seq, kind, text) in held {
            if seq <= inner.last_seq {
                continue;
            }
            inner.last_seq = seq;
            self.enqueue(&mut inner, Outgoing::Text { kind, seq, text })?;
        }
        Ok(())
    }

    /// The highest event seq accepted so far.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Drops held events and stops holding (a join that failed).
    pub fn discard_held(&self) {
        let mut inner = self.lock();
        inner.held = None;
        inner.last_seq = 0;
    }

    /// Queues a close frame; nothing can be queued after it. Only the first
    /// close counts.
    pub fn close(&self, code: CloseCode, reason: impl Into<Cow<'static, str>>) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.queue.push_back(Outgoing::Close {
            code,
            reason: reason.into(),
        });
        inner.closed = true;
        inner.close_code = Some(code);
        drop(inner);
        self.notify.notify_one();
        self.closing.set();
    }

    /// Resolves once a close was queued or the queue overflowed.
    pub async fn closing(&self) {
        self.closing.wait().await
    }

    /// Resolves once the queue overflowed.
    pub async fn killed(&self) {
        self.killed.wait().await
    }

    /// Whether the queue overflowed (the connection is a slow consumer).
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The code of the close queued by [`Outbox::close`], if any: who closed
    /// the connection and why, for the session that did not.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.lock().close_code
    }

    /// Whether a close was queued (or the queue overflowed).
    pub fn is_closed(&self) -> bool {
        let inner = self.lock();
        inner.closed || inner.overflowed
    }

    /// Waits for frames to write (for the writer task).
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut inner = self.lock();
                if inner.overflowed {
                    inner.closed = true;
                    return Next::Overflowed;
                }
                if !inner.queue.is_empty() {
                    inner.bytes = 0;
                    // The queue's storage goes with the frames, so that an
                    // idle connection holds none (a busy one allocates anew).
                    return Next::Frames(std::mem::take(&mut inner.queue).into());
                }
            }
            self.notify.notified().await;
        }
    }

    /// Records that events up to `seq` were written to the socket.
    pub fn mark_written(&self, seq: u64) {
        self.written_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Highest event seq written to the socket: what a resume without
    /// `last_seq` assumes the client processed.
    pub fn written_seq(&self) -> u64 {
        self.written_seq.load(Ordering::Relaxed)
    }

    /// Marks a batch on its way to the socket until the guard is dropped
    /// (after `mark_written`).
    pub fn writing(&self) -> Writing<'_> {
        self.writing.busy.store(true, Ordering::Release);
        Writing(&self.writing)
    }

    /// [`written_seq`](Self::written_seq) once the batch in flight (if any)
    /// has been recorded, waiting at most `within`. A client may read a
    /// frame and close before the writer task records it; the seq taken
    /// for a detach must include it, or a resume without `last_seq` would
    /// replay it a second time.
    pub async fn settled_written_seq(&self, within: Duration) -> u64 {
        let settled = async {
            loop {
                // Created before the check: `notify_waiters` reaches every
                // `Notified` that exists.
                let idle = self.writing.idle.notified();
                if !self.writing.busy.load(Ordering::Acquire) {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(within, settled).await;
        self.written_seq()
    }

    /// Bytes currently queued (for tests and metrics).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Frames the queue has room for without allocating (for tests).
    pub fn queue_capacity(&self) -> usize {
        self.lock().queue.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s)
    }

    /// A detach that comes while a batch is on its way waits for the batch
    /// to be recorded (the client may have read it already).
    #[tokio::test]
    async fn the_written_seq_for_a_detach_includes_the_batch_in_flight() {
        let o = std::sync::Arc::new(Outbox::new(1 << 20));
        o.mark_written(3);
        let guard = o.writing();
        let reader = {
            let o = o.clone();
            tokio::spawn(async move { o.settled_written_seq(Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !reader.is_finished(),
            "returned while the batch was in flight"
        );
        o.mark_written(5);
        drop(guard);
        assert_eq!(reader.await.unwrap(), 5);
        // Nothing in flight: at once.
        assert_eq!(o.settled_written_seq(Duration::from_secs(30)).await, 5);
    }

    fn frames(o: &Outbox) -> Vec<String> {
        let fut = o.next();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = Box::pin(fut);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Next::Frames(f)) => f
                .into_iter()
                .map(|f| match f {
                    Outgoing::Text { text, .. } => text.to_string(),
                    Outgoing::Close { code, .. } => format!("close {}", code.code()),
                })
                .collect(),
            std::task::Poll::Ready(Next::Overflowed) => vec!["overflow".into()],
            std::task::Poll::Pending => vec![],
        }
    }

    use std::future::Future;

    #[test]
    fn held_events_follow_the_reply() {
        let o = Outbox::new(1000);
        o.hold(0);
        o.event(1, MessageType::Signal, text("e1")).unwrap();
        o.reply(MessageType::Joined, "joined").unwrap();
        o.release().unwrap();
        o.event(2, MessageType::Signal, text("e2")).unwrap();
        assert_eq!(frames(&o), ["joined", "e1", "e2"]);
    }

    #[test]
    fn held_events_are_sorted_and_deduplicated() {
        let o = Outbox::new(1000);
        o.hold(0);
        o.event(7, MessageType::Signal, text("live7")).unwrap();
        o.set_last_seq(4);
        for (seq, t) in [(3, "old3"), (5, "r5"), (6, "r6"), (7, "r7")] {
            o.event(seq, MessageType::Signal, text(t)).unwrap();
        }
        o.reply(MessageType::Joined, "joined").unwrap();
        o.release().unwrap();
        o.event(7, MessageType::Signal, text("dup")).unwrap();
        o.event(8, MessageType::Signal, text("e8")).unwrap();
        let got = frames(&o);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(&got[..3], ["joined", "r5", "r6"]);
        assert!(got[3] == "live7" || got[3] == "r7");
        assert_eq!(got[4], "e8");
    }

    #[test]
    fn a_drained_queue_holds_no_memory() {
        let o = Outbox::new(1 << 20);
        assert_eq!(o.queue_capacity(), 0);
        for seq in 1..=100 {
            o.event(seq, MessageType::Signal, text("event")).unwrap();
        }
        assert!(o.queue_capacity() >= 100);
        assert_eq!(frames(&o).len(), 100);
        assert_eq!(
            o.queue_capacity(),
            0,
            "the queue kept its storage once drained"
        );
        o.event(101, MessageType::Signal, text("e101")).unwrap();
        assert_eq!(frames(&o), ["e101"]);
        assert_eq!(o.queue_capacity(), 0);
    }

    #[tokio::test]
    async fn closing_and_killed_wake_their_waiters() {
        let o = std::sync::Arc::new(Outbox::new(10));
        let waiter = |o: std::sync::Arc<Outbox>, killed: bool| {
            tokio::spawn(async move {
                if killed {
                    o.killed().await
                } else {
                    o.closing().await
                }
            })
        };
        let (closing, killed) = (waiter(o.clone(), false), waiter(o.clone(), true));
        tokio::task::yield_now().await;
        o.reply(MessageType::Ok, "12345678901").unwrap_err();
        let bound = std::time::Duration::from_secs(10);
        tokio::time::timeout(bound, closing).await.unwrap().unwrap();
        tokio::time::timeout(bound, killed).await.unwrap().unwrap();
        // A wait that starts after the fact ends at once.
        tokio::time::timeout(bound, o.closing()).await.unwrap();
    }

    #[tokio::test]
    async fn a_close_wakes_closing_but_not_killed() {
        let o = Outbox::new(100);
        o.close(CloseCode::Normal, "");
        let bound = std::time::Duration::from_secs(10);
        tokio::time::timeout(bound, o.closing()).await.unwrap();
        let killed = o.killed();
        tokio::pin!(killed);
        assert!(futures_util::poll!(killed.as_mut()).is_pending());
    }

    #[test]
    fn duplicate_seqs_are_dropped() {
        let o = Outbox::new(1000);
        o.event(1, MessageType::Signal, text("a")).unwrap();
        o.event(1, MessageType::Signal, text("a")).unwrap();
        o.event(2, MessageType::Signal, text("b")).unwrap();
        assert_eq!(frames(&o), ["a", "b"]);
    }

    #[test]
    fn overflow_closes_instead_of_growing() {
        let o = Outbox::new(10);
        o.reply(MessageType::Ok, "12345").unwrap();
        assert_eq!(o.reply(MessageType::Ok, "123456"), Err(PushError::Overflow));
        assert_eq!(o.reply(MessageType::Ok, "1"), Err(PushError::Overflow));
        assert_eq!(frames(&o), ["overflow"]);
        assert!(o.is_closed());
    }

    #[test]
    fn nothing_after_close() {
        let o = Outbox::new(100);
        o.reply(MessageType::Ok, "a").unwrap();
        o.close(CloseCode::GoingAway, "bye");
        o.close(CloseCode::SessionLost, String::from("later"));
        assert_eq!(o.reply(MessageType::Ok, "b"), Err(PushError::Closed));
        assert_eq!(frames(&o), ["a", "close 1001"]);
        assert_eq!(o.close_code(), Some(CloseCode::GoingAway));
    }

    #[test]
    fn reply_goes_before_the_events_held_for_it() {
        let o = Outbox::new(1000);
        o.event(1, MessageType::Signal, text("e1")).unwrap();
        o.hold_events();
        o.event(3, MessageType::State, text("e3")).unwrap();
        o.event(2, MessageType::Signal, text("e2")).unwrap();
        o.reply(MessageType::Ok, "ok").unwrap();
        o.release().unwrap();
        o.event(3, MessageType::State, text("dup")).unwrap();
        o.event(4, MessageType::Signal, text("e4")).unwrap();
        assert_eq!(frames(&o), ["e1", "ok", "e2", "e3", "e4"]);
    }
}
