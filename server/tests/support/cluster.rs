//! `Cluster`: the system under test, one embedded node or several nodes sharing
//! one real `redis-server`.
//!
//! Cases address nodes by index and the index wraps modulo the node count, so a
//! case that gives successive peers indices 0, 1, 2… spreads them over every node
//! of a Redis-backed cluster and runs unchanged against one embedded node.

use std::net::SocketAddr;

use futures_util::future::join_all;

use super::client::Client;
use super::http::{self, HttpResponse};
use super::process::{RedisProcess, ServerProcess, Settings};
use super::redis::{Redis, RedisCluster};

pub struct Cluster {
    nodes: Vec<ServerProcess>,
    // Declared after `nodes` so the servers are killed before their backend.
    redis: Option<RedisProcess>,
    /// A Redis deployment the caller started (see `Cluster::over`).
    backing: Option<Box<dyn std::any::Any + Send + Sync>>,
    settings: Settings,
}

impl Cluster {
    /// One node with the in-memory backend (`REDIS_URL` unset).
    pub async fn embedded(settings: Settings) -> Cluster {
        let node =
            ServerProcess::start("node-0", &settings.clone().set("SERVER_ID", "node-0")).await;
        Cluster {
            nodes: vec![node],
            redis: None,
            backing: None,
            settings,
        }
    }

    /// `count` nodes, each with its own `SERVER_ID`, sharing one fresh redis-server.
    pub async fn redis(count: usize, settings: Settings) -> Cluster {
        assert!(count >= 1, "a cluster needs at least one node");
        let redis = RedisProcess::start().await;
        let starts = (0..count).map(|i| {
            let name = format!("node-{i}");
            let node_settings = settings
                .clone()
                .set("SERVER_ID", &name)
                .set("REDIS_URL", redis.url());
            async move { ServerProcess::start(&name, &node_settings).await }
        });
        let nodes = join_all(starts).await;
        Cluster {
            nodes,
            redis: Some(redis),
            backing: None,
            settings,
        }
    }

    /// `count` nodes over a Redis deployment the caller started; `settings`
    /// carry its `REDIS_URL` (and TLS or cluster options), and `backing` keeps
    /// it alive as long as the nodes.
    pub async fn over(
        count: usize,
        settings: Settings,
        backing: Box<dyn std::any::Any + Send + Sync>,
    ) -> Cluster {
        assert!(count >= 1, "a cluster needs at least one node");
        let starts = (0..count).map(|i| {
            let name = format!("node-{i}");
            let node_settings = settings.clone().set("SERVER_ID", &name);
            async move { ServerProcess::start(&name, &node_settings).await }
        });
        let nodes = join_all(starts).await;
        Cluster {
            nodes,
            redis: None,
            backing: Some(backing),
            settings,
        }
    }

    /// Whether the nodes share a Redis (standalone or cluster).
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some() || self.backing.is_some()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether peers can sit on different nodes.
    pub fn is_multi_node(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The settings every node was started with (without `SERVER_ID`/`REDIS_URL`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Node `i` modulo the node count.
    pub fn node(&self, i: usize) -> &ServerProcess {
        &self.nodes[i % self.nodes.len()]
    }

    /// `SERVER_ID` of node `i` (wrapping).
    pub fn node_id(&self, i: usize) -> String {
        format!("node-{}", i % self.nodes.len())
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.node(i).addr()
    }

    /// WebSocket URL of node `i` (wrapping).
    pub fn ws_url(&self, i: usize) -> String {
        self.node(i).ws_url()
    }

    pub fn redis_process(&self) -> Option<&RedisProcess> {
        self.redis.as_ref()
    }

    /// A new WebSocket client on node `i`, labelled for failure messages.
    pub async fn connect(&self, i: usize) -> Client {
        Client::connect_labelled(&self.ws_url(i), &format!("client@{}", self.node_id(i))).await
    }

    /// `GET path` on node `i`.
    pub async fn get(&self, i: usize, path: &str) -> HttpResponse {
        http::get(self.addr(i), path).await
    }

    /// Resident memory of every node, summed, in bytes.
    pub fn nodes_rss_bytes(&self) -> u64 {
        self.nodes.iter().map(ServerProcess::rss_bytes).sum()
    }

    /// `used_memory` of the Redis behind the nodes (every master of a Redis
    /// Cluster, summed), in bytes; `None` for an embedded node.
    pub fn redis_used_memory(&self) -> Option<u64> {
        if let Some(redis) = &self.redis {
            return Some(redis.used_memory());
        }
        let backing = self.backing.as_ref()?;
        if let Some(cluster) = backing.downcast_ref::<RedisCluster>() {
            return Some(cluster.used_memory());
        }
        backing.downcast_ref::<Redis>().map(Redis::used_memory)
    }

    /// Polls `/ready` of node `i` until it answers `status` (at most 20 s).
    pub async fn wait_ready(&self, i: usize, status: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = self.get(i, "/ready").await.status;
            if got == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {i} /ready stayed {got}, expected {status}"
            );
            // Readiness is a state with no push notification: poll it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Node `i`'s internal listener (`INTERNAL_ADDR`): its address and what
    /// it says it serves, from the node's startup log (at most 10 s).
    pub async fn internal_listener(&self, i: usize) -> (SocketAddr, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found = self.node(i).output().iter().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                if v["fields"]["message"] != "internal listener" {
                    return None;
                }
                let addr = v["fields"]["addr"].as_str()?.parse().ok()?;
                Some((addr, v["fields"]["serves"].as_str()?.to_owned()))
            });
            if let Some(found) = found {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no internal listener logged"
            );
            // The log is read by a background thread: poll it.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Panics with its output when any node exited without being asked to.
    pub fn assert_alive(&self) {
        for node in &self.nodes {
            node.assert_alive();
        }
    }
}
