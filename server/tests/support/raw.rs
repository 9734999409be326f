//! `RawWs`: a hand-rolled RFC 6455 client over a `TcpStream`.
//!
//! For what a well-behaved library will not do: stay silent when pinged (idle
//! timeout), split a message into fragments, send text that is not UTF-8, or
//! announce a frame far larger than it sends. Frames from the client are masked
//! with a fixed key, as the RFC requires of clients.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

const MASK: [u8; 4] = [0x1b, 0x5e, 0xa7, 0x3c];
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a Close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What one read produced.
#[derive(Debug)]
pub enum RawEvent {
    Frame(Frame),
    /// EOF or an I/O error.
    Ended(String),
    /// Nothing within the timeout.
    Timeout,
}

pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens a TCP connection and completes the upgrade on `GET /ws`.
    pub async fn connect(addr: SocketAddr) -> RawWs {
        let fut = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let req = format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream
                .write_all(req.as_bytes())
                .await
                .expect("write handshake");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let n = stream.read(&mut chunk).await.expect("read handshake");
                assert!(n > 0, "connection closed during the handshake: {buf:?}");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
            RawWs {
                stream,
                buf: buf[end..].to_vec(),
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .expect("raw WebSocket handshake")
    }

    /// Sends one masked frame. I/O errors are returned: the server may have
    /// closed the connection already.
    pub async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let mut frame = header(fin, opcode, payload.len() as u64);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// Sends only the header of a frame announcing `len` bytes (and maybe some of them).
    pub async fn send_header(
        &mut self,
        opcode: u8,
        len: u64,
        partial: &[u8],
    ) -> std::io::Result<()> {
        let mut frame = header(true, opcode, len);
        frame.extend(partial.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.stream.write_all(&frame).await
    }

    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send_frame(true, OP_TEXT, text.as_bytes()).await
    }

    /// Reads one frame (bounded by `timeout`).
    pub async fn read_frame(&mut self, timeout: Duration) -> RawEvent {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return RawEvent::Frame(frame);
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return RawEvent::Timeout,
                Ok(Ok(0)) => return RawEvent::Ended("EOF".to_owned()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return RawEvent::Ended(e.to_string()),
            }
        }
    }

    /// Reads frames, answering nothing, until a text frame (returned as JSON),
    /// a Close frame or the end; pings are counted in `pings`.
    pub async fn read_json(&mut self, timeout: Duration, pings: &mut usize) -> RawEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                RawEvent::Frame(f) if f.opcode == OP_PING => *pings += 1,
                other => return other,
            }
        }
    }
}

fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![(if fin { 0x80 } else { 0 }) | opcode];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&MASK);
    h
}

/// Parses one unmasked server frame from the front of `buf`; returns it and
/// the bytes it used, or `None` when incomplete.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        end,
    ))
}
