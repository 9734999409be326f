//! Decoding what Redis sends back: script replies (strings, integers,
//! arrays, field/value pairs, peers, room state) and the event messages the
//! scripts publish. Anything unexpected is logged and answered `INTERNAL`.

use redis::Value;
use serde_json::{Map, Value as Json};
use tracing::warn;

use crate::protocol::{MessageType, PeerInfo, ProtocolError, RoomState};

/// The type of an event read back from Redis; one of ours always, and an
/// unknown name (never written) is counted nowhere.
pub(super) fn static_kind(kind: &str) -> MessageType {
    MessageType::event(kind).unwrap_or(MessageType::Invalid)
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

pub(super) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Flat `HGETALL` reply (array of field, value; or a RESP3 map) to pairs.
pub(super) fn pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        other => items(other)
            .chunks(2)
            .filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
            .collect(),
    }
}

pub(super) fn parse_peers(v: &Value, except: &str) -> Vec<PeerInfo> {
    let mut peers: Vec<PeerInfo> = pairs(v)
        .into_iter()
        .filter(|(id, _)| id != except)
        .filter_map(|(_, json)| serde_json::from_str(&json).ok())
        .collect();
    peers.sort_by(|a, b| {
        a.joined_at
            .cmp(&b.joined_at)
            .then_with(|| a.peer.cmp(&b.peer))
    });
    peers
}

pub(super) fn parse_state(version: &Value, data: &Value) -> RoomState {
    let version = int(version).unwrap_or(0).max(0) as u64;
    let data = text(data)
        .and_then(|d| serde_json::from_str::<Map<String, Json>>(&d).ok())
        .unwrap_or_default();
    RoomState { version, data }
}

/// One event of a room channel message: its type, `peer=seq,...` and body.
#[derive(Debug, PartialEq)]
pub(super) struct Published<'a> {
    pub(super) kind: &'a str,
    pub(super) recipients: &'a str,
    pub(super) body: &'a str,
}

/// Parses `E <kind> <recipients>\n<body>` (one event) or `M\n` followed by
/// `<kind> <recipients> <length>\n<body>` per event (see lua/common.lua).
/// `None` when the message is malformed.
pub(super) fn parse_events(payload: &str) -> Option<Vec<Published<'_>>> {
    if let Some(rest) = payload.strip_prefix("E ") {
        let (head, body) = rest.split_once('\n')?;
        let (kind, recipients) = head.split_once(' ')?;
        return Some(vec![Published {
            kind,
            recipients,
            body,
        }]);
    }
    let mut rest = payload.strip_prefix("M\n")?;
    let mut events = Vec::new();
    while !rest.is_empty() {
        let (head, tail) = rest.split_once('\n')?;
        let (kind, head) = head.split_once(' ')?;
        let (recipients, len) = head.rsplit_once(' ')?;
        let len = len.parse::<usize>().ok()?;
        let body = tail.get(..len)?;
        events.push(Published {
            kind,
            recipients,
            body,
        });
        rest = &tail[len..];
    }
    Some(events)
}

pub(super) fn internal(what: &str) -> ProtocolError {
    warn!("unexpected reply from Redis: {what}");
    ProtocolError::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_parse() {
        let one = |kind, recipients, body| Published {
            kind,
            recipients,
            body,
        };
        assert_eq!(
            parse_events("E peer_left a=1,b=7\n{\"x\":\"y z\\n\"}"),
            Some(vec![one("peer_left", "a=1,b=7", "{\"x\":\"y z\\n\"}")])
        );
        // Bodies may hold anything, newlines and multi-byte text included:
        // only the length says where they end.
        let body2 = "{\"é\":\"\n3 \"}";
        let multi = format!("M\nsignal b=4 2\n{{}}signal c=9 {}\n{body2}", body2.len());
        assert_eq!(
            parse_events(&multi),
            Some(vec![
                one("signal", "b=4", "{}"),
                one("signal", "c=9", body2)
            ])
        );
        for bad in [
            "E signal",
            "E signal b=1",
            "M\nsignal b=1 3\n{}",
            "M\nsignal b=1 x\n{}",
            "M\nsignal 2\n{}",
            "M\nsignal b=1 2\n{}trailing",
            "M\nsignal b=1 1\né",
            "K b 1",
        ] {
            assert_eq!(parse_events(bad), None, "{bad:?}");
        }
        assert_eq!(parse_events("M\n"), Some(vec![]));
    }

    #[test]
    fn replies_parse() {
        let v = Value::Array(vec![
            Value::BulkString(b"bob".to_vec()),
            Value::BulkString(
                br#"{"peer":"bob","role":"peer","metadata":{},"joined_at":2}"#.to_vec(),
            ),
            Value::BulkString(b"al".to_vec()),
            Value::BulkString(
                br#"{"peer":"al","role":"peer","metadata":{},"joined_at":1}"#.to_vec(),
            ),
        ]);
        let peers = parse_peers(&v, "x");
        assert_eq!(
            peers.iter().map(|p| p.peer.as_str()).collect::<Vec<_>>(),
            ["al", "bob"]
        );
        let s = parse_state(
            &Value::BulkString(b"3".to_vec()),
            &Value::BulkString(br#"{"a":1}"#.to_vec()),
        );
        assert_eq!(s.version, 3);
        assert_eq!(parse_state(&Value::Nil, &Value::Nil), RoomState::default());
    }
}
