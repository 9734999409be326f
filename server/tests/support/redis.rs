//! Redis deployments for the cluster and fault tests, all real `redis-server`
//! processes on loopback: a standalone server that can be killed and started
//! again on the same port (optionally with a password or TLS from a test CA
//! made with `openssl` at test time), and a three-master Redis Cluster built
//! with `redis-cli --cluster create`. `redis-cli` also serves to inspect keys.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::files::openssl;
pub use super::files::TempDir;

/// How long a started redis-server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port low enough that a cluster node's bus port (port +
/// 10000) exists too.
fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        if port <= 55_000 {
            return port;
        }
    }
    panic!("no free loopback port at or below 55000 (cluster bus ports are port + 10000)");
}

/// A numeric field of an `INFO` reply (`name:value` lines); panics with the
/// reply when it is missing.
pub fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no numeric `{name}` in INFO reply:\n{info}"))
}

/// A certificate authority and a server certificate for 127.0.0.1.
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// Generates a CA and a server certificate signed by it.
    pub fn generate() -> TestCa {
        let dir = TempDir::new("ca");
        let run = |args: &[&str]| openssl(dir.path(), args);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write ext.cnf");
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=switchboard-test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ]);
        TestCa { dir }
    }
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Options of a standalone server.
#[derive(Default, Clone)]
pub struct RedisOptions {
    pub password: Option<String>,
    /// Serve TLS only, with this CA's server certificate.
    pub tls: bool,
    pub cluster: bool,
}

/// A redis-server that tests can kill and start again on the same port.
pub struct Redis {
    port: u16,
    options: RedisOptions,
    ca: Option<TestCa>,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    pub fn start(options: RedisOptions) -> Redis {
        let ca = options.tls.then(TestCa::generate);
        let mut redis = Redis {
            port: free_port(),
            options,
            ca,
            child: None,
            dir: TempDir::new("redis"),
        };
        redis.spawn();
        redis
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
        ];
        args.extend([
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
        ]);
        if let Some(ca) = &self.ca {
            args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
            ]);
            args.extend([
                "--tls-cert-file".into(),
                ca.file("server.pem"),
                "--tls-key-file".into(),
                ca.file("server.key"),
            ]);
            args.extend([
                "--tls-ca-cert-file".into(),
                ca.file("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ]);
        } else {
            args.extend(["--port".into(), self.port.to_string()]);
        }
        if let Some(pw) = &self.options.password {
            args.extend(["--requirepass".into(), pw.clone()]);
        }
        if self.options.cluster {
            args.extend(["--cluster-enabled".into(), "yes".into()]);
            args.extend([
                "--cluster-config-file".into(),
                format!("nodes-{}.conf", self.port),
            ]);
            args.extend(["--cluster-node-timeout".into(), "2000".into()]);
        }
        args
    }

    /// Starts redis-server on `self.port`. A free port found by binding and
    /// releasing it can be taken by another process before redis-server binds
    /// it (and in cluster mode port + 10000 must be free too), so a server that
    /// exits at once is started again on a new port, unless `same_port`.
    fn spawn(&mut self) {
        self.spawn_with(false);
    }

    fn spawn_with(&mut self, same_port: bool) {
        for _attempt in 0..5 {
            let mut child = Command::new("redis-server")
                .args(self.args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (make test installs it)");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port was taken
                }
                if self.cli(&["PING"]).trim() == "PONG" {
                    self.child = Some(child);
                    return;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                        self.port
                    );
                }
                // redis-server has no readiness signal but its port.
                std::thread::sleep(Duration::from_millis(20));
            }
            if same_port {
                // Wait for the port to be released by whoever holds it.
                std::thread::sleep(Duration::from_millis(200));
            } else {
                self.port = free_port();
            }
        }
        panic!(
            "redis-server did not start after 5 attempts (last port {})",
            self.port
        );
    }

    /// SIGKILL: the data is gone (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_with(true);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL nodes use, with credentials and scheme.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        let auth = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_file)
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        info_field(&self.cli(&["INFO", "memory"]), "used_memory")
    }

    /// Runs redis-cli against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = &self.ca {
            cmd.args(["--tls", "--cacert", &ca.file("ca.pem")]);
        }
        if let Some(pw) = &self.options.password {
            cmd.args(["--no-auth-warning", "-a", pw]);
        }
        let out = cmd.args(args).output().expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `n` masters without replicas.
pub struct RedisCluster {
    pub masters: Vec<Redis>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let masters: Vec<Redis> = (0..n)
            .map(|_| {
                Redis::start(RedisOptions {
                    cluster: true,
                    ..Default::default()
                })
            })
            .collect();
        let addrs: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + START_TIMEOUT;
        for m in &masters {
            while !m.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    Instant::now() < deadline,
                    "Redis Cluster did not reach cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { masters }
    }

    /// A seed URL for the nodes.
    pub fn url(&self) -> String {
        self.masters[0].url()
    }

    /// `used_memory` of every master, summed.
    pub fn used_memory(&self) -> u64 {
        self.masters.iter().map(Redis::used_memory).sum()
    }

    /// Every key of the cluster matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for m in &self.masters {
            keys.extend(
                m.cli(&["--scan", "--pattern", pattern])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
        keys.sort();
        keys
    }
}
