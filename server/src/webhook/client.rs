//! Webhook POSTs over HTTP/1.1 (plain or TLS), each bounded by a timeout.
//!
//! Connections are kept alive and reused. A connection per POST left a
//! socket in TIME_WAIT on the node for every event, for 60 s: towards one
//! receiver address the ~28,000 ephemeral ports of a default Linux host run
//! out at about 470 events/s, and every POST to an `https` URL paid a TLS
//! handshake. An idle connection is reused within [`IDLE_REUSE`] only, and
//! when a request over a reused connection fails before any answer (most
//! often: the receiver closed the idle connection as the request went out)
//! the POST goes once more over a new connection, so a receiver closing idle
//! connections costs no delivery.
//! Built on the hyper the server already serves with, so no second HTTP
//! stack is compiled in.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::config::HttpUrl;

/// Most bytes of a receiver's answer read (and thrown away); a longer answer
/// ends its connection's reuse.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long an idle connection may be reused: below the 5 s after which
/// Node.js's HTTP server closes idle connections, so that a reuse rarely
/// meets a closing one (the retry covers receivers that close sooner).
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

/// Idle connections kept per receiver (host, port, TLS). A room delivers one
/// event at a time, so this is how many rooms delivering at once find a
/// connection to reuse; each idle one holds a socket and a few KiB until it
/// is reused or [`Client::close_expired`] closes it.
const MAX_IDLE: usize = 128;

/// Where a connection goes: one pool of idle connections each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &HttpUrl) -> Self {
        Self {
            tls: url.tls,
            host: url.host.clone(),
            port: url.port,
        }
    }
}

/// A connection waiting for its next request.
struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Sends POSTs; cheap to share.
pub struct Client {
    tls: Option<TlsConnector>,
    timeout: Duration,
    idle_reuse: Duration,
    max_idle: usize,
    /// Per receiver, oldest first.
    idle: Mutex<HashMap<Origin, VecDeque<Idle>>>,
    /// Connections opened (the `webhook_connections` metric).
    opened: Counter,
}

impl Client {
    /// A client; TLS is set up only when some URL needs it (`https`).
    /// `opened` counts the connections it opens.
    pub fn new(timeout: Duration, need_tls: bool, opened: Counter) -> Result<Self, String> {
        let tls = if need_tls {
            Some(tls_connector()?)
        } else {
            None
        };
        Ok(Self {
            tls,
            timeout,
            idle_reuse: IDLE_REUSE,
            max_idle: MAX_IDLE,
            idle: Mutex::new(HashMap::new()),
            opened,
        })
    }

