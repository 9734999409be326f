//! The protocol suite against a two-node cluster: two real `switchboard`
//! processes sharing one real `redis-server`, with the peers of every case
//! spread across both nodes; plus the cases that only make sense with several
//! nodes (resume elsewhere, node crash, cross-node consistency).

mod protocol;
mod support;

use support::Cluster;

protocol::protocol_suite!(|settings| Cluster::redis(2, settings));
protocol::cluster_suite!(|settings| Cluster::redis(2, settings));
