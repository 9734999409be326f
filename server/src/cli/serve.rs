//! The server's own flags (listeners, Redis, limits, timing, logging) and
//! their validation into a [`Config`]: each bad value becomes one line that
//! names the setting and says why.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{invalid, ConfigError};
use crate::config::*;
use crate::limits::*;

/// Options of the server itself.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TCP port for HTTP and WebSocket (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = DEFAULT_HOST)]
    pub host: IpAddr,
    /// A second, internal listener (`host:port`) for `/metrics` and
    /// `/status`, which the public one then no longer serves; `/health` and
    /// `/ready` answer on both. Unset: one listener serves everything.
    #[arg(long, env = "INTERNAL_ADDR")]
    pub internal_addr: Option<std::net::SocketAddr>,
    /// Redis URL (redis:// or rediss://, user and password may be in the URL).
    /// Unset: embedded single node with in-memory state.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis host, used when REDIS_URL is unset.
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port, with REDIS_HOST.
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,
    /// Redis password (AUTH), with REDIS_HOST or to add to REDIS_URL.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Use TLS to Redis with REDIS_HOST (REDIS_URL says so by its rediss:// scheme).
    #[arg(long, env = "REDIS_TLS", default_value_t = false)]
    pub redis_tls: bool,
    /// PEM file of the CA that signed the Redis server certificate (default: system roots).
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// Treat the Redis URL as a Redis Cluster (sharded pub/sub, hash-tagged keys).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false)]
    pub redis_cluster: bool,
    /// Unique id of this node in the cluster [default: hostname plus a random suffix].
    #[arg(long, env = "SERVER_ID")]
    pub server_id: Option<String>,
    /// Region label reported in /status and logs.
    #[arg(long, env = "SERVER_REGION", default_value = "local")]
    pub server_region: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Threads serving connections; 0 means one per CPU core. Lower it when the
    /// node shares its cores with other busy processes (more threads than
    /// cores only adds context switches).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Seconds a draining node waits for clients to leave before exiting.
    #[arg(long, env = "DRAIN_TIMEOUT_SECS", default_value_t = DEFAULT_DRAIN_TIMEOUT_SECS)]
    pub drain_timeout_secs: u64,
    /// Largest WebSocket frame accepted; larger ones close the connection with 1009.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Largest signal/broadcast payload (compact JSON bytes).
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// Largest peer metadata object (compact JSON bytes).
    #[arg(long, env = "MAX_METADATA_BYTES", default_value_t = DEFAULT_MAX_METADATA_BYTES)]
    pub max_metadata_bytes: usize,
    /// Largest room state `data` (compact JSON bytes).
    #[arg(long, env = "MAX_STATE_BYTES", default_value_t = DEFAULT_MAX_STATE_BYTES)]
    pub max_state_bytes: usize,
    /// Peers per room, away (resumable) peers included.
    #[arg(long, env = "MAX_PEERS_PER_ROOM", default_value_t = DEFAULT_MAX_PEERS_PER_ROOM)]
    pub max_peers_per_room: usize,
    /// WebSocket connections per node; upgrades beyond it get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send a complete HTTP request head, from accept
    /// and, on a keep-alive connection, from the end of the previous answer.
    /// A socket that sends nothing, part of a request, or sits idle between
    /// requests is closed when it passes.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout_secs: u64,
    /// Accepted sockets that have not become WebSockets yet (HTTP requests,
    /// upgrades in progress); when it is reached the oldest of them is closed
    /// to make room for a new one.
    #[arg(long, env = "MAX_PENDING_CONNECTIONS", default_value_t = DEFAULT_MAX_PENDING_CONNECTIONS)]
    pub max_pending_connections: usize,
    /// Such sockets per client address (IPv6: per /64); a new one beyond it
    /// gets HTTP 503 and is closed. Behind a load balancer every client
    /// shares its address: raise it to MAX_PENDING_CONNECTIONS there.
    #[arg(long, env = "MAX_PENDING_PER_IP", default_value_t = DEFAULT_MAX_PENDING_PER_IP)]
    pub max_pending_per_ip: usize,
    /// Sustained messages per second per connection (token bucket rate).
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = DEFAULT_RATE_LIMIT_PER_SEC)]
    pub rate_limit_per_sec: u32,
    /// Burst of messages per connection (token bucket size).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = DEFAULT_RATE_LIMIT_BURST)]
    pub rate_limit_burst: u32,
    /// Rate-limited messages in a row after which the connection is closed (1008).
    #[arg(long, env = "RATE_LIMIT_MAX_STRIKES", default_value_t = DEFAULT_RATE_LIMIT_MAX_STRIKES)]
    pub rate_limit_max_strikes: u32,
    /// Bytes queued for one connection before it is closed as a slow consumer (1008).
    #[arg(long, env = "OUTBOUND_QUEUE_BYTES", default_value_t = DEFAULT_OUTBOUND_QUEUE_BYTES)]
    pub outbound_queue_bytes: usize,
    /// Seconds a disconnected peer may resume its session before it is removed.
    #[arg(long, env = "RESUME_WINDOW_SECS", default_value_t = DEFAULT_RESUME_WINDOW_SECS)]
    pub resume_window_secs: u64,
    /// Events kept per peer for replay on resume.
    #[arg(long, env = "RECOVERY_BUFFER_EVENTS", default_value_t = DEFAULT_RECOVERY_BUFFER_EVENTS)]
    pub recovery_buffer_events: usize,
    /// Bytes of event bodies kept per peer for replay on resume (embedded and Redis).
    #[arg(long, env = "RECOVERY_BUFFER_BYTES", default_value_t = DEFAULT_RECOVERY_BUFFER_BYTES)]
    pub recovery_buffer_bytes: usize,
    /// Bytes kept for replay per room, away peers included (each shared body
    /// once, plus bookkeeping); beyond it the largest buffers are dropped.
    #[arg(long, env = "ROOM_RECOVERY_BYTES", default_value_t = DEFAULT_ROOM_RECOVERY_BYTES)]
    pub room_recovery_bytes: usize,
    /// Bytes kept for replay on this node, all rooms together (embedded
    /// backend; in a cluster the replay data lives in Redis).
    #[arg(long, env = "NODE_RECOVERY_BYTES", default_value_t = DEFAULT_NODE_RECOVERY_BYTES)]
    pub node_recovery_bytes: usize,
    /// Seconds between server WebSocket pings.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = DEFAULT_PING_INTERVAL_SECS)]
    pub ping_interval_secs: u64,
    /// Seconds without any frame from a client before it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,
    /// Seconds a connection may stay in no room (after connecting, or after
    /// leaving one) before it is closed (1008).
    #[arg(long, env = "JOIN_TIMEOUT_SECS", default_value_t = DEFAULT_JOIN_TIMEOUT_SECS)]
    pub join_timeout_secs: u64,
    /// Milliseconds between node heartbeats to Redis (cluster mode).
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = DEFAULT_HEARTBEAT_INTERVAL_MS)]
    pub heartbeat_interval_ms: u64,
    /// Milliseconds after its last heartbeat a node is declared dead (cluster mode).
    #[arg(long, env = "NODE_TTL_MS", default_value_t = DEFAULT_NODE_TTL_MS)]
    pub node_ttl_ms: u64,
    /// Cluster mode: milliseconds a signal bound for Redis may wait for the
    /// signals of other connections to share its call (fewer, larger calls:
    /// less Redis CPU per signal, up to this much more latency). 0 sends at once.
    #[arg(long, env = "SIGNAL_LINGER_MS", default_value_t = DEFAULT_SIGNAL_LINGER_MS)]
    pub signal_linger_ms: u64,
    /// Room history: events kept per room (membership and state changes);
    /// 0 turns the history, and with it webhooks, off.
    #[arg(long, env = "HISTORY_MAX_EVENTS", default_value_t = DEFAULT_HISTORY_MAX_EVENTS)]
    pub history_max_events: usize,
    /// Room history: seconds an event is kept.
    #[arg(long, env = "HISTORY_MAX_AGE_SECS", default_value_t = DEFAULT_HISTORY_MAX_AGE_SECS)]
    pub history_max_age_secs: u64,
    /// Comma-separated http(s) URLs every room-history event is POSTed to
    /// (signed with WEBHOOK_SECRET). Unset: no webhooks.
    #[arg(long, env = "WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,
    /// Key of the webhook signature (HMAC-SHA256); required with WEBHOOK_URLS.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Milliseconds before the first webhook retry; each further retry waits twice as long.
    #[arg(long, env = "WEBHOOK_RETRY_INITIAL_MS", default_value_t = DEFAULT_WEBHOOK_RETRY_INITIAL_MS)]
    pub webhook_retry_initial_ms: u64,
    /// Longest wait between two webhook attempts, in milliseconds.
    #[arg(long, env = "WEBHOOK_RETRY_MAX_MS", default_value_t = DEFAULT_WEBHOOK_RETRY_MAX_MS)]
    pub webhook_retry_max_ms: u64,
    /// Seconds after its first attempt an unacknowledged webhook event is given up.
    #[arg(long, env = "WEBHOOK_GIVE_UP_SECS", default_value_t = DEFAULT_WEBHOOK_GIVE_UP_SECS)]
    pub webhook_give_up_secs: u64,
    /// Milliseconds one webhook POST may take (connect, send, answer).
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = DEFAULT_WEBHOOK_TIMEOUT_MS)]
    pub webhook_timeout_ms: u64,
    /// Authentication: JWT keys, origin allow-list, admin token.
    #[command(flatten)]
    pub auth: crate::cli::auth::AuthArgs,
    /// STUN/TURN servers handed to clients in `joined`.
    #[command(flatten)]
    pub ice: crate::cli::ice::IceArgs,
}

