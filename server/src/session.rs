//! One WebSocket connection: the read loop that parses and dispatches client
//! messages, and the write loop that drains the connection's [`Outbox`].
//!
//! The two halves run as separate tasks so that a client that stops reading
//! never blocks the handling of what it sends, and a slow socket never blocks
//! the peers that send to it: they only push into its bounded outbox.
//! Liveness (server pings, idle close), the join deadline, the
//! per-connection rate limit, frame limits and the drain on shutdown are
//! enforced here; everything about rooms is the backend's.
//!
//! Every close the server decides on is a *lingering close*: what was queued
//! goes out, then the close frame with its code and reason, and meanwhile the
//! server keeps reading — and discarding — what the client still sends, until
//! the client answers the close or hangs up, or [`CLOSE_LINGER`] has passed
//! since the last write (bounded by [`CLOSE_WRITE_GRACE`] for the writes).
//! Closing a socket with unread input makes the TCP stack send a reset, which
//! throws away whatever the client had not read yet: the client would see
//! 1006 and lose the replies and the close code it was owed.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Duration};
use tracing::{debug, info, warn};

use crate::auth::Claims;
use crate::backend::{not_joined, JoinArgs, Member};
use crate::node::Node;
use crate::outbox::{Next, Outbox, Outgoing};
use crate::protocol::{
    self, event, reply, ErrorCode, EventBody, LeaveReason, Parsed, ProtocolError, Request,
    RequestId,
};

/// Normal close of a connection by the server after a client's close.
pub const CLOSE_NORMAL: u16 = 1000;
/// Server shutting down (after a `reconnect` message) or idle client.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Protocol or policy violation: persistent rate-limit abuse, slow consumer,
/// no join within the join deadline.
pub const CLOSE_POLICY: u16 = 1008;
/// A frame over the frame limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// A frame broke the WebSocket protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// A text frame that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// The peer's session was resumed on another connection.
pub const CLOSE_SESSION_MOVED: u16 = 4000;
/// Session lost: the cluster no longer holds this peer and cannot restore it
/// (the client should join again, without resuming).
pub const CLOSE_SESSION_LOST: u16 = 4001;
/// How long what was queued and the close frame may take to be written to a
/// client the server closes (a slow consumer's close frame is queued behind
/// what fills its socket); a socket that takes nothing longer is dropped.
pub const CLOSE_WRITE_GRACE: Duration = Duration::from_secs(10);
/// How long the final frames may take when the client closed first (or its
/// socket broke): nothing is owed beyond them.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long, once everything including the close frame was written, the
/// server waits for the client to answer the close (or hang up) while it
/// reads and discards the client's input. Input read to the end leaves
/// nothing unread when the socket is dropped, so the kernel still delivers
/// what the socket holds and ends with FIN, not a reset; only a client that
/// keeps sending past this time can still get a reset.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Most text frames taken from the socket at once (only those already read).
const READ_AHEAD: usize = 32;

/// Signals read together, waiting to go to the backend as one call.
#[derive(Default)]
struct SignalBatch {
    batch: Vec<(String, EventBody)>,
    ids: Vec<Option<RequestId>>,
}

