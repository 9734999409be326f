//! The read loop of a connection: frames in, the idle and join deadlines,
//! the drain, the rate limit, and consecutive signals batched into one
//! backend call.

use std::time::Instant;

use futures_util::stream::SplitStream;
use futures_util::{FutureExt, StreamExt};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::warn;

use super::close::{close_for, CloseReason};
use super::{Session, Socket};
use crate::backend::{not_joined, Member};
use crate::protocol::{
    self, event, reply, CloseCode, ErrorCode, EventBody, MessageType, Parsed, ProtocolError,
    Request, RequestId,
};

/// Most text frames taken from the socket at once (only those already read).
const READ_AHEAD: usize = 32;

/// Signals read together, waiting to go to the backend as one call.
#[derive(Default)]
struct SignalBatch {
    batch: Vec<(String, EventBody)>,
    ids: Vec<Option<RequestId>>,
}

impl Session {
    /// Reads and handles frames until the connection is to close, and says
    /// why. Over 80 lines: one `select!` owns the pinned timer and the drain
    /// subscription, which helpers could only borrow awkwardly.
    pub(super) async fn read_loop(&mut self, stream: &mut SplitStream<Socket>) -> CloseReason {
        let idle = self.node.config.timing.idle_timeout;
        let mut last_seen = Instant::now();
        // When a connection that is in no room is closed; `None` while joined.
        let join_timeout = self.node.config.timing.join_timeout;
        let mut join_deadline = Some(last_seen + join_timeout);
        // One timer for both deadlines (a timer is ~100 bytes per connection):
        // it fires at the earlier one, and is re-armed only when it fires or
        // a join deadline starts, not on every frame.
        let timer = sleep_until(earliest(last_seen + idle, join_deadline).into());
        tokio::pin!(timer);
        let mut draining = self.node.drain.subscribe();
        let outbox = self.outbox.clone();
        // A frame read ahead (see below) that is handled in the next round.
        let mut deferred = None;
        loop {
            let frame = match deferred.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    biased;
                    _ = outbox.closing() => {
                        return if outbox.overflowed() {
                            CloseReason::SlowConsumer
                        } else {
                            CloseReason::of_backend_close(outbox.close_code())
                        };
                    }
                    Ok(()) = async { draining.wait_for(|d| *d).await.map(|_| ()) } => {
                        let jitter = rand::random::<u64>() % 1000;
                        let _ = outbox.reply(MessageType::Reconnect, reply::reconnect("shutdown", jitter));
                        outbox.close(CloseCode::GoingAway, "server shutting down");
                        return CloseReason::Shutdown;
                    }
                    _ = &mut timer => {
                        let now = Instant::now();
                        if join_deadline.is_some_and(|deadline| now >= deadline) {
                            let reason = format!("no join within {} s", join_timeout.as_secs());
                            outbox.close(CloseCode::Policy, reason);
                            return CloseReason::JoinTimeout;
                        }
                        let idle_deadline = last_seen + idle;
                        if now >= idle_deadline {
                            outbox.close(CloseCode::GoingAway, "idle timeout");
                            return CloseReason::IdleTimeout;
                        }
                        timer.as_mut().reset(earliest(idle_deadline, join_deadline).into());
                        continue;
                    }
                    frame = stream.next() => frame,
                },
            };
            last_seen = Instant::now();
            match frame {
                None => return CloseReason::ClientClosed,
                Some(Err(e)) => {
                    return match close_for(e) {
                        Some((code, text, reason)) => {
                            outbox.close(code, text);
                            reason
                        }
                        None => CloseReason::SocketError,
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    let (texts, next) = read_ahead(stream, text);
                    deferred = next;
                    if let Some(reason) = self.on_texts(&texts, last_seen).await {
                        return reason;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    if let Some(reason) = self.on_binary(last_seen) {
                        return reason;
                    }
                }
                Some(Ok(Message::Close(_))) => return CloseReason::ClientClosed,
                // Pings are answered by the WebSocket layer; raw frames are never read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
            // Joining stops the join deadline; leaving the room (or being
            // told NOT_JOINED) starts it again.
            match (&self.member, join_deadline) {
                (Some(_), Some(_)) => join_deadline = None,
                (None, None) => {
                    join_deadline = Some(Instant::now() + join_timeout);
                    timer
                        .as_mut()
                        .reset(earliest(last_seen + idle, join_deadline).into());
                }
                _ => {}
            }
        }
    }

    /// Applies the rate limit; `Err` carries the close reason when the client
    /// keeps going past it.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        id: Option<&RequestId>,
    ) -> Result<bool, CloseReason> {
        if self.bucket.take(now) {
            self.strikes = 0;
            return Ok(true);
        }
        self.node.metrics.rate_limited.inc();
        self.strikes += 1;
        if self.strikes > self.node.config.limits.rate_limit_max_strikes {
            self.outbox
                .close(CloseCode::Policy, "rate limit exceeded repeatedly");
            return Err(CloseReason::RateLimited);
        }
        let limits = &self.node.config.limits;
        self.send_error(
            id,
            &ProtocolError::new(
                ErrorCode::RateLimited,
                format!(
                    "over {} messages/s (bursts of {}); slow down",
                    limits.rate_limit_per_sec, limits.rate_limit_burst
                ),
            ),
        );
        Ok(false)
    }

