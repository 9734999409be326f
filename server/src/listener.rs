//! The accept loop and the HTTP/1.1 serving of accepted sockets. It replaces
//! `axum::serve`, which offers none of these three:
//! - a deadline for every request head (`HEADER_READ_TIMEOUT_SECS`, hyper's
//!   `header_read_timeout`): a socket that sends nothing, part of a request,
//!   or sits idle after an answer on a keep-alive connection is closed when it
//!   passes;
//! - a bound on sockets that are not WebSockets yet ([`crate::pending`]): a
//!   socket over its address's limit gets a 503 and is closed at once, and a
//!   full node closes its oldest pending socket to make room for a new one;
//! - accept errors (the process out of file descriptors) that pause briefly
//!   and say what to do, once per interval, instead of retrying in a tight
//!   loop; open connections are served meanwhile, since only this loop waits.
//!
//! Upgrades go through hyper's `with_upgrades`, so `/ws` is served by the
//! same axum handler as before. Once upgraded a socket leaves the pending
//! count and is a WebSocket session, counted by [`crate::shutdown::Drain`].
//!
//! When `stop` resolves (the WebSocket drain is over) the listener closes,
//! idle HTTP connections close, busy ones finish the request they are
//! answering, and [`serve`] returns when none is left or after a short grace
//! (5 s, or the header deadline if shorter), so a half-sent request cannot
//! hold the process.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::node::Node;
use crate::pending::{Admitted, Refused};

/// Largest request head (request line and headers); a larger one is answered
/// 431. It bounds the read buffer of each pending socket (without it hyper
/// buffers up to about 400 KiB, which times `MAX_PENDING_CONNECTIONS` would
/// be hundreds of MiB), and is still far above what browsers send.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// First pause after an accept error; it doubles with each error in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause: the loop notices freed descriptors within this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// At most one log line per interval for accept errors, and one for each
/// kind of refused socket (both can come thousands of times a second).
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait at shutdown for HTTP connections to finish once the listener
/// is closed (idle ones close at once; this bounds half-sent requests).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// File descriptors the process uses besides client sockets (runtime,
/// listener, Redis connections), for the startup check of the open-file limit.
const SPARE_FDS: u64 = 128;
/// `errno` values of accept(2) for "out of file descriptors", per process
/// and system-wide (the same on Linux and the BSDs).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Accepts and serves HTTP (and WebSocket upgrades) on `listener` until
/// `stop` resolves; see the module header.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    node: Arc<Node>,
    stop: impl Future<Output = ()>,
) {
    warn_if_few_file_descriptors(&node);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(node.config.timing.header_read_timeout)
        .max_header_size(MAX_REQUEST_HEAD_BYTES);
    let (closing_tx, closing) = watch::channel(false);
    let mut accept_errors = AcceptErrors::default();
    let mut refusal_log = Throttle::default();
    let mut eviction_log = Throttle::default();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, remote)) => {
                accept_errors.in_a_row = 0;
                match node.pending.try_admit(remote.ip()) {
                    Ok(admitted) => {
                        if admitted.made_room {
                            made_room(&node, &mut eviction_log);
                        }
                        spawn_connection(tcp, remote, admitted, &http, &router, &node, &closing);
                    }
                    Err(Refused) => refuse(&tcp, remote, &node, &mut refusal_log),
                }
            }
            // The client gave up between its connect and our accept.
            Err(e) if is_connection_error(&e) => debug!("accept: {e}"),
            Err(e) => {
                node.metrics.accept_errors.inc();
                let pause = accept_errors.failed(&e, &node);
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    drop(listener);
    closing_tx.send_replace(true);
    let grace = SHUTDOWN_GRACE.min(node.config.timing.header_read_timeout);
    if tokio::time::timeout(grace, node.pending.wait_idle())
        .await
        .is_err()
    {
        warn!(
            pending = node.pending.count(),
            "HTTP connections still open {} ms after the listener closed; stopping without them",
            grace.as_millis()
        );
    }
}

/// Serves one admitted socket on its own task; its slot is held until the
/// socket closes or becomes a WebSocket, and eviction closes it at once.
fn spawn_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    admitted: Admitted,
    http: &http1::Builder,
    router: &Router,
    node: &Arc<Node>,
    closing: &watch::Receiver<bool>,
) {
    // Signaling frames are small and latency-bound: without TCP_NODELAY a
    // frame written while the previous one is unacknowledged waits for the
    // peer's delayed ACK (up to ~40 ms).
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(%remote, "cannot set TCP_NODELAY: {e}");
    }
    let router = router.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        // Handlers read the client address from here, as they did under
        // `into_make_service_with_connect_info`.
        request.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(request)
    });
    let conn = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let node = node.clone();
    let mut closing = closing.clone();
    let Admitted {
        slot, mut evicted, ..
    } = admitted;
    tokio::spawn(async move {
        let _slot = slot;
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        ended_with_error(&node, remote, &e);
                    }
                    break;
                }
                // Err (the sender is gone) also means stop.
                _ = closing.wait_for(|closing| *closing), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                // The sender lives as long as `_slot` unless it evicts us.
                _ = &mut evicted => {
                    debug!(%remote, "closed a pending socket to make room for a newer one (MAX_PENDING_CONNECTIONS)");
                    break;
                }
            }
        }
    });
}

