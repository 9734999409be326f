//! Hostile input: non-JSON, non-objects, wrong types, binary frames, frames over
//! the limit (close 1009), huge ids, deep nesting, floods, fragments, invalid
//! UTF-8, broken handshakes. After each, the connection (where the protocol
//! keeps it open) and the server must still work.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::server_still_works;
use crate::support::client::TOO_DEEP;
use crate::support::raw::{
    RawEvent, RawWs, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};
use crate::support::*;

/// Default frame limit of PROTOCOL.md.
const FRAME_LIMIT: usize = 131072;

/// Asserts the next message is `BAD_REQUEST` without an id (there was none to echo).
async fn expect_bad_request_without_id(client: &mut Client, sent: &str) {
    let reply = client.recv_json().await;
    assert_eq!(reply["code"], "BAD_REQUEST", "reply to {sent:?}: {reply}");
    assert_error(&reply, "BAD_REQUEST");
    assert_keys(&reply, &["type", "code", "message"]);
}

/// Text that is not JSON is `BAD_REQUEST`; the connection stays usable.
pub async fn non_json_text(c: &Cluster) {
    let (mut client, _) = join(c, 0, "r1", "alice").await;
    for text in [
        "hello",
        "{",
        "{\"type\":",
        "",
        "   ",
        "{'type':'ping'}",
        "{\"type\":\"ping\"}}",
        "\u{0}",
    ] {
        client.send_text(text).await;
        expect_bad_request_without_id(&mut client, text).await;
    }
    client.assert_quiet().await;
    server_still_works(c).await;
}

/// JSON that is not an object is `BAD_REQUEST`, even an array holding a valid message.
pub async fn non_object_json(c: &Cluster) {
    let mut client = c.connect(0).await;
    for text in [
        "[]",
        "[1,2]",
        r#"[{"type":"ping","id":1}]"#,
        "\"ping\"",
        "42",
        "null",
        "true",
        "-0.5",
    ] {
        client.send_text(text).await;
        expect_bad_request_without_id(&mut client, text).await;
    }
    client.assert_quiet().await;
    server_still_works(c).await;
}

/// A missing or wrong-typed `type`, and wrong-typed fields of each message,
/// are `BAD_REQUEST` (echoing a valid id).
pub async fn wrong_types(c: &Cluster) {
    let mut client = c.connect(0).await;
    for text in [
        "{}",
        r#"{"id":"x"}"#,
        r#"{"type":5}"#,
        r#"{"type":null}"#,
        r#"{"type":["ping"]}"#,
        r#"{"type":{"t":1}}"#,
    ] {
        client.send_text(text).await;
        let reply = client.recv_json().await;
        assert_error(&reply, "BAD_REQUEST");
    }
    let reply = client.request_with_id(json!({"type": 5}), json!(8)).await;
    assert_error_reply(&reply, "BAD_REQUEST", &json!(8), &[]);

    client
        .join(json!({"type": "join", "room": "r1", "peer": "alice"}))
        .await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    client.recv_type("peer_joined").await;
    let bad = [
        json!({"type": "signal", "payload": 1}),
        json!({"type": "signal", "to": "bob"}),
        json!({"type": "signal", "to": 5, "payload": 1}),
        json!({"type": "signal", "to": ["bob"], "payload": 1}),
        json!({"type": "signal", "to": null, "payload": 1}),
        json!({"type": "broadcast"}),
        json!({"type": "update", "role": ["x"]}),
        json!({"type": "update", "metadata": 1}),
        json!({"type": "discover", "filters": "x"}),
        json!({"type": "set_state", "patch": null}),
    ];
    for message in bad {
        let id = json!(format!("{message}"));
        let reply = client.request_with_id(message, id.clone()).await;
        assert_error_reply(&reply, "BAD_REQUEST", &id, &[]);
    }
    bob.assert_quiet().await;
    client.assert_quiet().await;
    server_still_works(c).await;
}

/// Binary frames are refused with `BAD_REQUEST`, even when they hold a valid message.
pub async fn binary_frames(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let frames: [&[u8]; 4] = [
        b"\x00\x01\x02\xff",
        br#"{"type":"ping","id":1}"#,
        br#"{"type":"broadcast","payload":"via binary"}"#,
        b"",
    ];
    for data in frames {
        alice.send_binary(data.to_vec()).await;
        let reply = alice.recv_json().await;
        assert_error(&reply, "BAD_REQUEST");
    }
    bob.assert_quiet().await;
    alice.assert_quiet().await;
    server_still_works(c).await;
}

