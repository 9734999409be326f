//! Parsing client frames. Two-staged so that errors can be precise and large
//! payloads are never re-encoded: the frame is first split into its
//! top-level fields as raw JSON slices, then each field is checked on its
//! own. `signal`/`broadcast` payloads travel through the server as the
//! client's own bytes.

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    ErrorCode, Filters, JoinRequest, MessageType, ProtocolError, Request, RequestId,
    MAX_NAME_CHARS, MAX_RESUME_BYTES, MAX_ROLE_CHARS,
};
use crate::limits::Limits;

/// A client frame after parsing: its id (when valid) and the request or the
/// error to answer with.
pub struct Parsed<'a> {
    pub id: Option<RequestId>,
    pub kind: MessageType,
    pub request: Result<Request<'a>, ProtocolError>,
}

/// Top-level fields, each kept as raw JSON. `Some(raw)` even for `null`, so that a
/// field given as `null` is reported as wrong-typed instead of silently absent.
#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "raw")]
    ty: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    room: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    peer: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    role: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    resume: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    last_seq: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    payload: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    filters: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    patch: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    if_version: Option<&'a RawValue>,
}

fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one text frame. Never panics, whatever the input.
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Parsed<'a> {
    let fail = |e: ProtocolError| Parsed {
        id: None,
        kind: MessageType::Invalid,
        request: Err(e),
    };
    // A struct deserializer would also accept a JSON array positionally.
    if !text.trim_start().starts_with('{') {
        return fail(ProtocolError::bad_request(
            "a message must be a JSON object with a \"type\" field",
        ));
    }
    let fields: Fields<'a> = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return fail(ProtocolError::bad_request(format!("malformed JSON: {e}"))),
    };
    let id = match fields.id.map(RequestId::parse).transpose() {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let ty = match fields.ty.map(|raw| serde_json::from_str::<&str>(raw.get())) {
        Some(Ok(ty)) => ty,
        Some(Err(_)) => {
            return Parsed {
                id,
                kind: MessageType::Invalid,
                request: Err(ProtocolError::bad_request("`type` must be a string")),
            }
        }
        None => {
            return Parsed {
                id,
                kind: MessageType::Invalid,
                request: Err(ProtocolError::bad_request("missing field `type`")),
            }
        }
    };
    let Some(kind) = MessageType::request(ty) else {
        let shown: String = ty.chars().take(64).collect();
        return Parsed {
            id,
            kind: MessageType::Unknown,
            request: Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}; see docs/protocol.md"),
            )),
        };
    };
    let request = build(kind, &fields, limits);
    Parsed { id, kind, request }
}

fn build<'a>(
    kind: MessageType,
    f: &Fields<'a>,
    limits: &Limits,
) -> Result<Request<'a>, ProtocolError> {
    Ok(match kind {
        MessageType::Join => Request::Join(JoinRequest {
            room: name("room", required("room", f.room)?)?,
            peer: f.peer.map(|p| name("peer", p)).transpose()?,
            role: f.role.map(role).transpose()?,
            metadata: f
                .metadata
                .map(|m| metadata(m, limits))
                .transpose()?
                .unwrap_or_default(),
            resume: f.resume.map(resume).transpose()?,
            last_seq: f.last_seq.map(|s| unsigned("last_seq", s)).transpose()?,
        }),
        MessageType::Leave => Request::Leave,
        MessageType::Signal => Request::Signal {
            to: name("to", required("to", f.to)?)?,
            payload: payload(required("payload", f.payload)?, limits)?,
        },
        MessageType::Broadcast => Request::Broadcast {
            payload: payload(required("payload", f.payload)?, limits)?,
        },
        MessageType::Discover => Request::Discover {
            filters: match f.filters {
                None => Filters::default(),
                Some(raw) => {
                    let value: Value = serde_json::from_str(raw.get())
                        .map_err(|e| ProtocolError::bad_request(format!("`filters`: {e}")))?;
                    Filters::parse(&value)?
                }
            },
        },
        MessageType::SetState => {
            let raw = required("patch", f.patch)?;
            let value: Value = serde_json::from_str(raw.get())
                .map_err(|e| ProtocolError::bad_request(format!("`patch`: {e}")))?;
            let Value::Object(patch) = value else {
                return Err(ProtocolError::bad_request(
                    "`patch` must be a JSON object (a JSON Merge Patch of the room state)",
                ));
            };
            Request::SetState {
                patch,
                if_version: f
                    .if_version
                    .map(|v| unsigned("if_version", v))
                    .transpose()?,
            }
        }
        MessageType::Update => Request::Update {
            role: f.role.map(role).transpose()?,
            metadata: f.metadata.map(|m| metadata(m, limits)).transpose()?,
        },
        MessageType::Ping => Request::Ping,
        _ => {
            return Err(ProtocolError::new(
                ErrorCode::UnknownType,
                "unknown message type",
            ))
        }
    })
}

