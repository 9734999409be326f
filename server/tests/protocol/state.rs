//! Cases for room state: `set_state` as a JSON Merge Patch (RFC 7386), the
//! `state` event to every peer (sender too), `if_version` and
//! `VERSION_CONFLICT` carrying the current version, and the size limit that
//! leaves the state unchanged when exceeded.

use serde_json::{json, Value};

use crate::support::*;

/// Reads the next `state` event of `client` and checks its fields.
async fn expect_state(client: &mut Client, version: u64, data: &Value, by: &str) {
    let ev = client.recv_type("state").await;
    assert_keys(&ev, STATE_KEYS);
    assert_eq!(ev["version"], version, "{ev}");
    assert_eq!(&ev["data"], data, "{ev}");
    assert_eq!(ev["by"], by, "{ev}");
}

/// Merge patches: objects merge recursively, `null` deletes, arrays and scalars
/// replace; each applied patch bumps `version` by one; everyone gets the full data.
pub async fn set_state_merge_patch(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    let steps: [(&str, Value, Value); 5] = [
        (
            "alice",
            json!({"url": "https://v/1", "position": 0, "playing": true,
                   "nested": {"a": 1, "b": {"c": 2}}, "list": [1, 2]}),
            json!({"url": "https://v/1", "position": 0, "playing": true,
                   "nested": {"a": 1, "b": {"c": 2}}, "list": [1, 2]}),
        ),
        (
            "bob",
            json!({"position": 42, "playing": null, "nested": {"b": {"c": null, "d": 3}}}),
            json!({"url": "https://v/1", "position": 42,
                   "nested": {"a": 1, "b": {"d": 3}}, "list": [1, 2]}),
        ),
        (
            "alice",
            json!({"list": [3], "nested": {"a": {"x": 1}}}),
            json!({"url": "https://v/1", "position": 42,
                   "nested": {"a": {"x": 1}, "b": {"d": 3}}, "list": [3]}),
        ),
        (
            "bob",
            json!({"nested": null, "absent": null, "url": {"kind": "object now"}}),
            json!({"url": {"kind": "object now"}, "position": 42, "list": [3]}),
        ),
        (
            "alice",
            json!({"position": 42.5, "s": "ünï ✓"}),
            json!({"url": {"kind": "object now"}, "position": 42.5, "list": [3], "s": "ünï ✓"}),
        ),
    ];
    for (n, (by, patch, data)) in steps.iter().enumerate() {
        let version = n as u64 + 1;
        let sender = if *by == "alice" { &mut alice } else { &mut bob };
        let ok = sender
            .request_with_id(json!({"type": "set_state", "patch": patch}), json!(n))
            .await;
        assert_eq!(ok["type"], "ok", "{ok}");
        assert_eq!(ok["id"], n);
        expect_state(&mut alice, version, data, by).await;
        expect_state(&mut bob, version, data, by).await;
    }
    let (mut carol, joined) = join(c, 2, "r1", "carol").await;
    assert_eq!(joined["state"], json!({"version": 5, "data": steps[4].2}));
    for client in [&mut alice, &mut bob] {
        client.recv_type("peer_joined").await;
        client.assert_quiet().await;
    }
    carol.assert_quiet().await;
}

/// `if_version` applies the patch only at that version; otherwise
/// `VERSION_CONFLICT` with the current `version`, and nothing changes.
pub async fn if_version_conflict(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;

    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 1}, "if_version": 0}))
        .await;
    expect_state(&mut alice, 1, &json!({"a": 1}), "alice").await;
    expect_state(&mut bob, 1, &json!({"a": 1}), "alice").await;

    for stale in [0u64, 2, 7] {
        let id = json!(format!("stale-{stale}"));
        let reply = bob
            .request_with_id(
                json!({"type": "set_state", "patch": {"a": 2}, "if_version": stale}),
                id.clone(),
            )
            .await;
        assert_error_reply(&reply, "VERSION_CONFLICT", &id, &["version"]);
        assert_eq!(reply["version"], 1, "current version in {reply}");
    }
    alice.assert_quiet().await;
    bob.assert_quiet().await;

    bob.request_ok(json!({"type": "set_state", "patch": {"b": 2}, "if_version": 1}))
        .await;
    expect_state(&mut alice, 2, &json!({"a": 1, "b": 2}), "bob").await;
    expect_state(&mut bob, 2, &json!({"a": 1, "b": 2}), "bob").await;
    // Without if_version a patch always applies.
    alice
        .request_ok(json!({"type": "set_state", "patch": {"a": 3}}))
        .await;
    expect_state(&mut bob, 3, &json!({"a": 3, "b": 2}), "alice").await;
    expect_state(&mut alice, 3, &json!({"a": 3, "b": 2}), "alice").await;
}