impl ServeArgs {
    /// Every count, size and duration that must not be zero.
    fn check_positive(&self) -> Result<(), ConfigError> {
        let positive = |setting: &'static str, v: u64| {
            if v == 0 {
                Err(invalid(setting, "must be greater than 0"))
            } else {
                Ok(v)
            }
        };
        positive("MAX_FRAME_BYTES", self.max_frame_bytes as u64)?;
        positive("MAX_PAYLOAD_BYTES", self.max_payload_bytes as u64)?;
        positive("MAX_METADATA_BYTES", self.max_metadata_bytes as u64)?;
        positive("MAX_STATE_BYTES", self.max_state_bytes as u64)?;
        positive("MAX_PEERS_PER_ROOM", self.max_peers_per_room as u64)?;
        positive("MAX_CONNECTIONS", self.max_connections as u64)?;
        positive("RATE_LIMIT_PER_SEC", u64::from(self.rate_limit_per_sec))?;
        positive("RATE_LIMIT_BURST", u64::from(self.rate_limit_burst))?;
        positive(
            "RATE_LIMIT_MAX_STRIKES",
            u64::from(self.rate_limit_max_strikes),
        )?;
        positive("OUTBOUND_QUEUE_BYTES", self.outbound_queue_bytes as u64)?;
        positive("RESUME_WINDOW_SECS", self.resume_window_secs)?;
        positive("RECOVERY_BUFFER_EVENTS", self.recovery_buffer_events as u64)?;
        positive("RECOVERY_BUFFER_BYTES", self.recovery_buffer_bytes as u64)?;
        // The replay budgets nest; checked here, in the order errors were
        // always reported in.
        if self.room_recovery_bytes < self.recovery_buffer_bytes {
            return Err(invalid(
                "ROOM_RECOVERY_BYTES",
                format!(
                    "{} is below RECOVERY_BUFFER_BYTES ({}); a room must be able to hold at least one full peer buffer",
                    self.room_recovery_bytes, self.recovery_buffer_bytes
                ),
            ));
        }
        if self.node_recovery_bytes < self.room_recovery_bytes {
            return Err(invalid(
                "NODE_RECOVERY_BYTES",
                format!(
                    "{} is below ROOM_RECOVERY_BYTES ({}); the node must be able to hold at least one full room",
                    self.node_recovery_bytes, self.room_recovery_bytes
                ),
            ));
        }
        positive("PING_INTERVAL_SECS", self.ping_interval_secs)?;
        positive("IDLE_TIMEOUT_SECS", self.idle_timeout_secs)?;
        positive("JOIN_TIMEOUT_SECS", self.join_timeout_secs)?;
        positive("HEARTBEAT_INTERVAL_MS", self.heartbeat_interval_ms)?;
        positive("HEADER_READ_TIMEOUT_SECS", self.header_read_timeout_secs)?;
        positive(
            "MAX_PENDING_CONNECTIONS",
            self.max_pending_connections as u64,
        )?;
        positive("MAX_PENDING_PER_IP", self.max_pending_per_ip as u64)?;
        positive("HISTORY_MAX_AGE_SECS", self.history_max_age_secs)?;
        positive("WEBHOOK_RETRY_INITIAL_MS", self.webhook_retry_initial_ms)?;
        positive("WEBHOOK_RETRY_MAX_MS", self.webhook_retry_max_ms)?;
        positive("WEBHOOK_GIVE_UP_SECS", self.webhook_give_up_secs)?;
        positive("WEBHOOK_TIMEOUT_MS", self.webhook_timeout_ms)?;
        Ok(())
    }

    /// The settings that bound each other.
    fn check_relations(&self) -> Result<(), ConfigError> {
        if self.max_pending_per_ip > self.max_pending_connections {
            return Err(invalid(
                "MAX_PENDING_PER_IP",
                format!(
                    "{} is above MAX_PENDING_CONNECTIONS ({}); use at most that (equal turns the per-address limit off)",
                    self.max_pending_per_ip, self.max_pending_connections
                ),
            ));
        }
        if self.worker_threads > 1024 {
            return Err(invalid(
                "WORKER_THREADS",
                format!(
                    "{} is more than 1024; use 0 for one per core",
                    self.worker_threads
                ),
            ));
        }
        if self.rate_limit_burst < self.rate_limit_per_sec {
            return Err(invalid(
                "RATE_LIMIT_BURST",
                format!(
                    "{} is below RATE_LIMIT_PER_SEC ({}); the bucket must hold at least one second of messages",
                    self.rate_limit_burst, self.rate_limit_per_sec
                ),
            ));
        }
        if self.ping_interval_secs >= self.idle_timeout_secs {
            return Err(invalid(
                "PING_INTERVAL_SECS",
                format!(
                    "{} must be shorter than IDLE_TIMEOUT_SECS ({}), or healthy clients would be closed as idle",
                    self.ping_interval_secs, self.idle_timeout_secs
                ),
            ));
        }
        if self.max_payload_bytes >= self.max_frame_bytes {
            return Err(invalid(
                "MAX_PAYLOAD_BYTES",
                format!(
                    "{} must be smaller than MAX_FRAME_BYTES ({}) so a maximal payload fits in a frame with its envelope",
                    self.max_payload_bytes, self.max_frame_bytes
                ),
            ));
        }
        if self.signal_linger_ms > MAX_SIGNAL_LINGER_MS {
            return Err(invalid(
                "SIGNAL_LINGER_MS",
                format!(
                    "{} is more than {MAX_SIGNAL_LINGER_MS}: a signal held that long adds visible latency; use 0 to 10",
                    self.signal_linger_ms
                ),
            ));
        }
        if self.node_ttl_ms < 2 * self.heartbeat_interval_ms {
            return Err(invalid(
                "NODE_TTL_MS",
                format!(
                    "{} must be at least twice HEARTBEAT_INTERVAL_MS ({}) or live nodes would be declared dead",
                    self.node_ttl_ms, self.heartbeat_interval_ms
                ),
            ));
        }
        Ok(())
    }

    /// The history bounds and the webhook settings.
    fn history_and_webhooks(&self) -> Result<(HistoryConfig, Option<WebhookConfig>), ConfigError> {
        let history = HistoryConfig {
            max_events: self.history_max_events,
            max_age: Duration::from_secs(self.history_max_age_secs),
        };
        let webhooks = webhooks(
            self.webhook_urls.clone(),
            self.webhook_secret.clone(),
            &history,
            [
                self.webhook_retry_initial_ms,
                self.webhook_retry_max_ms,
                self.webhook_give_up_secs.saturating_mul(1000),
                self.webhook_timeout_ms,
            ],
        )?;
        Ok((history, webhooks))
    }

    /// Validates the arguments into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.check_positive()?;
        self.check_relations()?;
        let (history, webhooks) = self.history_and_webhooks()?;
        let node_id = match self.server_id {
            Some(id) if crate::protocol::is_valid_name(&id) => id,
            Some(id) => {
                return Err(invalid(
                    "SERVER_ID",
                    format!("{id:?} must be 1-128 characters from [A-Za-z0-9._:@-]"),
                ))
            }
            None => default_node_id(),
        };
        let backend = redis_backend(
            self.redis_url,
            self.redis_host,
            self.redis_port,
            self.redis_password,
            self.redis_tls,
            self.redis_tls_ca_file,
            self.redis_cluster,
        )?;
        let auth = self.auth.into_config()?;
        let ice = self.ice.into_config()?;
        if let Some(internal) = self.internal_addr {
            if internal.port() != 0 && internal.port() == self.port {
                return Err(invalid(
                    "INTERNAL_ADDR",
                    format!(
                        "uses PORT ({}); the internal listener needs a port of its own",
                        self.port
                    ),
                ));
            }
        }
        Ok(Config {
            host: self.host,
            port: self.port,
            internal_addr: self.internal_addr,
            node_id,
            region: self.server_region,
            log_format: self.log_format,
            worker_threads: self.worker_threads,
            backend,
            limits: Limits {
                max_frame_bytes: self.max_frame_bytes,
                max_payload_bytes: self.max_payload_bytes,
                max_metadata_bytes: self.max_metadata_bytes,
                max_state_bytes: self.max_state_bytes,
                max_peers_per_room: self.max_peers_per_room,
                max_connections: self.max_connections,
                max_pending_connections: self.max_pending_connections,
                max_pending_per_ip: self.max_pending_per_ip,
                rate_limit_per_sec: self.rate_limit_per_sec,
                rate_limit_burst: self.rate_limit_burst,
                rate_limit_max_strikes: self.rate_limit_max_strikes,
                outbound_queue_bytes: self.outbound_queue_bytes,
                recovery_buffer_events: self.recovery_buffer_events,
                recovery_buffer_bytes: self.recovery_buffer_bytes,
                room_recovery_bytes: self.room_recovery_bytes,
                node_recovery_bytes: self.node_recovery_bytes,
            },
            timing: Timing {
                ping_interval: Duration::from_secs(self.ping_interval_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                join_timeout: Duration::from_secs(self.join_timeout_secs),
                resume_window: Duration::from_secs(self.resume_window_secs),
                drain_timeout: Duration::from_secs(self.drain_timeout_secs),
                heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
                node_ttl: Duration::from_millis(self.node_ttl_ms),
                signal_linger: Duration::from_millis(self.signal_linger_ms),
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            },
            auth,
            ice,
            history,
            webhooks,
        })
    }
}

