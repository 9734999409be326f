//! A seeded chaos run: three nodes and one Redis under paced traffic, hit by a
//! random sequence of node crashes (SIGKILL), drains (SIGTERM) and Redis
//! restarts without its data, each followed by a replacement node where one
//! went away.
//!
//! Asserted at the end, over everything every peer saw: nothing acknowledged
//! lost, duplicated or reordered; no joined connection answered `NOT_JOINED`;
//! every resume recovered; presence exact; no node panicked.
//!
//! `CHAOS_SEED` replays a run (the seed is printed); `CHAOS_SCALE` (default 1,
//! under a minute) multiplies the pairs and the faults — the scheduled
//! workflow runs it at 10.

mod support;

use std::time::Duration;

use support::redis::{Redis, RedisOptions};
use support::traffic::{assert_delivery, Nodes, Traffic};
use support::{ServerProcess, Settings};

const NODES: usize = 3;
const PERIOD: Duration = Duration::from_millis(50);
/// Bound of the wait for every pair to signal again after a fault.
const RECOVERY: Duration = Duration::from_secs(20);

/// xorshift64*: a small deterministic generator, so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok()?.parse().ok()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash(usize),
    Drain(usize),
    RedisRestart,
}

struct Chaos {
    settings: Settings,
    servers: Vec<ServerProcess>,
    /// Nodes that were replaced, kept for their output (panic check).
    retired: Vec<ServerProcess>,
    nodes: Nodes,
    redis: Option<Redis>,
    started: usize,
}

impl Chaos {
    async fn start_node(&mut self, slot: usize) -> ServerProcess {
        self.started += 1;
        let name = format!("node-{slot}.{}", self.started);
        let settings = self.settings.clone().set("SERVER_ID", &name);
        let node = ServerProcess::start(&name, &settings).await;
        self.nodes.set(slot, Some(node.ws_url()));
        node
    }

    async fn replace(&mut self, slot: usize) {
        let fresh = self.start_node(slot).await;
        let old = std::mem::replace(&mut self.servers[slot], fresh);
        self.retired.push(old);
    }

    async fn apply(&mut self, fault: Fault, traffic: &Traffic) {
        match fault {
            Fault::Crash(slot) => {
                self.nodes.set(slot, None);
                self.servers[slot].kill();
                traffic.wait_progress(10, RECOVERY).await;
                self.replace(slot).await;
            }
            Fault::Drain(slot) => {
                self.nodes.set(slot, None);
                self.servers[slot].sigterm();
                let status = self.servers[slot].wait_exit(RECOVERY).await;
                assert!(status.success(), "a drained node exits cleanly: {status}");
                traffic.wait_progress(10, RECOVERY).await;
                self.replace(slot).await;
            }
            Fault::RedisRestart => {
                traffic.redis_dies();
                let mut redis = self.redis.take().expect("redis");
                let redis = tokio::task::spawn_blocking(move || {
                    redis.restart();
                    redis
                })
                .await
                .expect("restart redis");
                self.redis = Some(redis);
                traffic.wait_progress(10, RECOVERY).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_chaos_loses_nothing_acknowledged() {
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        now | 1
    });
    let scale = env_u64("CHAOS_SCALE").unwrap_or(1).clamp(1, 100) as usize;
    println!("chaos: CHAOS_SEED={seed} CHAOS_SCALE={scale}");
    let mut rng = Rng(seed);

    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .fast_failure_detection()
        .set("DRAIN_TIMEOUT_SECS", 5);
    let mut chaos = Chaos {
        settings,
        servers: Vec::new(),
        retired: Vec::new(),
        nodes: Nodes::default(),
        redis: Some(redis),
        started: 0,
    };
    for slot in 0..NODES {
        let node = chaos.start_node(slot).await;
        chaos.servers.push(node);
    }
    let traffic = Traffic::start(&chaos.nodes, 6 * scale, PERIOD).await;
    traffic.wait_progress(10, RECOVERY).await;

    let mut faults = Vec::new();
    for _ in 0..8 * scale {
        let slot = rng.below(NODES as u64) as usize;
        let fault = match rng.below(3) {
            0 => Fault::Crash(slot),
            1 => Fault::Drain(slot),
            _ => Fault::RedisRestart,
        };
        faults.push(fault);
        chaos.apply(fault, &traffic).await;
    }
    println!("chaos: faults {faults:?}");

    let reports = traffic.stop().await;
    let acked: usize = reports.iter().map(|r| r.acked.len()).sum();
    let resumes: u64 = reports.iter().map(|r| r.resumes).sum();
    println!("chaos: {acked} signals acknowledged, {resumes} resumes");
    assert_delivery(&reports);
    for node in chaos.servers.iter().chain(&chaos.retired) {
        node.assert_no_panic();
    }
    for node in &chaos.servers {
        node.assert_alive();
    }
}
