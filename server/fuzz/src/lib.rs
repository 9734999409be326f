//! What every fuzz input goes through: the server's frame parser and the pure
//! validation that follows it for each request kind, with the invariants that
//! must hold whatever the input.
//!
//! An input is UTF-8 text of one or more lines; each line is one text frame of
//! one connection, so that a `join` can put a peer with fuzzed metadata into the
//! room that a later `discover` filters, and `set_state` patches build on each
//! other. The whole input is also parsed once as a single frame.
//!
//! Only pure code runs here (no sockets, no backend, no clock): `protocol::parse`,
//! the token and grant checks of a `join`, `filters::select`, `state::apply`,
//! and the serialization of every reply and event the request would produce.
//! A broken invariant panics, which the fuzzer reports as a crash.
//!
//! The same file is compiled into the server's `fuzz_corpus` test, which runs
//! the committed seeds on every `make test`.
#![forbid(unsafe_code)]

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use switchboard::auth::Claims;
use switchboard::backend::token;
use switchboard::limits::Limits;
use switchboard::protocol::filters::{self, Filters, Op};
use switchboard::protocol::{
    self, event, reply, state, ErrorCode, JoinRequest, PeerInfo, Request, RequestId, RoomState,
    DEFAULT_ROLE, MAX_ROLE_CHARS, MAX_SAFE_INTEGER,
};

/// Peers the room model keeps at most, so that a long input stays fast.
const MAX_MODEL_PEERS: usize = 32;
/// The fixed "now" of the grant checks (Unix seconds).
const NOW: u64 = 1_800_000_000;

/// Limits small enough that both sides of every size check are reachable by
/// inputs of a few KiB (the fuzzer's default input size).
pub fn limits() -> Limits {
    Limits {
        max_payload_bytes: 256,
        max_metadata_bytes: 256,
        max_state_bytes: 512,
        ..Limits::default()
    }
}

/// The grant a `join` is also checked against: a pinned peer, role and room
/// pattern, as a token would carry.
fn claims() -> Claims {
    Claims {
        sub: "alice".into(),
        rooms: vec!["lobby".into(), "team-*".into()],
        role: Some("viewer".into()),
        exp: NOW + 60,
    }
}

/// What one frame came to: its kind as the server counts it (`oversized` for
/// one the server closes the connection on unread), and `None` when it was
/// accepted or the error code it was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: &'static str,
    pub error: Option<ErrorCode>,
}

/// One connection's frames against one room, all in memory.
pub struct Model {
    limits: Limits,
    claims: Claims,
    peers: Vec<PeerInfo>,
    state: RoomState,
    seq: u64,
    generated: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            limits: limits(),
            claims: claims(),
            peers: Vec::new(),
            state: RoomState::default(),
            seq: 0,
            generated: 0,
        }
    }
}

/// Runs one fuzz input: non-UTF-8 never reaches the parser (the server closes
/// such a connection with 1007), so it is skipped.
pub fn run(data: &[u8]) -> Vec<Outcome> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    let mut model = Model::default();
    let mut outcomes: Vec<Outcome> = text.lines().map(|line| model.frame(line)).collect();
    // Several lines are also one frame with newlines in it; no line at all is
    // the empty frame.
    if outcomes.len() != 1 {
        outcomes.push(Model::default().frame(text));
    }
    outcomes
}

impl Model {
    /// Parses and validates one frame, checks every invariant, and applies
    /// what it changes to the model.
    pub fn frame(&mut self, text: &str) -> Outcome {
        // The server refuses a frame over the limit (1009) before parsing it.
        if text.len() > self.limits.max_frame_bytes {
            return Outcome {
                kind: "oversized",
                error: None,
            };
        }
        let parsed = protocol::parse(text, &self.limits);
        let id = parsed.id;
        if let Some(id) = &id {
            check_id(id);
        }
        let kind = parsed.kind.as_str();
        let result = match parsed.request {
            Ok(request) => {
                assert_eq!(kind, request.kind().as_str(), "parsed kind of {text:?}");
                self.apply(request, id.as_ref())
            }
            Err(e) => {
                match e.code {
                    ErrorCode::UnknownType => assert_eq!(kind, "unknown", "{text:?}"),
                    ErrorCode::BadRequest | ErrorCode::PayloadTooLarge => {}
                    other => panic!("the parser answered {other} to {text:?}"),
                }
                Err(e)
            }
        };
        let error = match result {
            Ok(()) => None,
            Err(e) => {
                check_error_reply(id.as_ref(), &e);
                Some(e.code)
            }
        };
        Outcome { kind, error }
    }