/// Longest history age accepted (a year): the age is a Redis TTL in
/// milliseconds, and nothing is meant to be kept forever.
const MAX_HISTORY_AGE_SECS: u64 = 366 * 86_400;

/// The webhook settings: none without URLs; with URLs every one must be
/// http(s), the secret set and the history on. `bounds` are the retry
/// initial, retry max, give-up and timeout durations in milliseconds.
fn webhooks(
    urls: Vec<String>,
    secret: Option<String>,
    history: &HistoryConfig,
    bounds: [u64; 4],
) -> Result<Option<WebhookConfig>, ConfigError> {
    if history.max_age.as_secs() > MAX_HISTORY_AGE_SECS {
        return Err(invalid(
            "HISTORY_MAX_AGE_SECS",
            format!(
                "{} is more than a year ({MAX_HISTORY_AGE_SECS})",
                history.max_age.as_secs()
            ),
        ));
    }
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    for url in &urls {
        if let Err(why) = crate::config::parse_http_url(url) {
            return Err(invalid(
                "WEBHOOK_URLS",
                format!("{:?} {why}", redact_url(url)),
            ));
        }
    }
    let secret = match secret {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(invalid(
                "WEBHOOK_SECRET",
                "must be set when WEBHOOK_URLS is: receivers need it to verify the Switchboard-Signature header",
            ))
        }
    };
    if !history.enabled() {
        return Err(invalid(
            "HISTORY_MAX_EVENTS",
            "is 0 (history off), but webhooks deliver history events: raise it or unset WEBHOOK_URLS",
        ));
    }
    let [initial, max, give_up, timeout] = bounds;
    if max < initial {
        return Err(invalid(
            "WEBHOOK_RETRY_MAX_MS",
            format!("{max} is below WEBHOOK_RETRY_INITIAL_MS ({initial})"),
        ));
    }
    Ok(Some(WebhookConfig {
        urls,
        secret,
        retry_initial: Duration::from_millis(initial),
        retry_max: Duration::from_millis(max),
        give_up: Duration::from_millis(give_up),
        timeout: Duration::from_millis(timeout),
    }))
}

