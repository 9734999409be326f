//! Command-line flags of every mode. Defaults and upper bounds are named here so
//! that each run is bounded in connections and in time.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::stats::parse_duration;

/// Most connections any mode opens.
pub const MAX_CONNECTIONS: usize = 200_000;
/// Longest any timed phase (duration, warm-up, hold) may last.
pub const MAX_PHASE: Duration = Duration::from_secs(3600);

/// Load generator for Switchboard signaling nodes (traffic goes only to the given
/// `--url`s, which must be loopback unless `--allow-remote`).
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads of the load generator's own runtime [default: one per core].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// The three measurements.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pairs of peers ping-pong `signal`s; prints relayed signals/s and round-trip
    /// percentiles.
    Relay(RelayArgs),
    /// Holds N joined connections open; with --server-pid prints server RSS per
    /// connection.
    Idle(IdleArgs),
    /// Fresh connections join rooms as fast as allowed; prints joins/s and latency.
    Joins(JoinsArgs),
    /// Rooms of peers that join and drop their connection, flooded with large
    /// broadcasts (and signals); prints the server's and Redis's memory.
    Flood(FloodArgs),
}

/// Where to connect, shared by every mode.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// WebSocket URL of a node, e.g. ws://127.0.0.1:8080/ws. Repeat for several
    /// nodes: relay puts the two peers of a pair on different nodes, the other
    /// modes spread connections round-robin.
    #[arg(long = "url", required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Allow URLs whose host is not loopback (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,
    /// Spread client sockets over source addresses 127.0.0.1 ..= 127.0.0.N (IPv4
    /// loopback targets only), for more ephemeral ports than one address has.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub source_addrs: u8,
    /// Most connections being opened (connect + join) at the same time.
    #[arg(long, default_value_t = 128, value_name = "C")]
    pub connect_concurrency: usize,
    /// Print the summary as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Process id of a server process on this machine (repeat for several nodes
    /// and Redis): relay and joins report their summed CPU use, idle their summed
    /// resident memory per connection (read from /proc).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
}

/// Flags of `relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections to open (two per pair); a multiple of --room-size.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub connections: usize,
    /// Peers per room (even; each room holds room-size/2 pairs).
    #[arg(long, default_value_t = 2, value_name = "S")]
    pub room_size: usize,
    /// Signals in flight per pair: without --rate the first peer keeps K round trips
    /// going; with --rate it is the cap above which a tick is skipped.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub in_flight: usize,
    /// Measured time, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Traffic before measuring starts (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Fixed total rate of relayed signals per second (both directions), spread
    /// evenly over the pairs; omit for closed-loop maximum throughput.
    #[arg(long, value_name = "R")]
    pub rate: Option<u64>,
    /// Extra padding bytes in every signal payload.
    #[arg(long, default_value_t = 0, value_name = "B")]
    pub payload_bytes: usize,
    /// Process id of a Redis server (repeat for each master of a Redis Cluster):
    /// its CPU is reported apart from the `--server-pid` nodes, per process and
    /// per relayed signal.
    #[arg(long = "redis-pid", value_name = "PID")]
    pub redis_pids: Vec<u32>,
}

/// Flags of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections to open and join.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub connections: usize,
    /// Peers per room.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub room_size: usize,
    /// How long to hold the joined connections.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Wait after the last join before reading the server's memory.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// Flags of `joins`.
#[derive(Debug, Args)]
pub struct JoinsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Joins to perform, each on a fresh connection (held until the end).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub count: usize,
    /// Joins in progress at the same time (overrides --connect-concurrency).
    #[arg(long, default_value_t = 100, value_name = "C")]
    pub concurrency: usize,
    /// Peers per room.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub room_size: usize,
}

/// Most messages of one kind a flood sender sends (per room or per away peer).
pub const MAX_FLOOD_MESSAGES: usize = 10_000;

/// Flags of `flood`.
#[derive(Debug, Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rooms, each with one connected sender.
    #[arg(long, default_value_t = 40, value_name = "R")]
    pub rooms: usize,
    /// Peers per room that join and then drop their TCP connection (away:
    /// resumable, so the server keeps their events).
    #[arg(long, default_value_t = 99, value_name = "A")]
    pub away: usize,
    /// Broadcasts each sender sends to its room.
    #[arg(long, default_value_t = 8, value_name = "B")]
    pub broadcasts: usize,
    /// Signals each sender sends to each away peer of its room.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub signals: usize,
    /// Size of each message's payload in bytes.
    #[arg(long, default_value_t = 60_000, value_name = "BYTES")]
    pub payload_bytes: usize,
    /// Redis to read `INFO memory` from (host:port, loopback unless
    /// --allow-remote), before, at the peak and after.
    #[arg(long, value_name = "HOST:PORT")]
    pub redis: Option<String>,
    /// Wait after the away peers dropped (so the server has seen it) and
    /// again after the flood, before reading memory.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// Checks a count against [`MAX_CONNECTIONS`].
pub fn check_count(what: &str, n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(n >= 1, "--{what} must be at least 1");
    anyhow::ensure!(
        n <= MAX_CONNECTIONS,
        "--{what} must be at most {MAX_CONNECTIONS}"
    );
    Ok(())
}

/// Checks a timed phase against [`MAX_PHASE`].
pub fn check_phase(what: &str, d: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(
        d <= MAX_PHASE,
        "--{what} must be at most {}s",
        MAX_PHASE.as_secs()
    );
    Ok(())
}