    pub(super) fn on_binary(&mut self, now: Instant) -> Option<CloseReason> {
        match self.admit(now, None) {
            Err(reason) => return Some(reason),
            Ok(false) => return None,
            Ok(true) => {}
        }
        self.node.metrics.message_in(MessageType::Invalid);
        self.send_error(
            None,
            &ProtocolError::bad_request("binary frames are not accepted; send JSON in text frames"),
        );
        None
    }

    /// Handles text frames in order. Consecutive signals of a joined
    /// connection go to the backend as one batch; anything else first
    /// completes the batch before it, so replies keep the order of requests.
    async fn on_texts(&mut self, texts: &[Utf8Bytes], now: Instant) -> Option<CloseReason> {
        let mut signals = SignalBatch::default();
        for text in texts {
            let parsed = protocol::parse(text.as_str(), &self.node.config.limits);
            if let (Some(member), Ok(Request::Signal { .. })) = (&self.member, &parsed.request) {
                if self.bucket.take(now) {
                    self.strikes = 0;
                    self.node.metrics.message_in(parsed.kind);
                    if let Ok(Request::Signal { to, payload }) = parsed.request {
                        let body = event::signal(&member.peer, payload);
                        signals.batch.push((to, body));
                        signals.ids.push(parsed.id);
                    }
                    continue;
                }
            }
            self.send_signals(&mut signals, now).await;
            // Boxed: handling a request other than a signal takes far more
            // room than waiting for frames, and a connection mostly waits;
            // inline, every idle connection would carry that room. Signals,
            // the hot path, need no allocation of their own.
            if let Some(reason) = Box::pin(self.on_parsed(parsed, now)).await {
                return Some(reason);
            }
        }
        self.send_signals(&mut signals, now).await;
        None
    }

    /// Sends a batch of signals and answers each.
    async fn send_signals(&mut self, signals: &mut SignalBatch, now: Instant) {
        if signals.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut signals.batch);
        let results = match &self.member {
            Some(member) => self.node.backend.signals(member, batch).await,
            None => vec![Err(not_joined()); batch.len()],
        };
        for (id, result) in signals.ids.drain(..).zip(results) {
            match result {
                Ok(()) => {
                    if id.is_some() {
                        let _ = self.outbox.reply(MessageType::Ok, reply::ok(id.as_ref()));
                    }
                }
                Err(e) => self.answer_error(id.as_ref(), &e),
            }
            self.node
                .metrics
                .handled(MessageType::Signal, now.elapsed().as_secs_f64());
        }
    }

    async fn on_parsed(&mut self, parsed: Parsed<'_>, now: Instant) -> Option<CloseReason> {
        match self.admit(now, parsed.id.as_ref()) {
            Err(reason) => return Some(reason),
            Ok(false) => return None,
            Ok(true) => {}
        }
        let kind = parsed.kind;
        self.node.metrics.message_in(kind);
        let id = parsed.id;
        let result = match parsed.request {
            Ok(request) => self.dispatch(request, id.as_ref()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.answer_error(id.as_ref(), &e);
        }
        self.node.metrics.handled(kind, now.elapsed().as_secs_f64());
        None
    }

    /// Answers a failed request.
    pub(super) fn answer_error(&mut self, id: Option<&RequestId>, e: &ProtocolError) {
        if e.code == ErrorCode::NotJoined {
            // The backend no longer counts this connection as a member (for
            // example its node was declared dead during a network partition):
            // forget the room, so that the client can join again.
            self.member = None;
        }
        self.send_error(id, e);
    }

    pub(super) fn send_error(&self, id: Option<&RequestId>, e: &ProtocolError) {
        self.node.metrics.error(e.code);
        if e.code == ErrorCode::Internal {
            warn!(conn = self.conn, error = %e.message, "internal error answered to client");
        }
        let _ = self.outbox.reply(MessageType::Error, reply::error(id, e));
    }

    pub(super) fn member(&self) -> Result<&Member, ProtocolError> {
        self.member.as_ref().ok_or_else(not_joined)
    }
}

/// The earlier of the idle deadline and the join deadline, if there is one.
fn earliest(idle_deadline: Instant, join_deadline: Option<Instant>) -> Instant {
    join_deadline.map_or(idle_deadline, |join| join.min(idle_deadline))
}

/// The text frame just read plus those that have already arrived behind it
/// (at most [`READ_AHEAD`]), so that a burst of signals costs one backend
/// call; the first frame that is not text is handed back for the next round.
fn read_ahead(
    stream: &mut SplitStream<Socket>,
    first: Utf8Bytes,
) -> (
    Vec<Utf8Bytes>,
    Option<Option<Result<Message, tungstenite::Error>>>,
) {
    let mut texts = vec![first];
    while texts.len() < READ_AHEAD {
        match stream.next().now_or_never() {
            Some(Some(Ok(Message::Text(text)))) => texts.push(text),
            Some(other) => return (texts, Some(other)),
            None => break,
        }
    }
    (texts, None)
}
