//! The command line: flags and environment variables into validated
//! settings. Every flag struct lives here; the types they turn into live with
//! what they configure (`config`, `auth`, `ice`), which never read flags.
//!
//! - this file: the command line and its subcommands;
//! - [`serve`]: the server's own flags into a [`crate::config::Config`];
//! - [`auth`]: the JWT, origin and admin token flags;
//! - [`ice`]: the STUN/TURN flags.

pub mod auth;
pub mod ice;
pub mod serve;

use clap::{Parser, Subcommand};

pub use serve::ServeArgs;

/// Command line of the `switchboard` binary.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard WebRTC signaling server",
    long_about = "Switchboard WebRTC signaling server.\n\nWithout a Redis URL it serves one \
                  embedded node with in-memory state. With REDIS_URL (or REDIS_HOST), any \
                  number of nodes sharing that Redis form one cluster.\n\nEvery option can \
                  also be set through the environment variable shown next to it."
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration and exit (secrets redacted).
    PrintConfig,
    /// Mint a JWT for development and tests and print it on standard output.
    Token(Box<crate::auth::TokenArgs>),
    /// Ask the node on this machine (at PORT) whether it is ready; exit 0 if
    /// so. For container health checks in images without a shell.
    Healthcheck {
        /// Path to probe: /ready (accepting connections) or /health (alive).
        #[arg(long, default_value = "/ready")]
        path: String,
    },
}

/// A configuration value that cannot be used: which setting, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

/// The error for `setting`.
pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}