    fn apply(
        &mut self,
        request: Request<'_>,
        id: Option<&RequestId>,
    ) -> Result<(), protocol::ProtocolError> {
        match request {
            Request::Ping => {
                json(&reply::pong(id));
            }
            Request::Join(join) => self.join(join, id),
            Request::Leave => {
                self.peers.pop();
                json(&reply::ok(id));
            }
            Request::Signal { to, payload } => {
                assert!(protocol::is_valid_name(&to), "signal.to {to:?}");
                check_payload(payload, &self.limits);
                let body = event::signal("alice", payload);
                self.check_event(&body.json, Some(payload));
                json(&reply::ok(id));
            }
            Request::Broadcast { payload } => {
                check_payload(payload, &self.limits);
                let body = event::broadcast("alice", payload);
                self.check_event(&body.json, Some(payload));
                json(&reply::ok(id));
            }
            Request::Discover { filters } => {
                check_filters(&filters, &self.peers);
                let peers = filters::select(self.peers.clone(), &filters);
                json(&reply::peers(id, &peers));
            }
            Request::SetState { patch, if_version } => {
                self.set_state(&patch, if_version, id)?;
            }
            Request::Update { role, metadata } => {
                if let Some(role) = &role {
                    check_role(role);
                }
                if let Some(metadata) = &metadata {
                    check_metadata(metadata, &self.limits);
                }
                let pinned_ok = match (&role, &self.claims.role) {
                    (Some(role), Some(pinned)) => role == pinned,
                    _ => true,
                };
                assert_eq!(
                    self.claims.authorize_role(role.as_deref()).is_ok(),
                    pinned_ok,
                    "authorize_role({role:?})"
                );
                if let Some(peer) = self.peers.last_mut() {
                    if let Some(role) = role {
                        peer.role = role;
                    }
                    if let Some(metadata) = metadata {
                        peer.metadata = metadata;
                    }
                    let body = event::peer_updated(peer);
                    self.check_event(&body.json, None);
                }
                json(&reply::ok(id));
            }
        }
        Ok(())
    }

    fn join(&mut self, join: JoinRequest, id: Option<&RequestId>) {
        assert!(protocol::is_valid_name(&join.room), "room {:?}", join.room);
        if let Some(peer) = &join.peer {
            assert!(protocol::is_valid_name(peer), "peer {peer:?}");
        }
        if let Some(role) = &join.role {
            check_role(role);
        }
        check_metadata(&join.metadata, &self.limits);
        if let Some(resume) = &join.resume {
            assert!(resume.len() <= 1024, "resume of {} bytes", resume.len());
        }
        // A resume token only ever counts for the room and peer it names.
        if let Some(t) = token::for_join(&join) {
            assert_eq!(t.room, join.room);
            if let Some(peer) = &join.peer {
                assert_eq!(&t.peer, peer);
            }
        }
        // With authentication on, the grant fills in or refuses peer and role.
        let mut granted = join.clone();
        if self.claims.authorize_join(&mut granted, NOW, 0).is_ok() {
            assert_eq!(granted.peer.as_deref(), Some(self.claims.sub.as_str()));
            assert!(self.claims.allows_room(&granted.room));
            assert_eq!(granted.role, self.claims.role, "pinned role");
            assert_eq!(granted.room, join.room);
        }

        let peer = join.peer.unwrap_or_else(|| {
            self.generated += 1;
            format!("p-{:012x}", self.generated)
        });
        let info = PeerInfo {
            peer,
            role: join.role.unwrap_or_else(|| DEFAULT_ROLE.to_owned()),
            metadata: join.metadata,
            joined_at: self.seq,
        };
        let joined = reply::joined(
            id,
            &reply::Joined {
                ty: protocol::MessageType::Joined,
                room: &join.room,
                peer: &info.peer,
                session: "sb1.x.y.z",
                peers: &self.peers,
                state: &self.state,
                ice_servers: &Value::Array(Vec::new()),
                recovered: join.resume.as_ref().map(|_| false),
            },
        );
        json(&joined);
        let body = event::peer_joined(&info);
        self.check_event(&body.json, None);
        if self.peers.len() < MAX_MODEL_PEERS && self.peers.iter().all(|p| p.peer != info.peer) {
            self.peers.push(info);
        }
    }

