//! Load generator for Switchboard signaling nodes.
//!
//! # Layout
//!
//! - [`cli`]: command-line flags of every mode, with their defaults and bounds.
//! - [`target`]: turns `--url` values into socket addresses and refuses hosts that
//!   are not loopback unless `--allow-remote` is given.
//! - [`client`]: opens one WebSocket (optionally from a chosen source address) and
//!   joins a room.
//! - [`proto`]: the few protocol messages the bench writes and reads, built and
//!   parsed without a DOM.
//! - [`stats`]: latency histograms, percentiles, error counts, durations.
//! - [`relay`]: pairs ping-ponging `signal`s; throughput and round-trip latency.
//! - [`idle`]: N joined connections held open; server memory per connection.
//! - [`joins`]: fresh connections joining as fast as allowed; joins/s and latency.
//! - [`flood`]: away peers flooded with large messages; the memory the server
//!   and Redis keep for their resumes.
//! - [`limits`]: raises the open-files limit so many sockets fit.
//! - [`procfs`]: another process's RSS and CPU time, from `/proc`.

pub mod cli;
pub mod client;
pub mod flood;
pub mod idle;
pub mod joins;
pub mod limits;
pub mod procfs;
pub mod proto;
pub mod relay;
pub mod stats;
pub mod target;

use cli::{Cli, Command};

/// Runs the mode chosen on the command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Relay(args) => relay::run(args).await,
        Command::Idle(args) => idle::run(args).await,
        Command::Joins(args) => joins::run(args).await,
        Command::Flood(args) => flood::run(args).await,
    }
}

/// A short random id that keeps room names of one run apart from earlier runs
/// (peers of a previous run may still sit in the server's resume window).
pub fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}
