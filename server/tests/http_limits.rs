//! Sockets that never become WebSockets, against one embedded node: partial
//! requests closed at the request-head deadline (`HEADER_READ_TIMEOUT_SECS`),
//! sockets over `MAX_PENDING_PER_IP` refused at once, the oldest pending
//! socket closed when `MAX_PENDING_CONNECTIONS` is reached, request heads
//! over 64 KiB refused, a shutdown not held up by stalled sockets, and a node
//! out of file descriptors that keeps serving its open connections and
//! recovers by itself. In every case a real client still gets in.
//!
//! Several clients on one machine: every address of 127.0.0.0/8 reaches the
//! loopback interface, so sockets bound to 127.0.0.2, 127.0.0.3, … count as
//! other client addresses.
//!
//! The HTTP layer is the same whatever the backend, so these run against the
//! embedded node only.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::http::{metric_sample, try_get, HttpResponse};
use support::{join, Cluster, Settings, RECV_TIMEOUT};

/// The request-head deadline of the deadline tests: long enough that the
/// node answers a real client well within it, short enough for a test.
const DEADLINE_SECS: u64 = 5;
/// The deadline where a test must tell a refusal from a timeout: no socket
/// reaches it during the test.
const LONG_DEADLINE_SECS: u64 = 600;
/// Slack for a loaded machine on top of a deadline.
const SLACK: Duration = Duration::from_secs(30);
/// Bound of the waits for a count or a log line to change.
const SETTLE: Duration = Duration::from_secs(20);
/// Pause between polls of a count that changes asynchronously.
const POLL: Duration = Duration::from_millis(50);

/// Connects to `addr` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("create a socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .unwrap_or_else(|e| panic!("bind to {from}: {e}"));
    socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect from {from} to {addr}: {e}"))
}

