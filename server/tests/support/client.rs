//! `Client`: one WebSocket connection to a node, with bounded waits.
//!
//! Every receive has a timeout and every failure message names the client and
//! lists everything it received so far. `request` reads until the reply with its
//! id arrives and keeps events that came first in a backlog, so later `recv_*`
//! calls see them in arrival order and nothing is silently skipped.
//! tokio-tungstenite answers the server's WebSocket pings whenever we read.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::cluster::Cluster;
use super::{QUIET, RECV_TIMEOUT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of `expect_close`: a server may first flush a large backlog.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);
/// `type` of the stand-in for a message nested deeper than serde_json parses
/// (128 levels); its `raw` holds the text.
pub const TOO_DEEP: &str = "<too deep to parse>";
/// Longest received message kept verbatim in the failure log.
const LOGGED_CHARS: usize = 300;

/// What one read from the socket produced.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    /// A Close frame: its code, if it had one, and its reason.
    Close(Option<u16>, String),
    /// The stream ended (EOF or an error) without a Close frame.
    Ended(String),
}

pub struct Client {
    ws: Ws,
    label: String,
    backlog: VecDeque<Value>,
    log: Vec<String>,
    next_id: u64,
    server_pings: usize,
}

impl Client {
    /// Connects to `url` (bounded), panicking on failure.
    pub async fn connect(url: &str) -> Client {
        Self::connect_labelled(url, "client").await
    }

    pub async fn connect_labelled(url: &str, label: &str) -> Client {
        Self::try_connect(url, label)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"))
    }

