//! WebSocket close codes the server sends, with the reason text of the codes
//! whose reason is always the same, so that each is written once.

/// A close code of ours (docs/protocol.md, "Closing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the client left; nothing to report.
    Normal,
    /// 1001: the server is shutting down, or the connection sat idle.
    GoingAway,
    /// 1002: a WebSocket protocol violation.
    ProtocolError,
    /// 1007: a frame that is not valid UTF-8.
    InvalidData,
    /// 1008: a policy violation (rate limit, join deadline, slow consumer).
    Policy,
    /// 1009: a frame over MAX_FRAME_BYTES.
    TooBig,
    /// 4000: the session was resumed on another connection.
    SessionMoved,
    /// 4001: the cluster removed this peer while its node was out of touch.
    SessionLost,
    /// 4003: removed through the Server API (kicked, or its room closed).
    Removed,
}

/// The reason of a 4003 close because the application closed the room (a
/// kick carries [`CloseCode::Removed`]'s own reason).
pub const ROOM_CLOSED_REASON: &str = "room closed by the application (server API)";

impl CloseCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::SessionMoved => 4000,
            CloseCode::SessionLost => 4001,
            CloseCode::Removed => 4003,
        }
    }

    /// The reason text for the codes that always carry the same one (the
    /// others say what happened in each case).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::SessionMoved => "session resumed on another connection",
            CloseCode::SessionLost => {
                "session lost: the cluster no longer holds this peer; join again"
            }
            CloseCode::Removed => {
                "removed by the application (server API); do not reconnect to this room"
            }
            _ => "",
        }
    }

    /// The code a number stands for, if it is one of ours.
    pub fn from_code(code: u16) -> Option<Self> {
        [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::ProtocolError,
            CloseCode::InvalidData,
            CloseCode::Policy,
            CloseCode::TooBig,
            CloseCode::SessionMoved,
            CloseCode::SessionLost,
            CloseCode::Removed,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}
