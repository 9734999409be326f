//! Direct replies to a request. Each is serialized once, with the request's
//! `id` spliced in.

use serde::Serialize;
use serde_json::Value;

use super::{MessageType, PeerInfo, ProtocolError, RequestId, RoomState};

/// Appends `,"id":<id>` before the closing brace of a serialized object.
fn with_id(mut json: String, id: Option<&RequestId>) -> String {
    if let Some(id) = id {
        json.pop();
        json.push_str(",\"id\":");
        json.push_str(id.as_json());
        json.push('}');
    }
    json
}

pub fn ok(id: Option<&RequestId>) -> String {
    with_id("{\"type\":\"ok\"}".to_owned(), id)
}

pub fn ok_version(id: Option<&RequestId>, version: u64) -> String {
    with_id(format!("{{\"type\":\"ok\",\"version\":{version}}}"), id)
}

pub fn pong(id: Option<&RequestId>) -> String {
    with_id("{\"type\":\"pong\"}".to_owned(), id)
}

#[derive(Serialize)]
struct Error<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

pub fn error(id: Option<&RequestId>, err: &ProtocolError) -> String {
    let json = serde_json::to_string(&Error {
        ty: MessageType::Error,
        code: err.code.as_str(),
        message: &err.message,
        version: err.version,
    })
    .unwrap_or_else(|_| "{\"type\":\"error\",\"code\":\"INTERNAL\"}".to_owned());
    with_id(json, id)
}

#[derive(Serialize)]
struct Peers<'a> {
    #[serde(rename = "type")]
    ty: MessageType,
    peers: &'a [PeerInfo],
}

pub fn peers(id: Option<&RequestId>, peers: &[PeerInfo]) -> String {
    let json = serde_json::to_string(&Peers {
        ty: MessageType::Peers,
        peers,
    })
    .unwrap_or_else(|_| "{\"type\":\"peers\",\"peers\":[]}".to_owned());
    with_id(json, id)
}

/// The `joined` reply.
#[derive(Serialize)]
pub struct Joined<'a> {
    #[serde(rename = "type")]
    pub ty: MessageType,
    pub room: &'a str,
    pub peer: &'a str,
    pub session: &'a str,
    pub peers: &'a [PeerInfo],
    pub state: &'a RoomState,
    pub ice_servers: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

pub fn joined(id: Option<&RequestId>, joined: &Joined<'_>) -> String {
    let json = serde_json::to_string(joined)
        .unwrap_or_else(|_| "{\"type\":\"error\",\"code\":\"INTERNAL\"}".to_owned());
    with_id(json, id)
}

pub fn reconnect(reason: &str, after_ms: u64) -> String {
    serde_json::json!({"type": "reconnect", "reason": reason, "after_ms": after_ms}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn errors_serialize_with_id_and_version() {
        let mut e = ProtocolError::new(ErrorCode::VersionConflict, "stale");
        e.version = Some(3);
        let id = RequestId("\"q\"".into());
        let v: Value = serde_json::from_str(&error(Some(&id), &e)).unwrap();
        assert_eq!(v["code"], "VERSION_CONFLICT");
        assert_eq!(v["version"], 3);
        assert_eq!(v["id"], "q");
    }
}
