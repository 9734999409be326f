//! Wire types of the signaling protocol (docs/protocol.md): the vocabulary
//! every other module speaks. No I/O lives here.
//!
//! - this file: error codes, request ids, peers, room state, parsed requests;
//! - [`kind`]: the one list of message types, [`close`]: the close codes;
//! - [`parse`]: client frames into [`Request`]s, each field validated;
//! - [`event`]: event bodies and their per-recipient `seq` stamp;
//!   [`reply`]: direct replies;
//! - [`filters`]: `discover` filters; [`state`]: room-state merge patches.
//!
//! Inside this folder the files may use each other; outside it only
//! [`crate::limits`] is imported (the sizes parsing checks against).

pub mod close;
pub mod event;
pub mod filters;
pub mod kind;
pub mod parse;
pub mod reply;
pub mod state;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use close::CloseCode;
pub use event::{stamp, EventBody};
pub use filters::Filters;
pub use kind::MessageType;
pub use parse::{is_valid_name, parse, Parsed};

/// Largest integer id the protocol accepts (2^53, what JavaScript can hold exactly).
pub const MAX_SAFE_INTEGER: i64 = 1 << 53;
/// Longest room name or peer id, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest role, in characters.
pub const MAX_ROLE_CHARS: usize = 64;
/// Default role of a peer that names none.
pub const DEFAULT_ROLE: &str = "peer";
/// Longest `resume` token kept. Tokens of ours are far shorter; a longer one
/// is not kept (memory) but answered like any other invalid token: the join
/// proceeds afresh.
pub const MAX_RESUME_BYTES: usize = 1024;

/// Every error code of the protocol, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    PayloadTooLarge,
    NotJoined,
    AlreadyJoined,
    PeerIdTaken,
    PeerNotFound,
    RoomFull,
    VersionConflict,
    RateLimited,
    Unauthorized,
    Forbidden,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// All codes, for metrics that want every series present from the start.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::PeerIdTaken,
        ErrorCode::PeerNotFound,
        ErrorCode::RoomFull,
        ErrorCode::VersionConflict,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::NotJoined => "NOT_JOINED",
            ErrorCode::AlreadyJoined => "ALREADY_JOINED",
            ErrorCode::PeerIdTaken => "PEER_ID_TAKEN",
            ErrorCode::PeerNotFound => "PEER_NOT_FOUND",
            ErrorCode::RoomFull => "ROOM_FULL",
            ErrorCode::VersionConflict => "VERSION_CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: what the client is told. `version` is set for
/// `VERSION_CONFLICT` (the room's current version).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    pub version: Option<u64>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            version: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the server logged the details",
        )
    }
}

/// A validated client-chosen request id, kept as its JSON text so the reply
/// echoes it with its type unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Box<str>);

impl RequestId {
    /// Validates an `id` field.
    fn parse(raw: &RawValue) -> Result<Self, ProtocolError> {
        let text = raw.get();
        let bad = || {
            ProtocolError::bad_request("`id` must be a string or an integer between -2^53 and 2^53")
        };
        // A string id is bounded only by the frame limit.
        match text.as_bytes().first() {
            Some(b'"') => {
                // Validate it is a well-formed string; keep the original text.
                serde_json::from_str::<String>(text).map_err(|_| bad())?;
                Ok(Self(text.into()))
            }
            Some(b'-' | b'0'..=b'9') => {
                let n: i64 = text.parse().map_err(|_| bad())?;
                if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n) {
                    return Err(bad());
                }
                Ok(Self(n.to_string().into()))
            }
            _ => Err(bad()),
        }
    }

    /// The id as JSON text (`"abc"` or `42`).
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// A peer as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer: String,
    pub role: String,
    pub metadata: Map<String, Value>,
    pub joined_at: u64,
}

/// A room's shared state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoomState {
    pub version: u64,
    pub data: Map<String, Value>,
}

/// A parsed, validated client message.
#[derive(Debug)]
pub enum Request<'a> {
    Join(JoinRequest),
    Leave,
    Signal {
        to: String,
        payload: &'a RawValue,
    },
    Broadcast {
        payload: &'a RawValue,
    },
    Discover {
        filters: Filters,
    },
    SetState {
        patch: Map<String, Value>,
        if_version: Option<u64>,
    },
    Update {
        role: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Ping,
}

impl Request<'_> {
    /// The message type, for metrics and logs.
    pub fn kind(&self) -> MessageType {
        match self {
            Request::Join(_) => MessageType::Join,
            Request::Leave => MessageType::Leave,
            Request::Signal { .. } => MessageType::Signal,
            Request::Broadcast { .. } => MessageType::Broadcast,
            Request::Discover { .. } => MessageType::Discover,
            Request::SetState { .. } => MessageType::SetState,
            Request::Update { .. } => MessageType::Update,
            Request::Ping => MessageType::Ping,
        }
    }
}

/// The fields of a `join`.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub room: String,
    pub peer: Option<String>,
    /// `None` when the client named no role (the peer gets [`DEFAULT_ROLE`],
    /// or the role its token pins).
    pub role: Option<String>,
    pub metadata: Map<String, Value>,
    pub resume: Option<String>,
    pub last_seq: Option<u64>,
}

/// Why a peer left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Timeout,
    NodeLost,
    /// Another connection joined as this peer (auth on: same token subject)
    /// and took it over.
    Replaced,
    /// Removed through the Server API.
    Kicked,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Timeout => "timeout",
            LeaveReason::NodeLost => "node_lost",
            LeaveReason::Replaced => "replaced",
            LeaveReason::Kicked => "kicked",
        }
    }
}
