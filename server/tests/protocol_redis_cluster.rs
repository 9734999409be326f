//! The protocol suite against a Redis Cluster: three masters built with
//! `redis-cli --cluster create`, two `switchboard` nodes with
//! `REDIS_CLUSTER=true` (hash-tagged room keys, sharded pub/sub), peers of
//! every case spread across both nodes.

mod protocol;
mod support;

use support::redis::RedisCluster;
use support::{Cluster, Settings};

async fn redis_cluster(settings: Settings) -> Cluster {
    let redis = RedisCluster::start(3);
    let settings = settings
        .set("REDIS_URL", redis.url())
        .set("REDIS_CLUSTER", "true");
    Cluster::over(2, settings, Box::new(redis)).await
}

protocol::protocol_suite!(redis_cluster);
protocol::cluster_suite!(redis_cluster);
