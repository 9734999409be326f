//! Harness for the black-box suites: real `switchboard` processes started on
//! port 0, an optional real `redis-server` they share, and WebSocket / HTTP
//! clients that talk to them over loopback.
//!
//! # Layout
//! - `process`: `Settings` (the env vars a test sets), `ServerProcess`, `RedisProcess`.
//! - `cluster`: `Cluster`, one or more nodes behind one backend; node indices wrap.
//! - `client`: `Client`, a tokio-tungstenite client with bounded waits and
//!   assertions that print everything received so far when they fail.
//! - `raw`: `RawWs`, a hand-rolled WebSocket client for what tungstenite will not
//!   do (never answer pings, fragment frames, send invalid UTF-8).
//! - `http`: a minimal HTTP/1.1 GET for `/health`, `/ready`, `/metrics`, `/status`.
//! - `json`: assertions on protocol messages (exact key sets, error codes).
//! - `redis`: Redis deployments for fault tests (restartable, password, TLS with
//!   a test CA, a three-master Redis Cluster) and key inspection.
//! - `hooks`: a real webhook receiver (records POSTs, answers 500 on demand,
//!   stops and resumes on its port) and the signature check.
//! - `files`: scratch directories and `openssl` for test keys and certificates.
//! - `traffic`: pairs of resuming peers that keep signaling each other while a
//!   fault test breaks things, and the delivery assertions over what they saw.
//!
//! Every wait is bounded; nothing sleeps to synchronize. Each test binary uses a
//! different subset of these helpers, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod files;
pub mod hooks;
pub mod http;
pub mod json;
pub mod process;
pub mod raw;
pub mod redis;
pub mod traffic;

pub use client::{join, join_with, Client, CLOSE_TIMEOUT};
pub use cluster::Cluster;
pub use json::*;
pub use process::{RedisProcess, ServerProcess, Settings};

use std::time::Duration;

/// Default bound of one wait for a message. Generous: a loaded 2-core CI box
/// runs several servers at once, and a healthy server answers in milliseconds.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `assert_quiet` listens after its ping round trip.
pub const QUIET: Duration = Duration::from_millis(300);