fn required<'a>(field: &str, raw: Option<&'a RawValue>) -> Result<&'a RawValue, ProtocolError> {
    raw.ok_or_else(|| ProtocolError::bad_request(format!("missing field `{field}`")))
}

fn string(field: &str, raw: &RawValue, max_bytes: usize) -> Result<String, ProtocolError> {
    let s: String = serde_json::from_str(raw.get())
        .map_err(|_| ProtocolError::bad_request(format!("`{field}` must be a string")))?;
    if s.len() > max_bytes {
        return Err(ProtocolError::bad_request(format!(
            "`{field}` is longer than {max_bytes} bytes"
        )));
    }
    Ok(s)
}

/// A `resume` token; one over [`MAX_RESUME_BYTES`] becomes the empty token,
/// which no session has, so the join proceeds as with any invalid token
/// (never `BAD_REQUEST`: docs/protocol.md, Clarifications).
fn resume(raw: &RawValue) -> Result<String, ProtocolError> {
    let token = string("resume", raw, usize::MAX)?;
    Ok(if token.len() > MAX_RESUME_BYTES {
        String::new()
    } else {
        token
    })
}

/// Whether `s` is a valid room name or peer id.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

fn name(field: &str, raw: &RawValue) -> Result<String, ProtocolError> {
    let s = string(field, raw, 4 * MAX_NAME_CHARS).map_err(|_| {
        ProtocolError::bad_request(format!(
            "`{field}` must be a string of 1-{MAX_NAME_CHARS} characters from [A-Za-z0-9._:@-]"
        ))
    })?;
    if !is_valid_name(&s) {
        return Err(ProtocolError::bad_request(format!(
            "`{field}` must be 1-{MAX_NAME_CHARS} characters from [A-Za-z0-9._:@-]"
        )));
    }
    Ok(s)
}

fn role(raw: &RawValue) -> Result<String, ProtocolError> {
    let s = string("role", raw, 4 * MAX_ROLE_CHARS)?;
    if s.chars().count() > MAX_ROLE_CHARS {
        return Err(ProtocolError::bad_request(format!(
            "`role` must be at most {MAX_ROLE_CHARS} characters"
        )));
    }
    Ok(s)
}

fn unsigned(field: &str, raw: &RawValue) -> Result<u64, ProtocolError> {
    serde_json::from_str::<u64>(raw.get()).map_err(|_| {
        ProtocolError::bad_request(format!("`{field}` must be a non-negative integer"))
    })
}

/// Size of a value's compact serialization. Raw input no longer than the limit
/// is compact enough already (compacting only shrinks it), so the costly path
/// only runs for oversized or whitespace-heavy input.
fn compact_len(raw: &RawValue, limit: usize) -> usize {
    let len = raw.get().len();
    if len <= limit {
        return len;
    }
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(len),
        Err(_) => len,
    }
}

