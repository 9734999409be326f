//! Webhook POSTs over HTTP/1.1 (plain or TLS), each bounded by a timeout.
//!
//! Connections are kept alive and reused. A connection per POST left a
//! socket in TIME_WAIT on the node for every event, for 60 s: towards one
//! receiver address the ~28,000 ephemeral ports of a default Linux run out
//! at about 470 events/s, and every POST to an `https` URL paid a TLS
//! handshake. An idle connection is reused within [`IDLE_REUSE`] only, and
//! when the receiver closed it meanwhile (the request fails before any
//! answer) the POST goes once more over a new connection, so a receiver
//! closing idle connections costs no delivery.
//! Built on the hyper the server already serves with, so no second HTTP
//! stack is compiled in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Version};
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

/// How long an idle connection may be reused: below the shortest idle
/// timeout common receivers apply (Node.js's HTTP server closes idle
/// connections after 5 s), so that a reuse rarely meets a closing one.
pub const IDLE_REUSE: Duration = Duration::from_secs(4);

/// Idle connections kept per receiver (host, port, TLS). A room delivers one
/// event at a time, so this is how many rooms delivering at once find a
/// connection to reuse; each idle one holds a socket and a few KiB.
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
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
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
                    // Nothing was answered: the receiver closed the idle
                    // connection; a new one follows.
                    Err(e) => debug!(host = %url.host, port = url.port,
                        "webhook receiver closed a kept-alive connection ({e}); sending over a new one"),
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
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(origin)?;
        list.retain(|c| c.since.elapsed() < self.idle_reuse && !c.sender.is_closed());
        list.pop().map(|c| c.sender)
    }

    /// Keeps a connection whose exchange ended cleanly for the next POST.
    fn keep(&self, origin: Origin, sender: Option<SendRequest<Full<Bytes>>>) {
        let Some(sender) = sender.filter(|s| !s.is_closed()) else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(origin).or_default();
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push(Idle {
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
/// back when it may carry another request (the whole answer read, and
/// neither `Connection: close` nor HTTP/1.0). An error means no answer came.
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
    let closing = answer.version() < Version::HTTP_11
        || answer.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
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
    Ok((status, (whole && !closing).then_some(sender)))
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
    }

    #[derive(Default)]
    struct Counts {
        accepted: AtomicUsize,
        answered: AtomicUsize,
        wasted: AtomicUsize,
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
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
            counts.answered.fetch_add(1, Ordering::SeqCst);
            served += 1;
        }
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
    async fn connection_close_answers_end_the_connection() {
        let (url, counts) = receiver(Mode::Close).await;
        let (client, _) = client();
        post_n(&client, &url, 3).await;
        assert_eq!(counts.wasted.load(Ordering::SeqCst), 0);
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connections_idle_past_the_reuse_limit_are_not_reused() {
        let (url, counts) = receiver(Mode::KeepAlive).await;
        let (mut client, _) = client();
        // Every idle connection is past a zero limit.
        client.idle_reuse = Duration::ZERO;
        post_n(&client, &url, 2).await;
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
    }
}
