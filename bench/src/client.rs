//! One bench client: a TCP connection (optionally from a chosen loopback source
//! address), the WebSocket handshake, and the `join` exchange.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::proto;
use crate::target::Target;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Longest wait for the TCP connect plus the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Read buffer per connection. tungstenite zero-fills the free part of its read
/// buffer before every read, so its 128 KiB default cost the bench about a
/// third of its CPU in `memset`; larger frames still arrive over several reads.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Longest wait for `joined` after sending `join`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a connection or a join failed; [`ClientError::code`] names it in counts.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The WebSocket handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server answered `join` with an error.
    #[error("join refused: {0}")]
    Refused(String),
    /// The server closed the connection.
    #[error("connection closed")]
    Closed,
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// A short label: the protocol error code, or the kind of transport failure.
    pub fn code(&self) -> String {
        match self {
            ClientError::Connect(_) => "connect".into(),
            ClientError::Handshake(_) => "handshake".into(),
            ClientError::Refused(code) => code.clone(),
            ClientError::Closed => "closed".into(),
            ClientError::Timeout => "timeout".into(),
        }
    }
}

/// The source address of connection number `i` when spreading over `n` loopback
/// addresses; `None` lets the kernel choose (and for non-IPv4-loopback targets).
pub fn source_for(i: usize, n: u8, target: &SocketAddr) -> Option<IpAddr> {
    let n = n.min(254) as usize;
    match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && n > 1 => {
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % n) as u8)))
        }
        _ => None,
    }
}

/// Opens a WebSocket to `target`, binding to `source` first when given.
pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Ws, ClientError> {
    let fut = async {
        let socket = match target.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target.addr).await?;
        // Writes are batched with feed + flush, so Nagle would only add delay.
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config))
                .await?;
        Ok::<_, ClientError>(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Sends `join` and waits for `joined`.
pub async fn join(ws: &mut Ws, room: &str, peer: &str) -> Result<(), ClientError> {
    ws.send(Message::text(proto::join(room, peer))).await?;
    let wait = async {
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg? else { continue };
            let Ok(m) = proto::parse(text.as_str()) else {
                continue;
            };
            match m.kind.as_ref() {
                "joined" => return Ok(()),
                "error" => {
                    return Err(ClientError::Refused(
                        m.code.as_deref().unwrap_or("?").to_string(),
                    ))
                }
                _ => {}
            }
        }
        Err(ClientError::Closed)
    };
    tokio::time::timeout(JOIN_TIMEOUT, wait)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Where one connection goes and as whom.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Index into the targets.
    pub target: usize,
    /// Room to join.
    pub room: String,
    /// Peer id to join as.
    pub peer: String,
}

/// Connects and joins every slot, at most `concurrency` at a time, and returns
/// the sockets in slot order. The first failure aborts the whole setup (the
/// sockets opened so far are dropped, which closes them).
pub async fn open_all(
    slots: &[Slot],
    targets: &[Target],
    source_addrs: u8,
    concurrency: usize,
) -> anyhow::Result<Vec<Ws>> {
    let done = AtomicUsize::new(0);
    let total = slots.len();
    let done = &done;
    let mut opened: Vec<(usize, Ws)> = stream::iter(slots.iter().enumerate())
        .map(|(i, slot)| async move {
            let target = &targets[slot.target];
            let mut ws = connect(target, source_for(i, source_addrs, &target.addr)).await?;
            join(&mut ws, &slot.room, &slot.peer).await?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 5000 == 0 && n < total {
                eprintln!("  {n}/{total} joined");
            }
            Ok::<_, ClientError>((i, ws))
        })
        .buffer_unordered(concurrency.max(1))
        .map_err(|e| {
            let joined = done.load(Ordering::Relaxed);
            anyhow::anyhow!("opening connections failed after {joined} of {total} joined: {e}")
        })
        .try_collect()
        .await?;
    opened.sort_unstable_by_key(|(i, _)| *i);
    Ok(opened.into_iter().map(|(_, ws)| ws).collect())
}

/// Leaves the room and closes, waiting at most a second; errors are irrelevant
/// at that point.
pub async fn leave_and_close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = ws.feed(Message::text(proto::LEAVE)).await;
        let _ = ws.close(None).await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback_v4_only() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(source_for(0, 1, &v4), None);
        assert_eq!(source_for(0, 4, &v4), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_for(5, 4, &v4), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_for(5, 4, &v6), None);
    }
}
