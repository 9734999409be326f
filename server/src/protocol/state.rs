//! Room state: JSON Merge Patch (RFC 7386) application with the size limit and
//! version rules of the protocol, shared by every backend so that all of them
//! apply patches identically.

use serde_json::{Map, Value};

use crate::protocol::{ErrorCode, ProtocolError, RoomState};

/// Applies `patch` to `target` in place (RFC 7386: `null` removes a key,
/// objects merge recursively, anything else replaces).
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(obj) = slot {
                    merge_patch(obj, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Computes the state after `patch`, or the error that leaves it unchanged.
pub fn apply(
    current: &RoomState,
    patch: &Map<String, Value>,
    if_version: Option<u64>,
    max_bytes: usize,
) -> Result<RoomState, ProtocolError> {
    if let Some(expected) = if_version {
        if expected != current.version {
            return Err(ProtocolError {
                code: ErrorCode::VersionConflict,
                message: format!(
                    "state is at version {}, not {expected}; re-read it and retry",
                    current.version
                ),
                version: Some(current.version),
            });
        }
    }
    let mut data = current.data.clone();
    merge_patch(&mut data, patch);
    let size = serde_json::to_vec(&data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ProtocolError::too_large(format!(
            "the room state would be {size} bytes; the limit is {max_bytes} bytes"
        )));
    }
    Ok(RoomState {
        version: current.version + 1,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
            (json!({"a":"x"}), json!({"a":{"b":1}}), json!({"a":{"b":1}})),
        ];
        for (target, patch, want) in cases {
            let mut t = obj(target);
            merge_patch(&mut t, &obj(patch));
            assert_eq!(Value::Object(t), want);
        }
    }

    #[test]
    fn versions_and_limits() {
        let s = RoomState::default();
        let s1 = apply(&s, &obj(json!({"a":1})), Some(0), 100).unwrap();
        assert_eq!(s1.version, 1);
        let e = apply(&s1, &obj(json!({"a":2})), Some(0), 100).unwrap_err();
        assert_eq!((e.code, e.version), (ErrorCode::VersionConflict, Some(1)));
        let e = apply(&s1, &obj(json!({"b":"x".repeat(200)})), None, 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    }
}
