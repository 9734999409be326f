//! The black-box protocol suite: every row of PROTOCOL.md as plain
//! `async fn case(c: &Cluster)` functions, and `protocol_suite!`, which turns
//! each case into a `#[tokio::test]` against a cluster built by a given
//! constructor. The same cases run against one embedded node
//! (`protocol_embedded.rs`) and against Redis-backed clusters:
//!
//! ```ignore
//! mod protocol;
//! mod support;
//! use support::Cluster;
//! protocol::protocol_suite!(|settings| Cluster::redis(2, settings));
//! ```
//!
//! Cases spread their peers with successive node indices (indices wrap), so
//! nothing in them assumes one node. Settings a case needs (short windows,
//! small limits) are listed next to it in the table below.
//!
//! # Layout
//! - `messages`: join/leave/signal/broadcast/update/ping, ids, errors, ordering.
//! - `discover`: filters and operators.
//! - `state`: merge patches, versions, conflicts, size limit.
//! - `hostile`: malformed and abusive input.
//! - `limits`: room size, sizes, rate limit, slow consumer, connection limit.
//! - `closes`: server-initiated closes reach the client intact (queued replies,
//!   then the exact code and reason); the join deadline.
//! - `recovery`: resume, replay, tokens, the resume window.
//! - `budget`: byte budgets of what is kept for resumes, under a flood.
//! - `liveness`: server pings and the idle timeout.
//! - `drain`: SIGTERM.
//! - `endpoints`: `/health`, `/ready`, `/metrics`, `/status`.
//! - `multi_node`: cases that need two or more nodes (`cluster_suite!`).

// Binaries that instantiate only `protocol_suite!` do not use `multi_node`.
#![allow(dead_code)]

pub mod budget;
pub mod closes;
pub mod discover;
pub mod drain;
pub mod endpoints;
pub mod hostile;
pub mod limits;
pub mod liveness;
pub mod messages;
pub mod multi_node;
pub mod recovery;
pub mod state;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::support::{join, Cluster};

/// Proof that the cluster still serves: two fresh peers on different nodes join
/// a fresh room and exchange a signal, and no node has exited.
pub async fn server_still_works(c: &Cluster) {
    static CHECKS: AtomicUsize = AtomicUsize::new(0);
    let room = format!("check-{}", CHECKS.fetch_add(1, Ordering::Relaxed));
    let (mut a, _) = join(c, 0, &room, "check-a").await;
    let (mut b, joined) = join(c, 1, &room, "check-b").await;
    assert_eq!(joined["peers"][0]["peer"], "check-a", "{joined}");
    a.recv_type("peer_joined").await;
    a.request_ok(json!({"type": "signal", "to": "check-b", "payload": "alive"}))
        .await;
    assert_eq!(b.recv_type("signal").await["payload"], "alive");
    c.assert_alive();
}

