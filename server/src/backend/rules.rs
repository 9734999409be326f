//! The join and resume rules both backends follow, and the errors they
//! answer with, written once. A backend only supplies what it alone knows:
//! whether the room holds the token's session (and the resume itself), and
//! whether the room has room.

use super::token;
use crate::protocol::{ErrorCode, JoinRequest, PeerInfo, ProtocolError, DEFAULT_ROLE};

/// What a join's `resume` field comes to before the room is looked at.
pub struct ResumeAttempt {
    /// `recovered` as a join that does not resume reports it: `Some(false)`
    /// when the join carried a token at all, `None` when it did not.
    pub recovered: Option<bool>,
    /// The token, when it names this join's room (and its peer, if the join
    /// names one): only such a token can resume. Anything else (garbage,
    /// another peer's or room's token) is no resume and the join proceeds
    /// afresh.
    pub token: Option<token::Parsed>,
}

impl ResumeAttempt {
    /// Reads the `resume` field of `request`.
    pub fn of(request: &JoinRequest) -> Self {
        match request.resume {
            None => Self {
                recovered: None,
                token: None,
            },
            Some(_) => Self {
                recovered: Some(false),
                token: token::for_join(request),
            },
        }
    }

    /// The peer id a join takes when the token resumed nothing (an expired
    /// session, a wrong secret): the token's own peer, so that a live peer
    /// of that id is `PEER_ID_TAKEN`; without a token, the requested id.
    pub fn fresh_peer(self, request: &JoinRequest) -> Option<String> {
        match self.token {
            Some(token) => Some(token.peer),
            None => request.peer.clone(),
        }
    }
}

/// The peer a fresh join creates, joined at `joined_at` (ms).
pub fn new_peer(request: &JoinRequest, peer: String, joined_at: u64) -> PeerInfo {
    PeerInfo {
        peer,
        role: request
            .role
            .clone()
            .unwrap_or_else(|| DEFAULT_ROLE.to_owned()),
        metadata: request.metadata.clone(),
        joined_at,
    }
}

/// The error for an operation by a connection that is no longer the peer's
/// current attachment (or never joined).
pub fn not_joined() -> ProtocolError {
    ProtocolError::new(ErrorCode::NotJoined, "join a room first")
}

/// The error for a `signal` to a peer that is not in the room.
pub fn peer_not_found(to: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::PeerNotFound,
        format!("peer {to:?} is not in this room"),
    )
}

/// The error for a join to a full room.
pub fn room_full(max: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::RoomFull,
        format!("the room has its maximum of {max} peers"),
    )
}

/// The error for a taken peer id. Without auth nothing proves that the
/// joiner is that peer, so only its session token can bring it back: the
/// message says how (a page reload that lost the token waits out the resume
/// window, or picks another id).
pub fn peer_id_taken(peer: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::PeerIdTaken,
        format!(
            "peer id {peer:?} is already in this room; to reconnect as it, join with \
             `resume` set to the `session` token of its `joined` reply (kept for the \
             resume window), otherwise pick another id"
        ),
    )
}

/// What a join that names a peer already in the room does: with
/// `takeover` (the connection's token proves it is that peer) it replaces
/// the old one — the old connection closes with 4000, the others see
/// `peer_left{reason:"replaced"}` then `peer_joined` — else it is refused.
pub fn on_taken(peer: &str, takeover: bool) -> Result<(), ProtocolError> {
    if takeover {
        Ok(())
    } else {
        Err(peer_id_taken(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn join(peer: Option<&str>, resume: Option<&str>) -> JoinRequest {
        JoinRequest {
            room: "r".into(),
            peer: peer.map(str::to_owned),
            role: None,
            metadata: Map::new(),
            resume: resume.map(str::to_owned),
            last_seq: None,
        }
    }

    #[test]
    fn only_a_token_of_this_room_and_peer_may_resume() {
        let none = ResumeAttempt::of(&join(Some("a"), None));
        assert_eq!((none.recovered, none.token.is_none()), (None, true));

        let garbage = ResumeAttempt::of(&join(Some("a"), Some("nonsense")));
        assert_eq!(garbage.recovered, Some(false));
        assert!(garbage.token.is_none());
        assert_eq!(garbage.fresh_peer(&join(Some("a"), None)), Some("a".into()));

        let minted = token::mint("r", "a").token;
        let own = ResumeAttempt::of(&join(None, Some(&minted)));
        assert_eq!(own.token.as_ref().map(|t| t.peer.as_str()), Some("a"));
        // A failed resume keeps the token's peer id.
        assert_eq!(own.fresh_peer(&join(None, None)), Some("a".into()));

        let other_peer = ResumeAttempt::of(&join(Some("b"), Some(&minted)));
        assert!(other_peer.token.is_none());
        let other_room = token::mint("elsewhere", "a").token;
        assert!(ResumeAttempt::of(&join(None, Some(&other_room)))
            .token
            .is_none());
    }

    #[test]
    fn a_fresh_peer_gets_the_default_role() {
        let p = new_peer(&join(Some("a"), None), "a".into(), 7);
        assert_eq!((p.role.as_str(), p.joined_at), (DEFAULT_ROLE, 7));
    }
}
