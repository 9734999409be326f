//! switchboard-operator: runs Switchboard signaling clusters on Kubernetes.
//!
//! # Layout
//! - [`crd`]: the `SignalingCluster` resource; its schema is the CRD.
//! - [`validate`]: checks beyond the schema, each with a message saying what to fix.
//! - [`resources`]: pure builders, spec in, Kubernetes object out.
//! - [`status`]: conditions and status computed from what was observed.
//! - [`controller`]: the reconcile loop (server-side apply, no-op when unchanged),
//!   the per-object error policy, and the controller wiring.
//! - [`leader`]: leader election through a coordination.k8s.io Lease.
//! - [`metrics`]: Prometheus metrics, `/metrics` and `/healthz`.
//! - [`error`]: the error type.
//!
//! `main.rs` only parses the command line and calls into these.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod reconcile_tests;