    /// POSTs `body` to `url`; the receiver's status code, or what went wrong.
    pub async fn post(&self, url: &HttpUrl, body: Bytes, signature: &str) -> Result<u16, String> {
        let request = || {
            Request::post(url.path.as_str())
                .header(HOST, host_header(url))
                .header(CONTENT_TYPE, "application/json")
                .header(
                    USER_AGENT,
                    concat!("switchboard/", env!("CARGO_PKG_VERSION")),
                )
                .header(super::sign::HEADER, signature)
                .body(Full::new(body.clone()))
                .map_err(|e| format!("cannot build the request: {e}"))
        };
        let origin = Origin::of(url);
        let attempt = async {
            if let Some(sender) = self.take_idle(&origin) {
                match exchange(sender, request()?).await {
                    Ok((status, sender)) => {
                        self.keep(origin, sender);
                        return Ok(status);
                    }
                    // No answer came over the reused connection (most
                    // often the receiver closed it as the request went
                    // out): a new connection follows.
                    Err(e) => debug!(host = %url.host, port = url.port,
                        "webhook POST over a kept-alive connection failed before any answer ({e}); sending it again over a new connection"),
                }
            }
            let sender = self.connect(url).await?;
            let (status, sender) = exchange(sender, request()?).await?;
            self.keep(origin, sender);
            Ok(status)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} ms (WEBHOOK_TIMEOUT_MS)",
                self.timeout.as_millis()
            )),
        }
    }

    /// The newest idle connection to `origin` still open and within
    /// [`IDLE_REUSE`]; older or closed ones are dropped on the way.
    fn take_idle(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = crate::sync::lock(&self.idle);
        let list = idle.get_mut(origin)?;
        list.retain(|c| self.reusable(c));
        list.pop_back().map(|c| c.sender)
    }

    fn reusable(&self, c: &Idle) -> bool {
        c.since.elapsed() < self.idle_reuse && !c.sender.is_closed()
    }

    /// Closes the idle connections too old to reuse (or already closed);
    /// the webhook engine calls it every poll, so a burst's connections do
    /// not stay open once events stop.
    pub fn close_expired(&self) {
        let mut idle = crate::sync::lock(&self.idle);
        idle.retain(|_, list| {
            list.retain(|c| self.reusable(c));
            !list.is_empty()
        });
    }

    /// Keeps a connection whose exchange ended cleanly for the next POST.
    fn keep(&self, origin: Origin, sender: Option<SendRequest<Full<Bytes>>>) {
        let Some(sender) = sender.filter(|s| !s.is_closed()) else {
            return;
        };
        if self.max_idle == 0 {
            return;
        }
        let mut idle = crate::sync::lock(&self.idle);
        let list = idle.entry(origin).or_default();
        while list.len() >= self.max_idle {
            list.pop_front();
        }
        list.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Opens a connection to `url`'s origin (TCP, then TLS for `https`).
    async fn connect(&self, url: &HttpUrl) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        self.opened.inc();
        match (&self.tls, url.tls) {
            (Some(tls), true) => {
                let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|_| format!("{:?} is not a valid TLS server name", url.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                handshake(stream).await
            }
            (None, true) => Err("https is not set up on this node".to_owned()),
            (_, false) => handshake(tcp).await,
        }
    }
}

fn host_header(url: &HttpUrl) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    match (url.tls, url.port) {
        (false, 80) | (true, 443) => host,
        (_, port) => format!("{host}:{port}"),
    }
}

/// HTTP/1.1 over `stream`; the connection is driven by a task of its own,
/// which ends when the connection closes or its sender is dropped.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        // Errors show up on the request side.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends `request` and reads the answer: its status, and the connection
/// back when the whole answer was read (after `Connection: close` or an
/// HTTP/1.0 answer hyper closes the connection itself, and [`Client::keep`]
/// then finds it closed). An error means no answer came.
async fn exchange(
    mut sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Option<SendRequest<Full<Bytes>>>), String> {
    // Fails at once on a connection the receiver closed.
    sender
        .ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = answer.status().as_u16();
    // Read a bounded amount of the answer so the receiver is not cut off
    // mid-write; its content is not used.
    let mut body = answer.into_body();
    let mut read = 0usize;
    let whole = loop {
        if read >= MAX_ANSWER_BYTES {
            break false;
        }
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(_)) => break false,
            None => break true,
        }
    };
    Ok((status, whole.then_some(sender)))
}

