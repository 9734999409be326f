//! Recovery: `join.resume` with the `session` token (with and without
//! `last_seq`) re-attaches the peer without presence events and replays what
//! it missed, in order, before anything new, with no gaps or duplicates;
//! tokens are bound to their room and peer; after the resume window the peer
//! is removed (`peer_left{reason:"disconnected"}`) and a late resume gets
//! `recovered:false`.
//!
//! The resuming connection goes to the next node index, so on a cluster it
//! resumes on another node.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// The resume window the window-expiry cases run with.
pub const SHORT_WINDOW_SECS: u64 = 2;

/// Reads `count` signals and returns their `(payload.n, seq)`.
async fn numbered_signals(client: &mut Client, count: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let ev = client.recv_type("signal").await;
        let n = ev["payload"]["n"]
            .as_u64()
            .unwrap_or_else(|| client.fail(&format!("bad {ev}")));
        out.push((n, seq(&ev)));
    }
    out
}

/// Sends signals `range` from `from` to `to`, each acknowledged with `ok`.
async fn send_signals(from: &mut Client, to: &str, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        from.request_ok(json!({"type": "signal", "to": to, "payload": {"n": n}}))
            .await;
    }
}

/// Connects to `node` and resumes; returns the client and its `joined`.
async fn resume(c: &Cluster, node: usize, join: Value) -> (Client, Value) {
    join_with(c, node, join).await
}

/// `recovered` must be absent or true on a successful resume.
#[track_caller]
fn assert_recovered(joined: &Value) {
    assert!(
        joined.get("recovered").is_none() || joined["recovered"] == true,
        "resume within the window must recover: {joined}"
    );
}

/// Resume with `last_seq`: everything after it is replayed (also events the
/// old socket had delivered), with their original seqs, before new events;
/// the others see no presence change.
pub async fn resume_with_last_seq(c: &Cluster) {
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    send_signals(&mut bob, "alice", 1..=5).await;
    let before = numbered_signals(&mut alice, 5).await;
    assert_eq!(
        before.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let last_seq = before[2].1;
    drop(alice);

    // The away peer is still addressable.
    send_signals(&mut bob, "alice", 6..=20).await;
    bob.request_ok(json!({"type": "broadcast", "payload": "while away"}))
        .await;
    bob.request_ok(json!({"type": "set_state", "patch": {"k": 1}}))
        .await;
    bob.recv_type("state").await;

    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session, "last_seq": last_seq}),
    )
    .await;
    assert_eq!(joined["peer"], "alice");
    assert_eq!(joined["room"], "r1");
    assert_recovered(&joined);
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["bob"]));
    assert_eq!(joined["state"], json!({"version": 1, "data": {"k": 1}}));
    assert_eq!(
        joined["ice_servers"],
        json!([]),
        "a resumed joined has ice_servers too"
    );
    assert!(
        joined["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{joined}"
    );

    let replayed = numbered_signals(&mut alice, 17).await;
    let numbers: Vec<u64> = replayed.iter().map(|p| p.0).collect();
    assert_eq!(numbers, (4..=20).collect::<Vec<_>>(), "replayed signals");
    assert_eq!(replayed[0].1, before[3].1, "a replayed event keeps its seq");
    assert_eq!(replayed[1].1, before[4].1, "a replayed event keeps its seq");
    let mut last = last_seq;
    for (n, s) in &replayed {
        assert!(*s > last, "seq of signal {n} ({s}) not above {last}");
        last = *s;
    }
    let ev = alice.recv_type("broadcast").await;
    assert_eq!(ev["payload"], "while away");
    assert!(seq(&ev) > last);
    let ev = alice.recv_type("state").await;
    assert_eq!(ev["version"], 1);
    assert!(seq(&ev) > last);
    last = seq(&ev);

    bob.assert_quiet().await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 21}}))
        .await;
    let new = numbered_signals(&mut alice, 1).await;
    assert_eq!(new[0].0, 21);
    assert!(new[0].1 > last);
    alice.assert_quiet().await;
}