/// Reads until the server closes the socket (EOF or reset) and returns what
/// it sent; panics when it is still open after `bound`.
async fn read_until_closed(stream: &mut TcpStream, bound: Duration, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(bound, stream.read_to_end(&mut got)).await {
        Ok(_) => got,
        Err(_) => panic!(
            "{what}: still open after {bound:?}; received {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}

/// Asserts `got` is the 503 refusal of a socket over its address's limit.
#[track_caller]
fn assert_refused(got: &[u8]) {
    let text = String::from_utf8_lossy(got);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text:?}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {text:?}"));
    assert_eq!(body["error"], "pending_ip_limit", "{text}");
    assert!(body["message"].is_string(), "{text}");
}

/// `GET path` from 127.0.0.1, retried (bounded) while the socket is refused
/// for its address's pending limit, closed, or not answered: for probes that
/// may race with sockets the server is still releasing.
async fn get_admitted(addr: SocketAddr, path: &str) -> HttpResponse {
    let deadline = Instant::now() + SETTLE + SLACK;
    loop {
        let last = match try_get(addr, path).await {
            Ok(resp) if !(resp.status == 503 && resp.body.contains("pending_ip_limit")) => {
                return resp
            }
            Ok(resp) => format!("{} {}", resp.status, resp.body),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "GET {path} not admitted within {:?}; last answer: {last}",
            SETTLE + SLACK
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `pending_connections` of `/status`; the `/status` request counts itself.
async fn pending(c: &Cluster) -> u64 {
    let status = get_admitted(c.addr(0), "/status").await.json();
    status["pending_connections"]
        .as_u64()
        .unwrap_or_else(|| panic!("pending_connections missing: {status}"))
}

/// Polls `/status` until `pending_connections` is `expected` (the `/status`
/// request itself included).
async fn wait_pending(c: &Cluster, expected: u64) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = pending(c).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pending_connections is {now}, expected {expected} within {SETTLE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A sample of `/metrics` (0 when absent).
async fn metric(c: &Cluster, series: &str) -> f64 {
    let body = get_admitted(c.addr(0), "/metrics").await.body;
    metric_sample(&body, series).unwrap_or(0.0)
}

/// Two fresh peers join `room` and exchange a signal.
async fn real_clients_work(c: &Cluster, room: &str) {
    let (mut a, _) = join(c, 0, room, "a").await;
    let (mut b, _) = join(c, 0, room, "b").await;
    a.recv_type("peer_joined").await;
    a.request_ok(json!({"type": "signal", "to": "b", "payload": "hi"}))
        .await;
    assert_eq!(b.recv_type("signal").await["payload"], "hi");
}

/// Sockets that sent nothing, one byte, half an upgrade request, or went
/// idle after a complete request are all closed at the deadline, not before,
/// and counted until then; meanwhile a real client joins and `/health`
/// answers.
#[tokio::test]
async fn partial_requests_are_closed_at_the_deadline() {
    let c = Cluster::embedded(
        Settings::new()
            .set("HEADER_READ_TIMEOUT_SECS", DEADLINE_SECS)
            .set("MAX_PENDING_PER_IP", 1024),
    )
    .await;
    let addr = c.addr(0);
    let deadline = Duration::from_secs(DEADLINE_SECS);
    let prefixes: [&[u8]; 3] = [
        b"",
        b"G",
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upg",
    ];
    let mut stalled = Vec::new();
    for prefix in prefixes {
        for _ in 0..20 {
            let opened = Instant::now();
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(prefix).await.expect("write");
            stalled.push((s, opened, String::from_utf8_lossy(prefix).into_owned()));
        }
    }
    // A keep-alive connection that completed a request and then sits idle.
    let opened = Instant::now();
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(RECV_TIMEOUT, idle.read(&mut head))
        .await
        .expect("an answer to the keep-alive request")
        .expect("read");
    let answer = String::from_utf8_lossy(&head[..n]);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    stalled.push((idle, opened, "(idle keep-alive)".into()));

    // All counted (accepted before the /status request, which counts itself).
    let counted = pending(&c).await;
    assert!(
        counted > stalled.len() as u64,
        "pending_connections {counted} with {} stalled sockets open",
        stalled.len()
    );
    real_clients_work(&c, "while-stalled").await;
    assert_eq!(c.get(0, "/health").await.status, 200);

    for (mut s, opened, sent) in stalled {
        let got = read_until_closed(
            &mut s,
            deadline + SLACK,
            &format!("socket that sent {sent:?}"),
        )
        .await;
        let open_for = opened.elapsed();
        // The deadline is counted from accept, after this side's connect.
        assert!(
            open_for >= deadline - Duration::from_millis(100),
            "socket that sent {sent:?} closed after {open_for:?}, before the {deadline:?} deadline"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(" 101 "), "{sent:?} was upgraded: {text}");
    }
    assert!(metric(&c, "switchboard_header_read_timeouts_total").await >= 61.0);
    wait_pending(&c, 1).await;
    real_clients_work(&c, "after").await;
    c.assert_alive();
}

/// Beyond `MAX_PENDING_PER_IP` sockets from one address, the next one from
/// that address is answered 503 and closed at once, while other addresses
/// and real clients get in; closing one frees its place.
#[tokio::test]
async fn sockets_over_the_per_address_limit_are_refused() {
    let c = Cluster::embedded(
        Settings::new()
            .set("MAX_PENDING_PER_IP", 3)
            .set("HEADER_READ_TIMEOUT_SECS", LONG_DEADLINE_SECS),
    )
    .await;
    let addr = c.addr(0);
    let crowded = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(crowded, addr).await);
    }
    // Accepted in order after the three, long before any deadline.
    let mut extra = connect_from(crowded, addr).await;
    let got = read_until_closed(&mut extra, RECV_TIMEOUT, "fourth socket from 127.0.0.2").await;
    assert_refused(&got);

    // Another address, and real clients from 127.0.0.1, are not affected.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).await;
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut other, RECV_TIMEOUT, "request from 127.0.0.3").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    real_clients_work(&c, "r1").await;
    assert_eq!(c.get(0, "/health").await.status, 200);

    // The three held sockets are counted (plus the /status request).
    wait_pending(&c, 4).await;
    assert!(
        metric(
            &c,
            r#"switchboard_connections_rejected_total{reason="pending_ip_limit"}"#
        )
        .await
            >= 1.0
    );
    // The three, the /metrics request, and maybe the /status probe above
    // for a moment after its answer.
    let gauge = metric(&c, "switchboard_pending_connections").await;
    assert!((4.0..=5.0).contains(&gauge), "pending gauge {gauge}");

    // Closing one frees a place for that address.
    drop(held.pop());
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut s = connect_from(crowded, addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let got = read_until_closed(&mut s, RECV_TIMEOUT, "request from 127.0.0.2").await;
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert_refused(&got);
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 still refused {SETTLE:?} after one of its sockets closed"
        );
        tokio::time::sleep(POLL).await;
    }
    c.assert_alive();
}

/// With `MAX_PENDING_CONNECTIONS` sockets pending (from several addresses,
/// none over its own limit), a new socket is admitted and the oldest pending
/// one is closed to make room: sockets held open cannot keep real clients
/// out.
#[tokio::test]
async fn a_full_node_closes_its_oldest_pending_socket() {
    let c = Cluster::embedded(
        Settings::new()
            .set("MAX_PENDING_CONNECTIONS", 4)
            .set("MAX_PENDING_PER_IP", 4)
            .set("HEADER_READ_TIMEOUT_SECS", LONG_DEADLINE_SECS),
    )
    .await;
    let addr = c.addr(0);
    // Nothing else has connected to this node yet: these four fill it.
    let mut held = Vec::new();
    for i in 2..6 {
        held.push(connect_from(Ipv4Addr::new(127, 0, 0, i), addr).await);
    }
    let mut newcomer = connect_from(Ipv4Addr::new(127, 0, 0, 6), addr).await;
    // The oldest is closed long before its deadline, without an answer.
    let got = read_until_closed(&mut held[0], RECV_TIMEOUT, "oldest pending socket").await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // The newcomer is served.
    newcomer
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut newcomer, RECV_TIMEOUT, "newcomer").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");

    // Fill it again (four more, so it is full whatever already closed), and
    // real clients still get in.
    for i in 7..11 {
        held.push(connect_from(Ipv4Addr::new(127, 0, 0, i), addr).await);
    }
    real_clients_work(&c, "r1").await;
    assert_eq!(c.get(0, "/health").await.status, 200);
    // At least the newcomer's and the first WebSocket handshake's.
    let evicted = metric(&c, "switchboard_pending_evictions_total").await;
    assert!(evicted >= 2.0, "evictions: {evicted}");
    // Never more than the limit (the /status request included).
    assert!(pending(&c).await <= 4);
    c.assert_alive();
}

/// A request head over 64 KiB is answered 431; one of 32 KiB is served.
#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let c = Cluster::embedded(Settings::new()).await;
    for (size, expected) in [(32 * 1024, "200"), (70 * 1024, "431")] {
        let mut s = TcpStream::connect(c.addr(0)).await.expect("connect");
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        );
        // The server may answer and close before reading all of it.
        let _ = s.write_all(request.as_bytes()).await;
        let got = read_until_closed(&mut s, RECV_TIMEOUT, "large request").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {expected} ")),
            "{size}-byte header: {text:?}"
        );
    }
    real_clients_work(&c, "r1").await;
    c.assert_alive();
}

