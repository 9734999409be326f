//! Talking to Redis: the Lua scripts (one Redis Functions library:
//! `lua/common.lua` once, then each script as a function), the metered calls
//! that run them and plain commands (latency and errors by operation), and the
//! `UNAVAILABLE` answer when Redis cannot be reached.
//!
//! Why a library and not `EVALSHA`: a script sent with `EVAL` carries the
//! shared prelude and runs it on every call (defining its helpers, parsing
//! the budgets); a library runs it once per `FUNCTION LOAD`, and each `FCALL`
//! runs only the function's body. That was about a fifth of the Redis CPU of
//! a one-signal `signal.lua` call (docs/benchmarks.md).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use redis::{Cmd, Value};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::protocol::ProtocolError;

use super::keys::{peers_key, ROOM_KEY_TTL};
use super::reply::{int, internal};
use super::RedisBackend;

/// One room script: a function of the library, called with `FCALL`.
pub(super) struct Script {
    name: String,
}

/// The library's source and the functions in it.
pub(super) struct Scripts {
    /// `FUNCTION LOAD` source of the library.
    library: String,
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

/// Builds the library: the shared prelude once, then one function per
/// script whose body sees `KEYS` and `ARGV` as an `EVAL` script would.
struct Library {
    /// The scripts by name, in order.
    scripts: Vec<(&'static str, &'static str)>,
}

impl Library {
    fn new() -> Self {
        Self {
            scripts: Vec::new(),
        }
    }

    fn add(&mut self, name: &'static str, body: &'static str) -> &'static str {
        self.scripts.push((name, body));
        name
    }

    /// The library's source and its version: the first 16 hex digits of the
    /// SHA-256 of the Lua it holds. Library and function names carry the
    /// version, so nodes of different builds sharing one Redis (a rolling
    /// upgrade) each call their own functions.
    fn build(&self) -> (String, String) {
        let common = include_str!("lua/common.lua");
        let mut digest = Sha256::new();
        digest.update(common);
        for (name, body) in &self.scripts {
            digest.update(name);
            digest.update(body);
        }
        let version: String = digest
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut source = format!("#!lua name=switchboard_{version}\n{common}\n");
        for (name, body) in &self.scripts {
            source.push_str(&format!(
                "redis.register_function('{}', function(KEYS, ARGV)\nbegin(KEYS)\n{body}\nend)\n",
                function_name(&version, name)
            ));
        }
        (source, version)
    }
}

fn function_name(version: &str, script: &str) -> String {
    format!("sb_{version}_{script}")
}

impl Scripts {
    pub(super) fn load() -> Self {
        let mut lib = Library::new();
        let join = lib.add("join", include_str!("lua/join.lua"));
        let resume = lib.add("resume", include_str!("lua/resume.lua"));
        let signal = lib.add("signal", include_str!("lua/signal.lua"));
        let broadcast = lib.add("broadcast", include_str!("lua/broadcast.lua"));
        let leave = lib.add("leave", include_str!("lua/leave.lua"));
        let detach = lib.add("detach", include_str!("lua/detach.lua"));
        let expire = lib.add("expire", include_str!("lua/expire.lua"));
        let node_lost = lib.add("node_lost", include_str!("lua/node_lost.lua"));
        let set_state = lib.add("set_state", include_str!("lua/set_state.lua"));
        let update = lib.add("update", include_str!("lua/update.lua"));
        let reattach = lib.add("reattach", include_str!("lua/reattach.lua"));
        let touch = lib.add("touch", include_str!("lua/touch.lua"));
        let hook = lib.add("hook", include_str!("lua/hook.lua"));
        let room_info = lib.add("room_info", include_str!("lua/room_info.lua"));
        let server_message = lib.add("server_message", include_str!("lua/server_message.lua"));
        let api_state = lib.add("api_state", include_str!("lua/api_state.lua"));
        let kick = lib.add("kick", include_str!("lua/kick.lua"));
        let close_room = lib.add("close_room", include_str!("lua/close_room.lua"));
        let (library, version) = lib.build();
        let f = |name: &str| Script {
            name: function_name(&version, name),
        };
        Self {
            library,
            join: f(join),
            resume: f(resume),
            signal: f(signal),
            broadcast: f(broadcast),
            leave: f(leave),
            detach: f(detach),
            expire: f(expire),
            node_lost: f(node_lost),
            set_state: f(set_state),
            update: f(update),
            reattach: f(reattach),
            touch: f(touch),
            hook: f(hook),
            room_info: f(room_info),
            server_message: f(server_message),
            api_state: f(api_state),
            kick: f(kick),
            close_room: f(close_room),
        }
    }

    /// The library's name in `FUNCTION LIST` (`switchboard_VERSION`).
    fn library_name(&self) -> &str {
        self.library
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!lua name="))
            .unwrap_or("switchboard")
    }

    /// `FUNCTION LOAD REPLACE` of the library (on a Redis Cluster the client
    /// sends it to every master).
    fn load_command(&self) -> Cmd {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.library);
        cmd
    }
}

/// True for the answer to an `FCALL` of a function Redis does not have: a
/// Redis that restarted empty or was flushed, a new cluster master, or the
/// first call of this build.
fn missing_function(e: &redis::RedisError) -> bool {
    e.detail()
        .is_some_and(|d| d.starts_with("Function not found"))
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
        let mut call = redis::cmd("FCALL");
        call.arg(&script.name).arg(keys.len()).arg(keys);
        call.arg(self.publish)
            .arg(crate::backend::budget::redis_limits(&self.limits))
            .arg(ROOM_KEY_TTL.as_millis() as u64);
        for a in args {
            call.arg(*a);
        }
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let mut result: redis::RedisResult<Value> = call.query_async(&mut conn).await;
        if let Err(e) = &result {
            if missing_function(e) {
                // Load the library and call again, once: Redis lost it (or
                // never had it), and every node loads the same source.
                let loaded: redis::RedisResult<Value> =
                    self.scripts.load_command().query_async(&mut conn).await;
                result = match loaded {
                    Ok(_) => {
                        tracing::info!(
                            library = %self.scripts.library_name(),
                            "loaded the script library into Redis"
                        );
                        call.query_async(&mut conn).await
                    }
                    Err(e) => {
                        tracing::warn!(
                            library = %self.scripts.library_name(),
                            "cannot load the script library into Redis ({e}); operations answer \
                             UNAVAILABLE until it loads: Redis must be 7.0 or newer and the \
                             Redis user needs FUNCTION LOAD and FCALL (the @scripting category)"
                        );
                        Err(e)
                    }
                };
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_a_function_of_the_versioned_library() {
        let scripts = Scripts::load();
        let name = scripts.library_name().to_owned();
        let version = name.strip_prefix("switchboard_").unwrap_or_default();
        assert_eq!(version.len(), 16, "{name}");
        assert!(version.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        for script in [
            &scripts.join,
            &scripts.resume,
            &scripts.signal,
            &scripts.broadcast,
            &scripts.leave,
            &scripts.detach,
            &scripts.expire,
            &scripts.node_lost,
            &scripts.set_state,
            &scripts.update,
            &scripts.reattach,
            &scripts.touch,
        ] {
            assert!(script.name.starts_with(&format!("sb_{version}_")));
            let registered = format!("redis.register_function('{}',", script.name);
            assert_eq!(
                scripts.library.matches(&registered).count(),
                1,
                "{}",
                script.name
            );
        }
        // The same source gives the same names: nodes of one build share them.
        assert_eq!(Scripts::load().signal.name, scripts.signal.name);
    }
}