fn ended_with_error(node: &Node, remote: SocketAddr, e: &hyper::Error) {
    if e.is_timeout() {
        node.metrics.header_timeouts.inc();
        debug!(%remote, "closed an HTTP connection: no complete request head within HEADER_READ_TIMEOUT_SECS");
    } else {
        debug!(%remote, "HTTP connection ended: {e}");
    }
}

/// Logs (at most once per interval) and counts that the node was full of
/// pending sockets and closed its oldest.
fn made_room(node: &Node, log: &mut Throttle) {
    node.metrics.pending_evictions.inc();
    if let Some(unlogged) = log.ready() {
        warn!(
            evicted_since_last_line = unlogged,
            "{} sockets have not completed an HTTP request or upgrade (MAX_PENDING_CONNECTIONS): \
             closing the oldest to make room for new ones; if these are real clients, raise \
             MAX_PENDING_CONNECTIONS (and the open-file limit)",
            node.config.limits.max_pending_connections
        );
    }
}

/// Answers a socket over its address's pending limit with 503 and closes it,
/// without waiting for anything.
fn refuse(tcp: &TcpStream, remote: SocketAddr, node: &Node, log: &mut Throttle) {
    node.metrics.rejected(Refused::REASON);
    if let Some(unlogged) = log.ready() {
        warn!(
            refused_since_last_line = unlogged,
            "refusing new sockets from {}: it has {} sockets that have not completed an HTTP \
             request or upgrade (MAX_PENDING_PER_IP); behind a load balancer or proxy, raise \
             MAX_PENDING_PER_IP to MAX_PENDING_CONNECTIONS",
            remote.ip(),
            node.config.limits.max_pending_per_ip
        );
    }
    // Best effort, non-blocking: take in what the client already sent (a
    // close with unread data resets the connection, and the client might not
    // see the answer), then one write into the empty send buffer. The socket
    // closes when the caller drops it.
    let mut scratch = [0u8; 2048];
    let _ = tcp.try_read(&mut scratch);
    let _ = tcp.try_write(refusal_response().as_bytes());
}

/// The 503 answer to a refused socket, in the shape of the other refusals.
fn refusal_response() -> String {
    let body = serde_json::json!({
        "error": Refused::REASON,
        "message": "too many connections in progress from your address; complete or close them, or retry later",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Errors of one connection that ended before it was accepted: nothing is
/// wrong with the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Backoff and logging of accept errors.
#[derive(Default)]
struct AcceptErrors {
    in_a_row: u32,
    log: Throttle,
}

impl AcceptErrors {
    /// Logs `e` (at most once per interval) and returns how long to pause.
    fn failed(&mut self, e: &io::Error, node: &Node) -> Duration {
        let pause = ACCEPT_BACKOFF_MIN
            .saturating_mul(1 << self.in_a_row.min(8))
            .min(ACCEPT_BACKOFF_MAX);
        self.in_a_row = self.in_a_row.saturating_add(1);
        if let Some(unlogged) = self.log.ready() {
            let limits = &node.config.limits;
            if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
                warn!(
                    errors_since_last_line = unlogged,
                    connections = node.drain.active(),
                    pending = node.pending.count(),
                    "cannot accept connections: {e}; the process is out of file descriptors. \
                     Open connections are still served and new ones wait until descriptors are \
                     freed. Raise the open-file limit (ulimit -n, systemd LimitNOFILE=, \
                     docker --ulimit nofile=) to at least {} (MAX_CONNECTIONS + \
                     MAX_PENDING_CONNECTIONS + {SPARE_FDS}), or lower those settings",
                    needed_file_descriptors(node)
                );
            } else {
                warn!(
                    errors_since_last_line = unlogged,
                    "cannot accept connections: {e}; retrying every {} ms or less while open \
                     connections are still served (max connections {}, pending {})",
                    ACCEPT_BACKOFF_MAX.as_millis(),
                    limits.max_connections,
                    node.pending.count()
                );
            }
        }
        pause
    }
}

/// Rate limit of one kind of log line.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// `Some(events not logged since the last line)` when a line may be
    /// written now; `None` (and the event counted) otherwise.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < LOG_INTERVAL => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

fn needed_file_descriptors(node: &Node) -> u64 {
    let limits = &node.config.limits;
    (limits.max_connections as u64)
        .saturating_add(limits.max_pending_connections as u64)
        .saturating_add(SPARE_FDS)
}

/// Says at startup when the open-file limit would stop the node before its
/// connection limits do.
fn warn_if_few_file_descriptors(node: &Node) {
    let Ok((soft, _hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    let needed = needed_file_descriptors(node);
    if soft < needed {
        warn!(
            "the open-file limit is {soft}, below the {needed} that MAX_CONNECTIONS ({}) + \
             MAX_PENDING_CONNECTIONS ({}) + {SPARE_FDS} need: past it the node cannot accept \
             connections (Too many open files). Raise it (ulimit -n, systemd LimitNOFILE=, \
             docker --ulimit nofile=) or lower MAX_CONNECTIONS",
            node.config.limits.max_connections, node.config.limits.max_pending_connections
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let mut t = Throttle::default();
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        t.last = Instant::now().checked_sub(LOG_INTERVAL);
        assert_eq!(t.ready(), Some(2));
    }

    #[test]
    fn refusal_is_a_complete_http_response() {
        let text = refusal_response();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], Refused::REASON);
    }
}
