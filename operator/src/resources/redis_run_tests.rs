//! The managed Redis's configuration, start command and probe, run for real
//! against a local `redis-server` (the test runner installs it): the command
//! the StatefulSet runs, with the environment Kubernetes would give it.

use super::*;
use crate::fixtures::{cluster, with_spec};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A local Redis started as the StatefulSet starts it; killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes of a binary-suffixed quantity such as `512Mi` (all the tests use).
fn bytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other}"),
    }
}

fn redis_container(sc: &SignalingCluster) -> k8s_openapi::api::core::v1::Container {
    let sts = redis_statefulset(sc).unwrap();
    sts.spec.template.spec.unwrap().containers.remove(0)
}

impl Redis {
    /// Starts Redis the way the StatefulSet does, in a fresh directory, and
    /// waits for its readiness probe. A port another process took between
    /// picking and binding it means a new start on another port (three at most).
    fn start(sc: &SignalingCluster, tag: &str, password: &str) -> Redis {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok(),
            "redis-server is not installed (apt-get install redis-server, or run `make test`)"
        );
        let auth = (!password.is_empty()).then_some(password);
        for attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "sb-op-redis-{tag}-{}-{attempt}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = Self::spawn(sc, dir, password);
            match redis.wait_ready(sc, auth) {
                Ok(()) => return redis,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "managed Redis did not become ready on port {}: {log}",
                    redis.port
                ),
            }
        }
        panic!("managed Redis found no free port in three tries");
    }

    fn spawn(sc: &SignalingCluster, dir: std::path::PathBuf, password: &str) -> Redis {
        let m = managed_redis(sc).unwrap();
        let conf = dir.join("redis.conf");
        std::fs::write(&conf, redis_conf(&m)).unwrap();
        let c = redis_container(sc);
        let cmd = c.command.as_ref().unwrap();
        let limit = &c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0;
        let port = free_port();
        let script = format!(
            "{} --port {port}",
            cmd[2].replace("/etc/redis/redis.conf", conf.to_str().unwrap())
        );
        assert_eq!(c.working_dir.as_deref(), Some("/data"));
        let child = Command::new(&cmd[0])
            .current_dir(&dir)
            .arg(&cmd[1])
            .arg(script)
            .env("REDIS_PASSWORD", password)
            // What the downward API gives (limits.memory, divisor 1).
            .env(MEMORY_LIMIT_ENV, bytes(limit).to_string())
            .stdout(std::fs::File::create(dir.join("redis.log")).unwrap())
            .spawn()
            .unwrap();
        Redis { child, port, dir }
    }

    /// Waits (10 s at most) for the readiness probe to pass; on failure,
    /// returns Redis's log.
    fn wait_ready(&mut self, sc: &SignalingCluster, auth: Option<&str>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !probe(sc, self.port, auth) {
            let exited = self.child.try_wait().unwrap().is_some();
            if exited || Instant::now() >= deadline {
                return Err(std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Runs the readiness probe against `port`; true when it passes.
fn probe(sc: &SignalingCluster, port: u16, auth: Option<&str>) -> bool {
    let c = redis_container(sc);
    let exec = c.readiness_probe.unwrap().exec.unwrap().command.unwrap();
    let script = exec[2].replace("redis-cli", &format!("redis-cli -p {port}"));
    let mut cmd = Command::new(&exec[0]);
    cmd.arg(&exec[1]).arg(script);
    match auth {
        Some(pw) => cmd.env("REDISCLI_AUTH", pw),
        None => cmd.env_remove("REDISCLI_AUTH"),
    };
    cmd.output().unwrap().status.success()
}

fn cli(port: u16, auth: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-p", &port.to_string()]).args(args);
    match auth {
        Some(pw) => cmd.env("REDISCLI_AUTH", pw),
        None => cmd.env_remove("REDISCLI_AUTH"),
    };
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// SET `key` to 1 MiB, handed over on stdin (too long for an argument).
fn set_mib(port: u16, key: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-x", "SET", key])
        .env_remove("REDISCLI_AUTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![b'x'; 1 << 20]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn managed_redis_starts_requires_its_password_and_keeps_an_aof() {
    let sc = cluster("chat");
    let redis = Redis::start(&sc, "aof", "s3cret");
    let port = redis.port;
    assert!(
        !probe(&sc, port, None),
        "Redis answered PING without the password"
    );
    assert!(
        !probe(&sc, port, Some("wrong")),
        "Redis accepted a wrong password"
    );
    assert!(cli(port, Some("s3cret"), &["CONFIG", "GET", "appendonly"]).contains("yes"));
    // maxmemory: 75 % of the default 512Mi limit.
    let maxmemory = cli(port, Some("s3cret"), &["CONFIG", "GET", "maxmemory"]);
    assert!(
        maxmemory.contains(&((512u64 << 20) / 100 * 75).to_string()),
        "{maxmemory}"
    );
    // The append-only file lands in the working directory (the data volume).
    let aof = redis.dir.join("appendonlydir");
    assert!(aof.is_dir(), "no AOF at {}", aof.display());
}

#[test]
fn a_full_managed_redis_refuses_writes_instead_of_growing() {
    let sc = with_spec(
        json!({"redis": {"managed": {"auth": false, "persistence": false,
        "resources": {"limits": {"memory": "4Mi"}}}}}),
    );
    let redis = Redis::start(&sc, "full", "");
    let port = redis.port;
    // Past 75 % of 4Mi, a write is refused with an OOM error (noeviction).
    let mut refused = None;
    for i in 0..8 {
        let out = set_mib(port, &format!("k{i}"));
        if !out.contains("OK") {
            refused = Some(out);
            break;
        }
    }
    let refused = refused.expect("Redis accepted 8 MiB of writes under a 4Mi limit");
    assert!(refused.contains("OOM"), "{refused}");
}

#[test]
fn managed_redis_without_auth_or_persistence() {
    let sc = with_spec(json!({"redis": {"managed": {"auth": false, "persistence": false}}}));
    let redis = Redis::start(&sc, "plain", "");
    assert!(cli(redis.port, None, &["CONFIG", "GET", "appendonly"]).contains("no"));
}
