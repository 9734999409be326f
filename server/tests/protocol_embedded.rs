//! The protocol suite against one embedded node (in-memory backend, no Redis):
//! every case of `protocol/` as its own test, each with its own server process
//! on port 0.

mod protocol;
mod support;

use support::Cluster;

protocol::protocol_suite!(|settings| Cluster::embedded(settings));
