//! Events: the bodies the backends fan out to a room, serialized once and
//! stamped with each recipient's `seq` on delivery.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{LeaveReason, MessageType, PeerInfo, RoomState};

/// A serialized event body: a compact JSON object without `seq`. The backend
/// stamps each recipient's `seq` onto it with [`stamp`].
#[derive(Debug, Clone)]
pub struct EventBody {
    pub kind: MessageType,
    pub json: String,
}

/// Prefixes `"seq":N` to an event body.
pub fn stamp(seq: u64, body: &str) -> String {
    debug_assert!(body.starts_with('{'));
    let rest = body.get(1..).unwrap_or("}");
    let mut out = String::with_capacity(body.len() + 28);
    out.push_str("{\"seq\":");
    out.push_str(itoa_u64(seq).as_str());
    if rest != "}" {
        out.push(',');
    }
    out.push_str(rest);
    out
}

fn itoa_u64(n: u64) -> String {
    n.to_string()
}

fn body<T: Serialize>(kind: MessageType, value: &T) -> EventBody {
    // Serializing plain structs of strings and maps cannot fail.
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    EventBody { kind, json }
}

#[derive(Serialize)]
struct PeerEvent<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    peer: &'a PeerInfo,
}

pub fn peer_joined(peer: &PeerInfo) -> EventBody {
    body(
        MessageType::PeerJoined,
        &PeerEvent {
            ty: MessageType::PeerJoined,
            peer,
        },
    )
}

pub fn peer_updated(peer: &PeerInfo) -> EventBody {
    body(
        MessageType::PeerUpdated,
        &PeerEvent {
            ty: MessageType::PeerUpdated,
            peer,
        },
    )
}

#[derive(Serialize)]
struct PeerLeft<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    peer: &'a str,
    reason: &'a str,
}

pub fn peer_left(peer: &str, reason: LeaveReason) -> EventBody {
    body(
        MessageType::PeerLeft,
        &PeerLeft {
            ty: MessageType::PeerLeft,
            peer,
            reason: reason.as_str(),
        },
    )
}

#[derive(Serialize)]
struct Relay<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    from: &'a str,
    payload: &'a RawValue,
}

pub fn signal(from: &str, payload: &RawValue) -> EventBody {
    body(
        MessageType::Signal,
        &Relay {
            ty: MessageType::Signal,
            from,
            payload,
        },
    )
}

pub fn broadcast(from: &str, payload: &RawValue) -> EventBody {
    body(
        MessageType::Broadcast,
        &Relay {
            ty: MessageType::Broadcast,
            from,
            payload,
        },
    )
}

#[derive(Serialize)]
struct State<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    version: u64,
    data: &'a Map<String, Value>,
    by: &'a str,
}

pub fn state(state: &RoomState, by: &str) -> EventBody {
    body(
        MessageType::State,
        &State {
            ty: MessageType::State,
            version: state.version,
            data: &state.data,
            by,
        },
    )
}

#[derive(Serialize)]
struct ApiState<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    version: u64,
    data: &'a Map<String, Value>,
    /// Always `null`: no peer made this change.
    by: Option<&'a str>,
}

/// The `state` event of a change made through the Server API (`by: null`).
pub fn state_from_api(state: &RoomState) -> EventBody {
    body(
        MessageType::State,
        &ApiState {
            ty: MessageType::State,
            version: state.version,
            data: &state.data,
            by: None,
        },
    )
}

#[derive(Serialize)]
struct Server<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    payload: &'a Value,
}

/// A message of the application backend to peers (Server API).
pub fn server(payload: &Value) -> EventBody {
    body(
        MessageType::Server,
        &Server {
            ty: MessageType::Server,
            payload,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_prefixes_seq() {
        assert_eq!(stamp(7, r#"{"type":"x"}"#), r#"{"seq":7,"type":"x"}"#);
        assert_eq!(stamp(1, "{}"), r#"{"seq":1}"#);
    }

    #[test]
    fn bodies_name_their_type() {
        let b = peer_left("a", LeaveReason::Timeout);
        assert_eq!(b.kind, MessageType::PeerLeft);
        assert_eq!(
            b.json,
            r#"{"type":"peer_left","peer":"a","reason":"timeout"}"#
        );
        let s = state_from_api(&RoomState::default());
        assert_eq!(
            s.json,
            r#"{"type":"state","version":0,"data":{},"by":null}"#
        );
        let m = server(&serde_json::json!({"a": 1}));
        assert_eq!(m.kind, MessageType::Server);
        assert_eq!(m.json, r#"{"type":"server","payload":{"a":1}}"#);
    }
}