/// A text frame of exactly the frame limit is read (its payload is then too
/// large: `PAYLOAD_TOO_LARGE`, connection open); one byte more is close 1009.
pub async fn oversized_text_frame(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    let frame = |len: usize| {
        let head = r#"{"type":"broadcast","id":"big","payload":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    let at_limit = frame(FRAME_LIMIT);
    assert_eq!(at_limit.len(), FRAME_LIMIT);
    alice.send_text(&at_limit).await;
    let reply = alice.recv_json().await;
    assert_error_reply(&reply, "PAYLOAD_TOO_LARGE", &json!("big"), &[]);
    alice.assert_quiet().await;

    let _ = alice.try_send(Message::text(frame(FRAME_LIMIT + 1))).await;
    let before = alice.expect_close(1009).await;
    // An error before the close is tolerated; nothing else is.
    assert!(
        before.iter().all(|m| m["code"] == "PAYLOAD_TOO_LARGE") && before.len() <= 1,
        "messages before the close: {before:?}"
    );
    bob.assert_quiet().await;
    server_still_works(c).await;
}

/// A binary frame over the frame limit is close 1009 as well.
pub async fn oversized_binary_frame(c: &Cluster) {
    let mut client = c.connect(0).await;
    let _ = client
        .try_send(Message::binary(vec![b'a'; FRAME_LIMIT * 2]))
        .await;
    client.expect_close(1009).await;
    server_still_works(c).await;
}

/// A frame header announcing 2^40 bytes is close 1009 at once: the server must
/// not wait for (or allocate) the announced size.
pub async fn huge_announced_frame(c: &Cluster) {
    let mut raw = RawWs::connect(c.addr(0)).await;
    raw.send_header(OP_TEXT, 1 << 40, b"{\"type\":\"ping\"")
        .await
        .expect("send header");
    let mut pings = 0;
    match raw.read_json(RECV_TIMEOUT, &mut pings).await {
        RawEvent::Frame(f) => {
            assert_eq!(f.close_code(), Some(1009), "expected close 1009, got {f:?}")
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    server_still_works(c).await;
}

/// Many fragments adding up to more than the frame limit are refused too (the
/// limit holds for messages, or memory is unbounded): close 1009.
pub async fn oversized_fragmented_message(c: &Cluster) {
    let mut raw = RawWs::connect(c.addr(0)).await;
    let chunk = vec![b'x'; 16 * 1024];
    let mut first = b"{\"type\":\"broadcast\",\"payload\":\"".to_vec();
    first.extend_from_slice(&chunk);
    let mut outcome = raw.send_frame(false, OP_TEXT, &first).await;
    for _ in 0..(FRAME_LIMIT * 2 / chunk.len()) {
        if outcome.is_err() {
            break;
        }
        outcome = raw.send_frame(false, OP_CONTINUATION, &chunk).await;
    }
    if outcome.is_ok() {
        let _ = raw.send_frame(true, OP_CONTINUATION, b"\"}").await;
    }
    let mut pings = 0;
    match raw.read_json(RECV_TIMEOUT, &mut pings).await {
        RawEvent::Frame(f) => {
            assert_eq!(f.close_code(), Some(1009), "expected close 1009, got {f:?}")
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    server_still_works(c).await;
}

/// A long string `id` (PROTOCOL.md bounds only integer ids) is echoed unchanged.
pub async fn long_string_id_is_echoed(c: &Cluster) {
    let mut client = c.connect(0).await;
    let id = json!("i".repeat(10_000));
    let pong = client
        .request_with_id(json!({"type": "ping"}), id.clone())
        .await;
    assert_eq!(pong, json!({"type": "pong", "id": id}));
    client.assert_quiet().await;
}

/// Integer ids beyond ±2^53 and huge numbers are `BAD_REQUEST`; the connection works on.
pub async fn huge_numeric_ids(c: &Cluster) {
    let mut client = c.connect(0).await;
    let huge = format!("1{}", "0".repeat(5000));
    for id in [
        "9007199254740993",
        "-9007199254740993",
        "99999999999999999999999999",
        &huge,
        "1e400",
    ] {
        let text = format!(r#"{{"type":"ping","id":{id}}}"#);
        client.send_text(&text).await;
        let reply = client.recv_json().await;
        assert_error(&reply, "BAD_REQUEST");
    }
    client.assert_quiet().await;
    server_still_works(c).await;
}

/// Deeply nested JSON (in a payload, an unknown field, or the id) does not
/// crash the server: the message is either delivered intact or refused with
/// `BAD_REQUEST`, and the connection stays usable.
pub async fn deep_nesting(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    // Every depth is over serde_json's default limit (128 levels).
    for depth in [200usize, 5_000, 60_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(r#"{{"type":"signal","to":"bob","id":"deep","payload":{nested}}}"#);
        alice.send_text(&text).await;
        let reply = alice.recv_json().await;
        match ty(&reply) {
            "ok" => {
                assert_eq!(reply["id"], "deep");
                // Too deep for serde_json's default limit: the client keeps the raw text.
                let ev = bob.recv_json().await;
                assert_eq!(ev["type"], TOO_DEEP, "{ev}");
                let raw = ev["raw"].as_str().expect("raw text");
                let relayed: Value =
                    serde_json::from_str(&raw.replace(&nested, "0")).expect("JSON");
                assert_eq!(relayed["type"], "signal", "{raw:.200}");
                assert_eq!(relayed["from"], "alice");
                assert_eq!(
                    relayed["payload"], 0,
                    "the nested payload must be relayed verbatim"
                );
            }
            "error" if depth * 2 > 65536 && reply["code"] == "PAYLOAD_TOO_LARGE" => {}
            "error" => {
                assert_error(&reply, "BAD_REQUEST");
            }
            _ => alice.fail(&format!("unexpected reply to depth {depth}: {reply}")),
        }
        alice.assert_quiet().await;
        let objects = format!(
            "{}1{}",
            "{\"a\":".repeat(depth.min(20_000)),
            "}".repeat(depth.min(20_000))
        );
        let text = format!(r#"{{"type":"ping","id":"p","x":{objects}}}"#);
        alice.send_text(&text).await;
        let reply = alice.recv_json().await;
        assert!(
            reply == json!({"type": "pong", "id": "p"}) || reply["code"] == "BAD_REQUEST",
            "reply to a deeply nested unknown field: {reply}"
        );
        alice
            .send_text(&format!(r#"{{"type":"ping","id":{nested}}}"#))
            .await;
        assert_error(&alice.recv_json().await, "BAD_REQUEST");
    }
    bob.assert_quiet().await;
    alice.assert_quiet().await;
    server_still_works(c).await;
}

/// A flood of garbage within the rate limit's burst: every frame is answered
/// `BAD_REQUEST`, in order, then the connection still works.
pub async fn garbage_flood(c: &Cluster) {
    let mut client = c.connect(0).await;
    const N: usize = 250;
    for n in 0..N {
        match n % 4 {
            0 => client.send_text("not json").await,
            1 => client.send_text("[1]").await,
            2 => client.send_binary(vec![0; 10]).await,
            _ => client.send_json(json!({"type": 1})).await,
        }
    }
    for n in 0..N {
        let reply = client.recv_json().await;
        assert_eq!(reply["code"], "BAD_REQUEST", "reply {n}: {reply}");
    }
    client.ping().await;
    client.assert_quiet().await;
    server_still_works(c).await;
}

/// A flood of pings as large as the default burst (300, which PROTOCOL.md says
/// a client can count on) is answered completely and in order.
pub async fn ping_flood(c: &Cluster) {
    let mut client = c.connect(0).await;
    const N: u64 = 300;
    for n in 0..N {
        client.send_json(json!({"type": "ping", "id": n})).await;
    }
    for n in 0..N {
        assert_eq!(client.recv_json().await, json!({"type": "pong", "id": n}));
    }
    client.quiet_for(QUIET).await;
}

/// A message split into fragments (with a ping between them, as RFC 6455
/// allows) is reassembled and answered.
pub async fn fragmented_message(c: &Cluster) {
    let mut raw = RawWs::connect(c.addr(0)).await;
    raw.send_frame(false, OP_TEXT, br#"{"type":"pi"#)
        .await
        .expect("send");
    raw.send_frame(true, OP_PING, b"mid").await.expect("send");
    raw.send_frame(false, OP_CONTINUATION, br#"ng","#)
        .await
        .expect("send");
    raw.send_frame(true, OP_CONTINUATION, br#""id":"frag"}"#)
        .await
        .expect("send");
    let mut got_pong_frame = false;
    let reply = loop {
        match raw.read_frame(RECV_TIMEOUT).await {
            RawEvent::Frame(f) if f.opcode == OP_PONG => {
                assert_eq!(f.payload, b"mid");
                got_pong_frame = true;
            }
            RawEvent::Frame(f) if f.opcode == OP_PING => {}
            RawEvent::Frame(f) if f.opcode == OP_TEXT => {
                break serde_json::from_slice::<Value>(&f.payload).expect("JSON reply");
            }
            other => panic!("expected the pong message, got {other:?}"),
        }
    };
    assert_eq!(reply, json!({"type": "pong", "id": "frag"}));
    assert!(
        got_pong_frame,
        "the control ping between fragments was not answered first"
    );
}

/// Text frames that are not UTF-8 do not hurt the server: the connection gets
/// `BAD_REQUEST` or is closed (1007 per RFC 6455), and others are unaffected.
pub async fn invalid_utf8(c: &Cluster) {
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let mut raw = RawWs::connect(c.addr(0)).await;
    raw.send_frame(true, OP_TEXT, b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}")
        .await
        .expect("send");
    let mut pings = 0;
    match raw.read_json(RECV_TIMEOUT, &mut pings).await {
        RawEvent::Frame(f) if f.opcode == OP_TEXT => {
            let reply: Value = serde_json::from_slice(&f.payload).expect("JSON");
            assert_error(&reply, "BAD_REQUEST");
        }
        // RFC 6455 fails the connection (1007); PROTOCOL.md does not say.
        RawEvent::Frame(f) => assert_eq!(f.opcode, OP_CLOSE, "unexpected {f:?}"),
        RawEvent::Ended(_) => {}
        RawEvent::Timeout => panic!("no answer to invalid UTF-8"),
    }
    let _ = raw.send_frame(true, OP_BINARY, b"\xff").await;
    bob.assert_quiet().await;
    server_still_works(c).await;
}

/// Broken HTTP (garbage, a plain GET on /ws, a half-sent handshake kept open,
/// a connection dropped mid-frame) does not stop the server serving others.
pub async fn broken_handshakes(c: &Cluster) {
    let addr = c.addr(0);
    // Garbage instead of HTTP: the server answers 400 or hangs up.
    let mut garbage = TcpStream::connect(addr).await.expect("connect");
    garbage
        .write_all(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(RECV_TIMEOUT, garbage.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "server kept a garbage connection open for {RECV_TIMEOUT:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        !text.contains(" 101 ") && !text.starts_with("HTTP/1.1 2"),
        "{text}"
    );

    // A plain GET /ws without the upgrade headers is a 4xx.
    let resp = crate::support::http::get(addr, "/ws").await;
    assert!(
        (400..500).contains(&resp.status),
        "GET /ws without upgrade: {}",
        resp.status
    );

    // A half-sent handshake held open, and a socket dropped in the middle of a frame.
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websock")
        .await
        .expect("write");
    let mut raw = RawWs::connect(addr).await;
    raw.send_header(OP_TEXT, 1000, b"{\"type\":")
        .await
        .expect("send");
    drop(raw);
    server_still_works(c).await;
    drop(half);

    // Many connections opened and dropped at once.
    let mut churn = Vec::new();
    for i in 0..50 {
        churn.push(c.connect(i).await);
    }
    drop(churn);
    server_still_works(c).await;
}

/// A client closing abruptly in every state (before join, joined, mid-request)
/// leaves the server healthy.
pub async fn abrupt_disconnects(c: &Cluster) {
    for i in 0..5 {
        let client = c.connect(i).await;
        drop(client);
        let (client, _) = join(c, i, &format!("r{i}"), "p").await;
        drop(client);
        let (mut client, _) = join(c, i, &format!("s{i}"), "p").await;
        client
            .send_json(json!({"type": "set_state", "patch": {"x": i}, "id": 1}))
            .await;
        drop(client);
    }
    tokio::time::timeout(Duration::from_secs(30), server_still_works(c))
        .await
        .expect("server still works");
}

/// A resume with an absurd `last_seq` (beyond anything sent, up to u64::MAX,
/// or beyond u64) neither crashes the server nor replays anything it should
/// not: the answer is `joined` (recovered or not) or `BAD_REQUEST`.
pub async fn absurd_last_seq(c: &Cluster) {
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    for (n, last_seq) in [
        "1000000",
        "18446744073709551615",
        "18446744073709551616",
        "1e30",
    ]
    .into_iter()
    .enumerate()
    {
        let peer = format!("a{n}");
        let (alice, joined) = join(c, 0, "r1", &peer).await;
        let session = joined["session"].as_str().expect("session").to_owned();
        assert_eq!(
            bob.recv_type("peer_joined").await["peer"]["peer"],
            peer.as_str()
        );
        alice.close().await;
        let mut again = c.connect(2).await;
        let text = format!(
            r#"{{"type":"join","room":"r1","peer":"{peer}","resume":"{session}","last_seq":{last_seq},"id":"r"}}"#
        );
        again.send_text(&text).await;
        let reply = again.recv_json().await;
        match ty(&reply) {
            "joined" => assert_eq!(reply["peer"], peer.as_str()),
            _ => {
                assert_error(&reply, "BAD_REQUEST");
            }
        }
        again.assert_quiet().await;
        bob.assert_quiet().await;
    }
    server_still_works(c).await;
}
