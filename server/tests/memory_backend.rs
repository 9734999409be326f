//! The embedded backend in-process, under concurrent joins: many tasks on a
//! multi-threaded runtime join one `MemoryBackend` at once, and the room
//! rules must hold whatever the interleaving (the cap, unique peer ids, one
//! winner per resume token). The black-box suites check the same rules one
//! client at a time over sockets; here the races are cheap to provoke.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use switchboard::backend::memory::MemoryBackend;
use switchboard::backend::{Backend, JoinArgs, JoinOutcome};
use switchboard::limits::Limits;
use switchboard::outbox::Outbox;
use switchboard::protocol::{ErrorCode, JoinRequest, ProtocolError};

const CAP: usize = 8;
const JOINERS: usize = 64;

fn backend() -> Arc<MemoryBackend> {
    let limits = Limits {
        max_peers_per_room: CAP,
        ..Limits::default()
    };
    MemoryBackend::new(limits, Duration::from_secs(30))
}

fn request(room: &str, peer: Option<&str>, resume: Option<&str>) -> JoinRequest {
    JoinRequest {
        room: room.into(),
        peer: peer.map(str::to_owned),
        role: None,
        metadata: Map::new(),
        resume: resume.map(str::to_owned),
        last_seq: None,
    }
}

async fn join(backend: &MemoryBackend, request: JoinRequest) -> Result<JoinOutcome, ProtocolError> {
    backend
        .join(JoinArgs {
            request: &request,
            outbox: Arc::new(Outbox::new(1 << 20)),
            takeover: false,
        })
        .await
}

/// Runs `JOINERS` joins at once, each made by `make(i)`.
async fn race(
    backend: &Arc<MemoryBackend>,
    make: impl Fn(usize) -> JoinRequest,
) -> Vec<Result<JoinOutcome, ProtocolError>> {
    let tasks: Vec<_> = (0..JOINERS)
        .map(|i| {
            let backend = backend.clone();
            let request = make(i);
            tokio::spawn(async move { join(&backend, request).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a join panicked"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_never_pass_the_room_cap() {
    let backend = backend();
    let results = race(&backend, |i| request("r", Some(&format!("p{i}")), None)).await;
    let joined: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(joined.len(), CAP, "joins admitted");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.code, ErrorCode::RoomFull, "{e}");
        }
    }
    // Each winner saw only peers that joined before it: the lists grow by one.
    let mut sizes: Vec<usize> = joined.iter().map(|o| o.peers.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, (0..CAP).collect::<Vec<_>>());
    assert_eq!(backend.stats().peers, CAP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_peer_id_is_taken_once() {
    let backend = backend();
    let results = race(&backend, |_| request("r", Some("same"), None)).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1);
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.code, ErrorCode::PeerIdTaken, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assigned_ids_are_unique_across_rooms() {
    let backend = backend();
    let results = race(&backend, |i| request(&format!("room{}", i % 4), None, None)).await;
    let mut ids = HashSet::new();
    for outcome in results.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(
            ids.insert((outcome.member.room.clone(), outcome.member.peer.clone())),
            "id given twice"
        );
    }
    assert_eq!(ids.len(), 4 * CAP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_token_resumes_its_peer_and_nobody_else() {
    let backend = backend();
    let first = join(&backend, request("r", Some("alice"), None))
        .await
        .unwrap();
    let token = first.session.clone();
    let results = race(&backend, |_| request("r", None, Some(&token))).await;
    // Every resume of a live session succeeds (each moves it to its own
    // connection), as `alice`, never as a new peer.
    for outcome in &results {
        let outcome = outcome.as_ref().expect("resume refused");
        assert_eq!(outcome.member.peer, "alice");
        assert_eq!(outcome.recovered, Some(true));
    }
    assert_eq!(backend.stats().peers, 1);
    // The last attachment is the one in use; every earlier one is stale.
    let current: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|o| {
            let peers = futures_util::FutureExt::now_or_never(backend.peers(&o.member));
            matches!(peers, Some(Ok(_)))
        })
        .collect();
    assert_eq!(current.len(), 1, "exactly one connection holds the session");
}

/// What the Server API removes frees its replay bytes at once: after a
/// kick, a close, and a leave of the last peer, the node holds none.
#[tokio::test]
async fn kicks_and_closes_free_what_was_kept_for_replay() {
    use switchboard::backend::Recipients;
    use switchboard::protocol::event;
    let backend = backend();
    for room in ["kept", "closed"] {
        for peer in ["alice", "bob"] {
            join(&backend, request(room, Some(peer), None))
                .await
                .expect("join");
        }
        let body = event::server(&serde_json::json!({"text": "x".repeat(1000)}));
        let n = backend
            .send_server(room, Recipients::All, body)
            .await
            .expect("message");
        assert_eq!(n, 2);
    }
    assert!(
        backend.recovery_bytes() > 2000,
        "{}",
        backend.recovery_bytes()
    );
    backend.kick("kept", "bob").await.expect("kick");
    backend.close_room("closed").await.expect("close");
    let alice = join(&backend, request("kept", Some("carol"), None))
        .await
        .expect("join");
    backend.leave(&alice.member).await.expect("leave");
    backend.kick("kept", "alice").await.expect("kick");
    assert_eq!(backend.stats().rooms, 0);
    assert_eq!(backend.recovery_bytes(), 0);
}