/// SIGTERM with a half-sent request and an idle keep-alive connection open
/// (and a request-head deadline far away): the node still drains and exits
/// 0 within the drain timeout plus its short shutdown grace.
#[tokio::test]
async fn shutdown_is_not_held_by_stalled_sockets() {
    const DRAIN_SECS: u64 = 1;
    let c = Cluster::embedded(
        Settings::new()
            .set("DRAIN_TIMEOUT_SECS", DRAIN_SECS)
            .set("HEADER_READ_TIMEOUT_SECS", LONG_DEADLINE_SECS),
    )
    .await;
    let addr = c.addr(0);
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(RECV_TIMEOUT, idle.read(&mut answer))
        .await
        .expect("an answer to the keep-alive request")
        .expect("read");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200 "));
    // Both are counted, so the node knows of them when the signal comes.
    wait_pending(&c, 3).await;

    c.node(0).sigterm();
    // Drain, then at most 5 s of grace for HTTP connections.
    let bound = Duration::from_secs(DRAIN_SECS + 5) + SLACK;
    let status = c.node(0).wait_exit(bound).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    read_until_closed(&mut half, RECV_TIMEOUT, "half-sent request after exit").await;
    read_until_closed(&mut idle, RECV_TIMEOUT, "idle keep-alive after exit").await;
}

/// Lowers the open-file limit of process `pid` (soft and hard) with prlimit(1).
fn set_open_file_limit(pid: u32, limit: usize) {
    let status = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={limit}:{limit}")])
        .status()
        .unwrap_or_else(|e| panic!("run prlimit (util-linux): {e}"));
    assert!(status.success(), "prlimit --pid {pid} failed: {status}");
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .count()
}

/// Out of file descriptors (open-file limit lowered under the running node,
/// then filled with stalled sockets): accept errors are logged with what to
/// do, at most once per interval; a joined client is still served; and once
/// the deadline closes the stalled sockets, new connections and `/health`
/// are served again without anyone's help.
#[tokio::test]
async fn out_of_file_descriptors_the_node_recovers() {
    const HEADROOM: usize = 8;
    let c = Cluster::embedded(
        Settings::new()
            .set("HEADER_READ_TIMEOUT_SECS", 3)
            .set("MAX_PENDING_PER_IP", 1024),
    )
    .await;
    let addr = c.addr(0);
    let pid = c.node(0).pid();
    let (mut survivor, _) = join(&c, 0, "r1", "survivor").await;
    set_open_file_limit(pid, open_files(pid) + HEADROOM);
    let started = Instant::now();

    // The kernel completes these handshakes; the node can accept HEADROOM.
    let mut stalled = Vec::new();
    for _ in 0..HEADROOM * 2 {
        stalled.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let node = c.node(0);
    let is_accept_error = |l: &String| l.contains("cannot accept connections");
    let wait_until = Instant::now() + SETTLE;
    let line = loop {
        if let Some(line) = node.output().into_iter().find(is_accept_error) {
            break line;
        }
        assert!(
            Instant::now() < wait_until,
            "no accept error logged within {SETTLE:?}; output:\n{}",
            node.output_tail()
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(
        line.contains("Too many open files") && line.contains("open-file limit"),
        "{line}"
    );

    // The joined client is served meanwhile.
    survivor.ping().await;

    // The deadline frees descriptors; the node accepts and answers again.
    assert_eq!(get_admitted(addr, "/health").await.status, 200);
    survivor.ping().await;
    assert!(metric(&c, "switchboard_accept_errors_total").await >= 1.0);
    assert!(metric(&c, "switchboard_header_read_timeouts_total").await >= 1.0);
    let logged = node.output().iter().filter(|l| is_accept_error(l)).count() as u64;
    let allowed = 2 + started.elapsed().as_secs() / 10;
    assert!(
        logged <= allowed,
        "{logged} accept-error lines in {:?}: not rate-limited",
        started.elapsed()
    );
    drop(stalled);
    c.assert_alive();
}
