//! The byte stream under a connection's WebSocket, and the WebSocket built on
//! it once the HTTP upgrade completed.
//!
//! Most connections of a signaling node are idle most of the time, so what
//! an idle connection holds is what a node's memory is made of. A socket
//! read through a fixed buffer keeps that buffer for its whole life (it was
//! 4 KiB per connection with tungstenite's own buffer, a third of the
//! connection's memory). [`LazySocket`] instead holds bytes only while it
//! has some: a read goes into the worker thread's scratch buffer, and only
//! what the WebSocket layer did not take yet is copied out and kept, until
//! it is taken; written bytes are gathered until the flush and the buffer is
//! released once the socket took them. The WebSocket layer above reads in
//! small steps ([`WS_READ_BUFFER_BYTES`]), which are copies from memory
//! here, not system calls.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::limits::Limits;

/// Most bytes one read takes from the socket: the size of each worker
/// thread's scratch buffer. A burst of frames is read with one system call.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Written bytes gathered before they go to the socket without waiting for a
/// flush (frames queued together are flushed together anyway).
pub const WRITE_CHUNK_BYTES: usize = 8 * 1024;
/// The WebSocket layer's own read buffer, kept for the connection's life:
/// small, since reads into it are copies out of [`LazySocket`]. A frame
/// larger than it still arrives whole (the buffer grows for it).
pub const WS_READ_BUFFER_BYTES: usize = 256;

/// Emptied buffers a worker thread keeps for the next connection that needs
/// one, and the largest it keeps: a busy node reuses a few buffers instead
/// of allocating and freeing one per read and per flush (that cost ~10% of
/// the single-node closed-loop throughput), while an idle connection still
/// holds none. At most 8 × 64 KiB per worker thread.
const SPARE_BUFFERS: usize = 8;
const SPARE_BUFFER_MAX_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where reads land before the part not taken yet is copied out: one per
    /// worker thread, not one per connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK_BYTES].into_boxed_slice());
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `bytes`, from the thread's spares
/// when it has one.
fn buffer(bytes: usize) -> Vec<u8> {
    let mut buf = SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_default();
    buf.reserve(bytes);
    buf
}

/// Releases `buf`: kept as a spare of this thread, or freed.
fn release(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > SPARE_BUFFER_MAX_BYTES {
        return;
    }
    buf.clear();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
    });
}

/// The upgraded connection as the session's WebSocket sees it.
pub type Socket = WebSocketStream<LazySocket<TokioIo<Upgraded>>>;

/// The WebSocket of an upgraded connection, with the frame and buffer limits
/// of `limits`.
pub async fn websocket(upgraded: Upgraded, limits: &Limits) -> Socket {
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Every frame goes straight on to `LazySocket`, which gathers them
        // until the flush: tungstenite's own write buffer then only ever
        // holds one frame.
        .write_buffer_size(0)
        .max_write_buffer_size(limits.outbound_queue_bytes + limits.max_frame_bytes)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes));
    let io = LazySocket::new(TokioIo::new(upgraded));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// A byte stream whose read and write buffers exist only while they hold
/// bytes (see the module header).
pub struct LazySocket<S> {
    io: S,
    /// Bytes read from the socket, of which the reader has taken the first
    /// `taken`; no allocation once all are taken.
    unread: Vec<u8>,
    taken: usize,
    /// Bytes written and not yet handed to the socket; no allocation when
    /// empty.
    unwritten: Vec<u8>,
}

impl<S> LazySocket<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            unread: Vec::new(),
            taken: 0,
            unwritten: Vec::new(),
        }
    }

    /// Bytes of memory the buffers hold (allocated, not just used).
    pub fn buffered_capacity(&self) -> usize {
        self.unread.capacity() + self.unwritten.capacity()
    }

    /// Hands `buf` what is left of an earlier read, releasing it once taken.
    fn take_unread(&mut self, buf: &mut ReadBuf<'_>) {
        let rest = &self.unread[self.taken..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.taken += n;
        if self.taken == self.unread.len() {
            release(std::mem::take(&mut self.unread));
            self.taken = 0;
        }
    }
}

impl<S: AsyncWrite + Unpin> LazySocket<S> {
    /// Writes everything gathered to the socket, then releases the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut done = 0;
        let result = loop {
            if done == self.unwritten.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.unwritten[done..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if done == self.unwritten.len() {
            release(std::mem::take(&mut self.unwritten));
        } else {
            self.unwritten.drain(..done);
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LazySocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.unread.len() || buf.remaining() == 0 {
            this.take_unread(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= READ_CHUNK_BYTES {
            // Large enough to read into directly.
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let read = read.filled();
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read[..n]);
            if n < read.len() {
                let rest = &read[n..];
                this.unread = buffer(rest.len());
                this.unread.extend_from_slice(rest);
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LazySocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unwritten.len() >= WRITE_CHUNK_BYTES {
            ready!(this.poll_drain(cx))?;
        }
        if this.unwritten.is_empty() && data.len() >= WRITE_CHUNK_BYTES {
            // Nothing to keep in order before it and large: no copy.
            return Pin::new(&mut this.io).poll_write(cx, data);
        }
        if this.unwritten.capacity() == 0 {
            this.unwritten = buffer(WRITE_CHUNK_BYTES.max(data.len()));
        }
        this.unwritten.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_read_buffer_exists_only_while_it_holds_bytes() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut socket = LazySocket::new(server);
        assert_eq!(socket.buffered_capacity(), 0);
        let sent: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        client.write_all(&sent).await.unwrap();
        // Small reads, as the WebSocket layer makes them: the first takes
        // a whole chunk from the stream and keeps what it could not hand on.
        let mut got = Vec::new();
        let mut step = [0u8; 100];
        let n = tokio::time::timeout(BOUND, socket.read(&mut step))
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&step[..n]);
        assert!(
            socket.buffered_capacity() > 0,
            "nothing kept after a short read"
        );
        while got.len() < sent.len() {
            let n = tokio::time::timeout(BOUND, socket.read(&mut step))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "end of stream after {} bytes", got.len());
            got.extend_from_slice(&step[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(
            socket.buffered_capacity(),
            0,
            "the read buffer outlived its bytes"
        );
    }

    #[tokio::test]
    async fn the_write_buffer_is_released_by_the_flush() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut socket = LazySocket::new(server);
        let frames: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 300]).collect();
        for frame in &frames {
            socket.write_all(frame).await.unwrap();
        }
        assert!(socket.buffered_capacity() > 0, "frames went out one by one");
        tokio::time::timeout(BOUND, socket.flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            socket.buffered_capacity(),
            0,
            "the write buffer outlived the flush"
        );
        let mut got = vec![0u8; 40 * 300];
        tokio::time::timeout(BOUND, client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, frames.concat());
    }

    #[tokio::test]
    async fn a_stalled_peer_bounds_what_is_gathered() {
        // The peer reads nothing: writes stop being accepted instead of the
        // buffer growing without bound.
        let (_client, server) = tokio::io::duplex(1024);
        let mut socket = LazySocket::new(server);
        let frame = [7u8; 500];
        let mut accepted = 0;
        // A write the socket cannot take is pending (no timer involved).
        while let Some(result) = socket.write(&frame).now_or_never() {
            accepted += result.unwrap();
            assert!(
                accepted <= 64 * 1024,
                "{accepted} bytes accepted by a stalled socket"
            );
        }
        // What the pipe took, plus at most one chunk and the frame over it.
        assert!(
            accepted <= 1024 + WRITE_CHUNK_BYTES + frame.len(),
            "{accepted} bytes accepted by a stalled socket"
        );
    }
}
