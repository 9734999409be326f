//! The protocol suite against a two-node cluster: two real `switchboard`
//! processes sharing one real `redis-server`, with the peers of every case
//! spread across both nodes; plus the cases that only make sense with several
//! nodes (resume elsewhere, node crash, cross-node consistency).

mod protocol;
mod support;

use support::Cluster;

protocol::protocol_suite!(|settings| Cluster::redis(2, settings));
protocol::cluster_suite!(|settings| Cluster::redis(2, settings));

mod scripts {
    //! `signal.lua` called directly, as a node's signal batcher calls it under
    //! load: several senders in several rooms in one call.

    use serde_json::json;

    use crate::support::redis::{Redis, RedisOptions};
    use crate::support::{join, seq, Cluster, Settings};

    const SCRIPT: &str = concat!(
        include_str!("../src/backend/redis/lua/common.lua"),
        "\n",
        include_str!("../src/backend/redis/lua/signal.lua")
    );

    fn body(from: &str, n: u64) -> String {
        json!({"type": "signal", "from": from, "payload": n}).to_string()
    }

    #[tokio::test]
    async fn one_call_carries_senders_of_several_rooms() {
        let redis = Redis::start(RedisOptions::default());
        let settings = Settings::new().set("REDIS_URL", redis.url());
        let c = Cluster::over(2, settings, Box::new(())).await;
        let (mut alice, _) = join(&c, 0, "r1", "alice").await;
        let (mut bob, _) = join(&c, 1, "r1", "bob").await;
        let (mut carol, _) = join(&c, 0, "r2", "carol").await;
        let (mut dave, _) = join(&c, 1, "r2", "dave").await;
        alice.recv_type("peer_joined").await;
        carol.recv_type("peer_joined").await;
        let att = |room: &str, peer: &str| {
            redis
                .cli(&["HGET", &format!("sb:{{{room}}}:p:{peer}"), "att"])
                .trim()
                .to_owned()
        };
        let (alice_att, carol_att) = (att("r1", "alice"), att("r2", "carol"));
        let (b1, b2, b3, b4) = (
            body("alice", 1),
            body("alice", 2),
            body("carol", 3),
            body("alice", 4),
        );
        let reply = redis.cli(&[
            "EVAL",
            SCRIPT,
            "3",
            "sb:{r1}:peers",
            "sb:{r2}:peers",
            "sb:{r1}:peers",
            "PUBLISH",
            "512",
            "3600000",
            // alice: two signals to bob around one to a peer not in the room.
            "alice",
            &alice_att,
            "3",
            "bob",
            &b1,
            "nobody",
            &b1,
            "bob",
            &b2,
            // carol in the other room.
            "carol",
            &carol_att,
            "1",
            "dave",
            &b3,
            // An attachment that is never valid (they are odd): nothing sent.
            "alice",
            "0",
            "1",
            "bob",
            &b4,
        ]);
        // Status, messages published (bob's node for r1 with both of his
        // signals in one `M` message, dave's for r2), then per sender.
        let lines: Vec<&str> = reply.lines().collect();
        assert_eq!(
            lines,
            ["OK", "2", "OK", "1", "0", "1", "OK", "1", "STALE", "0"],
            "{reply}"
        );
        let first = bob.recv_type("signal").await;
        let second = bob.recv_type("signal").await;
        assert_eq!(
            (&first["payload"], &second["payload"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(seq(&second), seq(&first) + 1, "{first} {second}");
        let ev = dave.recv_type("signal").await;
        assert_eq!((&ev["from"], &ev["payload"]), (&json!("carol"), &json!(3)));
        bob.assert_quiet().await;
        dave.assert_quiet().await;
    }
}
