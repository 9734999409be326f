//! Connections to Redis: a standalone server (or a primary behind a proxy)
//! through a reconnecting `ConnectionManager`, or a Redis Cluster through a
//! `ClusterConnection`, both speaking RESP3 so that pub/sub messages arrive
//! as pushes on the same multiplexed connection that runs the scripts.
//!
//! Both reconnect by themselves and resubscribe every channel after a
//! reconnect; in cluster mode subscriptions are sharded (SSUBSCRIBE) so a
//! room's messages stay on the shard that owns the room's keys.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, TlsCertificates,
    Value,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{redact_url, RedisConfig};

/// How long to wait for a TCP/TLS connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for one reply before the operation fails with `UNAVAILABLE`.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff ceiling.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Why connecting failed, and whether trying again can help.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    /// False for errors a retry cannot fix (bad credentials, bad URL, bad CA file).
    pub retryable: bool,
}

fn fatal(message: String) -> ConnectError {
    ConnectError {
        message,
        retryable: false,
    }
}

fn classify(context: String, e: redis::RedisError) -> ConnectError {
    let retryable =
        e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped();
    ConnectError {
        message: format!("{context}: {e}"),
        retryable,
    }
}

/// A connection to standalone Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects, routing pub/sub pushes to `pushes`.
    pub async fn connect(
        config: &RedisConfig,
        pushes: UnboundedSender<PushInfo>,
    ) -> Result<Self, ConnectError> {
        let shown = redact_url(&config.url);
        let certs = match &config.tls_ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    fatal(format!(
                        "cannot read REDIS_TLS_CA_FILE {}: {e}",
                        path.display()
                    ))
                })?),
            }),
            None => None,
        };
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| fatal(format!("invalid Redis URL {shown}: {e}")))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        if config.cluster {
            let mut builder = ClusterClientBuilder::new(vec![info])
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(pushes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder
                .build()
                .map_err(|e| fatal(format!("Redis Cluster client for {shown}: {e}")))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| classify(format!("cannot connect to Redis Cluster {shown}"), e))?;
            Ok(Conn::Cluster(conn))
        } else {
            let client = match certs {
                Some(certs) => redis::Client::build_with_tls(info, certs),
                None => redis::Client::open(info),
            }
            .map_err(|e| fatal(format!("Redis client for {shown}: {e}")))?;
            let manager_config = ConnectionManagerConfig::new()
                .set_push_sender(pushes)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_max_delay(MAX_RECONNECT_DELAY)
                .set_number_of_retries(2);
            let conn = ConnectionManager::new_with_config(client, manager_config)
                .await
                .map_err(|e| classify(format!("cannot connect to Redis {shown}"), e))?;
            Ok(Conn::Single(conn))
        }
    }

    /// Subscribes to a room channel (sharded in cluster mode).
    pub async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channel).await,
            Conn::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    /// Unsubscribes from a room channel.
    pub async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Conn::Single(c) => c.unsubscribe(channel).await,
            Conn::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// The publish command scripts use for room channels.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Conn::Single(_) => "PUBLISH",
            Conn::Cluster(_) => "SPUBLISH",
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
