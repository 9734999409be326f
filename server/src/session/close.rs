//! How a connection ends: the reason it ended (for logs, metrics and what
//! the backend is told), the close owed for a broken frame, and the
//! lingering close (see the module docs of [`super`]).

use std::time::Instant;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Duration};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Socket;
use crate::protocol::{CloseCode, LeaveReason};

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
    pub(super) fn of_backend_close(code: Option<CloseCode>) -> Self {
        match code {
            Some(CloseCode::SessionMoved) => CloseReason::SessionMoved,
            Some(CloseCode::SessionLost) => CloseReason::SessionLost,
            _ => CloseReason::Removed,
        }
    }

    /// Whether the server decided on the close, and so owes the client a
    /// lingering close; not when the client closed first or the socket broke.
    pub(super) fn by_server(self) -> bool {
        !matches!(self, CloseReason::ClientClosed | CloseReason::SocketError)
    }

    /// Whether the client's input can still be read: tungstenite ends the
    /// stream after a frame it refused (too large, not UTF-8, broken).
    pub(super) fn input_readable(self) -> bool {
        !matches!(
            self,
            CloseReason::FrameTooLarge | CloseReason::ProtocolError | CloseReason::SocketError
        )
    }

    /// Whether the backend still counts this connection as its peer's, so
    /// that closing it must detach the peer. Not when the backend closed it
    /// itself: the session was resumed elsewhere (the peer has a newer
    /// attachment), lost (the peer is gone) or removed.
    pub(super) fn detaches(self) -> bool {
        !matches!(
            self,
            CloseReason::SessionMoved | CloseReason::SessionLost | CloseReason::Removed
        )
    }

    /// How the peer is reported if it does not come back within the window.
    pub(super) fn leave_reason(self) -> LeaveReason {
        match self {
            CloseReason::IdleTimeout => LeaveReason::Timeout,
            _ => LeaveReason::Disconnected,
        }
    }
}

/// The close code and reason answering a broken frame, if one is owed.
pub(super) fn close_for(e: WsError) -> Option<(CloseCode, &'static str, CloseReason)> {
    match e {
        WsError::Capacity(_) => Some((
            CloseCode::TooBig,
            "frame exceeds the frame size limit",
            CloseReason::FrameTooLarge,
        )),
        WsError::Utf8(_) => Some((
            CloseCode::InvalidData,
            "text frame is not valid UTF-8",
            CloseReason::ProtocolError,
        )),
        WsError::Protocol(_) => Some((
            CloseCode::ProtocolError,
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
pub(super) async fn linger(
    stream: &mut SplitStream<Socket>,
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
