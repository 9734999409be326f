//! One WebSocket connection: the read loop that parses and dispatches client
//! messages, and the write loop that drains the connection's [`Outbox`].
//!
//! - this file: [`serve`], which runs one connection from upgrade to close;
//! - [`read`]: the read loop, the rate limit's use and the signal batching;
//!   [`dispatch`]: one request to the backend and its reply;
//! - [`write`]: the write loop (batching, pings, the slow-consumer close);
//! - [`close`]: why a connection ended and the lingering close;
//! - [`rate`]: the token bucket;
//! - [`socket`]: the WebSocket on the upgraded connection, on buffers that
//!   exist only while they hold bytes.
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
//! the client answers the close or hangs up, or [`close::CLOSE_LINGER`] has passed
//! since the last write (bounded by [`close::CLOSE_WRITE_GRACE`] for the writes).
//! Closing a socket with unread input makes the TCP stack send a reset, which
//! throws away whatever the client had not read yet: the client would see
//! 1006 and lose the replies and the close code it was owed.

mod close;
mod dispatch;
mod rate;
mod read;
mod socket;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::{debug, info};

use crate::auth::Claims;
use crate::backend::Member;
use crate::node::Node;
use crate::outbox::Outbox;
use crate::protocol::CloseCode;

use close::linger;
pub use close::{CloseReason, CLOSE_LINGER, CLOSE_WRITE_GRACE};
use rate::TokenBucket;
pub use socket::{websocket, Socket};
use write::write_loop;

/// How long a detach waits for the writer to record a batch already on its
/// way to the socket (a stalled socket must not hold the peer's detach).
const WRITTEN_SETTLE: Duration = Duration::from_secs(1);

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

/// Serves one upgraded WebSocket until it closes; `guard` is dropped once it
/// has. The setup (metrics, the outbox, the writer task) happens in this
/// call and the returned future holds only what the connection needs while
/// it lives: an `async fn` would also keep its arguments (the socket alone
/// is ~400 bytes) for the whole life of every connection.
pub fn serve<G: Send + 'static>(
    socket: Socket,
    node: Arc<Node>,
    remote: SocketAddr,
    conn: u64,
    claims: Option<Claims>,
    guard: G,
) -> impl Future<Output = ()> + Send + 'static {
    let opened = Instant::now();
    node.metrics.connections_total.inc();
    node.metrics.connections_active.inc();
    info!(node = %node.config.node_id, conn, %remote, "connection opened");

    let outbox = Arc::new(Outbox::new(node.config.limits.outbound_queue_bytes));
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, outbox.clone(), node.clone()));
    let limits = &node.config.limits;
    // Mutable here and used in place below: rebinding them inside the
    // future (`let mut session = session`) would keep a second copy of each
    // in it for the connection's life.
    let mut session = Session {
        bucket: TokenBucket::new(limits.rate_limit_per_sec, limits.rate_limit_burst),
        node,
        outbox,
        member: None,
        strikes: 0,
        conn,
        claims,
    };
    async move {
        let reason = session.read_loop(&mut stream).await;
        // From here on no request is handled.
        let closing_since = Instant::now();
        let node = session.node.clone();
        let outbox = session.outbox.clone();

        let (room, peer) = match session.member.take() {
            Some(member) => {
                if reason.detaches() {
                    // The batch the client may already have read counts.
                    let written = outbox.settled_written_seq(WRITTEN_SETTLE).await;
                    node.backend
                        .detach(&member, reason.leave_reason(), written)
                        .await;
                }
                (Some(member.room), Some(member.peer))
            }
            None => (None, None),
        };
        outbox.close(CloseCode::Normal, "");
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
        drop(guard);
    }
}
