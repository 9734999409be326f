//! Wire types of the signaling protocol (docs/protocol.md): parsing and
//! validating client messages, and serializing replies and events.
//!
//! No I/O lives here. Parsing is two-staged so that errors can be precise and
//! large payloads are never re-encoded: the frame is first split into its
//! top-level fields as raw JSON slices, then each field is checked on its own.
//! `signal`/`broadcast` payloads travel through the server as the client's own
//! bytes.

use std::fmt;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::Limits;
use crate::filters::Filters;

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
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Join(_) => "join",
            Request::Leave => "leave",
            Request::Signal { .. } => "signal",
            Request::Broadcast { .. } => "broadcast",
            Request::Discover { .. } => "discover",
            Request::SetState { .. } => "set_state",
            Request::Update { .. } => "update",
            Request::Ping => "ping",
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

/// A client frame after parsing: its id (when valid) and the request or the
/// error to answer with.
pub struct Parsed<'a> {
    pub id: Option<RequestId>,
    pub kind: &'static str,
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

const KNOWN_TYPES: [&str; 8] = [
    "join",
    "leave",
    "signal",
    "broadcast",
    "discover",
    "set_state",
    "update",
    "ping",
];

/// Parses one text frame. Never panics, whatever the input.
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Parsed<'a> {
    let fail = |e: ProtocolError| Parsed {
        id: None,
        kind: "invalid",
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
                kind: "invalid",
                request: Err(ProtocolError::bad_request("`type` must be a string")),
            }
        }
        None => {
            return Parsed {
                id,
                kind: "invalid",
                request: Err(ProtocolError::bad_request("missing field `type`")),
            }
        }
    };
    let Some(kind) = KNOWN_TYPES.iter().copied().find(|k| *k == ty) else {
        let shown: String = ty.chars().take(64).collect();
        return Parsed {
            id,
            kind: "unknown",
            request: Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}; see docs/protocol.md"),
            )),
        };
    };
    let request = build(kind, &fields, limits);
    Parsed { id, kind, request }
}

fn build<'a>(kind: &str, f: &Fields<'a>, limits: &Limits) -> Result<Request<'a>, ProtocolError> {
    Ok(match kind {
        "join" => Request::Join(JoinRequest {
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
        "leave" => Request::Leave,
        "signal" => Request::Signal {
            to: name("to", required("to", f.to)?)?,
            payload: payload(required("payload", f.payload)?, limits)?,
        },
        "broadcast" => Request::Broadcast {
            payload: payload(required("payload", f.payload)?, limits)?,
        },
        "discover" => Request::Discover {
            filters: match f.filters {
                None => Filters::default(),
                Some(raw) => {
                    let value: Value = serde_json::from_str(raw.get())
                        .map_err(|e| ProtocolError::bad_request(format!("`filters`: {e}")))?;
                    Filters::parse(&value)?
                }
            },
        },
        "set_state" => {
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
        "update" => Request::Update {
            role: f.role.map(role).transpose()?,
            metadata: f.metadata.map(|m| metadata(m, limits)).transpose()?,
        },
        "ping" => Request::Ping,
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

// ---------------------------------------------------------------------------
// Server -> client

/// A serialized event body: a compact JSON object without `seq`. The backend
/// stamps each recipient's `seq` onto it with [`stamp`].
#[derive(Debug, Clone)]
pub struct EventBody {
    pub kind: &'static str,
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

/// Builders of the event bodies and replies.
pub mod event {
    use super::*;

    fn body<T: Serialize>(kind: &'static str, value: &T) -> EventBody {
        // Serializing plain structs of strings and maps cannot fail.
        let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
        EventBody { kind, json }
    }

    #[derive(Serialize)]
    struct PeerEvent<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        peer: &'a PeerInfo,
    }

    pub fn peer_joined(peer: &PeerInfo) -> EventBody {
        body(
            "peer_joined",
            &PeerEvent {
                ty: "peer_joined",
                peer,
            },
        )
    }

    pub fn peer_updated(peer: &PeerInfo) -> EventBody {
        body(
            "peer_updated",
            &PeerEvent {
                ty: "peer_updated",
                peer,
            },
        )
    }

    #[derive(Serialize)]
    struct PeerLeft<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        peer: &'a str,
        reason: &'a str,
    }

    pub fn peer_left(peer: &str, reason: LeaveReason) -> EventBody {
        body(
            "peer_left",
            &PeerLeft {
                ty: "peer_left",
                peer,
                reason: reason.as_str(),
            },
        )
    }

    #[derive(Serialize)]
    struct Relay<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        from: &'a str,
        payload: &'a RawValue,
    }

    pub fn signal(from: &str, payload: &RawValue) -> EventBody {
        body(
            "signal",
            &Relay {
                ty: "signal",
                from,
                payload,
            },
        )
    }

    pub fn broadcast(from: &str, payload: &RawValue) -> EventBody {
        body(
            "broadcast",
            &Relay {
                ty: "broadcast",
                from,
                payload,
            },
        )
    }

    #[derive(Serialize)]
    struct State<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        version: u64,
        data: &'a Map<String, Value>,
        by: &'a str,
    }

    pub fn state(state: &RoomState, by: &str) -> EventBody {
        body(
            "state",
            &State {
                ty: "state",
                version: state.version,
                data: &state.data,
                by,
            },
        )
    }
}

/// Why a peer left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Timeout,
    NodeLost,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Timeout => "timeout",
            LeaveReason::NodeLost => "node_lost",
        }
    }
}

/// Direct replies. Each is serialized once, with the request's `id` spliced in.
pub mod reply {
    use super::*;

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
        ty: &'static str,
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    }

    pub fn error(id: Option<&RequestId>, err: &ProtocolError) -> String {
        let json = serde_json::to_string(&Error {
            ty: "error",
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
        ty: &'static str,
        peers: &'a [PeerInfo],
    }

    pub fn peers(id: Option<&RequestId>, peers: &[PeerInfo]) -> String {
        let json = serde_json::to_string(&Peers { ty: "peers", peers })
            .unwrap_or_else(|_| "{\"type\":\"peers\",\"peers\":[]}".to_owned());
        with_id(json, id)
    }

    /// The `joined` reply.
    #[derive(Serialize)]
    pub struct Joined<'a> {
        #[serde(rename = "type")]
        pub ty: &'static str,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn stamp_prefixes_seq() {
        assert_eq!(stamp(7, r#"{"type":"x"}"#), r#"{"seq":7,"type":"x"}"#);
        assert_eq!(stamp(1, "{}"), r#"{"seq":1}"#);
    }

    #[test]
    fn errors_serialize_with_id_and_version() {
        let mut e = ProtocolError::new(ErrorCode::VersionConflict, "stale");
        e.version = Some(3);
        let id = RequestId("\"q\"".into());
        let v: Value = serde_json::from_str(&reply::error(Some(&id), &e)).unwrap();
        assert_eq!(v["code"], "VERSION_CONFLICT");
        assert_eq!(v["version"], 3);
        assert_eq!(v["id"], "q");
    }
}
