//! The few protocol messages the bench writes and reads (see PROTOCOL.md). Writing
//! goes through string templates and reading through a borrowed struct, so the
//! hot path does one allocation per message and no JSON tree.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

/// `leave`, sent before closing so the server frees the peer at once instead of
/// keeping it for the resume window.
pub const LEAVE: &str = r#"{"type":"leave"}"#;

/// A `join` with a fixed id and an explicit peer id.
pub fn join(room: &str, peer: &str) -> String {
    format!(r#"{{"type":"join","id":1,"room":"{room}","peer":"{peer}"}}"#)
}

/// What the bench needs from any server message; unknown fields are skipped.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// The message type (`signal`, `joined`, `error`, events...).
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Error code of an `error`.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// Payload of a `signal`, as the bench wrote it.
    #[serde(default)]
    pub payload: Option<Stamp>,
}

/// The payload of every bench signal: the send time of the round trip it belongs
/// to, in nanoseconds on the bench's monotonic clock. Padding (`p`) is skipped.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time of the original signal.
    #[serde(default)]
    pub t: u64,
}

/// Parses one server text frame.
pub fn parse(text: &str) -> Result<Incoming<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// A `signal` to one peer, rendered with a different stamp each time.
#[derive(Debug, Clone)]
pub struct SignalTemplate {
    head: String,
    tail: String,
}

impl SignalTemplate {
    /// A template for signals to `to` whose payload carries `pad` extra bytes.
    pub fn new(to: &str, pad: usize) -> Self {
        let head = format!(r#"{{"type":"signal","to":"{to}","payload":{{"t":"#);
        let tail = if pad == 0 {
            "}}".to_string()
        } else {
            format!(r#","p":"{}"}}}}"#, "x".repeat(pad))
        };
        Self { head, tail }
    }

    /// The signal carrying stamp `t`.
    pub fn render(&self, t: u64) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 20);
        s.push_str(&self.head);
        let _ = write!(s, "{t}");
        s.push_str(&self.tail);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_signal_is_valid_json_and_round_trips_the_stamp() {
        for pad in [0, 5] {
            let text = SignalTemplate::new("p1", pad).render(42);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "signal");
            assert_eq!(v["to"], "p1");
            assert_eq!(v["payload"]["t"], 42);
            // What the receiving peer sees: the server adds `from` and `seq`.
            let relayed = format!(
                r#"{{"type":"signal","from":"p0","payload":{},"seq":7}}"#,
                v["payload"]
            );
            let m = parse(&relayed).unwrap();
            assert_eq!(m.kind, "signal");
            assert_eq!(m.payload, Some(Stamp { t: 42 }));
        }
    }

    #[test]
    fn errors_and_events_parse() {
        let m = parse(r#"{"type":"error","code":"RATE_LIMITED","message":"slow down","id":1}"#)
            .unwrap();
        assert_eq!(m.kind, "error");
        assert_eq!(m.code.as_deref(), Some("RATE_LIMITED"));
        let m =
            parse(r#"{"type":"peer_joined","peer":{"peer":"a","metadata":{}},"seq":1}"#).unwrap();
        assert_eq!(m.kind, "peer_joined");
        assert!(m.payload.is_none());
    }
}
