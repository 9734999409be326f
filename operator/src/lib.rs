//! switchboard-operator: runs Switchboard signaling clusters on Kubernetes.
//!
//! # Layout
//! Lower modules never import higher ones:
//! - [`error`]: the error type.
//! - [`crd`]: the `SignalingCluster` resource; its schema is the CRD.
//! - [`resources`]: pure builders, spec in, Kubernetes object out.
//! - [`validate`]: checks beyond the schema, each with a message saying what to fix.
//! - [`status`]: conditions and status computed from what was observed.
//! - [`caches`]: the controller's reflector caches of owned objects.
//! - [`apply`]: applies one cluster's objects (server-side apply, no-op when
//!   unchanged), each on its own so one failure never blocks the others.
//! - [`metrics`]: Prometheus metrics, `/metrics` and `/healthz`.
//! - [`controller`]: the reconcile loop, the per-object error policy, and the
//!   controller wiring.
//! - [`leader`]: leader election through a coordination.k8s.io Lease.
//!
//! `main.rs` only parses the command line and calls into these.
#![forbid(unsafe_code)]

pub mod apply;
pub mod caches;
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