    fn set_state(
        &mut self,
        patch: &Map<String, Value>,
        if_version: Option<u64>,
        id: Option<&RequestId>,
    ) -> Result<(), protocol::ProtocolError> {
        let max = self.limits.max_state_bytes;
        let before = self.state.clone();
        let result = state::apply(&self.state, patch, if_version, max);
        assert_eq!(self.state, before, "apply changed its input");
        let next = match result {
            Ok(next) => next,
            Err(e) => {
                match e.code {
                    ErrorCode::VersionConflict => {
                        assert_ne!(if_version, Some(self.state.version));
                        assert_eq!(e.version, Some(self.state.version));
                    }
                    ErrorCode::PayloadTooLarge => {}
                    other => panic!("set_state answered {other}"),
                }
                return Err(e);
            }
        };
        if let Some(v) = if_version {
            assert_eq!(v, self.state.version, "applied against another version");
        }
        assert_eq!(next.version, self.state.version + 1);
        let size = serde_json::to_vec(&next.data).map(|v| v.len()).unwrap();
        assert!(size <= max, "state of {size} bytes over {max}");
        check_merged(&self.state.data, patch, &next.data);
        // A merge patch is idempotent.
        let mut again = next.data.clone();
        state::merge_patch(&mut again, patch);
        assert_eq!(again, next.data, "patch not idempotent: {patch:?}");
        json(&reply::ok_version(id, next.version));
        let body = event::state(&next, "alice");
        self.state = next;
        self.check_event(&body.json, None);
        Ok(())
    }

    /// An event body is a JSON object; stamped with its `seq` it still is, and
    /// a relayed payload arrives as the value the sender sent.
    fn check_event(&mut self, body: &str, payload: Option<&RawValue>) {
        self.seq += 1;
        let stamped = protocol::stamp(self.seq, body);
        let Some(value) = json(&stamped) else { return };
        assert_eq!(value["seq"], Value::from(self.seq), "{stamped}");
        if let Some(payload) = payload {
            let sent: Value = serde_json::from_str(payload.get()).expect("payload re-reads");
            assert_eq!(value["payload"], sent, "payload of {}", payload.get());
        }
    }
}

/// Parses `text` as JSON: every reply and event the server sends must be.
/// `None` for a value nested deeper than the JSON reader goes (payloads are
/// relayed whatever their depth), which the caller then cannot inspect.
fn json(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Some(v),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => None,
        Err(e) => panic!("not JSON ({e}): {text}"),
    }
}

/// RFC 7386, checked key by key on the result: a key the patch sets to `null`
/// is gone, one it sets to an object is an object merged the same way, one it
/// sets to anything else holds exactly that, and every other key is unchanged.
fn check_merged(
    before: &Map<String, Value>,
    patch: &Map<String, Value>,
    after: &Map<String, Value>,
) {
    for (key, value) in before {
        if !patch.contains_key(key) {
            assert_eq!(after.get(key), Some(value), "untouched key {key:?} changed");
        }
    }
    for key in after.keys() {
        if !patch.contains_key(key) {
            assert!(
                before.contains_key(key),
                "key {key:?} appeared from nowhere"
            );
        }
    }
    for (key, change) in patch {
        match change {
            Value::Null => assert!(!after.contains_key(key), "null kept key {key:?}"),
            Value::Object(inner) => {
                let Some(Value::Object(merged)) = after.get(key) else {
                    panic!("key {key:?} patched with an object is {:?}", after.get(key));
                };
                let empty = Map::new();
                let old = before.get(key).and_then(Value::as_object).unwrap_or(&empty);
                check_merged(old, inner, merged);
            }
            other => assert_eq!(after.get(key), Some(other), "key {key:?} not replaced"),
        }
    }
}