/// Resume without `last_seq` (and without `peer`): everything the old socket
/// did not get is replayed, nothing it got is repeated.
pub async fn resume_without_last_seq(c: &Cluster) {
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    send_signals(&mut bob, "alice", 1..=3).await;
    numbered_signals(&mut alice, 3).await;
    // A clean close: once the server answered it, nothing more is written to
    // the old socket.
    alice.close().await;

    send_signals(&mut bob, "alice", 4..=10).await;
    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "resume": session}),
    )
    .await;
    assert_eq!(
        joined["peer"], "alice",
        "resume re-attaches the same peer id"
    );
    assert_recovered(&joined);
    let numbers: Vec<u64> = numbered_signals(&mut alice, 7)
        .await
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(numbers, (4..=10).collect::<Vec<_>>());
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// Signals sent while the peer resumes (on another node) are all delivered
/// exactly once and in order: the replay joins the live stream without a gap.
pub async fn resume_during_live_traffic(c: &Cluster) {
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    send_signals(&mut bob, "alice", 1..=2).await;
    let got = numbered_signals(&mut alice, 2).await;
    let last_seq = got[1].1;
    drop(alice);

    const LAST: u64 = 150;
    let mut alice = c.connect(2).await;
    let sending = async {
        for n in 3..=LAST {
            bob.send_json(json!({"type": "signal", "to": "alice", "payload": {"n": n}}))
                .await;
        }
    };
    let resuming = async {
        alice
            .join(
                json!({"type": "join", "room": "r1", "peer": "alice", "resume": session,
                         "last_seq": last_seq}),
            )
            .await
    };
    let ((), joined) = tokio::join!(sending, resuming);
    assert_recovered(&joined);
    let got = numbered_signals(&mut alice, (LAST - 2) as usize).await;
    let numbers: Vec<u64> = got.iter().map(|p| p.0).collect();
    assert_eq!(
        numbers,
        (3..=LAST).collect::<Vec<_>>(),
        "gaps or duplicates around the resume"
    );
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "seq not increasing: {got:?}"
    );
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A resumed session's new token resumes again.
pub async fn resume_twice(c: &Cluster) {
    let (alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    // A clean close, so that nothing sent afterwards counts as delivered.
    alice.close().await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 1}}))
        .await;
    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session}),
    )
    .await;
    assert_recovered(&joined);
    // The peer_joined of bob was written to the first socket before it dropped,
    // or is replayed now; either way the signal follows.
    let first = alice.recv_json().await;
    let signal = if ty(&first) == "peer_joined" {
        alice.recv_type("signal").await
    } else {
        first
    };
    assert_eq!(signal["payload"]["n"], 1, "{signal}");
    let session2 = joined["session"].as_str().expect("session").to_owned();
    alice.close().await;

    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 2}}))
        .await;
    let (mut alice, joined) = resume(
        c,
        3,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session2}),
    )
    .await;
    assert_recovered(&joined);
    assert_eq!(alice.recv_type("signal").await["payload"]["n"], 2);
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A token only resumes its own peer: another peer's token (or none) for an
/// away peer's id is `PEER_ID_TAKEN`, and the real token still works after.
pub async fn resume_token_bound_to_peer(c: &Cluster) {
    let (alice, joined) = join(c, 0, "r1", "alice").await;
    let alice_session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let (mut carol, joined) = join(c, 2, "r1", "carol").await;
    let carol_session = joined["session"].as_str().expect("session").to_owned();
    bob.recv_type("peer_joined").await;
    // A clean close, so that nothing sent afterwards counts as delivered.
    alice.close().await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 1}}))
        .await;

    let mut mallory = c.connect(3).await;
    for join in [
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": carol_session}),
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": "not-a-session"}),
        json!({"type": "join", "room": "r1", "peer": "alice"}),
    ] {
        let reply = mallory.request_with_id(join.clone(), json!("m")).await;
        assert_error_reply(&reply, "PEER_ID_TAKEN", &json!("m"), &[]);
    }
    let (mut alice, joined) = resume(
        c,
        4,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": alice_session}),
    )
    .await;
    assert_recovered(&joined);
    expect_missed_signal(&mut alice, 1).await;
    alice.assert_quiet().await;
    bob.assert_quiet().await;
    carol.assert_quiet().await;
    mallory.assert_quiet().await;
}

