//! Assertions on protocol messages: exact key sets, error replies, PeerInfo.
//!
//! The field lists below are PROTOCOL.md's; events addressed to a peer also
//! carry `seq` (see its Recovery section).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Keys of each server message, as PROTOCOL.md lists them. `id` is added to
/// direct replies when the request had one; `seq` to events addressed to a peer.
pub const SIGNAL_KEYS: &[&str] = &["type", "from", "payload", "seq"];
pub const BROADCAST_KEYS: &[&str] = &["type", "from", "payload", "seq"];
pub const STATE_KEYS: &[&str] = &["type", "version", "data", "by", "seq"];
pub const PEER_JOINED_KEYS: &[&str] = &["type", "peer", "seq"];
pub const PEER_LEFT_KEYS: &[&str] = &["type", "peer", "reason", "seq"];
pub const PEER_UPDATED_KEYS: &[&str] = &["type", "peer", "seq"];
pub const RECONNECT_KEYS: &[&str] = &["type", "reason", "after_ms"];
pub const PEER_INFO_KEYS: &[&str] = &["peer", "role", "metadata", "joined_at"];

/// The message's `type` as a string ("" when absent).
pub fn ty(msg: &Value) -> &str {
    msg["type"].as_str().unwrap_or("")
}

/// The key set of an object (panics on a non-object).
pub fn keys(msg: &Value) -> BTreeSet<String> {
    msg.as_object()
        .unwrap_or_else(|| panic!("not an object: {msg}"))
        .keys()
        .cloned()
        .collect()
}

/// Asserts `msg` has exactly the keys `expected`.
#[track_caller]
pub fn assert_keys(msg: &Value, expected: &[&str]) {
    let want: BTreeSet<String> = expected.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys(msg), want, "key set of {msg}");
}

/// Asserts `msg` is `error{code, message}` (a non-empty message) and returns it.
#[track_caller]
pub fn assert_error<'a>(msg: &'a Value, code: &str) -> &'a Value {
    assert_eq!(msg["type"], "error", "expected error {code}, got {msg}");
    assert_eq!(msg["code"], code, "expected error {code}, got {msg}");
    let message = msg["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {msg}"));
    assert!(!message.is_empty(), "empty error message: {msg}");
    msg
}

/// Asserts `msg` is `error{code}` answering the request with `id`, and that it
/// has no keys beyond `type code message id` plus `extra`.
#[track_caller]
pub fn assert_error_reply(msg: &Value, code: &str, id: &Value, extra: &[&str]) {
    assert_error(msg, code);
    assert_eq!(&msg["id"], id, "error must echo the id: {msg}");
    let mut expected = vec!["type", "code", "message", "id"];
    expected.extend_from_slice(extra);
    assert_keys(msg, &expected);
}

/// The `seq` of an event (panics when missing or not a non-negative integer).
#[track_caller]
pub fn seq(event: &Value) -> u64 {
    event["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("event without integer seq: {event}"))
}

/// Now in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Asserts `info` is a PeerInfo of `peer` with `role` and `metadata`, whose
/// `joined_at` (Unix ms) lies within the last ten minutes.
#[track_caller]
pub fn assert_peer_info(info: &Value, peer: &str, role: &str, metadata: &Value) {
    assert_keys(info, PEER_INFO_KEYS);
    assert_eq!(info["peer"], peer, "PeerInfo.peer in {info}");
    assert_eq!(info["role"], role, "PeerInfo.role in {info}");
    assert_eq!(&info["metadata"], metadata, "PeerInfo.metadata in {info}");
    let joined_at = info["joined_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("joined_at not an integer: {info}"));
    let now = now_ms();
    assert!(
        joined_at <= now + 5_000 && joined_at + 600_000 >= now,
        "joined_at {joined_at} is not a recent Unix millisecond time (now {now}): {info}"
    );
}

/// The `peer` ids of a list of PeerInfo, sorted (panics on duplicates).
#[track_caller]
pub fn peer_ids(list: &Value) -> Vec<String> {
    let list = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list of PeerInfo: {list}"));
    let mut ids: Vec<String> = list
        .iter()
        .map(|p| {
            p["peer"]
                .as_str()
                .unwrap_or_else(|| panic!("PeerInfo without peer: {p}"))
                .into()
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "duplicate peers in {list:?}");
    ids
}

/// Sorted owned strings, for comparing with `peer_ids`.
pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Compact JSON length in bytes, as PROTOCOL.md measures sizes.
pub fn json_len(v: &Value) -> usize {
    v.to_string().len()
}

/// A JSON string value whose serialization is exactly `bytes` bytes (quotes included).
pub fn string_of_json_len(bytes: usize) -> Value {
    assert!(bytes >= 2);
    Value::String("x".repeat(bytes - 2))
}