/// Two peers (on different nodes) racing with the same `if_version`: exactly
/// one wins, the other gets `VERSION_CONFLICT` with the winner's version.
pub async fn if_version_race_has_one_winner(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    for round in 0..10u64 {
        let msg = |who: &str| json!({"type": "set_state", "patch": {"winner": who}, "if_version": round, "id": "race"});
        alice.send_json(msg("alice")).await;
        bob.send_json(msg("bob")).await;
        let mut winners = Vec::new();
        for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
            let reply = client.reply_to(&json!("race"), "set_state race").await;
            match ty(&reply) {
                "ok" => winners.push(name),
                "error" => {
                    assert_error_reply(&reply, "VERSION_CONFLICT", &json!("race"), &["version"]);
                    assert_eq!(reply["version"], round + 1, "{reply}");
                }
                _ => client.fail(&format!("unexpected reply {reply}")),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        for client in [&mut alice, &mut bob] {
            let ev = client.recv_type("state").await;
            assert_eq!(ev["version"], round + 1);
            assert_eq!(ev["by"], winners[0]);
            assert_eq!(ev["data"], json!({"winner": winners[0]}));
        }
        tokio::join!(alice.assert_quiet(), bob.assert_quiet());
    }
}

/// One sender's patches reach every peer in order with consecutive versions.
pub async fn state_versions_in_order(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    for n in 0..40u64 {
        alice
            .send_json(json!({"type": "set_state", "patch": {"n": n}}))
            .await;
    }
    // `set_state` is answered `ok` even without an id (unlike signal/broadcast).
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let mut oks = 0;
        let mut n = 0u64;
        while n < 40 || (name == "alice" && oks < 40) {
            let ev = client.recv_json().await;
            if name == "alice" && ty(&ev) == "ok" {
                assert!(ev.get("id").is_none(), "{ev}");
                oks += 1;
                continue;
            }
            assert_eq!(ev["type"], "state", "{ev}");
            assert_eq!(ev["version"], n + 1, "{ev}");
            assert_eq!(ev["data"], json!({"n": n}));
            n += 1;
        }
        client.assert_quiet().await;
    }
}

/// A patch whose result exceeds 64 KiB is `PAYLOAD_TOO_LARGE` and changes
/// nothing; a result of exactly 64 KiB is fine.
pub async fn state_size_limit(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    const LIMIT: usize = 65536;
    // {"k":"xxx…"} serializes to 8 + n bytes.
    let exact = json!({"k": "x".repeat(LIMIT - 8)});
    assert_eq!(json_len(&exact), LIMIT);
    let over = json!({"k": "x".repeat(LIMIT - 7)});

    let reply = alice
        .request(json!({"type": "set_state", "patch": over}))
        .await;
    assert_error(&reply, "PAYLOAD_TOO_LARGE");
    alice
        .request_ok(json!({"type": "set_state", "patch": exact}))
        .await;
    expect_state(&mut bob, 1, &exact, "alice").await;
    expect_state(&mut alice, 1, &exact, "alice").await;

    // Growing by one byte is refused; the state stays as it was.
    let reply = bob
        .request(json!({"type": "set_state", "patch": {"k": "x".repeat(LIMIT - 7)}}))
        .await;
    assert_error(&reply, "PAYLOAD_TOO_LARGE");
    let reply = bob
        .request(json!({"type": "set_state", "patch": {"extra": 1}}))
        .await;
    assert_error(&reply, "PAYLOAD_TOO_LARGE");
    alice.assert_quiet().await;
    bob.assert_quiet().await;
    let (_carol, joined) = join(c, 2, "r1", "carol").await;
    assert_eq!(joined["state"]["version"], 1);
    assert_eq!(joined["state"]["data"], exact);
    alice.recv_type("peer_joined").await;
    bob.recv_type("peer_joined").await;

    // Shrinking works and continues from the unchanged version.
    bob.request_ok(json!({"type": "set_state", "patch": {"k": null, "small": 1}}))
        .await;
    expect_state(&mut alice, 2, &json!({"small": 1}), "bob").await;
}

