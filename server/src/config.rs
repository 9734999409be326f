//! The validated settings of one node, as typed structs: where state lives
//! (memory or Redis), timing, logging, and the auth, ICE and limit settings
//! of the modules they configure. `cli` builds them from flags; everything
//! else reads them. Every default is a named constant.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

pub use crate::limits::Limits;

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 15;
pub const DEFAULT_RESUME_WINDOW_SECS: u64 = 30;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 25;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_JOIN_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_NODE_TTL_MS: u64 = 3000;
/// Cluster mode: how long a signal bound for Redis may wait for signals of
/// other connections to share its call (see docs/redis.md, "Signal batching").
pub const DEFAULT_SIGNAL_LINGER_MS: u64 = 0;
/// The largest SIGNAL_LINGER_MS accepted: a signal is never held longer.
pub const MAX_SIGNAL_LINGER_MS: u64 = 50;
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Room history kept per room: at most this many events…
pub const DEFAULT_HISTORY_MAX_EVENTS: usize = 1000;
/// …none older than this.
pub const DEFAULT_HISTORY_MAX_AGE_SECS: u64 = 86_400;
/// First webhook retry after this long; each further one waits twice as long…
pub const DEFAULT_WEBHOOK_RETRY_INITIAL_MS: u64 = 1000;
/// …but never longer than this between two attempts.
pub const DEFAULT_WEBHOOK_RETRY_MAX_MS: u64 = 300_000;
/// An event no receiver acknowledged within this long is given up.
pub const DEFAULT_WEBHOOK_GIVE_UP_SECS: u64 = 3600;
/// One webhook POST (connect, send, answer) must complete within this long.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 10_000;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON lines (production).
    Json,
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// JSON unless standard output is a terminal.
    Auto,
}

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    /// One node, state in this process.
    Memory,
    /// A cluster of nodes sharing a Redis.
    Redis(RedisConfig),
}

/// Connection settings for Redis.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// Full URL including credentials.
    pub url: String,
    pub tls_ca_file: Option<PathBuf>,
    pub cluster: bool,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Hides the password of a URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Liveness and resume timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// How long a connection may be in no room before it is closed.
    pub join_timeout: Duration,
    pub resume_window: Duration,
    pub drain_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub node_ttl: Duration,
    /// Cluster mode: how long a signal may wait to share a Redis call.
    pub signal_linger: Duration,
    /// Deadline for a complete HTTP request head (also bounds idle keep-alive).
    pub header_read_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            join_timeout: Duration::from_secs(DEFAULT_JOIN_TIMEOUT_SECS),
            resume_window: Duration::from_secs(DEFAULT_RESUME_WINDOW_SECS),
            drain_timeout: Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_SECS),
            heartbeat_interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            node_ttl: Duration::from_millis(DEFAULT_NODE_TTL_MS),
            signal_linger: Duration::from_millis(DEFAULT_SIGNAL_LINGER_MS),
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
        }
    }
}

/// The validated configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// The internal listener for metrics and status, if any.
    pub internal_addr: Option<std::net::SocketAddr>,
    pub node_id: String,
    pub region: String,
    pub log_format: LogFormat,
    /// Runtime worker threads; 0 = one per core.
    pub worker_threads: usize,
    pub backend: BackendConfig,
    pub limits: Limits,
    pub timing: Timing,
    /// Token verification, origins, admin token; off by default.
    pub auth: crate::auth::AuthConfig,
    /// STUN/TURN servers for `joined.ice_servers`.
    pub ice: crate::ice::IceConfig,
    /// Bounds of the room history.
    pub history: HistoryConfig,
    /// Where room-history events are POSTed; `None` when webhooks are off.
    pub webhooks: Option<WebhookConfig>,
}

/// Bounds of the room history (see docs/protocol.md, "Room history").
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// Events kept per room; 0 turns the history (and webhooks) off.
    pub max_events: usize,
    /// Events older than this are dropped.
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_HISTORY_MAX_EVENTS,
            max_age: Duration::from_secs(DEFAULT_HISTORY_MAX_AGE_SECS),
        }
    }
}

impl HistoryConfig {
    /// Whether history is recorded at all.
    pub fn enabled(&self) -> bool {
        self.max_events > 0
    }
}

/// Webhook receivers and delivery bounds (docs/webhooks.md).
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// `http://` or `https://` URLs; every event goes to each.
    pub urls: Vec<String>,
    /// The HMAC-SHA256 key of the `Switchboard-Signature` header.
    pub secret: String,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field(
                "urls",
                &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("secret", &"***")
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("give_up", &self.give_up)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            internal_addr: None,
            node_id: default_node_id(),
            region: "local".into(),
            log_format: LogFormat::Auto,
            worker_threads: 0,
            backend: BackendConfig::Memory,
            limits: Limits::default(),
            timing: Timing::default(),
            auth: crate::auth::AuthConfig {
                leeway_secs: crate::auth::DEFAULT_JWT_LEEWAY_SECS,
                ..Default::default()
            },
            ice: crate::ice::IceConfig::default(),
            history: HistoryConfig::default(),
            webhooks: None,
        }
    }
}

/// Hostname plus a random suffix, so that two processes on one host never share
/// an id and a restarted node is a new node to the cluster.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(100)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let suffix: u32 = rand::random();
    format!("{host}-{:06x}", suffix & 0xff_ffff)
}

/// A parsed `http://` or `https://` URL: whether TLS, host, port, and the
/// path with its query (at least `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses a webhook URL; the error says what is wrong with it.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, &'static str> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err("is not an http:// or https:// URL");
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err("must not carry credentials (the signature authenticates the sender)");
    }
    let default_port = if tls { 443 } else { 80 };
    let port_of = |p: &str| match p.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("has an invalid port"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, default_port),
            Some((h, p)) => (h, port_of(p.strip_prefix(':').unwrap_or(p))?),
            None => return Err("has an unclosed [ in its host"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return Err("has no valid host");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has spaces or control characters in its path");
    }
    Ok(HttpUrl {
        tls,
        host: host.to_owned(),
        port,
        path,
    })
}