fn payload<'a>(raw: &'a RawValue, limits: &Limits) -> Result<&'a RawValue, ProtocolError> {
    let len = compact_len(raw, limits.max_payload_bytes);
    if len > limits.max_payload_bytes {
        return Err(ProtocolError::too_large(format!(
            "`payload` is {len} bytes; the limit is {} bytes",
            limits.max_payload_bytes
        )));
    }
    Ok(raw)
}

fn metadata(raw: &RawValue, limits: &Limits) -> Result<Map<String, Value>, ProtocolError> {
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| ProtocolError::bad_request(format!("`metadata`: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ProtocolError::bad_request(
            "`metadata` must be a JSON object",
        ));
    };
    let len = serde_json::to_vec(&map)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > limits.max_metadata_bytes {
        return Err(ProtocolError::too_large(format!(
            "`metadata` is {len} bytes; the limit is {} bytes",
            limits.max_metadata_bytes
        )));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reply;

    fn limits() -> Limits {
        Limits::default()
    }

    fn err_of(text: &str) -> (Option<String>, ProtocolError) {
        let p = parse(text, &limits());
        (p.id.map(|i| i.as_json().to_owned()), p.request.unwrap_err())
    }

    #[test]
    fn ids_keep_their_json_type() {
        let p = parse(r#"{"type":"ping","id":"a\"b"}"#, &limits());
        assert_eq!(p.id.unwrap().as_json(), r#""a\"b""#);
        let p = parse(r#"{"type":"ping","id":-42}"#, &limits());
        assert_eq!(p.id.unwrap().as_json(), "-42");
        assert_eq!(
            reply::pong(Some(&RequestId("7".into()))),
            r#"{"type":"pong","id":7}"#
        );
    }

    #[test]
    fn bad_ids_are_rejected() {
        for id in [
            "1.5",
            "9007199254740993",
            "null",
            "true",
            "[1]",
            "{}",
            "1e3",
        ] {
            let (got, e) = err_of(&format!(r#"{{"type":"ping","id":{id}}}"#));
            assert_eq!(e.code, ErrorCode::BadRequest, "id {id}");
            assert!(got.is_none());
        }
        let long = "x".repeat(10_000);
        let text = format!(r#"{{"type":"ping","id":"{long}"}}"#);
        let p = parse(&text, &limits());
        assert_eq!(p.id.unwrap().as_json().len(), 10_002);
    }

    #[test]
    fn non_objects_and_garbage_are_bad_requests() {
        for text in [
            "",
            "[]",
            "[\"ping\"]",
            "42",
            "\"ping\"",
            "{",
            "{\"type\":}",
            "null",
        ] {
            assert_eq!(err_of(text).1.code, ErrorCode::BadRequest, "{text:?}");
        }
    }

    #[test]
    fn unknown_type_keeps_the_id() {
        let (id, e) = err_of(r#"{"type":"hello","id":"x"}"#);
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert_eq!(id.as_deref(), Some("\"x\""));
        assert_eq!(err_of(r#"{"type":5}"#).1.code, ErrorCode::BadRequest);
    }

    #[test]
    fn join_fields_are_validated() {
        assert_eq!(err_of(r#"{"type":"join"}"#).1.code, ErrorCode::BadRequest);
        assert_eq!(
            err_of(r#"{"type":"join","room":""}"#).1.code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err_of(r#"{"type":"join","room":"a b"}"#).1.code,
            ErrorCode::BadRequest
        );
        let long = "r".repeat(129);
        assert_eq!(
            err_of(&format!(r#"{{"type":"join","room":"{long}"}}"#))
                .1
                .code,
            ErrorCode::BadRequest
        );
        let role = "x".repeat(65);
        assert_eq!(
            err_of(&format!(r#"{{"type":"join","room":"r","role":"{role}"}}"#))
                .1
                .code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err_of(r#"{"type":"join","room":"r","metadata":[1]}"#)
                .1
                .code,
            ErrorCode::BadRequest
        );
        let big = "x".repeat(5000);
        assert_eq!(
            err_of(&format!(
                r#"{{"type":"join","room":"r","metadata":{{"a":"{big}"}}}}"#
            ))
            .1
            .code,
            ErrorCode::PayloadTooLarge
        );
        let p = parse(r#"{"type":"join","room":"r.1:x@y-z_"}"#, &limits());
        match p.request.unwrap() {
            Request::Join(j) => {
                assert_eq!(j.role, None);
                assert!(j.peer.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_limit_counts_compact_bytes() {
        let limits = Limits {
            max_payload_bytes: 10,
            ..Limits::default()
        };
        let spaced = r#"{"type":"broadcast","payload":[1,     2,     3,     4]}"#;
        assert!(parse(spaced, &limits).request.is_ok());
        let big = r#"{"type":"broadcast","payload":"0123456789"}"#;
        assert_eq!(
            parse(big, &limits).request.unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // Payloads are opaque: deep nesting within the size limit is relayed
        // as is (the server never builds a tree of it), beyond it refused.
        let deep = format!(
            r#"{{"type":"broadcast","payload":{}{}}}"#,
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        assert!(parse(&deep, &limits()).request.is_ok());
        let deeper = format!(
            r#"{{"type":"broadcast","payload":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(err_of(&deeper).1.code, ErrorCode::PayloadTooLarge);
        let deep = format!(
            r#"{{"type":"set_state","patch":{{"a":{}1{}}}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(err_of(&deep).1.code, ErrorCode::BadRequest);
    }

    /// An object nested `depth` levels deep, itself included: `{"a":{"a":{}}}` is 3.
    fn nested(depth: usize) -> String {
        format!(
            "{}{}",
            r#"{"a":"#.repeat(depth - 1) + "{}",
            "}".repeat(depth - 1)
        )
    }

    #[test]
    fn json_fields_nest_at_most_127_levels() {
        // `metadata`, `set_state.patch` and `discover.filters` are parsed into
        // values under serde_json's recursion limit (128): 127 levels of
        // objects and arrays, the value itself included, are read (the limit
        // docs/protocol.md states); one more is BAD_REQUEST.
        let join = |d| format!(r#"{{"type":"join","room":"r","metadata":{}}}"#, nested(d));
        let patch = |d| format!(r#"{{"type":"set_state","patch":{}}}"#, nested(d));
        assert!(parse(&join(127), &limits()).request.is_ok());
        assert!(parse(&patch(127), &limits()).request.is_ok());
        assert_eq!(err_of(&join(128)).1.code, ErrorCode::BadRequest);
        assert_eq!(err_of(&patch(128)).1.code, ErrorCode::BadRequest);
        let update = format!(r#"{{"type":"update","metadata":{}}}"#, nested(128));
        assert_eq!(err_of(&update).1.code, ErrorCode::BadRequest);
        // Filters 127 deep are refused for their shape, deeper ones before
        // it is looked at: both BAD_REQUEST.
        for d in [127, 128] {
            let discover = format!(r#"{{"type":"discover","filters":{}}}"#, nested(d));
            let e = err_of(&discover).1;
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert_eq!(d > 127, e.message.contains("recursion limit"), "{e}");
        }
    }

    #[test]
    fn overlong_resume_is_an_invalid_token() {
        let join = |token: &str| format!(r#"{{"type":"join","room":"r","resume":"{token}"}}"#);
        let token = "t".repeat(MAX_RESUME_BYTES);
        let Ok(Request::Join(j)) = parse(&join(&token), &limits()).request else {
            panic!("a token of the maximum length is read")
        };
        assert_eq!(j.resume.as_deref(), Some(token.as_str()));
        let Ok(Request::Join(j)) = parse(&join(&format!("{token}t")), &limits()).request else {
            panic!("an over-long token is not BAD_REQUEST")
        };
        assert_eq!(j.resume.as_deref(), Some(""));
        let number = r#"{"type":"join","room":"r","resume":5}"#;
        assert_eq!(err_of(number).1.code, ErrorCode::BadRequest);
    }
}