/// Wrong-typed `set_state` fields are `BAD_REQUEST` and change nothing.
pub async fn set_state_validation(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let bad = [
        json!({"type": "set_state"}),
        json!({"type": "set_state", "patch": 5}),
        json!({"type": "set_state", "patch": "x"}),
        json!({"type": "set_state", "patch": [1]}),
        json!({"type": "set_state", "patch": {"a": 1}, "if_version": "0"}),
        json!({"type": "set_state", "patch": {"a": 1}, "if_version": -1}),
        json!({"type": "set_state", "patch": {"a": 1}, "if_version": 0.5}),
    ];
    for message in bad {
        let id = json!(format!("{message}"));
        let reply = alice.request_with_id(message, id.clone()).await;
        assert_error_reply(&reply, "BAD_REQUEST", &id, &[]);
    }
    alice.assert_quiet().await;
    let (_bob, joined) = join(c, 1, "r1", "bob").await;
    assert_eq!(joined["state"], json!({"version": 0, "data": {}}));
}

/// The sender of `set_state` receives its `ok{version}` before the `state`
/// event its patch caused, on every backend (docs/protocol.md, Clarifications);
/// in a burst, each `ok` still comes before its own `state`, and both kinds
/// keep the order of the requests.
pub async fn set_state_ok_before_state(c: &Cluster) {
    let (mut alice, _) = join(c, 0, "r1", "alice").await;
    let (mut bob, _) = join(c, 1, "r1", "bob").await;
    alice.recv_type("peer_joined").await;
    const ONE_BY_ONE: u64 = 10;
    for n in 1..=ONE_BY_ONE {
        alice
            .send_json(json!({"type": "set_state", "patch": {"n": n}, "id": n}))
            .await;
        let first = alice.recv_json().await;
        assert_eq!(first, json!({"type": "ok", "id": n, "version": n}));
        expect_state(&mut alice, n, &json!({"n": n}), "alice").await;
        expect_state(&mut bob, n, &json!({"n": n}), "alice").await;
    }
    const BURST: u64 = 20;
    let burst: Vec<String> = (ONE_BY_ONE + 1..=ONE_BY_ONE + BURST)
        .map(|n| json!({"type": "set_state", "patch": {"n": n}, "id": n}).to_string())
        .collect();
    alice.send_burst(&burst).await;
    let (mut next_ok, mut next_state) = (ONE_BY_ONE + 1, ONE_BY_ONE + 1);
    while next_state <= ONE_BY_ONE + BURST {
        let msg = alice.recv_json().await;
        match ty(&msg) {
            "ok" => {
                assert_eq!(
                    msg,
                    json!({"type": "ok", "id": next_ok, "version": next_ok})
                );
                next_ok += 1;
            }
            "state" => {
                assert_eq!(msg["version"], next_state, "{msg}");
                assert!(
                    next_state < next_ok,
                    "state {next_state} came before its ok: {msg}"
                );
                next_state += 1;
            }
            _ => alice.fail(&format!("unexpected {msg}")),
        }
    }
    for n in ONE_BY_ONE + 1..=ONE_BY_ONE + BURST {
        expect_state(&mut bob, n, &json!({"n": n}), "alice").await;
    }
    alice.assert_quiet().await;
    bob.assert_quiet().await;
}