/// A token used for another room does not bring anything of its room there;
/// the session stays resumable in its own room.
pub async fn resume_token_bound_to_room(c: &Cluster) {
    let (alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    // A clean close, so that nothing sent afterwards counts as delivered.
    alice.close().await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 1}}))
        .await;

    let mut other = c.connect(2).await;
    let reply = other
        .request(json!({"type": "join", "room": "r2", "peer": "alice", "resume": session}))
        .await;
    match ty(&reply) {
        "joined" => {
            assert_eq!(reply["room"], "r2");
            assert_eq!(
                reply["recovered"], false,
                "nothing of r1 can be recovered in r2: {reply}"
            );
            assert_eq!(reply["peers"], json!([]));
            other.assert_quiet().await;
        }
        "error" => assert_ne!(reply["code"], "INTERNAL", "{reply}"),
        _ => other.fail(&format!("unexpected reply {reply}")),
    }
    bob.assert_quiet().await;

    let (mut alice, joined) = resume(
        c,
        3,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session}),
    )
    .await;
    assert_eq!(joined["room"], "r1");
    assert_recovered(&joined);
    expect_missed_signal(&mut alice, 1).await;
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// The others see `peer_left{reason:"disconnected"}` only once the window has
/// passed; a resume after that is `recovered:false` and a fresh join.
/// Runs with `RESUME_WINDOW_SECS=2`.
pub async fn window_expiry(c: &Cluster) {
    let window = Duration::from_secs(SHORT_WINDOW_SECS);
    let (alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let dropped = Instant::now();
    drop(alice);

    bob.quiet_for(window / 2).await;
    let ev = bob
        .recv_json_timeout(window + Duration::from_secs(15))
        .await;
    let elapsed = dropped.elapsed();
    assert_eq!(ty(&ev), "peer_left", "{ev}");
    assert_keys(&ev, PEER_LEFT_KEYS);
    assert_eq!(ev["peer"], "alice");
    assert_eq!(ev["reason"], "disconnected");
    assert!(
        elapsed + Duration::from_millis(100) >= window,
        "peer_left after {elapsed:?}, before the {window:?} window ended"
    );
    bob.request_error(
        json!({"type": "signal", "to": "alice", "payload": 1}),
        "PEER_NOT_FOUND",
    )
    .await;

    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["peer"], "alice");
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["bob"]));
    let ev = bob.recv_type("peer_joined").await;
    assert_eq!(ev["peer"]["peer"], "alice");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A resume token that was never issued, for a peer id that is free: the join