fn check_id(id: &RequestId) {
    match serde_json::from_str::<Value>(id.as_json()) {
        Ok(Value::String(_)) => {}
        Ok(Value::Number(n)) => {
            let n = n
                .as_i64()
                .unwrap_or_else(|| panic!("id {n} is not an integer"));
            assert!(
                (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n),
                "id {n}"
            );
        }
        other => panic!("id {:?} parsed as {other:?}", id.as_json()),
    }
}

/// An error reply is JSON with the code and the request's id unchanged.
fn check_error_reply(id: Option<&RequestId>, e: &protocol::ProtocolError) {
    let text = reply::error(id, e);
    let value = json(&text).expect("an error reply is shallow");
    assert_eq!(value["type"], "error", "{text}");
    assert_eq!(value["code"], e.code.as_str(), "{text}");
    match id {
        Some(id) => assert_eq!(Some(&value["id"]), json(id.as_json()).as_ref(), "{text}"),
        None => assert!(value.get("id").is_none(), "{text}"),
    }
}

fn check_role(role: &str) {
    assert!(role.chars().count() <= MAX_ROLE_CHARS, "role {role:?}");
}

fn check_metadata(metadata: &Map<String, Value>, limits: &Limits) {
    let size = serde_json::to_vec(metadata).map(|v| v.len()).unwrap();
    assert!(
        size <= limits.max_metadata_bytes,
        "metadata of {size} bytes"
    );
}

/// An accepted payload is within the limit once compacted (the raw text may
/// be longer only by whitespace).
fn check_payload(payload: &RawValue, limits: &Limits) {
    let raw = payload.get();
    if raw.len() <= limits.max_payload_bytes {
        return;
    }
    let value = serde_json::from_str::<Value>(raw).expect("an oversized payload is parseable");
    let size = serde_json::to_vec(&value).map(|v| v.len()).unwrap();
    assert!(size <= limits.max_payload_bytes, "payload of {size} bytes");
}

/// `select` keeps exactly the peers that match, in order; and the operators
/// keep their documented relations on every peer: `$ne` is the negation of
/// `$eq` where the property exists, `$in [v]` is `$eq v`, and a missing
/// property matches nothing.
fn check_filters(f: &Filters, peers: &[PeerInfo]) {
    let selected = filters::select(peers.to_vec(), f);
    let expected: Vec<&PeerInfo> = peers.iter().filter(|p| f.matches(p)).collect();
    assert_eq!(selected.iter().collect::<Vec<_>>(), expected, "select");
    assert!(peers.iter().all(|p| Filters::default().matches(p)));

    for (name, ops) in &f.properties {
        for op in ops {
            let value = match op {
                Op::Eq(v) | Op::Ne(v) => v,
                _ => continue,
            };
            let only = |op: Op| Filters {
                properties: vec![(name.clone(), vec![op])],
                ..Filters::default()
            };
            let eq = only(Op::Eq(value.clone()));
            let ne = only(Op::Ne(value.clone()));
            let is_in = only(Op::In(vec![value.clone()]));
            for p in peers {
                let present = p
                    .metadata
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|props| props.contains_key(name));
                let (e, n, i) = (eq.matches(p), ne.matches(p), is_in.matches(p));
                assert_eq!(e, i, "$in [v] differs from $eq v on {name:?}");
                if present {
                    assert_ne!(e, n, "$ne is not the negation of $eq on {name:?}");
                } else {
                    assert!(!e && !n, "a missing property {name:?} matched");
                }
            }
        }
    }
}
