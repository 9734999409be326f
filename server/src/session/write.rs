//! The write loop of a connection: drains the outbox into the socket in
//! batches with one flush each, sends the server's pings, and closes a slow
//! consumer with 1008.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::close::CLOSE_WRITE_GRACE;
use super::Socket;
use crate::node::Node;
use crate::outbox::{Next, Outbox, Outgoing};
use crate::protocol::CloseCode;

type Sink = SplitSink<Socket, Message>;

/// Drains the outbox into the socket, batching frames into one flush, and
/// sends the server's pings. A plain fn returning the loop's future: an
/// `async fn` would keep a second copy of its arguments for the
/// connection's life.
pub(super) fn write_loop(
    mut sink: Sink,
    outbox: Arc<Outbox>,
    node: Arc<Node>,
) -> impl Future<Output = ()> + Send + 'static {
    let every = node.config.timing.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    async move {
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
                        code: CloseCode::Policy.code().into(),
                        reason: Utf8Bytes::from_static(
                            "outbound queue full: the client is not reading fast enough",
                        ),
                    };
                    // Whatever part of a frame was cut off stays buffered in the
                    // sink and goes out before the close frame.
                    let _ = tokio::time::timeout(
                        CLOSE_WRITE_GRACE,
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                    return;
                }
                Next::Frames(frames) => {
                    // Raised until this batch is recorded (see `mark_written`).
                    let _writing = outbox.writing();
                    // Boxed: only while a batch is being written (see the read loop).
                    let written = Box::pin(write_batch(&mut sink, frames, &node));
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
                let frame = (code != CloseCode::Normal || !reason.is_empty()).then(|| CloseFrame {
                    code: code.code().into(),
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
