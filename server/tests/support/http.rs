//! A minimal HTTP/1.1 client over a loopback `TcpStream`, enough for the
//! operational endpoints (`/health`, `/ready`, `/metrics`, `/status`) and the
//! Server API (any method, a body, extra headers).
//!
//! Hand-written to keep dev-dependencies light: one request per connection
//! (`Connection: close`), body read to EOF, chunked encoding decoded.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// First header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// `GET path`; panics when the server cannot be reached or answers garbage.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    try_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `GET path` with extra request headers (`Authorization`, `Origin`, ...).
pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    tokio::time::timeout(HTTP_TIMEOUT, request(addr, "GET", path, headers, b""))
        .await
        .unwrap_or_else(|_| {
            panic!("GET http://{addr}{path}: no complete answer within {HTTP_TIMEOUT:?}")
        })
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `GET path`, with connection failures reported as `Err` (a draining server
/// may have closed its listener).
pub async fn try_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    tokio::time::timeout(HTTP_TIMEOUT, request(addr, "GET", path, &[], b""))
        .await
        .map_err(|_| format!("no complete answer within {HTTP_TIMEOUT:?}"))?
}

/// `method path` with extra headers and a body (sent with its
/// `Content-Length`); panics when the server cannot be reached.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    tokio::time::timeout(HTTP_TIMEOUT, request(addr, method, path, headers, body))
        .await
        .unwrap_or_else(|_| {
            panic!("{method} http://{addr}{path}: no complete answer within {HTTP_TIMEOUT:?}")
        })
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let length = if body.is_empty() && method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchboard-tests\r\n\
         Accept: */*\r\n{extra}{length}Connection: close\r\n\r\n"
    );
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    // A server may answer (413) and close before reading all of a large
    // body: a failed write still leaves its answer to read.
    let _ = stream.write_all(&out).await;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> Result<HttpResponse, String> {
    let text_err = || format!("malformed response: {:?}", String::from_utf8_lossy(raw));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(text_err)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| text_err())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(text_err)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(text_err)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(text_err)?;
    }
    let body = String::from_utf8(body).map_err(|_| text_err())?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The value of the sample whose series (name and labels, exactly as
/// rendered) is `series`, in a Prometheus text exposition.
pub fn metric_sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