fn tls_connector() -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store rejects is skipped, like other clients do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "no system CA certificates found for https webhook URLs (install the ca-certificates package)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the test receiver treats each connection.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// Answers every request and keeps the connection open.
        KeepAlive,
        /// Answers with `Connection: close`, then waits for the client to
        /// close (a request arriving meanwhile is counted as wasted).
        Close,
        /// Answers the first request; on the next one it closes the
        /// connection without answering, as a receiver does whose idle
        /// timeout fired while the request was on its way.
        DropSecond,
        /// Answers in HTTP/1.0 (no keep-alive), then waits like `Close`.
        Http10,
    }

    #[derive(Default)]
    struct Counts {
        accepted: AtomicUsize,
        answered: AtomicUsize,
        wasted: AtomicUsize,
        /// Connections the client closed.
        closed: AtomicUsize,
        changed: tokio::sync::Notify,
    }

    /// A raw HTTP/1.1 receiver on a free loopback port.
    async fn receiver(mode: Mode) -> (HttpUrl, Arc<Counts>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream, mode, c.clone()));
            }
        });
        let url = HttpUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            path: "/hook".into(),
        };
        (url, counts)
    }

    async fn handle(mut stream: TcpStream, mode: Mode, counts: Arc<Counts>) {
        let mut buf = Vec::new();
        let mut served = 0;
        while read_request(&mut stream, &mut buf).await {
            if served > 0 && mode != Mode::KeepAlive {
                counts.wasted.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let answer: &[u8] = match mode {
                Mode::Close => b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                Mode::Http10 => b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
            counts.answered.fetch_add(1, Ordering::SeqCst);
            served += 1;
        }
        counts.closed.fetch_add(1, Ordering::SeqCst);
        counts.changed.notify_waiters();
    }

    fn pooled(client: &Client) -> usize {
        crate::sync::lock(&client.idle)
            .values()
            .map(VecDeque::len)
            .sum()
    }

    /// Reads one request (headers and a `content-length` body) off
    /// `stream`, keeping what follows it in `buf`; false at the end.
    async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    buf.drain(..end + 4 + length);
                    return true;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn client() -> (Client, Counter) {
        let opened = Counter::default();
        let client = Client::new(Duration::from_secs(5), false, opened.clone()).unwrap();
        (client, opened)
    }

    async fn post_n(client: &Client, url: &HttpUrl, n: usize) {
        for i in 0..n {
            let status = client
                .post(url, Bytes::from(format!("{{\"i\":{i}}}")), "t=1,v1=00")
                .await;
            assert_eq!(status, Ok(200), "POST {i}");
        }
    }

    #[tokio::test]
    async fn posts_reuse_a_kept_alive_connection() {
        let (url, counts) = receiver(Mode::KeepAlive).await;
        let (client, opened) = client();
        post_n(&client, &url, 5).await;
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(counts.answered.load(Ordering::SeqCst), 5);
        assert_eq!(opened.get(), 1);
    }

    #[tokio::test]
    async fn a_receiver_closing_a_kept_connection_costs_no_delivery() {
        let (url, counts) = receiver(Mode::DropSecond).await;
        let (client, opened) = client();
        post_n(&client, &url, 3).await;
        // POSTs 2 and 3 each met a connection closed under them and went
        // again over a new one.
        assert_eq!(counts.wasted.load(Ordering::SeqCst), 2);
        assert_eq!(counts.answered.load(Ordering::SeqCst), 3);
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 3);
        assert_eq!(opened.get(), 3);
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_answers_end_the_connection() {
        for mode in [Mode::Close, Mode::Http10] {
            let (url, counts) = receiver(mode).await;
            let (client, _) = client();
            for n in 1..=3 {
                post_n(&client, &url, 1).await;
                assert_eq!(pooled(&client), 0, "{mode:?}: kept after POST {n}");
            }
            assert_eq!(counts.wasted.load(Ordering::SeqCst), 0, "{mode:?}");
            assert_eq!(counts.accepted.load(Ordering::SeqCst), 3, "{mode:?}");
        }
    }

    #[tokio::test]
    async fn the_pool_keeps_at_most_its_cap_per_receiver() {
        let (url, counts) = receiver(Mode::KeepAlive).await;
        let (mut client, _) = client();
        client.max_idle = 1;
        // Two at once: neither finds an idle connection.
        let (a, b) = tokio::join!(
            client.post(&url, Bytes::from_static(b"{}"), "t=1,v1=00"),
            client.post(&url, Bytes::from_static(b"{}"), "t=1,v1=00"),
        );
        assert_eq!((a, b), (Ok(200), Ok(200)));
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pooled(&client), 1);
        post_n(&client, &url, 1).await;
        assert_eq!(
            counts.accepted.load(Ordering::SeqCst),
            2,
            "the kept one is reused"
        );
    }

    #[tokio::test]
    async fn connections_idle_past_the_reuse_limit_are_not_reused_and_get_closed() {
        let (url, counts) = receiver(Mode::KeepAlive).await;
        let (mut client, _) = client();
        // Every idle connection is past a zero limit.
        client.idle_reuse = Duration::ZERO;
        post_n(&client, &url, 2).await;
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
        // The second is still pooled until the sweep closes it.
        assert_eq!(pooled(&client), 1);
        client.close_expired();
        assert_eq!(pooled(&client), 0);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let changed = counts.changed.notified();
                if counts.closed.load(Ordering::SeqCst) == 2 {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("both connections closed by the client");
    }
}
