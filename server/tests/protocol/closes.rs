//! Closes the server initiates, as the client sees them: every reply and event
//! queued before the close arrives, then the Close frame with its exact code
//! and reason — never a bare end of stream (1006), even when the client still
//! had input in flight that the server no longer reads. Also the join deadline
//! (`JOIN_TIMEOUT_SECS`), which closes connections that never join a room.
//!
//! The clients here are tokio-tungstenite clients, like a real application's
//! stack: a reset from the server makes such a client drop what it had not
//! read yet, which is exactly the failure these cases catch.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::server_still_works;
use crate::support::client::Incoming;
use crate::support::*;

/// Default frame limit of PROTOCOL.md.
const FRAME_LIMIT: usize = 131072;
/// Pings sent in one write by the flood case. With the default burst (300)
/// and strike limit (100) the close comes on the 400th (the join took a
/// token); the hundred after it are more than the server reads ahead, so the
/// server closes with input it has not read.
const FLOOD: u64 = 500;
/// Default `RATE_LIMIT_BURST`.
const BURST: usize = 300;
/// Default `RATE_LIMIT_MAX_STRIKES`.
const STRIKES: usize = 100;

/// The close reasons the server gives (docs/protocol.md, close codes).
pub const RATE_LIMIT_REASON: &str = "rate limit exceeded repeatedly";
pub const TOO_BIG_REASON: &str = "frame exceeds the frame size limit";
pub const SLOW_CONSUMER_REASON: &str = "outbound queue full: the client is not reading fast enough";

/// `RESUME_WINDOW_SECS` of the cases whose client reads late: it starts
/// reading this long after the server decided to close (see `wait_gone`).
pub const LATE_SECS: u64 = 3;

/// `JOIN_TIMEOUT_SECS` of the join-deadline case.
pub const JOIN_SECS: u64 = 1;

/// Bytes of padding in the string ids of the pings below. Their pongs echo
/// the ids, so hundreds of KB of replies are still in flight (in the server's
/// socket buffer) when the server closes — as they are on a real network,
/// where the client is further away than on loopback.
const ID_PAD: usize = 2000;

/// The id of ping `n`: `n`, a colon, padding.
fn id(n: u64) -> Value {
    json!(format!("{n}:{}", "i".repeat(ID_PAD)))
}

fn ping(n: u64) -> String {
    json!({"type": "ping", "id": id(n)}).to_string()
}

fn pong(n: u64) -> Value {
    json!({"type": "pong", "id": id(n)})
}

/// Reads until the Close frame (bounded), failing on anything but JSON before
/// it; returns the messages before it and the Close's code and reason.
async fn read_to_close(client: &mut Client) -> (Vec<Value>, Option<u16>, String) {
    let mut before = Vec::new();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.read_incoming(left).await {
            Some(Incoming::Json(v)) => before.push(v),
            Some(Incoming::Close(code, reason)) => return (before, code, reason),
            Some(Incoming::Ended(why)) => client.fail(&format!(
                "the connection ended without a Close frame (1006) after {} messages: {why}",
                before.len()
            )),
            None => client.fail(&format!("no Close within {CLOSE_TIMEOUT:?}")),
        }
    }
}

/// Receive buffer of the clients that read late: small, so that the backlog
/// the server sends them stays in the server's socket (as on a real network)
/// instead of all landing in the client's socket at once, as on loopback.
const SMALL_BUFFER: u32 = 16 * 1024;

/// Joins `peer` (with a small receive buffer) on node `node`, in `room`.
async fn join_small_buffer(c: &Cluster, node: usize, room: &str, peer: &str) -> Client {
    let label = format!("{peer}@{}", c.node_id(node));
    let mut client = Client::connect_small_buffer(c.addr(node), &label, SMALL_BUFFER).await;
    client
        .join(json!({"type": "join", "room": room, "peer": peer}))
        .await;
    client
}

/// Joins `peer` (with a small receive buffer) on node 0 and a watcher of it
/// on node 1, in a room of their own; returns (peer, watcher).
async fn watched(c: &Cluster, room: &str, peer: &str) -> (Client, Client) {
    let (mut watcher, _) = join(c, 1, room, "watcher").await;
    let client = join_small_buffer(c, 0, room, peer).await;
    watcher.recv_type("peer_joined").await;
    (client, watcher)
}

/// Waits until the watcher sees `peer` leave: the resume window
/// ([`LATE_SECS`] in these cases) after the server stopped handling its
/// connection. A client that reads only from then on is one that reads late,
/// or is further away than loopback, when the server closes.
async fn wait_gone(watcher: &mut Client, peer: &str) {
    let left = watcher.recv_type("peer_left").await;
    assert_eq!(left["peer"], peer, "{left}");
}

/// 500 pings in one write (`RATE_LIMIT_PER_SEC=1`, so that the bucket does
/// not refill during the flood; burst and strike limit at their defaults),
/// read only after the server has given up on the connection: the client
/// reads the pongs of the whole burst (300, less the join's token) and the
/// 100 `RATE_LIMITED` errors, in order, then Close 1008 with its reason. The ping that crossed the strike
/// limit and the ones after it (which the server still had to read) are not
/// answered.
pub async fn flood_reads_every_reply_then_1008(c: &Cluster) {
    let (mut client, mut watcher) = watched(c, "flood", "flooder").await;
    let burst: Vec<String> = (0..FLOOD).map(ping).collect();
    client.send_burst(&burst).await;
    wait_gone(&mut watcher, "flooder").await;
    let (before, code, reason) = read_to_close(&mut client).await;
    // The join took one token of the burst.
    let pongs = BURST - 1;
    for (n, reply) in before.iter().enumerate() {
        if n < pongs {
            assert_eq!(reply, &pong(n as u64), "reply {n}");
        } else {
            assert_error_reply(reply, "RATE_LIMITED", &id(n as u64), &[]);
        }
    }
    assert_eq!(
        before.len(),
        pongs + STRIKES,
        "replies before the close (of {FLOOD} pings)"
    );
    assert_eq!((code, reason.as_str()), (Some(1008), RATE_LIMIT_REASON));
    server_still_works(c).await;
}