/// Why a connection ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    IdleTimeout,
    /// Not in a room for the join timeout (since connecting or leaving).
    JoinTimeout,
    SlowConsumer,
    RateLimited,
    FrameTooLarge,
    ProtocolError,
    Shutdown,
    /// The backend closed it with 4000: resumed on another connection.
    SessionMoved,
    /// The backend closed it with 4001: the cluster lost the peer for good.
    SessionLost,
    /// The backend closed it with another code (4003: removed through the
    /// server API).
    Removed,
    SocketError,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::JoinTimeout => "join_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::SessionMoved => "session_moved",
            CloseReason::SessionLost => "session_lost",
            CloseReason::Removed => "removed",
            CloseReason::SocketError => "socket_error",
        }
    }

    /// The reason of a close the backend queued into the outbox (it closes a
    /// connection only through its outbox), by its code.
    fn of_backend_close(code: Option<u16>) -> Self {
        match code {
            Some(CLOSE_SESSION_MOVED) => CloseReason::SessionMoved,
            Some(CLOSE_SESSION_LOST) => CloseReason::SessionLost,
            _ => CloseReason::Removed,
        }
    }

    /// Whether the server decided on the close, and so owes the client a
    /// lingering close; not when the client closed first or the socket broke.
    fn by_server(self) -> bool {
        !matches!(self, CloseReason::ClientClosed | CloseReason::SocketError)
    }

    /// Whether the client's input can still be read: tungstenite ends the
    /// stream after a frame it refused (too large, not UTF-8, broken).
    fn input_readable(self) -> bool {
        !matches!(
            self,
            CloseReason::FrameTooLarge | CloseReason::ProtocolError | CloseReason::SocketError
        )
    }

    /// Whether the backend still counts this connection as its peer's, so
    /// that closing it must detach the peer. Not when the backend closed it
    /// itself: the session was resumed elsewhere (the peer has a newer
    /// attachment), lost (the peer is gone) or removed.
    fn detaches(self) -> bool {
        !matches!(
            self,
            CloseReason::SessionMoved | CloseReason::SessionLost | CloseReason::Removed
        )
    }

    /// How the peer is reported if it does not come back within the window.
    fn leave_reason(self) -> LeaveReason {
        match self {
            CloseReason::IdleTimeout => LeaveReason::Timeout,
            _ => LeaveReason::Disconnected,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Session {
    node: Arc<Node>,
    outbox: Arc<Outbox>,
    member: Option<Member>,
    bucket: TokenBucket,
    strikes: u32,
    conn: u64,
    /// The grant of the connection's token (`None` when auth is off). It
    /// gates every join; an expired token keeps a joined connection going.
    claims: Option<Claims>,
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve(
    socket: WebSocket,
    node: Arc<Node>,
    remote: SocketAddr,
    conn: u64,
    claims: Option<Claims>,
) {
    let opened = Instant::now();
    node.metrics.connections_total.inc();
    node.metrics.connections_active.inc();
    info!(node = %node.config.node_id, conn, %remote, "connection opened");

    let outbox = Arc::new(Outbox::new(node.config.limits.outbound_queue_bytes));
    let (sink, stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, outbox.clone(), node.clone()));
    let limits = &node.config.limits;
    let mut session = Session {
        bucket: TokenBucket::new(limits.rate_limit_per_sec, limits.rate_limit_burst),
        node: node.clone(),
        outbox: outbox.clone(),
        member: None,
        strikes: 0,
        conn,
        claims,
    };
    let mut stream = stream;
    let reason = session.read_loop(&mut stream).await;
    // From here on no request is handled.
    let closing_since = Instant::now();

    let (room, peer) = match session.member.take() {
        Some(member) => {
            if reason.detaches() {
                node.backend
                    .detach(&member, reason.leave_reason(), outbox.written_seq())
                    .await;
            }
            (Some(member.room), Some(member.peer))
        }
        None => (None, None),
    };
    outbox.close(CLOSE_NORMAL, "");
    let discarded = linger(&mut stream, &mut writer, reason, closing_since).await;
    if discarded > 0 {
        debug!(conn, discarded, "frames read and discarded while closing");
    }
    if reason == CloseReason::SlowConsumer {
        node.metrics.slow_consumer_closes.inc();
    }
    node.metrics.closed(reason.as_str());
    node.metrics.connections_active.dec();
    info!(
        node = %node.config.node_id,
        conn,
        room = room.as_deref().unwrap_or(""),
        peer = peer.as_deref().unwrap_or(""),
        reason = reason.as_str(),
        duration_ms = opened.elapsed().as_millis() as u64,
        "connection closed"
    );
}

/// The close code and reason answering a broken frame, if one is owed.
fn close_for(e: axum::Error) -> Option<(u16, &'static str, CloseReason)> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast_ref::<WsError>()? {
        WsError::Capacity(_) => Some((
            CLOSE_TOO_BIG,
            "frame exceeds the frame size limit",
            CloseReason::FrameTooLarge,
        )),
        WsError::Utf8(_) => Some((
            CLOSE_INVALID_DATA,
            "text frame is not valid UTF-8",
            CloseReason::ProtocolError,
        )),
        WsError::Protocol(_) => Some((
            CLOSE_PROTOCOL_ERROR,
            "WebSocket protocol error",
            CloseReason::ProtocolError,
        )),
        _ => None,
    }
}

/// Ends a connection: lets the writer send what was queued and the close
/// frame (within [`CLOSE_WRITE_GRACE`] of `since`, when the server decided to
/// close), and, when the server decided on the close, keeps reading and
/// discarding the client's input meanwhile and then until the client answered
/// the close or hung up, at most [`CLOSE_LINGER`] after the last write (see
/// the module docs). Returns how many frames were discarded.
async fn linger(
    stream: &mut SplitStream<WebSocket>,
    writer: &mut JoinHandle<()>,
    reason: CloseReason,
    since: Instant,
) -> usize {
    if !reason.by_server() {
        // The client closed first or the socket broke: nothing more is
        // owed than the last frames, for which a socket that accepts
        // nothing is given a moment.
        if tokio::time::timeout(CLOSE_GRACE, &mut *writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        return 0;
    }
    // The writer bounds a slow consumer's close frame by the write grace
    // itself, from when it starts sending it.
    let write_bound = if reason == CloseReason::SlowConsumer {
        CLOSE_WRITE_GRACE + CLOSE_GRACE
    } else {
        CLOSE_WRITE_GRACE
    };
    let deadline = sleep_until((since + write_bound).into());
    tokio::pin!(deadline);
    let mut written = false;
    // After a refused frame the input cannot be read any more (tungstenite
    // ends the stream): the socket is then kept, unread, for the whole write
    // grace, which gives a client that reads late the time to take the close
    // frame before the reset that dropping the socket causes reaches it.
    let readable = reason.input_readable();
    let mut input_ended = !readable;
    let mut answered = false;
    let mut discarded = 0;
    while !(written && answered) {
        tokio::select! {
            _ = &mut *writer, if !written => {
                written = true;
                let mut until = Instant::now() + CLOSE_LINGER;
                if !readable {
                    until = until.max(since + CLOSE_WRITE_GRACE);
                }
                deadline.as_mut().reset(until.into());
            }
            frame = stream.next(), if !input_ended => match frame {
                // The client's close, its hang-up, or a broken socket: the
                // client sends nothing more.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    input_ended = true;
                    answered = true;
                }
                Some(Ok(_)) => discarded += 1,
            },
            _ = &mut deadline => break,
        }
    }
    if !written {
        writer.abort();
    }
    discarded
}

impl Session {
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) -> CloseReason {
        let idle = self.node.config.timing.idle_timeout;
        let mut last_seen = Instant::now();
        let idle_timer = sleep_until((last_seen + idle).into());
        tokio::pin!(idle_timer);
        // When a connection that is in no room is closed; `None` while joined.
        let join_timeout = self.node.config.timing.join_timeout;
        let join_reason = format!("no join within {} s", join_timeout.as_secs());
        let mut join_deadline = Some(last_seen + join_timeout);
        let join_timer = sleep_until((last_seen + join_timeout).into());
        tokio::pin!(join_timer);
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
                        let _ = outbox.reply("reconnect", reply::reconnect("shutdown", jitter));
                        outbox.close(CLOSE_GOING_AWAY, "server shutting down");
                        return CloseReason::Shutdown;
                    }
                    _ = &mut join_timer, if join_deadline.is_some() => {
                        outbox.close(CLOSE_POLICY, join_reason.clone());
                        return CloseReason::JoinTimeout;
                    }
                    _ = &mut idle_timer => {
                        // The timer is only re-armed here, not on every frame.
                        let deadline = last_seen + idle;
                        if Instant::now() >= deadline {
                            outbox.close(CLOSE_GOING_AWAY, "idle timeout");
                            return CloseReason::IdleTimeout;
                        }
                        idle_timer.as_mut().reset(deadline.into());
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
                    // Take the text frames that have already arrived too, so
                    // that a burst of signals costs one backend call.
                    let mut texts = vec![text];
                    while texts.len() < READ_AHEAD {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(Message::Text(text)))) => texts.push(text),
                            Some(other) => {
                                deferred = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
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
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            }
            // Joining stops the join deadline; leaving the room (or being
            // told NOT_JOINED) starts it again.
            match (&self.member, join_deadline) {
                (Some(_), Some(_)) => join_deadline = None,
                (None, None) => {
                    let deadline = Instant::now() + join_timeout;
                    join_deadline = Some(deadline);
                    join_timer.as_mut().reset(deadline.into());
                }
                _ => {}
            }
        }
    }

    /// Applies the rate limit; `Err` carries the close reason when the client
    /// keeps going past it.
    fn admit(&mut self, now: Instant, id: Option<&RequestId>) -> Result<bool, CloseReason> {
        if self.bucket.take(now) {
            self.strikes = 0;
            return Ok(true);
        }
        self.node.metrics.rate_limited.inc();
        self.strikes += 1;
        if self.strikes > self.node.config.limits.rate_limit_max_strikes {
            self.outbox
                .close(CLOSE_POLICY, "rate limit exceeded repeatedly");
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

    fn on_binary(&mut self, now: Instant) -> Option<CloseReason> {
        match self.admit(now, None) {
            Err(reason) => return Some(reason),
            Ok(false) => return None,
            Ok(true) => {}
        }
        self.node.metrics.message_in("invalid");
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
            if let Some(reason) = self.on_parsed(parsed, now).await {
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
                        let _ = self.outbox.reply("ok", reply::ok(id.as_ref()));
                    }
                }
                Err(e) => self.answer_error(id.as_ref(), &e),
            }
            self.node
                .metrics
                .handled("signal", now.elapsed().as_secs_f64());
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
    fn answer_error(&mut self, id: Option<&RequestId>, e: &ProtocolError) {
        if e.code == ErrorCode::NotJoined {
            // The backend no longer counts this connection as a member (for
            // example its node was declared dead during a network partition):
            // forget the room, so that the client can join again.
            self.member = None;
        }
        self.send_error(id, e);
    }

    fn send_error(&self, id: Option<&RequestId>, e: &ProtocolError) {
        self.node.metrics.error(e.code);
        if e.code == ErrorCode::Internal {
            warn!(conn = self.conn, error = %e.message, "internal error answered to client");
        }
        let _ = self.outbox.reply("error", reply::error(id, e));
    }

    fn member(&self) -> Result<&Member, ProtocolError> {
        self.member.as_ref().ok_or_else(not_joined)
    }

    async fn dispatch(
        &mut self,
        request: Request<'_>,
        id: Option<&RequestId>,
    ) -> Result<(), ProtocolError> {
        let backend = self.node.backend.clone();
        match request {
            Request::Ping => {
                let _ = self.outbox.reply("pong", reply::pong(id));
            }
            Request::Join(mut join) => {
                if self.member.is_some() {
                    return Err(ProtocolError::new(
                        ErrorCode::AlreadyJoined,
                        "this connection is in a room already; leave it first",
                    ));
                }
                if let Some(claims) = &self.claims {
                    // Also for resumes: the peer id is pinned to `sub`, so a
                    // resume token of another peer cannot take its session.
                    let leeway = self.node.config.auth.leeway_secs;
                    claims.authorize_join(&mut join, crate::auth::unix_now(), leeway)?;
                }
                self.outbox.hold(0);
                let outcome = match backend
                    .join(JoinArgs {
                        request: &join,
                        outbox: self.outbox.clone(),
                    })
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        self.outbox.discard_held();
                        return Err(e);
                    }
                };
                let ice = self.node.ice_servers(&outcome.me.peer);
                let text = reply::joined(
                    id,
                    &reply::Joined {
                        ty: "joined",
                        room: &outcome.member.room,
                        peer: &outcome.member.peer,
                        session: &outcome.session,
                        peers: &outcome.peers,
                        state: &outcome.state,
                        ice_servers: &ice,
                        recovered: outcome.recovered,
                    },
                );
                let _ = self.outbox.reply("joined", text);
                let _ = self.outbox.release();
                debug!(conn = self.conn, room = %outcome.member.room, peer = %outcome.member.peer,
                    resumed = outcome.recovered.is_some(), "joined");
                self.member = Some(outcome.member);
            }
            Request::Leave => {
                let member = self.member()?.clone();
                backend.leave(&member).await?;
                self.member = None;
                let _ = self.outbox.reply("ok", reply::ok(id));
            }
            Request::Signal { to, payload } => {
                let member = self.member()?;
                backend
                    .signal(member, &to, event::signal(&member.peer, payload))
                    .await?;
                if id.is_some() {
                    let _ = self.outbox.reply("ok", reply::ok(id));
                }
            }
            Request::Broadcast { payload } => {
                let member = self.member()?;
                backend
                    .broadcast(member, event::broadcast(&member.peer, payload))
                    .await?;
                if id.is_some() {
                    let _ = self.outbox.reply("ok", reply::ok(id));
                }
            }
            Request::Discover { filters } => {
                let peers = backend.peers(self.member()?).await?;
                let peers = crate::filters::select(peers, &filters);
                let _ = self.outbox.reply("peers", reply::peers(id, &peers));
            }
            Request::SetState { patch, if_version } => {
                let member = self.member()?;
                // The `state` event of this patch may reach the outbox before
                // the backend's answer (it always does on the embedded node;
                // on Redis it races the script's reply): it waits behind the
                // `ok`, so the order is the same on every backend.
                self.outbox.hold_events();
                let result = backend.set_state(member, &patch, if_version).await;
                if let Ok(version) = result {
                    let _ = self.outbox.reply("ok", reply::ok_version(id, version));
                }
                let _ = self.outbox.release();
                result?;
            }
            Request::Update { role, metadata } => {
                if let Some(claims) = &self.claims {
                    claims.authorize_role(role.as_deref())?;
                }
                backend.update(self.member()?, role, metadata).await?;
                let _ = self.outbox.reply("ok", reply::ok(id));
            }
        }
        Ok(())
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Drains the outbox into the socket, batching frames into one flush, and
/// sends the server's pings.
async fn write_loop(mut sink: Sink, outbox: Arc<Outbox>, node: Arc<Node>) {
    let every = node.config.timing.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let next = tokio::select! {
            next = outbox.next() => next,
            _ = ping.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match next {
            Next::Overflowed => {
                let frame = CloseFrame {
                    code: CLOSE_POLICY,
                    reason: Utf8Bytes::from_static(
                        "outbound queue full: the client is not reading fast enough",
                    ),
                };
                // Whatever part of a frame was cut off stays buffered in the
                // sink and goes out before the close frame.
                let _ =
                    tokio::time::timeout(CLOSE_WRITE_GRACE, sink.send(Message::Close(Some(frame))))
                        .await;
                return;
            }
            Next::Frames(frames) => {
                let written = write_batch(&mut sink, frames, &node);
                // A client that stops reading blocks the write; its outbox then
                // overflows and `killed` ends the wait.
                let done = tokio::select! {
                    r = written => r,
                    _ = outbox.killed() => Err(()),
                };
                match done {
                    Ok((max_seq, closed)) => {
                        outbox.mark_written(max_seq);
                        if closed {
                            return;
                        }
                    }
                    // Overflowed: the next round sends the 1008 close.
                    Err(()) if outbox.overflowed() => continue,
                    Err(()) => return,
                }
            }
        }
    }
}

/// Writes frames in order and flushes once. Returns the highest event seq
/// written and whether a close frame was sent.
async fn write_batch(
    sink: &mut Sink,
    frames: Vec<Outgoing>,
    node: &Node,
) -> Result<(u64, bool), ()> {
    let mut max_seq = 0;
    for frame in frames {
        match frame {
            Outgoing::Text { kind, seq, text } => {
                node.metrics.message_out(kind);
                max_seq = max_seq.max(seq);
                sink.feed(Message::Text(text)).await.map_err(|_| ())?;
            }
            Outgoing::Close { code, reason } => {
                let frame = (code != CLOSE_NORMAL || !reason.is_empty()).then(|| CloseFrame {
                    code,
                    reason: match reason {
                        Cow::Borrowed(text) => Utf8Bytes::from_static(text),
                        Cow::Owned(text) => Utf8Bytes::from(text),
                    },
                });
                let _ = sink.send(Message::Close(frame)).await;
                return Ok((max_seq, true));
            }
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok((max_seq, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10, 20);
        b.last = start;
        assert!((0..20).all(|_| b.take(start)));
        assert!(!b.take(start));
        let later = start + Duration::from_millis(100);
        assert!(b.take(later));
        assert!(!b.take(later));
    }
}