/// proceeds with `recovered:false`.
pub async fn unknown_resume_token(c: &Cluster) {
    let (mut bob, _) = join(c, 0, "r1", "bob").await;
    let (mut alice, joined) = join_with(
        c,
        1,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": "bm90IGEgc2Vzc2lvbg"}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["peer"], "alice");
    assert_eq!(bob.recv_type("peer_joined").await["peer"]["peer"], "alice");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// A `resume` longer than any token (over 1,024 bytes) is an invalid token
/// like any other: the `join` proceeds as a fresh one (`recovered:false`), or
/// is `PEER_ID_TAKEN` for a peer id in use; never `BAD_REQUEST`.
pub async fn overlong_resume_token(c: &Cluster) {
    let (mut bob, _) = join(c, 0, "r1", "bob").await;
    let long = format!("sb1.{}", "A".repeat(2000));
    let mut taker = c.connect(1).await;
    taker
        .request_error(
            json!({"type": "join", "room": "r1", "peer": "bob", "resume": long}),
            "PEER_ID_TAKEN",
        )
        .await;
    let joined = taker
        .join(json!({"type": "join", "room": "r1", "peer": "alice", "resume": long}))
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["peer"], "alice");
    assert_eq!(bob.recv_type("peer_joined").await["peer"]["peer"], "alice");
    taker.assert_quiet().await;
    bob.assert_quiet().await;
}

/// After an explicit `leave` the session cannot re-attach: a resume is a fresh
/// join (`recovered:false`, `peer_joined` for the others).
pub async fn leave_ends_the_session(c: &Cluster) {
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.request_ok(json!({"type": "leave"})).await;
    assert_eq!(bob.recv_type("peer_left").await["reason"], "left");
    alice.close().await;
    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(bob.recv_type("peer_joined").await["peer"]["peer"], "alice");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}

/// Events kept for replay per peer (`RECOVERY_BUFFER_EVENTS`).
pub const SMALL_BUFFER_EVENTS: u64 = 10;

/// When more was missed than the server keeps (`RECOVERY_BUFFER_EVENTS=10`),
/// the resume is `recovered:false`, replays nothing (a partial replay would be
/// a gap), and new events flow again; the others see no presence change.
pub async fn overflowed_buffer_not_recovered(c: &Cluster) {
    let (mut alice, joined) = join(c, 0, "r1", "alice").await;
    let session = joined["session"].as_str().expect("session").to_owned();
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    let last_seq = seq(&alice.recv_type("peer_joined").await);
    drop(alice);
    send_signals(&mut bob, "alice", 1..=SMALL_BUFFER_EVENTS * 3).await;

    let (mut alice, joined) = resume(
        c,
        2,
        json!({"type": "join", "room": "r1", "peer": "alice", "resume": session,
               "last_seq": last_seq}),
    )
    .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["peer"], "alice");
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["bob"]));
    bob.assert_quiet().await;
    bob.request_ok(json!({"type": "signal", "to": "alice", "payload": {"n": 1000}}))
        .await;
    let ev = alice.recv_type("signal").await;
    assert_eq!(
        ev["payload"]["n"], 1000,
        "only new events after recovered:false: {ev}"
    );
    alice.assert_quiet().await;
}

/// A peer away within its window is still a member: newcomers list it, discover
/// finds it, and its return is invisible to them too.
pub async fn away_peer_still_listed(c: &Cluster) {
    let (alice, joined) = join_with(
        c,
        0,
        json!({"type": "join", "room": "r1", "peer": "alice", "role": "host"}),
    )
    .await;
    let session = joined["session"].as_str().expect("session").to_owned();
    alice.close().await;

    let (mut carol, joined) = join(c, 1, "r1", "carol").await;
    assert_eq!(peer_ids(&joined["peers"]), sorted(&["alice"]), "{joined}");
    assert_peer_info(&joined["peers"][0], "alice", "host", &json!({}));
    let peers = carol
        .request(json!({"type": "discover", "filters": {"role": "host"}}))
        .await;
    assert_eq!(peer_ids(&peers["peers"]), sorted(&["alice"]), "{peers}");
    let mut other = c.connect(2).await;
    let reply = other
        .request(json!({"type": "join", "room": "r1", "peer": "alice"}))
        .await;
    assert_error(&reply, "PEER_ID_TAKEN");

    let (mut alice, joined) = resume(
        c,
        3,
        json!({"type": "join", "room": "r1", "resume": session}),
    )
    .await;
    assert_recovered(&joined);
    assert_eq!(joined["peer"], "alice");
    // What alice missed: carol's arrival.
    let ev = alice.recv_type("peer_joined").await;
    assert_eq!(ev["peer"]["peer"], "carol");
    carol.assert_quiet().await;
    alice.assert_quiet().await;
}

/// Reads a resumed client's replay up to the missed signal with payload
/// `{"n": n}`; only missed presence events may come before it.
async fn expect_missed_signal(client: &mut Client, n: u64) {
    loop {
        let ev = client.recv_json().await;
        if ty(&ev) == "signal" {
            assert_eq!(ev["payload"]["n"], n);
            return;
        }
        assert_eq!(
            ty(&ev),
            "peer_joined",
            "only missed presence may come first: {ev}"
        );
    }
}
