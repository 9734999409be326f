//! `--url` values turned into connectable targets. The guard here is what keeps
//! the load on this machine: a host must be loopback (127.0.0.0/8, ::1 or
//! `localhost`), both as written and as resolved, unless `--allow-remote`.

use std::net::{IpAddr, SocketAddr};

use tokio_tungstenite::tungstenite::http::Uri;

/// Why a `--url` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not parseable as a URI.
    #[error("`{0}` is not a valid URL")]
    Invalid(String),
    /// Only plain `ws://` is supported (no TLS in the bench).
    #[error("`{0}`: only ws:// URLs are supported")]
    Scheme(String),
    /// The URL has no host.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// The host is not loopback and `--allow-remote` was not given.
    #[error("`{0}`: host is not loopback (127.0.0.0/8, ::1, localhost); pass --allow-remote to allow it")]
    NotLoopback(String),
}

/// One node to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, used for the WebSocket handshake.
    pub url: String,
    /// Where the TCP connection goes.
    pub addr: SocketAddr,
}

/// Host and port of a `ws://` URL, checked against the loopback rule.
pub fn check_url(url: &str, allow_remote: bool) -> Result<(String, u16), TargetError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| TargetError::Invalid(url.to_string()))?;
    if uri.scheme_str() != Some("ws") {
        return Err(TargetError::Scheme(url.to_string()));
    }
    let host = uri
        .host()
        .ok_or_else(|| TargetError::NoHost(url.to_string()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !allow_remote && !is_loopback_host(&host) {
        return Err(TargetError::NotLoopback(url.to_string()));
    }
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// Whether a host name or literal address is loopback.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolves every URL, refusing non-loopback hosts (also after resolution, so a
/// name that points elsewhere is refused too).
pub async fn resolve(urls: &[String], allow_remote: bool) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(urls.len());
    for url in urls {
        let (host, port) = check_url(url, allow_remote)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| anyhow::anyhow!("`{url}`: host did not resolve"))?;
        if !allow_remote && !addr.ip().is_loopback() {
            return Err(TargetError::NotLoopback(url.clone()).into());
        }
        targets.push(Target {
            url: url.clone(),
            addr,
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_pass() {
        assert_eq!(
            check_url("ws://127.0.0.1:8080/ws", false),
            Ok(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            check_url("ws://127.3.2.1:9/ws", false),
            Ok(("127.3.2.1".into(), 9))
        );
        assert_eq!(
            check_url("ws://localhost/ws", false),
            Ok(("localhost".into(), 80))
        );
        assert_eq!(
            check_url("ws://[::1]:8080/ws", false),
            Ok(("::1".into(), 8080))
        );
    }

    #[test]
    fn remote_urls_are_refused_unless_allowed() {
        for url in [
            "ws://10.0.0.1:8080/ws",
            "ws://example.com/ws",
            "ws://[2001:db8::1]/ws",
        ] {
            assert_eq!(
                check_url(url, false),
                Err(TargetError::NotLoopback(url.into()))
            );
            assert!(check_url(url, true).is_ok());
        }
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert!(matches!(
            check_url("http://127.0.0.1/ws", false),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            check_url("wss://127.0.0.1/ws", false),
            Err(TargetError::Scheme(_))
        ));
        assert!(check_url("not a url", false).is_err());
    }
}
