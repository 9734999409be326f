//! Key and channel names: every room key carries the hash tag `{room}`, so
//! that one script can change a room atomically on a Redis Cluster too.
//! docs/redis.md lists them all; this file is where they are spelled.

use std::time::Duration;

/// TTL of every room key, refreshed on writes and by the periodic touch.
pub(super) const ROOM_KEY_TTL: Duration = Duration::from_secs(3600);

/// TTL of the cluster-wide indexes (`sb:nodes`, `sb:away`), refreshed by every
/// heartbeat of every node.
pub(super) const INDEX_TTL: Duration = Duration::from_secs(86_400);

pub(super) const NODES_KEY: &str = "sb:nodes";

pub(super) const AWAY_KEY: &str = "sb:away";

/// Rooms that may have undelivered webhook events (set; see `history.rs`).
pub(super) const HOOKS_KEY: &str = "sb:hooks";

pub(super) fn history_key(room: &str) -> String {
    format!("sb:{{{room}}}:history")
}

/// Every room (all scored 0, so that `ZRANGEBYLEX` pages through them by
/// name) for the Server API's listing; entries of rooms gone are pruned.
pub(super) const ROOMS_KEY: &str = "sb:rooms";

pub(super) fn peers_key(room: &str) -> String {
    format!("sb:{{{room}}}:peers")
}

pub(super) fn state_key(room: &str) -> String {
    format!("sb:{{{room}}}:state")
}

pub(super) fn channel(room: &str, node: &str) -> String {
    format!("sb:{{{room}}}:node:{node}")
}

pub(super) fn node_key(node: &str) -> String {
    format!("sb:n:{node}")
}

pub(super) fn node_rooms_key(node: &str) -> String {
    format!("sb:n:{node}:rooms")
}

pub(super) fn reap_key(node: &str) -> String {
    format!("sb:reap:{node}")
}

/// The room of a channel name `sb:{room}:node:<node>`.
pub(super) fn room_of_channel(channel: &str) -> Option<&str> {
    let rest = channel.strip_prefix("sb:{")?;
    let end = rest.find("}:node:")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let ch = channel("room:1@x", "node-a");
        assert_eq!(ch, "sb:{room:1@x}:node:node-a");
        assert_eq!(room_of_channel(&ch), Some("room:1@x"));
        assert_eq!(room_of_channel("other"), None);
        assert_eq!(peers_key("r"), "sb:{r}:peers");
    }
}