/// 200 pings, a frame twice the frame limit and more pings, sent back to
/// back and read only after the server has given up on the connection: the
/// client gets the pongs of the pings before the big frame, then Close 1009
/// with its reason, although the server never reads the rest.
pub async fn oversized_frame_after_replies_gets_1009(c: &Cluster) {
    const BEFORE: u64 = 200;
    let (mut client, mut watcher) = watched(c, "big", "sender").await;
    let pad = "x".repeat(2 * FRAME_LIMIT);
    let mut burst: Vec<String> = (0..BEFORE).map(ping).collect();
    burst.push(json!({"type": "ping", "id": "big", "pad": pad}).to_string());
    burst.extend((BEFORE..BEFORE + 10).map(ping));
    // The server may close before it has all of it, so a failed send is not
    // the test's concern: what the client then reads is.
    for text in burst {
        if client
            .try_send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .is_err()
        {
            break;
        }
    }
    wait_gone(&mut watcher, "sender").await;
    let (before, code, reason) = read_to_close(&mut client).await;
    assert_eq!(before.len() as u64, BEFORE, "replies before the close");
    for (n, reply) in before.iter().enumerate() {
        assert_eq!(reply, &pong(n as u64), "reply {n}");
    }
    assert_eq!((code, reason.as_str()), (Some(1009), TOO_BIG_REASON));
    server_still_works(c).await;
}

/// A member that stops reading until its outgoing queue overflowed
/// (`OUTBOUND_QUEUE_BYTES=65536`), then sends a request and reads: it gets
/// every broadcast the server had written, in order and without a gap, then
/// Close 1008 with its reason; its late request is not answered.
pub async fn slow_consumer_reads_everything_then_1008(c: &Cluster) {
    let (mut sender, _) = join(c, 0, "r1", "sender").await;
    let (mut reader, _) = join(c, 1, "r1", "reader").await;
    let mut sloth = join_small_buffer(c, 2, "r1", "sloth").await;
    sender.recv_type("peer_joined").await;
    sender.recv_type("peer_joined").await;
    reader.recv_type("peer_joined").await;

    // The reader learns that the sloth's queue overflowed from its
    // `peer_left` (`RESUME_WINDOW_SECS=1` after the server let it go).
    let pad = "y".repeat(60_000);
    let mut sent = 0u64;
    let mut sloth_gone = false;
    while !sloth_gone {
        assert!(
            sent < 2000,
            "2000 broadcasts of 60 KB did not overflow 64 KiB"
        );
        sender
            .send_json(json!({"type": "broadcast", "payload": {"n": sent, "pad": pad}}))
            .await;
        loop {
            let ev = reader.recv_json().await;
            match ty(&ev) {
                "broadcast" => {
                    assert_eq!(ev["payload"]["n"], sent, "reader lost a broadcast");
                    break;
                }
                "peer_left" if ev["peer"] == "sloth" => sloth_gone = true,
                _ => reader.fail(&format!("unexpected {ev}")),
            }
        }
        sent += 1;
    }

    // Input the server no longer handles, still in flight when it closes.
    sloth.send_json(json!({"type": "ping", "id": "late"})).await;
    let (before, code, reason) = read_to_close(&mut sloth).await;
    for (n, ev) in before.iter().enumerate() {
        if ty(ev) != "broadcast" || ev["payload"]["n"] != n {
            sloth.fail(&format!("message {n} before the close: {ev:.200}"));
        }
    }
    assert_eq!(
        (code, reason.as_str()),
        (Some(1008), SLOW_CONSUMER_REASON),
        "close after {} of {sent} broadcasts",
        before.len()
    );
    reader.assert_quiet().await;
    server_still_works(c).await;
}

/// With `JOIN_TIMEOUT_SECS=1`: a connection that never joins (though it
/// pings) is closed with 1008 `no join within 1 s`, not before the deadline;
/// a joined one stays; one that leaves its room gets the deadline again from
/// the leave; one that joins again in time stays.
pub async fn join_deadline(c: &Cluster) {
    let timeout = Duration::from_secs(JOIN_SECS);
    let reason = format!("no join within {JOIN_SECS} s");
    let opened = Instant::now();
    let mut idler = c.connect(0).await;
    idler.ping().await;
    let (mut member, _) = join(c, 1, "r1", "member").await;
    let (mut rejoiner, _) = join(c, 0, "r2", "rejoiner").await;
    rejoiner.request_ok(json!({"type": "leave"})).await;
    rejoiner
        .join(json!({"type": "join", "room": "r2", "peer": "rejoiner"}))
        .await;

    let (before, code, got) = read_to_close(&mut idler).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!((code, got.as_str()), (Some(1008), reason.as_str()));
    assert!(
        opened.elapsed() >= timeout,
        "closed after {:?}, before the deadline",
        opened.elapsed()
    );

    member.ping().await;
    let left = Instant::now();
    member.request_ok(json!({"type": "leave"})).await;
    let (before, code, got) = read_to_close(&mut member).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!((code, got.as_str()), (Some(1008), reason.as_str()));
    assert!(
        left.elapsed() >= timeout,
        "closed {:?} after its leave, before the deadline",
        left.elapsed()
    );
    // The rejoiner's leave was longer ago than the deadline: it joined in time.
    rejoiner.ping().await;
    rejoiner.assert_quiet().await;
}
