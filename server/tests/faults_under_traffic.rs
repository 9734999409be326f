//! Faults while traffic flows, as in production: pairs of peers on different
//! nodes keep signaling each other (tens of signals per second each) while
//! Redis is killed and restarted empty, or a node is killed with SIGKILL.
//!
//! Asserted over everything the peers saw: no joined connection is ever
//! answered `NOT_JOINED`; every acknowledged signal arrives once and in order;
//! traffic flows again soon after the fault without reconnecting (Redis) or
//! after a resume (node crash); presence is exact at the end.

mod support;

use std::time::Duration;

use support::redis::{Redis, RedisOptions};
use support::traffic::{assert_delivery, Nodes, Traffic};
use support::{Cluster, RedisProcess, ServerProcess, Settings};

/// Each peer sends a signal this often (25 per second).
const PERIOD: Duration = Duration::from_millis(40);
/// Bound of the wait for traffic before any fault.
const WARM_UP: Duration = Duration::from_secs(15);
/// How soon after Redis is back every pair must exchange signals again.
const BACK_AFTER_REDIS: Duration = Duration::from_secs(5);

/// Runs a blocking fault action (redis-server start and stop wait on the
/// process) off the runtime's workers, so the peers keep running.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("fault action panicked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_empty_under_traffic_loses_no_member() {
    let redis = Redis::start(RedisOptions::default());
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .fast_failure_detection();
    let c = Cluster::over(2, settings, Box::new(())).await;
    let nodes = Nodes::new(vec![c.ws_url(0), c.ws_url(1)]);
    let traffic = Traffic::start(&nodes, 6, PERIOD).await;
    traffic.wait_progress(5, WARM_UP).await;

    traffic.redis_dies();
    let redis = blocking(move || {
        let mut redis = redis;
        redis.kill();
        redis
    })
    .await;
    c.wait_ready(0, 503).await;
    c.wait_ready(1, 503).await;
    let _redis = blocking(move || {
        let mut redis = redis;
        redis.restart();
        redis
    })
    .await;
    let back = traffic.wait_progress(5, BACK_AFTER_REDIS).await;
    println!("every pair signaled again {back:?} after Redis came back empty");
    // A little more traffic on the restored cluster before the books close.
    traffic.wait_progress(10, WARM_UP).await;

    let reports = traffic.stop().await;
    assert_delivery(&reports);
    for r in &reports {
        assert!(
            r.closes.is_empty() && r.resumes == 0,
            "{} had to reconnect: closes {:?}",
            r.peer,
            r.closes
        );
    }
    c.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_crash_under_traffic_loses_nothing_acknowledged() {
    let redis = RedisProcess::start().await;
    let settings = Settings::new()
        .set("REDIS_URL", redis.url())
        .fast_failure_detection();
    let mut servers = Vec::new();
    for i in 0..3 {
        let name = format!("node-{i}");
        let node = settings.clone().set("SERVER_ID", &name);
        servers.push(ServerProcess::start(&name, &node).await);
    }
    let nodes = Nodes::new(servers.iter().map(|s| s.ws_url()).collect());
    let traffic = Traffic::start(&nodes, 6, PERIOD).await;
    traffic.wait_progress(5, WARM_UP).await;

    nodes.set(2, None);
    servers[2].kill();
    // The crashed node's peers resume on the others, and everyone goes on.
    let back = traffic.wait_progress(10, Duration::from_secs(20)).await;
    println!("every pair signaled again {back:?} after the crash");

    let reports = traffic.stop().await;
    assert_delivery(&reports);
    let resumed = reports.iter().filter(|r| r.resumes > 0).count();
    assert!(
        resumed >= 4,
        "the crashed node held peers that resumed: {resumed}"
    );
    for s in &servers[..2] {
        s.assert_alive();
    }
}