/// Instantiates every case as a `#[tokio::test]`; `$start` is a closure
/// `|settings: Settings| -> impl Future<Output = Cluster>`.
macro_rules! protocol_suite {
    ($start:expr) => {
        $crate::protocol::protocol_suite!(@cases $start;
            messages {
                join_reply_has_every_field => Settings::new(),
                peers_listed_and_announced => Settings::new(),
                server_assigns_unique_peer_ids => Settings::new(),
                join_validation => Settings::new(),
                not_joined_before_join => Settings::new(),
                already_joined => Settings::new(),
                peer_id_taken => Settings::new(),
                signal_delivery => Settings::new(),
                signal_to_unknown_peer => Settings::new(),
                signals_arrive_in_order => Settings::new(),
                burst_answered_in_order => Settings::new(),
                mixed_events_in_order => Settings::new(),
                broadcast_delivery => Settings::new(),
                update_semantics => Settings::new(),
                leave_then_rejoin => Settings::new(),
                ping_pong => Settings::new(),
                ids_echoed_with_their_type => Settings::new(),
                bad_id_types => Settings::new(),
                unknown_type => Settings::new(),
                unknown_fields_ignored => Settings::new(),
                rooms_are_isolated => Settings::new(),
                joined_comes_first => Settings::new(),
                concurrent_joins_exactly_once => Settings::new(),
                seq_increases_across_event_kinds => Settings::new(),
            }
            discover {
                discover_without_filters => Settings::new(),
                discover_role_and_tags => Settings::new(),
                discover_property_operators => Settings::new(),
                discover_bad_filters => Settings::new(),
                discover_follows_changes => Settings::new(),
            }
            state {
                set_state_merge_patch => Settings::new(),
                if_version_conflict => Settings::new(),
                if_version_race_has_one_winner => Settings::new(),
                state_versions_in_order => Settings::new(),
                state_size_limit => Settings::new(),
                set_state_validation => Settings::new(),
                set_state_ok_before_state => Settings::new(),
            }
            hostile {
                non_json_text => Settings::new(),
                non_object_json => Settings::new(),
                wrong_types => Settings::new(),
                binary_frames => Settings::new(),
                oversized_text_frame => Settings::new(),
                oversized_binary_frame => Settings::new(),
                huge_announced_frame => Settings::new(),
                oversized_fragmented_message => Settings::new(),
                long_string_id_is_echoed => Settings::new(),
                huge_numeric_ids => Settings::new(),
                deep_nesting => Settings::new(),
                garbage_flood => Settings::new(),
                ping_flood => Settings::new(),
                fragmented_message => Settings::new(),
                invalid_utf8 => Settings::new(),
                broken_handshakes => Settings::new(),
                abrupt_disconnects => Settings::new(),
                absurd_last_seq => Settings::new(),
            }
            limits {
                room_full => Settings::new()
                    .set("MAX_PEERS_PER_ROOM", $crate::protocol::limits::ROOM_CAP),
                default_room_cap_is_100 => Settings::new(),
                payload_size_boundary => Settings::new(),
                metadata_size_boundary => Settings::new(),
                configured_size_limits => Settings::new()
                    .set("MAX_FRAME_BYTES", 2048)
                    .set("MAX_PAYLOAD_BYTES", 1000)
                    .set("MAX_METADATA_BYTES", 100)
                    .set("MAX_STATE_BYTES", 200),
                rate_limited => Settings::new()
                    .set("RATE_LIMIT_PER_SEC", 5)
                    .set("RATE_LIMIT_BURST", 10),
                rate_limit_abuser_closed => Settings::new()
                    .set("RATE_LIMIT_PER_SEC", 5)
                    .set("RATE_LIMIT_BURST", 10),
                slow_consumer_closed => Settings::new()
                    .set("OUTBOUND_QUEUE_BYTES", 65536)
                    .set("RATE_LIMIT_PER_SEC", 100000)
                    .set("RATE_LIMIT_BURST", 100000)
                    .set("RESUME_WINDOW_SECS", 1),
                connection_limit => Settings::new().set("MAX_CONNECTIONS", 3),
            }
            closes {
                flood_reads_every_reply_then_1008 => Settings::new()
                    .set("RATE_LIMIT_PER_SEC", 1)
                    .set("RESUME_WINDOW_SECS", $crate::protocol::closes::LATE_SECS),
                oversized_frame_after_replies_gets_1009 => Settings::new()
                    .set("RESUME_WINDOW_SECS", $crate::protocol::closes::LATE_SECS),
                slow_consumer_reads_everything_then_1008 => Settings::new()
                    .set("OUTBOUND_QUEUE_BYTES", 65536)
                    .set("RATE_LIMIT_PER_SEC", 100000)
                    .set("RATE_LIMIT_BURST", 100000)
                    .set("RESUME_WINDOW_SECS", 1),
                join_deadline => Settings::new()
                    .set("JOIN_TIMEOUT_SECS", $crate::protocol::closes::JOIN_SECS),
            }
            recovery {
                resume_with_last_seq => Settings::new(),
                resume_without_last_seq => Settings::new(),
                resume_during_live_traffic => Settings::new(),
                resume_twice => Settings::new(),
                away_peer_still_listed => Settings::new(),
                resume_token_bound_to_peer => Settings::new(),
                resume_token_bound_to_room => Settings::new(),
                window_expiry => Settings::new()
                    .set("RESUME_WINDOW_SECS", $crate::protocol::recovery::SHORT_WINDOW_SECS),
                unknown_resume_token => Settings::new(),
                overlong_resume_token => Settings::new(),
                overflowed_buffer_not_recovered => Settings::new().set(
                    "RECOVERY_BUFFER_EVENTS",
                    $crate::protocol::recovery::SMALL_BUFFER_EVENTS,
                ),
                leave_ends_the_session => Settings::new(),
            }
            budget {
                peer_byte_budget_binds => Settings::new().set(
                    "RECOVERY_BUFFER_BYTES",
                    $crate::protocol::budget::SMALL_PEER_BYTES,
                ),
                room_budget_drops_largest_buffer => Settings::new()
                    .set("ROOM_RECOVERY_BYTES", $crate::protocol::budget::ROOM_BYTES),
                shared_events_replayed_to_each => Settings::new(),
                trimmed_buffer_recovers_its_tail => Settings::new()
                    .set("RECOVERY_BUFFER_EVENTS", $crate::protocol::budget::FEW_EVENTS),
                away_flood_within_budgets => Settings::new()
                    .set("ROOM_RECOVERY_BYTES", $crate::protocol::budget::FLOOD_ROOM_BYTES)
                    .set("NODE_RECOVERY_BYTES", $crate::protocol::budget::FLOOD_NODE_BYTES),
            }
            liveness {
                server_sends_pings => Settings::new()
                    .set("PING_INTERVAL_SECS", $crate::protocol::liveness::PING_SECS),
                idle_connection_closed => Settings::new()
                    .set("PING_INTERVAL_SECS", $crate::protocol::liveness::PING_SECS)
                    .set("IDLE_TIMEOUT_SECS", $crate::protocol::liveness::IDLE_SECS),
                idle_peer_left_as_timeout => Settings::new()
                    .set("PING_INTERVAL_SECS", $crate::protocol::liveness::PING_SECS)
                    .set("IDLE_TIMEOUT_SECS", $crate::protocol::liveness::IDLE_SECS)
                    .set("RESUME_WINDOW_SECS", 1),
                answering_pings_keeps_alive => Settings::new()
                    .set("PING_INTERVAL_SECS", $crate::protocol::liveness::PING_SECS)
                    .set("IDLE_TIMEOUT_SECS", $crate::protocol::liveness::IDLE_SECS),
            }
            drain {
                sigterm_drains_and_exits_zero => Settings::new()
                    .set("DRAIN_TIMEOUT_SECS", $crate::protocol::drain::DRAIN_SECS),
                sigterm_with_stuck_client => Settings::new()
                    .set("DRAIN_TIMEOUT_SECS", $crate::protocol::drain::DRAIN_SECS),
                sigterm_idle_node_exits_zero => Settings::new()
                    .set("DRAIN_TIMEOUT_SECS", $crate::protocol::drain::DRAIN_SECS),
            }
            endpoints {
                health => Settings::new(),
                ready_and_unknown_path => Settings::new(),
                metrics => Settings::new(),
                status => Settings::new(),
            }
        );
    };
    (@cases $start:expr; $( $module:ident { $( $case:ident => $settings:expr ),* $(,)? } )*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                #[allow(unused_imports)]
                use $crate::support::Settings;
                $(
                    #[tokio::test]
                    async fn $case() {
                        let start = $start;
                        let cluster = start($settings).await;
                        $crate::protocol::$module::$case(&cluster).await;
                    }
                )*
            }
        )*
    };
}
pub(crate) use protocol_suite;

/// Instantiates the cases that need two or more nodes (see `multi_node`);
/// `$start` as for `protocol_suite!`, and it must build at least two nodes.
#[allow(unused_macros)]
macro_rules! cluster_suite {
    ($start:expr) => {
        $crate::protocol::protocol_suite!(@cases $start;
            multi_node {
                resume_on_another_node_after_drain => Settings::new()
                    .set("DRAIN_TIMEOUT_SECS", $crate::protocol::drain::DRAIN_SECS),
                resume_on_another_node_after_crash => Settings::new()
                    .set("HEARTBEAT_INTERVAL_MS", 250)
                    .set("NODE_TTL_MS", 2000),
                crashed_node_peers_removed_as_node_lost => Settings::new()
                    .set("RESUME_WINDOW_SECS", $crate::protocol::recovery::SHORT_WINDOW_SECS)
                    .set("HEARTBEAT_INTERVAL_MS", 250)
                    .set("NODE_TTL_MS", 2000),
                cross_node_consistency => Settings::new(),
                signal_burst_batched_through_redis => Settings::new(),
            }
        );
    };
}
#[allow(unused_imports)]
pub(crate) use cluster_suite;
