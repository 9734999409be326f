//! Child processes: the real `switchboard` binary and a real `redis-server`.
//!
//! Both are killed when dropped. Their output is drained by background threads
//! so a pipe never fills, and kept so a failing test can show it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long a server may take to print its `listening` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long redis-server may take to answer PING.
const REDIS_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of captured output shown when a test fails.
const SHOWN_LINES: usize = 80;

/// Environment variables of the host that reach the child; everything else is
/// cleared so a developer's shell (a stray `PORT` or `REDIS_URL`) cannot leak in.
const PASSED_THROUGH: [&str; 5] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "RUST_BACKTRACE",
    "LLVM_PROFILE_FILE",
];

/// Server settings of one test, as the env vars the binary reads.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    vars: Vec<(String, String)>,
}

impl Settings {
    /// The defaults of PROTOCOL.md (nothing set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one env var (replacing an earlier value).
    /// Heartbeats every 200 ms and a node dead after 1 s, so that fault
    /// tests see failures detected quickly.
    pub fn fast_failure_detection(self) -> Self {
        self.set("HEARTBEAT_INTERVAL_MS", 200)
            .set("NODE_TTL_MS", 1000)
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.to_string()));
        self
    }

    /// The value set for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A setting read as seconds, with its documented default.
    pub fn secs(&self, key: &str, default: u64) -> Duration {
        Duration::from_secs(
            self.get(key)
                .map_or(default, |v| v.parse().expect("integer setting")),
        )
    }

    fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Captured output lines of a child, shared with its drain threads.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn push(&self, line: String) {
        // A poisoned lock only means another thread panicked while pushing.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let skip = lines.len().saturating_sub(n);
        lines[skip..].join("\n")
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads `reader` line by line into `output` until EOF, calling `on_line` on each.
fn drain(
    reader: impl Read + Send + 'static,
    output: Output,
    prefix: &'static str,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    on_line(&line);
                    output.push(format!("{prefix}{line}"));
                }
            }
        }
    });
}

/// Extracts `fields.addr` from the server's `listening` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}

/// One running `switchboard` process. Killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    name: String,
    output: Output,
    /// Set once the test has asked the process to stop (SIGTERM or kill), so an
    /// exit is not reported as a crash.
    stopping: AtomicBool,
}

impl ServerProcess {
    /// Starts the binary with `HOST=127.0.0.1 PORT=0 LOG_FORMAT=json RUST_LOG=info`
    /// plus `settings`, and waits for its `listening` line.
    pub async fn start(name: &str, settings: &Settings) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear();
        for key in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.envs([
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ]);
        cmd.envs(settings.vars());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the switchboard binary");
        let pid = child.id();
        let output = Output::default();

        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        drain(
            child.stdout.take().expect("piped stdout"),
            output.clone(),
            "",
            move |line| {
                if let Some(addr) = listening_addr(line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            },
        );
        drain(
            child.stderr.take().expect("piped stderr"),
            output.clone(),
            "stderr: ",
            |_| {},
        );

        let addr = match tokio::time::timeout(STARTUP_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr,
            outcome => {
                let why = match outcome {
                    Ok(Err(_)) => "its stdout closed before a `listening` line".to_owned(),
                    _ => format!("no `listening` line within {STARTUP_TIMEOUT:?}"),
                };
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "server {name} did not start: {why} (exit: {status:?}); output:\n{}",
                    output.tail(SHOWN_LINES)
                );
            }
        };
        ServerProcess {
            child: Mutex::new(child),
            pid,
            addr,
            name: name.to_owned(),
            output,
            stopping: AtomicBool::new(false),
        }
    }

    /// `127.0.0.1:PORT` the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory of the process in bytes (`VmRSS` of `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/status of {}: {e}", self.pid, self.name));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{}/status", self.pid))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every line the process printed so far (stderr lines prefixed `stderr: `).
    pub fn output(&self) -> Vec<String> {
        self.output.lines()
    }

    /// The last lines of output, for failure messages.
    pub fn output_tail(&self) -> String {
        self.output.tail(SHOWN_LINES)
    }

    /// Sends SIGTERM (through `kill(1)`: no unsafe, no libc).
    pub fn sigterm(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid);
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().expect("try_wait on the server process")
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "server {} still running {timeout:?} after it was asked to stop; output:\n{}",
                    self.name,
                    self.output_tail()
                );
            }
            // Polling a child's exit status: there is no event to await without libc.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics when the server printed a panic message: a task that panicked
    /// leaves the process running, so only its output tells.
    pub fn assert_no_panic(&self) {
        let lines = self.output.lines();
        if let Some(at) = lines.iter().position(|l| l.contains("panicked at")) {
            let end = (at + 20).min(lines.len());
            panic!(
                "server {} panicked during the test:\n{}",
                self.name,
                lines[at.saturating_sub(5)..end].join("\n")
            );
        }
    }

    /// Panics (with the output) when the process exited without being asked
    /// to, or printed a panic.
    pub fn assert_alive(&self) {
        self.assert_no_panic();
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Some(status) = self.try_exit_status() {
            panic!(
                "server {} exited unexpectedly ({status}); output:\n{}",
                self.name,
                self.output_tail()
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let crashed = !self.stopping.load(Ordering::SeqCst) && self.try_exit_status().is_some();
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let status = child.wait();
        drop(child);
        if thread::panicking() {
            eprintln!(
                "---- output of server {} ({}, exit {status:?}) ----\n{}\n----",
                self.name,
                self.addr,
                self.output.tail(SHOWN_LINES)
            );
        } else if crashed {
            panic!(
                "server {} exited during the test ({status:?}); output:\n{}",
                self.name,
                self.output.tail(SHOWN_LINES)
            );
        } else {
            self.assert_no_panic();
        }
    }
}

/// A real `redis-server` on a free loopback port, without persistence.
pub struct RedisProcess {
    child: Child,
    port: u16,
    output: Output,
}

impl RedisProcess {
    /// Starts redis-server and waits until it answers PING.
    pub async fn start() -> RedisProcess {
        let mut last_error = String::new();
        // The free port is found by binding and releasing it, so another process
        // may take it in between: retry a few times.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free loopback port")
                .port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server is not installed; run `make test`, which installs it \
                     (Debian package redis-server)"
                ),
                Err(e) => panic!("spawn redis-server: {e}"),
            };
            let output = Output::default();
            drain(
                child.stdout.take().expect("piped stdout"),
                output.clone(),
                "",
                |_| {},
            );
            drain(
                child.stderr.take().expect("piped stderr"),
                output.clone(),
                "stderr: ",
                |_| {},
            );
            let deadline = Instant::now() + REDIS_STARTUP_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("exited with {status}:\n{}", output.tail(SHOWN_LINES));
                    break;
                }
                if ping_redis(port) {
                    return RedisProcess {
                        child,
                        port,
                        output,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on port {port} did not answer PING within \
                         {REDIS_STARTUP_TIMEOUT:?}:\n{}",
                        output.tail(SHOWN_LINES)
                    );
                }
                // Polling until the port answers: redis-server reports readiness no other way.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "INFO",
                "memory",
            ])
            .output()
            .expect("redis-cli is installed");
        crate::support::redis::info_field(&String::from_utf8_lossy(&out.stdout), "used_memory")
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- redis-server output ----\n{}\n----",
                self.output.tail(20)
            );
        }
    }
}

/// One PING over a fresh connection; true when answered `+PONG`.
fn ping_redis(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