fn redis_backend(
    url: Option<String>,
    host: Option<String>,
    port: u16,
    password: Option<String>,
    tls: bool,
    tls_ca_file: Option<PathBuf>,
    cluster: bool,
) -> Result<BackendConfig, ConfigError> {
    let url = match (
        url.filter(|u| !u.is_empty()),
        host.filter(|h| !h.is_empty()),
    ) {
        (Some(url), _) => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "REDIS_URL",
                    format!(
                        "{:?} must start with redis:// or rediss:// (TLS)",
                        redact_url(&url)
                    ),
                ));
            }
            match password {
                Some(pw) if !url.contains('@') => {
                    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", &url));
                    format!("{scheme}://:{}@{rest}", percent_encode(&pw))
                }
                _ => url,
            }
        }
        (None, Some(host)) => {
            let scheme = if tls { "rediss" } else { "redis" };
            let auth = password
                .map(|pw| format!(":{}@", percent_encode(&pw)))
                .unwrap_or_default();
            format!("{scheme}://{auth}{host}:{port}")
        }
        (None, None) => return Ok(BackendConfig::Memory),
    };
    if let Some(ca) = &tls_ca_file {
        if !ca.is_file() {
            return Err(invalid(
                "REDIS_TLS_CA_FILE",
                format!("{} is not a readable file", ca.display()),
            ));
        }
    }
    Ok(BackendConfig::Redis(RedisConfig {
        url,
        tls_ca_file,
        cluster,
    }))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["switchboard"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().serve.into_config()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.timing, Timing::default());
        assert_eq!(c.backend, BackendConfig::Memory);
    }

    #[test]
    fn the_signal_linger_is_bounded() {
        let linger = |ms: &str| parse(&["--signal-linger-ms", ms]);
        assert_eq!(
            linger("2").unwrap().timing.signal_linger,
            std::time::Duration::from_millis(2)
        );
        assert!(linger(&MAX_SIGNAL_LINGER_MS.to_string()).is_ok());
        let e = linger(&(MAX_SIGNAL_LINGER_MS + 1).to_string()).unwrap_err();
        assert_eq!(e.setting, "SIGNAL_LINGER_MS");
        assert!(e.reason.contains("latency"), "{e}");
    }

    #[test]
    fn webhook_settings_are_checked_at_startup() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(parse(&[]).unwrap().webhooks.is_none());
        let e = err(&["--webhook-urls", "ftp://x/hook", "--webhook-secret", "s"]);
        assert_eq!(e.setting, "WEBHOOK_URLS");
        assert!(e.reason.contains("http"), "{e}");
        assert_eq!(
            err(&["--webhook-urls", "http://x/hook"]).setting,
            "WEBHOOK_SECRET"
        );
        let off = ["--webhook-urls", "http://x", "--webhook-secret", "s"];
        assert_eq!(
            err(&[&off[..], &["--history-max-events", "0"]].concat()).setting,
            "HISTORY_MAX_EVENTS"
        );
        assert_eq!(
            err(&["--history-max-age-secs", "0"]).setting,
            "HISTORY_MAX_AGE_SECS"
        );
        let c = parse(&[
            "--webhook-urls",
            "http://127.0.0.1:9000/a,https://hooks.example.com/b?x=1",
            "--webhook-secret",
            "s",
        ])
        .unwrap();
        let hooks = c.webhooks.unwrap();
        assert_eq!(hooks.urls.len(), 2);
        assert!(
            !format!("{hooks:?}").contains("\"s\""),
            "secret must not be printed"
        );
        let url = crate::config::parse_http_url("https://[::1]/p?q").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 443, "/p?q")
        );
        assert!(crate::config::parse_http_url("http://u:p@x/").is_err());
        assert!(crate::config::parse_http_url("http://x:0/").is_err());
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert_eq!(
            parse(&["--rate-limit-burst", "10"]).unwrap_err().setting,
            "RATE_LIMIT_BURST"
        );
        assert_eq!(
            parse(&["--ping-interval-secs", "60"]).unwrap_err().setting,
            "PING_INTERVAL_SECS"
        );
        assert_eq!(
            parse(&["--max-peers-per-room", "0"]).unwrap_err().setting,
            "MAX_PEERS_PER_ROOM"
        );
        assert_eq!(
            parse(&["--join-timeout-secs", "0"]).unwrap_err().setting,
            "JOIN_TIMEOUT_SECS"
        );
        assert_eq!(
            parse(&["--redis-url", "http://x"]).unwrap_err().setting,
            "REDIS_URL"
        );
        assert_eq!(
            parse(&["--server-id", "a b"]).unwrap_err().setting,
            "SERVER_ID"
        );
        assert_eq!(
            parse(&["--room-recovery-bytes", "1000"])
                .unwrap_err()
                .setting,
            "ROOM_RECOVERY_BYTES"
        );
        assert_eq!(
            parse(&[
                "--room-recovery-bytes",
                "1000000",
                "--node-recovery-bytes",
                "999999"
            ])
            .unwrap_err()
            .setting,
            "NODE_RECOVERY_BYTES"
        );
        assert_eq!(
            parse(&["--max-payload-bytes", "200000"])
                .unwrap_err()
                .setting,
            "MAX_PAYLOAD_BYTES"
        );
        assert_eq!(
            parse(&["--header-read-timeout-secs", "0"])
                .unwrap_err()
                .setting,
            "HEADER_READ_TIMEOUT_SECS"
        );
        assert_eq!(
            parse(&[
                "--max-pending-connections",
                "10",
                "--max-pending-per-ip",
                "11"
            ])
            .unwrap_err()
            .setting,
            "MAX_PENDING_PER_IP"
        );
    }

    #[test]
    fn redis_settings_compose_a_url() {
        let c = parse(&[
            "--redis-host",
            "cache",
            "--redis-password",
            "p@ss",
            "--redis-tls",
        ])
        .unwrap();
        let BackendConfig::Redis(r) = c.backend else {
            panic!()
        };
        assert_eq!(r.url, "rediss://:p%40ss@cache:6379");
        assert!(!format!("{r:?}").contains("p%40ss"));
        let c = parse(&["--redis-url", "redis://h:1", "--redis-password", "x"]).unwrap();
        let BackendConfig::Redis(r) = c.backend else {
            panic!()
        };
        assert_eq!(r.url, "redis://:x@h:1");
    }
}
