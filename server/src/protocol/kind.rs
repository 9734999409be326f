//! The message types of the protocol, in one enum: what the parser names an
//! inbound frame, what an event or reply is counted as, and what metrics
//! label. One list instead of several kept in step by position.

use serde::{Serialize, Serializer};

/// Every message type, both directions, plus the two names metrics give to
/// inbound frames that carry no usable type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    // Client -> server.
    Join,
    Leave,
    Signal,
    Broadcast,
    Discover,
    SetState,
    Update,
    Ping,
    /// An inbound frame that could not be parsed or named no type.
    Invalid,
    /// An inbound frame whose `type` is not one of ours.
    Unknown,
    // Server -> client (`signal` and `broadcast` also travel this way).
    Joined,
    Peers,
    Ok,
    Pong,
    Error,
    PeerJoined,
    PeerLeft,
    PeerUpdated,
    State,
    Reconnect,
    /// A message from the application backend (Server API).
    Server,
}

impl MessageType {
    /// Number of variants; metrics index arrays by `kind as usize`.
    pub const COUNT: usize = 21;

    /// The types a client may send, in the order the protocol lists them.
    pub const REQUESTS: [MessageType; 8] = [
        MessageType::Join,
        MessageType::Leave,
        MessageType::Signal,
        MessageType::Broadcast,
        MessageType::Discover,
        MessageType::SetState,
        MessageType::Update,
        MessageType::Ping,
    ];

    /// What an inbound frame can be counted as: a request, or a frame that
    /// was not one.
    pub const INBOUND: [MessageType; 10] = {
        let mut all = [MessageType::Invalid; 10];
        let mut i = 0;
        while i < Self::REQUESTS.len() {
            all[i] = Self::REQUESTS[i];
            i += 1;
        }
        all[9] = MessageType::Unknown;
        all
    };

    /// What the server sends: replies and events.
    pub const OUTBOUND: [MessageType; 13] = [
        MessageType::Joined,
        MessageType::Peers,
        MessageType::Ok,
        MessageType::Pong,
        MessageType::Error,
        MessageType::PeerJoined,
        MessageType::PeerLeft,
        MessageType::PeerUpdated,
        MessageType::State,
        MessageType::Reconnect,
        MessageType::Signal,
        MessageType::Broadcast,
        MessageType::Server,
    ];

    /// The type as it appears on the wire (and in metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Join => "join",
            MessageType::Leave => "leave",
            MessageType::Signal => "signal",
            MessageType::Broadcast => "broadcast",
            MessageType::Discover => "discover",
            MessageType::SetState => "set_state",
            MessageType::Update => "update",
            MessageType::Ping => "ping",
            MessageType::Invalid => "invalid",
            MessageType::Unknown => "unknown",
            MessageType::Joined => "joined",
            MessageType::Peers => "peers",
            MessageType::Ok => "ok",
            MessageType::Pong => "pong",
            MessageType::Error => "error",
            MessageType::PeerJoined => "peer_joined",
            MessageType::PeerLeft => "peer_left",
            MessageType::PeerUpdated => "peer_updated",
            MessageType::State => "state",
            MessageType::Reconnect => "reconnect",
            MessageType::Server => "server",
        }
    }

    /// The request type a client named, if it is one.
    pub fn request(name: &str) -> Option<Self> {
        Self::REQUESTS.into_iter().find(|t| t.as_str() == name)
    }

    /// The event type of a stored or published event body (the Redis
    /// backend reads them back as text).
    pub fn event(name: &str) -> Option<Self> {
        Self::OUTBOUND.into_iter().find(|t| t.as_str() == name)
    }
}

impl Serialize for MessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_listed_once_per_direction_and_names_round_trip() {
        let mut seen = [false; MessageType::COUNT];
        for t in MessageType::INBOUND
            .into_iter()
            .chain(MessageType::OUTBOUND)
        {
            seen[t as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "a type is in neither direction");
        for t in MessageType::REQUESTS {
            assert_eq!(MessageType::request(t.as_str()), Some(t));
        }
        for t in MessageType::OUTBOUND {
            assert_eq!(MessageType::event(t.as_str()), Some(t));
        }
        assert_eq!(MessageType::request("joined"), None);
        assert_eq!(MessageType::request("invalid"), None);
    }
}
