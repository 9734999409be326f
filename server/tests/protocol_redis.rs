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
            // Each recipient node's signals in one message on its own channel.
            "sb:node:",
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
        // Status, messages published (one: bob's two signals in r1 and
        // dave's in r2 go to the node both are on, in one `N` message), then
        // per sender.
        let lines: Vec<&str> = reply.lines().collect();
        assert_eq!(
            lines,
            ["OK", "1", "OK", "1", "0", "1", "OK", "1", "STALE", "0"],
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

    /// A recipient on a node of an earlier build (an incarnation without the
    /// `~c` mark reads no node channel) gets its signal on the room channel,
    /// as before: a rolling upgrade loses nothing.
    #[tokio::test]
    async fn a_node_of_an_earlier_build_gets_signals_on_the_room_channel() {
        let redis = Redis::start(RedisOptions::default());
        let settings = Settings::new().set("REDIS_URL", redis.url());
        let c = Cluster::over(1, settings, Box::new(())).await;
        let (_alice, _) = join(&c, 0, "r1", "alice").await;
        let att = redis
            .cli(&["HGET", "sb:{r1}:p:alice", "att"])
            .trim()
            .to_owned();
        // A peer held by a node of the earlier build.
        let old = "node-b~0123abcd";
        redis.cli(&["HSET", "sb:{r1}:peers", "legacy", "{}"]);
        redis.cli(&["HSET", "sb:{r1}:p:legacy", "node", old, "att", "1"]);
        let client = redis::Client::open(redis.url()).expect("redis url");
        let mut conn = client.get_connection().expect("connect to redis");
        let mut sub = conn.as_pubsub();
        let room_channel = format!("sb:{{r1}}:node:{old}");
        sub.subscribe(&[room_channel.as_str(), &format!("sb:node:{old}")])
            .expect("subscribe");
        sub.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("read timeout");
        let b = body("alice", 1);
        let reply = redis.cli(&[
            "EVAL",
            SCRIPT,
            "1",
            "sb:{r1}:peers",
            "PUBLISH",
            "512",
            "3600000",
            "sb:node:",
            "alice",
            &att,
            "1",
            "legacy",
            &b,
        ]);
        assert_eq!(reply.lines().collect::<Vec<_>>(), ["OK", "1", "OK", "1"]);
        let msg = sub.get_message().expect("a message within 5 s");
        assert_eq!(msg.get_channel_name(), room_channel);
        let payload: String = msg.get_payload().expect("text payload");
        assert_eq!(payload, format!("E signal legacy=1\n{b}"));
    }
}