    /// Connects to `url`; a refused upgrade or an I/O error is `Err`.
    pub async fn try_connect(url: &str, label: &str) -> Result<Client, String> {
        let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config()), true);
        let (ws, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("connect {url}: no handshake within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("connect {url}: {e}"))?;
        Ok(Self::over(ws, label))
    }

    /// Connects to `addr` over a socket with a receive buffer of about
    /// `bytes`: a client that cannot take a large backlog at once (as one on
    /// a slow or distant link), so that what the server sends it stays in
    /// flight in the server's socket for a while.
    pub async fn connect_small_buffer(addr: SocketAddr, label: &str, bytes: u32) -> Client {
        let url = format!("ws://{addr}/ws");
        let connecting = async {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .set_recv_buffer_size(bytes)
                .map_err(|e| e.to_string())?;
            let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
            let stream = MaybeTlsStream::Plain(stream);
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config()))
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((ws, _response))) => Self::over(ws, label),
            Ok(Err(e)) => panic!("{label}: connect {url}: {e}"),
            Err(_) => panic!("{label}: connect {url}: no handshake within {CONNECT_TIMEOUT:?}"),
        }
    }

    fn over(ws: Ws, label: &str) -> Client {
        Client {
            ws,
            label: label.to_owned(),
            backlog: VecDeque::new(),
            log: Vec::new(),
            next_id: 0,
            server_pings: 0,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn set_label(&mut self, label: &str) {
        self.label = label.to_owned();
    }

    /// WebSocket Ping frames received from the server so far.
    pub fn server_pings(&self) -> usize {
        self.server_pings
    }

    /// Panics with the client's label and everything it received.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "[{}] {what}\n  received so far ({}):\n    {}\n  backlog: {:?}",
            self.label,
            self.log.len(),
            self.log.join("\n    "),
            self.backlog
        )
    }

    // ---- sending ----

    pub async fn send_json(&mut self, value: Value) {
        let text = value.to_string();
        self.send_text(&text).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        if let Err(e) = self.try_send(Message::text(text)).await {
            self.fail(&format!("send failed: {e}"));
        }
    }

    /// Sends several text frames with one flush, so that the server reads
    /// them together.
    pub async fn send_burst(&mut self, texts: &[String]) {
        let sent = async {
            for text in texts {
                self.ws.feed(Message::text(text.as_str())).await?;
            }
            self.ws.flush().await
        };
        match tokio::time::timeout(RECV_TIMEOUT, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(&format!("send failed: {e}")),
            Err(_) => self.fail(&format!("send blocked for {RECV_TIMEOUT:?}")),
        }
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        if let Err(e) = self.try_send(Message::binary(data)).await {
            self.fail(&format!("send failed: {e}"));
        }
    }

    /// Sends one message; errors (the server may already have closed) are returned.
    pub async fn try_send(&mut self, message: Message) -> Result<(), String> {
        tokio::time::timeout(RECV_TIMEOUT, self.ws.send(message))
            .await
            .map_err(|_| format!("send blocked for {RECV_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())
    }

    // ---- receiving ----

    /// Reads the next JSON message, Close, or end of stream from the socket
    /// (not the backlog); `None` when nothing came within `timeout`.
    pub async fn read_incoming(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + timeout;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            match next {
                None => return Some(Incoming::Ended("stream ended".to_owned())),
                Some(Err(e)) => return Some(Incoming::Ended(format!("stream error: {e}"))),
                Some(Ok(Message::Text(text))) => {
                    let shown: String = text.chars().take(LOGGED_CHARS).collect();
                    self.log.push(shown);
                    match serde_json::from_str::<Value>(&text) {
                        Ok(value) if value.is_object() => return Some(Incoming::Json(value)),
                        Err(e) if e.to_string().contains("recursion limit") => {
                            let raw = text.to_string();
                            return Some(Incoming::Json(json!({"type": TOO_DEEP, "raw": raw})));
                        }
                        _ => self.fail("the server sent a text frame that is not a JSON object"),
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    self.log
                        .push(format!("<binary frame of {} bytes>", data.len()));
                    self.fail("the server sent a binary frame");
                }
                Some(Ok(Message::Ping(_))) => self.server_pings += 1,
                Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    };
                    self.log.push(format!("<close {code:?} {reason:?}>"));
                    return Some(Incoming::Close(code, reason));
                }
            }
        }
    }

    /// Next message (backlog first), waiting at most `RECV_TIMEOUT`.
    #[track_caller]
    pub fn recv_json(&mut self) -> impl std::future::Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        async move { self.recv_json_within(RECV_TIMEOUT, caller).await }
    }

    async fn recv_json_within(
        &mut self,
        timeout: Duration,
        caller: &std::panic::Location<'_>,
    ) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        match self.read_incoming(timeout).await {
            Some(Incoming::Json(v)) => v,
            Some(Incoming::Close(code, reason)) => self.fail(&format!(
                "{caller}: expected a message, got Close {code:?} {reason:?}"
            )),
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("{caller}: expected a message, but {why}"))
            }
            None => self.fail(&format!("{caller}: no message within {timeout:?}")),
        }
    }

    /// Next message, waiting at most `timeout`.
    #[track_caller]
    pub fn recv_json_timeout(
        &mut self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        async move { self.recv_json_within(timeout, caller).await }
    }

    /// Next message, which must be of type `ty`.
    #[track_caller]
    pub fn recv_type<'a>(
        &'a mut self,
        ty: &'a str,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let v = self.recv_json_within(RECV_TIMEOUT, caller).await;
            if v["type"] != ty {
                self.fail(&format!("{caller}: expected a `{ty}` message, got {v}"));
            }
            v
        }
    }

    /// Next message of type `ty`, skipping presence events (`peer_joined`,
    /// `peer_left`, `peer_updated`) that come first; anything else fails.
    #[track_caller]
    pub fn recv_type_skipping_presence<'a>(
        &'a mut self,
        ty: &'a str,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            loop {
                let v = self.recv_json_within(RECV_TIMEOUT, caller).await;
                if v["type"] == ty {
                    return v;
                }
                let presence = ["peer_joined", "peer_left", "peer_updated"];
                if !presence.iter().any(|p| v["type"] == *p) {
                    self.fail(&format!("{caller}: expected a `{ty}` message, got {v}"));
                }
            }
        }
    }

    /// Sends `message` with a fresh string id and returns the reply carrying that
    /// id; messages that arrive before it go to the backlog.
    pub async fn request(&mut self, message: Value) -> Value {
        self.next_id += 1;
        let id = json!(format!("q{}", self.next_id));
        self.request_with_id(message, id).await
    }

    /// Like `request`, with the given `id` (any JSON value). The reply must carry
    /// an equal id (same JSON type).
    pub async fn request_with_id(&mut self, mut message: Value, id: Value) -> Value {
        message["id"] = id.clone();
        let sent = message.to_string();
        self.send_text(&sent).await;
        self.reply_to(&id, &sent).await
    }

    /// Reads until the reply with `id` arrives (bounded); earlier messages go to
    /// the backlog.
    pub async fn reply_to(&mut self, id: &Value, sent: &str) -> Value {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_incoming(left).await {
                Some(Incoming::Json(v)) if v.get("id") == Some(id) => return v,
                Some(Incoming::Json(v)) => self.backlog.push_back(v),
                Some(Incoming::Close(code, reason)) => self.fail(&format!(
                    "no reply to {}: Close {code:?} {reason:?}",
                    abbreviate(sent)
                )),
                Some(Incoming::Ended(why)) => {
                    self.fail(&format!("no reply to {}: {why}", abbreviate(sent)))
                }
                None => self.fail(&format!(
                    "no reply with id {id} to {} within {RECV_TIMEOUT:?}",
                    abbreviate(sent)
                )),
            }
        }
    }

    /// Sends `message` with an id and expects the reply `ok`.
    pub async fn request_ok(&mut self, message: Value) -> Value {
        let reply = self.request(message.clone()).await;
        if reply["type"] != "ok" {
            self.fail(&format!("expected `ok` to {message}, got {reply}"));
        }
        reply
    }

    /// Sends `message` with an id and expects `error{code}` with that id.
    pub async fn request_error(&mut self, message: Value, code: &str) -> Value {
        let reply = self.request(message.clone()).await;
        if reply["type"] != "error" || reply["code"] != code {
            self.fail(&format!("expected error {code} to {message}, got {reply}"));
        }
        super::json::assert_error(&reply, code);
        reply
    }

    /// Reads until a Close frame (bounded by `CLOSE_TIMEOUT`), asserts its code,
    /// and returns the messages received before it (backlog included).
    pub async fn expect_close(&mut self, code: u16) -> Vec<Value> {
        match self.closed(CLOSE_TIMEOUT).await {
            (Some(got), before) if got == code => before,
            (got, _) => self.fail(&format!("expected Close {code}, got {got:?}")),
        }
    }

    /// Reads until the connection closes (bounded by `timeout`). Returns the
    /// Close code (`None`: a Close frame without code, or no Close frame at all)
    /// and the messages received before.
    pub async fn closed(&mut self, timeout: Duration) -> (Option<u16>, Vec<Value>) {
        let mut before: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_incoming(left).await {
                Some(Incoming::Json(v)) => before.push(v),
                Some(Incoming::Close(code, _)) => return (code, before),
                Some(Incoming::Ended(why)) => {
                    self.log.push(format!("<ended without Close: {why}>"));
                    return (None, before);
                }
                None => self.fail(&format!("connection still open after {timeout:?}")),
            }
        }
    }

    /// A negative check: nothing is pending, a `ping` is answered by its `pong`
    /// before anything else, and then nothing arrives for `QUIET`.
    pub async fn assert_quiet(&mut self) {
        if !self.backlog.is_empty() {
            self.fail("expected no pending messages");
        }
        self.next_id += 1;
        let id = json!(format!("quiet{}", self.next_id));
        self.send_json(json!({"type": "ping", "id": id})).await;
        let pong = self.recv_json().await;
        if pong != json!({"type": "pong", "id": id}) {
            self.fail(&format!("expected only the pong with id {id}, got {pong}"));
        }
        self.quiet_for(QUIET).await;
    }

    /// Reads for `period`, failing on any message or close; server pings are answered.
    pub async fn quiet_for(&mut self, period: Duration) {
        if let Some(v) = self.backlog.front() {
            let v = v.clone();
            self.fail(&format!("expected silence, but {v} was pending"));
        }
        match self.read_incoming(period).await {
            None => {}
            Some(Incoming::Json(v)) => self.fail(&format!("expected silence, got {v}")),
            Some(other) => self.fail(&format!("expected silence, got {other:?}")),
        }
    }

    /// `ping` with an id; asserts the `pong` echoes it (events that come first go
    /// to the backlog).
    pub async fn ping(&mut self) {
        let reply = self.request(json!({"type": "ping"})).await;
        if reply["type"] != "pong" {
            self.fail(&format!("expected pong, got {reply}"));
        }
    }

    /// Joins on this connection and returns `joined` (panics on any other reply).
    pub async fn join(&mut self, join: Value) -> Value {
        let reply = self.request(join.clone()).await;
        if reply["type"] != "joined" {
            self.fail(&format!("expected `joined` to {join}, got {reply}"));
        }
        reply
    }

    /// Closes with a Close frame and waits (bounded) for the server's answer.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Pending messages already read from the socket.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }
}

/// The client's WebSocket limits: larger than any server limit, so that the
/// server, not this client, decides what is too big.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

fn abbreviate(s: &str) -> String {
    if s.len() <= LOGGED_CHARS {
        s.to_owned()
    } else {
        let head: String = s.chars().take(LOGGED_CHARS).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

/// Connects to node `node` and joins `room` as `peer`; returns the client and
/// its `joined`.
pub async fn join(c: &Cluster, node: usize, room: &str, peer: &str) -> (Client, Value) {
    join_with(c, node, json!({"type": "join", "room": room, "peer": peer})).await
}

/// Connects to node `node` and sends `join` (any join message); returns the
/// client (labelled with its peer id) and its `joined`.
pub async fn join_with(c: &Cluster, node: usize, join: Value) -> (Client, Value) {
    let mut client = c.connect(node).await;
    let joined = client.join(join).await;
    let peer = joined["peer"].as_str().unwrap_or("?");
    client.set_label(&format!("{peer}@{}", c.node_id(node)));
    (client, joined)
}
