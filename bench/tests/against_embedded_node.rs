//! Each bench mode briefly against a real embedded node (in this process, port
//! 0, memory backend): the load generator must keep speaking the protocol the
//! server speaks, and its counting must add up.

use std::time::Duration;

use switchboard_bench::cli::{FloodArgs, IdleArgs, JoinsArgs, RelayArgs, TargetArgs};
use switchboard_bench::{flood, idle, joins, relay};
use tokio::net::TcpListener;

/// Starts a node; `unlimited` lifts the per-connection rate limit.
async fn node(unlimited: bool) -> String {
    let mut config = switchboard::config::Config::default();
    if unlimited {
        config.limits.rate_limit_per_sec = 1_000_000;
        config.limits.rate_limit_burst = 1_000_000;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    // The node lives as long as the test's runtime.
    tokio::spawn(switchboard::run(config, listener, std::future::pending()));
    url
}

fn target(url: String) -> TargetArgs {
    TargetArgs {
        urls: vec![url],
        allow_remote: false,
        source_addrs: 1,
        connect_concurrency: 8,
        json: false,
        server_pids: vec![],
    }
}

fn relay_args(url: String) -> RelayArgs {
    RelayArgs {
        target: target(url),
        connections: 8,
        room_size: 4,
        in_flight: 2,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(200),
        rate: None,
        payload_bytes: 16,
        redis_pids: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_relay_counts_round_trips() {
    let url = node(true).await;
    let s = relay::measure(relay_args(url)).await.unwrap();
    assert_eq!(s.pairs, 4);
    assert!(s.round_trips > 0, "{s:?}");
    assert_eq!(s.round_trip.count, s.round_trips);
    // Every counted round trip is two relayed signals; a few more may be
    // halves of round trips that straddle the window's edges.
    assert!(s.relayed >= 2 * s.round_trips, "{s:?}");
    assert!(s.relayed <= 2 * s.round_trips + 2 * 4 * 2 * 2, "{s:?}");
    assert_eq!(s.errors.total(), 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_relay_holds_the_rate() {
    let url = node(true).await;
    let mut args = relay_args(url);
    args.rate = Some(400);
    args.duration = Duration::from_secs(1);
    // The node runs in this process: its CPU stands in for a server's and a
    // Redis's, each reported per relayed signal.
    args.target.server_pids = vec![std::process::id()];
    args.redis_pids = vec![std::process::id()];
    let s = relay::measure(args).await.unwrap();
    assert!((200.0..=600.0).contains(&s.relayed_per_sec), "{s:?}");
    assert_eq!(s.errors.total(), 0, "{s:?}");
    assert_eq!(s.redis_cores.len(), 1, "{s:?}");
    assert!(s.server_us_per_signal.is_some_and(|us| us >= 0.0), "{s:?}");
    assert!(s.redis_us_per_signal.is_some_and(|us| us >= 0.0), "{s:?}");
    // At 400 signals/s the process idles between signals, so its threads
    // sleep: counted, and a fraction or a few per signal.
    assert!(
        s.server_sleeps_per_signal
            .is_some_and(|n| n > 0.0 && n < 100.0),
        "{s:?}"
    );
    assert!(s.redis_sleeps_per_signal.is_some_and(|n| n > 0.0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_relay_reports_the_code_and_a_hint() {
    // Default limits: 100 messages/s per connection, bursts of 300.
    let url = node(false).await;
    let mut args = relay_args(url);
    args.connections = 2;
    args.room_size = 2;
    args.in_flight = 64;
    args.duration = Duration::from_secs(1);
    let s = relay::measure(args).await.unwrap();
    assert!(s.errors.0.contains_key("RATE_LIMITED"), "{s:?}");
    assert!(s.errors.rate_limit_hint().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_join_every_connection() {
    let url = node(true).await;
    let s = joins::measure(JoinsArgs {
        target: target(url),
        count: 30,
        concurrency: 5,
        room_size: 10,
    })
    .await
    .unwrap();
    assert_eq!(s.joined, 30, "{s:?}");
    assert_eq!(s.join.count, 30);
    assert_eq!(s.errors.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_connections_and_reads_memory() {
    let url = node(true).await;
    let mut target = target(url);
    // The node runs in this process, so this process's RSS is the server's.
    target.server_pids = vec![std::process::id()];
    let s = idle::measure(IdleArgs {
        target,
        connections: 20,
        room_size: 10,
        hold: Duration::from_millis(300),
        settle: Duration::from_millis(100),
    })
    .await
    .unwrap();
    assert_eq!(s.connections, 20);
    assert_eq!(s.closed_during_hold, 0);
    assert!(s.rss_joined_kib.unwrap() > 0);
    assert!(s.kib_per_connection.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_sends_everything_and_reads_memory() {
    // Default limits: the flood stays within the default rate limit.
    let url = node(false).await;
    let mut target = target(url);
    // The node runs in this process, so this process's memory is the server's.
    target.server_pids = vec![std::process::id()];
    let s = flood::measure(FloodArgs {
        target,
        rooms: 2,
        away: 3,
        broadcasts: 2,
        signals: 1,
        payload_bytes: 1000,
        redis: None,
        settle: Duration::from_millis(100),
    })
    .await
    .unwrap();
    // Per room: 2 broadcasts and one signal to each of 3 away peers.
    assert_eq!(s.sent, 2 * (2 + 3), "{s:?}");
    assert_eq!(s.sent_bytes, s.sent * 1000, "{s:?}");
    assert_eq!(s.errors.total(), 0, "{s:?}");
    assert!(s.rss_peak_kib.unwrap() >= s.rss_after_kib.unwrap(), "{s:?}");
}

#[tokio::test]
async fn remote_urls_are_refused_before_any_traffic() {
    let mut args = relay_args("ws://192.0.2.1:8080/ws".into());
    args.duration = Duration::from_millis(1);
    let err = relay::measure(args).await.unwrap_err();
    assert!(err.to_string().contains("not loopback"), "{err}");
}
