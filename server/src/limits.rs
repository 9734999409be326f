//! The bounds every layer checks: sizes of frames and fields, rooms,
//! connections, rates, queues and replay buffers, with their defaults. A
//! leaf: the protocol parser, the session and both backends read it, and it
//! reads nothing of theirs.

pub const DEFAULT_MAX_FRAME_BYTES: usize = 128 * 1024;
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_METADATA_BYTES: usize = 4 * 1024;
pub const DEFAULT_MAX_STATE_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_PEERS_PER_ROOM: usize = 100;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 100;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 300;
pub const DEFAULT_RATE_LIMIT_MAX_STRIKES: u32 = 100;
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_RECOVERY_BUFFER_EVENTS: usize = 512;
pub const DEFAULT_RECOVERY_BUFFER_BYTES: usize = 256 * 1024;
pub const DEFAULT_ROOM_RECOVERY_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_NODE_RECOVERY_BYTES: usize = 256 * 1024 * 1024;
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_PENDING_PER_IP: usize = 64;

/// Per-message and per-connection bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_payload_bytes: usize,
    pub max_metadata_bytes: usize,
    pub max_state_bytes: usize,
    pub max_peers_per_room: usize,
    pub max_connections: usize,
    /// Sockets not (yet) upgraded, overall and per client address.
    pub max_pending_connections: usize,
    pub max_pending_per_ip: usize,
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    pub rate_limit_max_strikes: u32,
    pub outbound_queue_bytes: usize,
    pub recovery_buffer_events: usize,
    /// Per peer: bytes of the event bodies its buffer would replay.
    pub recovery_buffer_bytes: usize,
    /// Per room: bytes its buffers hold (see `backend::budget`).
    pub room_recovery_bytes: usize,
    /// Per node, embedded backend: bytes all buffers hold.
    pub node_recovery_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            max_peers_per_room: DEFAULT_MAX_PEERS_PER_ROOM,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
            max_pending_per_ip: DEFAULT_MAX_PENDING_PER_IP,
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            rate_limit_max_strikes: DEFAULT_RATE_LIMIT_MAX_STRIKES,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            recovery_buffer_events: DEFAULT_RECOVERY_BUFFER_EVENTS,
            recovery_buffer_bytes: DEFAULT_RECOVERY_BUFFER_BYTES,
            room_recovery_bytes: DEFAULT_ROOM_RECOVERY_BYTES,
            node_recovery_bytes: DEFAULT_NODE_RECOVERY_BYTES,
        }
    }
}
