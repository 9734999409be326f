//! One webhook POST over HTTP/1.1 (plain or TLS), bounded by a timeout.
//!
//! A connection per delivery: a room's events go one at a time anyway, and a
//! fresh connection never trips over a receiver that closed an idle one.
//! Built on the hyper the server already serves with, so no second HTTP
//! stack is compiled in.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use crate::config::HttpUrl;

/// Most bytes of a receiver's answer read (and thrown away).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends POSTs; cheap to share.
pub struct Client {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Client {
    /// A client; TLS is set up only when some URL needs it (`https`).
    pub fn new(timeout: Duration, need_tls: bool) -> Result<Self, String> {
        let tls = if need_tls {
            Some(tls_connector()?)
        } else {
            None
        };
        Ok(Self { tls, timeout })
    }

    /// POSTs `body` to `url`; the receiver's status code, or what went wrong.
    pub async fn post(&self, url: &HttpUrl, body: Bytes, signature: &str) -> Result<u16, String> {
        let request = Request::post(url.path.as_str())
            .header(HOST, host_header(url))
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .header(super::sign::HEADER, signature)
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let attempt = async {
            let tcp = TcpStream::connect((url.host.as_str(), url.port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            match (&self.tls, url.tls) {
                (Some(tls), true) => {
                    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                        .map_err(|_| format!("{:?} is not a valid TLS server name", url.host))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake failed: {e}"))?;
                    send(stream, request).await
                }
                (None, true) => Err("https is not set up on this node".to_owned()),
                (_, false) => send(tcp, request).await,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} ms (WEBHOOK_TIMEOUT_MS)",
                self.timeout.as_millis()
            )),
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

async fn send<S>(stream: S, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        // Ends when the answer was read or the peer closed; errors show up
        // on the request side.
        let _ = conn.await;
    });
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = answer.status().as_u16();
    // Read a bounded amount of the answer so the receiver is not cut off
    // mid-write; its content is not used.
    let mut body = answer.into_body();
    let mut read = 0usize;
    while read < MAX_ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    Ok(status)
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
