//! Talking to Redis: the Lua scripts (each prefixed with `lua/common.lua`),
//! the metered calls that run them and plain commands (latency and errors by
//! operation), and the `UNAVAILABLE` answer when Redis cannot be reached.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use redis::{Script, Value};

use crate::metrics::Metrics;
use crate::protocol::ProtocolError;

use super::keys::{peers_key, ROOM_KEY_TTL};
use super::reply::{int, internal};
use super::RedisBackend;

pub(super) struct Scripts {
    pub(super) join: Script,
    pub(super) resume: Script,
    pub(super) signal: Script,
    pub(super) broadcast: Script,
    pub(super) leave: Script,
    pub(super) detach: Script,
    pub(super) expire: Script,
    pub(super) node_lost: Script,
    pub(super) set_state: Script,
    pub(super) update: Script,
    pub(super) reattach: Script,
    pub(super) touch: Script,
    pub(super) hook: Script,
    pub(super) room_info: Script,
    pub(super) server_message: Script,
    pub(super) api_state: Script,
    pub(super) kick: Script,
    pub(super) close_room: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        let common = include_str!("lua/common.lua");
        let s = |body: &str| Script::new(&format!("{common}\n{body}"));
        Self {
            join: s(include_str!("lua/join.lua")),
            resume: s(include_str!("lua/resume.lua")),
            signal: s(include_str!("lua/signal.lua")),
            broadcast: s(include_str!("lua/broadcast.lua")),
            leave: s(include_str!("lua/leave.lua")),
            detach: s(include_str!("lua/detach.lua")),
            expire: s(include_str!("lua/expire.lua")),
            node_lost: s(include_str!("lua/node_lost.lua")),
            set_state: s(include_str!("lua/set_state.lua")),
            update: s(include_str!("lua/update.lua")),
            reattach: s(include_str!("lua/reattach.lua")),
            touch: s(include_str!("lua/touch.lua")),
            hook: s(include_str!("lua/hook.lua")),
            room_info: s(include_str!("lua/room_info.lua")),
            server_message: s(include_str!("lua/server_message.lua")),
            api_state: s(include_str!("lua/api_state.lua")),
            kick: s(include_str!("lua/kick.lua")),
            close_room: s(include_str!("lua/close_room.lua")),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OpLabel {
    pub(super) op: &'static str,
}

/// Redis metrics, registered into the node's registry.
pub(super) struct RedisMetrics {
    pub(super) latency: Family<OpLabel, Histogram>,
    pub(super) errors: Family<OpLabel, Counter>,
    pub(super) pubsub_in: Counter,
    pub(super) pubsub_out: Counter,
    pub(super) reconnects: Counter,
    pub(super) data_loss_recoveries: Counter,
}

impl RedisMetrics {
    pub(super) fn register(metrics: &mut Metrics) -> Self {
        let latency = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 14))
        });
        let errors = Family::<OpLabel, Counter>::default();
        let pubsub_in = Counter::default();
        let pubsub_out = Counter::default();
        let reconnects = Counter::default();
        let data_loss_recoveries = Counter::default();
        let r = metrics.registry_mut();
        r.register(
            "redis_op_seconds",
            "Latency of Redis operations, by operation",
            latency.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis operations, by operation",
            errors.clone(),
        );
        r.register(
            "redis_pubsub_received",
            "Pub/sub messages received from Redis",
            pubsub_in.clone(),
        );
        r.register(
            "redis_pubsub_published",
            "Pub/sub messages published by this node's scripts",
            pubsub_out.clone(),
        );
        r.register(
            "redis_reconnects",
            "Times the Redis connection was lost",
            reconnects.clone(),
        );
        r.register(
            "redis_reregistrations",
            "Times this node re-registered its peers after Redis lost its data",
            data_loss_recoveries.clone(),
        );
        Self {
            latency,
            errors,
            pubsub_in,
            pubsub_out,
            reconnects,
            data_loss_recoveries,
        }
    }
}

pub(super) fn unavailable(op: &str, e: &redis::RedisError) -> ProtocolError {
    ProtocolError::unavailable(format!(
        "the shared backend is unreachable ({op}: {}); retry shortly",
        e.kind_str()
    ))
}

pub(super) trait RedisErrorExt {
    fn kind_str(&self) -> String;
}

impl RedisErrorExt for redis::RedisError {
    fn kind_str(&self) -> String {
        if self.is_timeout() {
            "timeout".into()
        } else if self.is_io_error() || self.is_connection_dropped() || self.is_connection_refusal()
        {
            "connection lost".into()
        } else {
            format!("{:?}", self.kind())
        }
    }
}

impl RedisBackend {
    /// Runs a room script: KEYS = the room's peer hash; ARGV = the common
    /// prefix (publish command, replay limits, TTL) plus `args`.
    pub(super) async fn script(
        &self,
        op: &'static str,
        script: &Script,
        room: &str,
        args: &[&str],
    ) -> Result<Vec<Value>, ProtocolError> {
        self.script_keys(op, script, &[peers_key(room)], args).await
    }

    /// [`Self::script`] with the peer hashes of several rooms (one room, or
    /// rooms in one hash slot, on a Redis Cluster).
    pub(super) async fn script_keys(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[String],
        args: &[&str],
    ) -> Result<Vec<Value>, ProtocolError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation
            .arg(self.publish)
            .arg(crate::backend::budget::redis_limits(&self.limits))
            .arg(ROOM_KEY_TTL.as_millis() as u64);
        for a in args {
            invocation.arg(*a);
        }
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<Value> = invocation.invoke_async(&mut conn).await;
        self.metrics
            .latency
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Value::Array(values)) => {
                if let Some(n) = values.get(1).and_then(int) {
                    self.metrics.pubsub_out.inc_by(n.max(0) as u64);
                }
                Ok(values)
            }
            Ok(other) => Err(internal(&format!("{op} returned {other:?}"))),
            Err(e) => {
                self.metrics.errors.get_or_create(&OpLabel { op }).inc();
                Err(unavailable(op, &e))
            }
        }
    }

    pub(super) async fn command<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let result = cmd.query_async(&mut conn).await;
        self.metrics
            .latency
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.get_or_create(&OpLabel { op }).inc();
        }
        result
    }

    /// Runs commands one after the other (keys in different cluster slots).
    pub(super) async fn each(
        &self,
        op: &'static str,
        cmds: &[redis::Cmd],
    ) -> Result<(), redis::RedisError> {
        for cmd in cmds {
            self.command::<Value>(op, cmd).await?;
        }
        Ok(())
    }
}
