//! `flood`: what the server keeps for peers that may resume, under a flood.
//!
//! R rooms each get one connected sender and A peers that join and then drop
//! their TCP connection: away peers, whose events the server keeps for the
//! resume window. Every sender then broadcasts B messages and sends S signals
//! to each away peer of its room, all with a payload of the given size, each
//! waiting for its `ok`. With `--server-pid` the server's resident memory is
//! read before, after, and at its peak (`VmHWM`, the most since the process
//! started); with `--redis` the same from Redis `INFO memory` (`used_memory`,
//! `used_memory_peak`). Senders leave at the end; the away peers are removed
//! by the server when their resume window ends.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{check_count, check_phase, FloodArgs, MAX_FLOOD_MESSAGES};
use crate::client::{self, Slot, Ws};
use crate::procfs::{peak_rss_kib_sum, rss_kib_sum};
use crate::stats::ErrorCounts;
use crate::{limits, run_id, target};

/// Largest payload a flood message may carry (the server's default limit is
/// 64 KiB; larger ones are refused with `PAYLOAD_TOO_LARGE`).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest wait for one message's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before resending a message the server rate-limited.
const RATE_LIMIT_PAUSE: Duration = Duration::from_millis(100);
/// Resends of one rate-limited message before giving up on it.
const MAX_RESENDS: usize = 600;
/// Longest wait for Redis to answer `INFO`.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `INFO memory` reply accepted.
const MAX_INFO_BYTES: usize = 64 * 1024;

/// Memory of Redis from `INFO memory`, in bytes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RedisMemory {
    pub used: u64,
    pub peak: u64,
}

/// The printed (or JSON) result.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub rooms: usize,
    pub away_per_room: usize,
    pub broadcasts_per_room: usize,
    pub signals_per_away_peer: usize,
    pub payload_bytes: usize,
    /// Messages acknowledged with `ok`.
    pub sent: u64,
    /// Payload bytes of those messages.
    pub sent_bytes: u64,
    pub flood_secs: f64,
    /// Error replies by code (rate-limited messages are counted and resent).
    pub errors: ErrorCounts,
    /// Server VmRSS before connecting, once every peer joined and the away
    /// ones dropped (before the flood), and after the flood; VmHWM after it;
    /// summed over `--server-pid`s, in KiB.
    pub rss_before_kib: Option<u64>,
    pub rss_ready_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    /// Redis memory at the same moments (the peak is Redis's own, since it
    /// started).
    pub redis_before: Option<RedisMemory>,
    pub redis_ready: Option<RedisMemory>,
    pub redis_after: Option<RedisMemory>,
}

/// Runs the flood and prints its summary.
pub async fn run(args: FloodArgs) -> anyhow::Result<()> {
    let json = args.target.json;
    let summary = measure(args).await?;
    print_summary(&summary, json)
}

/// Runs the flood and returns its summary (progress goes to stderr).
pub async fn measure(args: FloodArgs) -> anyhow::Result<Summary> {
    check_count("rooms", args.rooms)?;
    check_count("away", args.away)?;
    check_count("rooms × (away + 1)", args.rooms * (args.away + 1))?;
    anyhow::ensure!(
        args.broadcasts <= MAX_FLOOD_MESSAGES && args.signals <= MAX_FLOOD_MESSAGES,
        "--broadcasts and --signals must be at most {MAX_FLOOD_MESSAGES}"
    );
    anyhow::ensure!(
        args.payload_bytes <= MAX_PAYLOAD_BYTES,
        "--payload-bytes must be at most {MAX_PAYLOAD_BYTES}"
    );
    check_phase("settle", args.settle)?;
    let t = &args.target;
    let targets = target::resolve(&t.urls, t.allow_remote).await?;
    let redis = match &args.redis {
        Some(addr) => Some(redis_addr(addr, t.allow_remote).await?),
        None => None,
    };
    limits::ensure_open_files(args.rooms * (args.away + 1))?;

    let run = run_id();
    let room = |r: usize| format!("flood-{run}-{r}");
    let rss_before = rss_kib_sum(&t.server_pids)?;
    let redis_before = match redis {
        Some(a) => Some(redis_memory(&a).await?),
        None => None,
    };
    let senders: Vec<Slot> = (0..args.rooms)
        .map(|r| Slot {
            target: r % targets.len(),
            room: room(r),
            peer: "sender".into(),
        })
        .collect();
    let away: Vec<Slot> = (0..args.rooms)
        .flat_map(|r| (0..args.away).map(move |a| (r, a)))
        .map(|(r, a)| Slot {
            target: (r + a + 1) % targets.len(),
            room: room(r),
            peer: format!("away-{a}"),
        })
        .collect();
    eprintln!(
        "flood: {} rooms, each one sender and {} peers that drop their connection",
        args.rooms, args.away
    );
    let mut sockets =
        client::open_all(&senders, &targets, t.source_addrs, t.connect_concurrency).await?;
    let dropped = client::open_all(&away, &targets, t.source_addrs, t.connect_concurrency).await?;
    // Dropping the sockets closes their TCP connections without a close
    // frame, as a client that vanished would.
    drop(dropped);
    tokio::time::sleep(args.settle).await;
    let rss_ready = rss_kib_sum(&t.server_pids)?;
    let redis_ready = match redis {
        Some(a) => Some(redis_memory(&a).await?),
        None => None,
    };

    let payload = serde_json::to_string(&"x".repeat(args.payload_bytes.saturating_sub(2)))?;
    eprintln!(
        "flood: {} broadcasts per room and {} signals per away peer of {} bytes",
        args.broadcasts,
        args.signals,
        payload.len()
    );
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .drain(..)
        .map(|ws| {
            let (payload, broadcasts, signals, away) =
                (payload.clone(), args.broadcasts, args.signals, args.away);
            tokio::spawn(async move { flood_room(ws, &payload, broadcasts, signals, away).await })
        })
        .collect();
    let mut errors = ErrorCounts::default();
    let mut sent = 0;
    let mut senders_back = Vec::new();
    for task in tasks {
        let (ws, n, e) = task.await??;
        sent += n;
        errors.merge(&e);
        senders_back.push(ws);
    }
    let flood_secs = started.elapsed().as_secs_f64();
    eprintln!("flood: {sent} messages acknowledged in {flood_secs:.2} s");
    tokio::time::sleep(args.settle).await;

    let summary = Summary {
        nodes: targets.len(),
        rooms: args.rooms,
        away_per_room: args.away,
        broadcasts_per_room: args.broadcasts,
        signals_per_away_peer: args.signals,
        payload_bytes: payload.len(),
        sent,
        sent_bytes: sent * payload.len() as u64,
        flood_secs,
        errors,
        rss_before_kib: rss_before,
        rss_ready_kib: rss_ready,
        rss_after_kib: rss_kib_sum(&t.server_pids)?,
        rss_peak_kib: peak_rss_kib_sum(&t.server_pids)?,
        redis_before,
        redis_ready,
        redis_after: match redis {
            Some(a) => Some(redis_memory(&a).await?),
            None => None,
        },
    };
    for ws in senders_back {
        client::leave_and_close(ws).await;
    }
    Ok(summary)
}

/// One sender's part: its broadcasts, then its signals to every away peer.
/// Returns the socket, the messages acknowledged and the error replies.
async fn flood_room(
    mut ws: Ws,
    payload: &str,
    broadcasts: usize,
    signals: usize,
    away: usize,
) -> anyhow::Result<(Ws, u64, ErrorCounts)> {
    let mut errors = ErrorCounts::default();
    let mut acknowledged = 0;
    let mut id = 1u64;
    let mut messages = Vec::with_capacity(broadcasts + signals * away);
    for _ in 0..broadcasts {
        messages.push(format!(r#""type":"broadcast","payload":{payload}"#));
    }
    for a in 0..away {
        for _ in 0..signals {
            messages.push(format!(
                r#""type":"signal","to":"away-{a}","payload":{payload}"#
            ));
        }
    }
    for body in messages {
        for _ in 0..=MAX_RESENDS {
            id += 1;
            ws.send(Message::text(format!("{{\"id\":{id},{body}}}")))
                .await?;
            match reply(&mut ws, id).await? {
                None => {
                    acknowledged += 1;
                    break;
                }
                Some(code) => {
                    errors.add(&code);
                    if code != "RATE_LIMITED" {
                        break;
                    }
                    tokio::time::sleep(RATE_LIMIT_PAUSE).await;
                }
            }
        }
    }
    Ok((ws, acknowledged, errors))
}

/// Reads until the reply with `id`: `None` for `ok`, the code of an error.
/// Events in between (presence of the away peers) are skipped.
async fn reply(ws: &mut Ws, id: u64) -> anyhow::Result<Option<String>> {
    let wait = async {
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg? else { continue };
            let v: serde_json::Value = serde_json::from_str(text.as_str())?;
            if v["id"] != id {
                continue;
            }
            return Ok(match v["type"].as_str() {
                Some("ok") => None,
                _ => Some(v["code"].as_str().unwrap_or("?").to_owned()),
            });
        }
        anyhow::bail!("the server closed a sender's connection")
    };
    tokio::time::timeout(REPLY_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow::anyhow!("no reply within {REPLY_TIMEOUT:?}"))?
}

/// Resolves `host:port`, refusing hosts that are not loopback.
async fn redis_addr(addr: &str, allow_remote: bool) -> anyhow::Result<std::net::SocketAddr> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--redis `{addr}` must be host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("--redis `{addr}`: bad port"))?;
    anyhow::ensure!(
        allow_remote || target::is_loopback_host(host),
        "--redis `{addr}`: host is not loopback; pass --allow-remote to allow it"
    );
    let resolved = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--redis `{addr}` did not resolve"))?;
    anyhow::ensure!(
        allow_remote || resolved.ip().is_loopback(),
        "--redis `{addr}` resolves to {resolved}, which is not loopback"
    );
    Ok(resolved)
}

/// `used_memory` and `used_memory_peak` of the Redis at `addr`.
pub async fn redis_memory(addr: &std::net::SocketAddr) -> anyhow::Result<RedisMemory> {
    let query = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"INFO memory\r\n").await?;
        // A bulk string: `$<length>\r\n<text>\r\n`.
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "Redis closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            anyhow::ensure!(buf.len() <= MAX_INFO_BYTES, "INFO reply too large");
            if let Some(text) = complete_bulk(&buf)? {
                return parse_memory(text);
            }
        }
    };
    tokio::time::timeout(REDIS_TIMEOUT, query)
        .await
        .map_err(|_| anyhow::anyhow!("Redis at {addr} did not answer INFO in time"))?
}

/// The text of a complete RESP bulk string, `None` while incomplete.
fn complete_bulk(buf: &[u8]) -> anyhow::Result<Option<&str>> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])?;
    let len: usize = head
        .strip_prefix('$')
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected reply to INFO: {head}"))?;
    let body = &buf[end + 2..];
    if body.len() < len {
        return Ok(None);
    }
    Ok(Some(std::str::from_utf8(&body[..len])?))
}

fn parse_memory(info: &str) -> anyhow::Result<RedisMemory> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in INFO memory"))
    };
    Ok(RedisMemory {
        used: field("used_memory")?,
        peak: field("used_memory_peak")?,
    })
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "flood: {} rooms × {} away peers, {} node(s); per room {} broadcasts and {} signals per away peer of {} bytes",
        s.rooms, s.away_per_room, s.nodes, s.broadcasts_per_room, s.signals_per_away_peer, s.payload_bytes
    );
    println!(
        "  sent         {} messages, {:.1} MB in {:.2} s",
        s.sent,
        s.sent_bytes as f64 / 1e6,
        s.flood_secs
    );
    println!("  errors       {}", s.errors.line());
    match (s.rss_before_kib, s.rss_ready_kib, s.rss_after_kib, s.rss_peak_kib) {
        (Some(b), Some(r), Some(a), Some(p)) => println!(
            "  server RSS   before {:.1} MiB, peers joined {:.1} MiB, after the flood {:.1} MiB (+{:.1}), peak {:.1} MiB",
            mib(b),
            mib(r),
            mib(a),
            mib(a.saturating_sub(r)),
            mib(p)
        ),
        _ => println!("  server RSS   - (pass --server-pid to measure)"),
    }
    match (s.redis_before, s.redis_ready, s.redis_after) {
        (Some(b), Some(r), Some(a)) => println!(
            "  Redis        used_memory before {:.1} MiB, peers joined {:.1} MiB, after the flood {:.1} MiB (+{:.1}), peak {:.1} MiB",
            mib(b.used / 1024),
            mib(r.used / 1024),
            mib(a.used / 1024),
            mib(a.used.saturating_sub(r.used) / 1024),
            mib(a.peak / 1024)
        ),
        _ => println!("  Redis        - (pass --redis to measure)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_replies_parse() {
        let text = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_peak:2097152\r\n";
        let reply = format!("${}\r\n{text}\r\n", text.len());
        assert_eq!(complete_bulk(&reply.as_bytes()[..10]).unwrap(), None);
        let body = complete_bulk(reply.as_bytes()).unwrap().unwrap();
        assert_eq!(
            parse_memory(body).unwrap(),
            RedisMemory {
                used: 1_048_576,
                peak: 2_097_152
            }
        );
        assert!(complete_bulk(b"-ERR nope\r\n").is_err());
    }

    #[tokio::test]
    async fn remote_redis_is_refused() {
        let err = redis_addr("192.0.2.1:6379", false).await.unwrap_err();
        assert!(err.to_string().contains("not loopback"), "{err}");
        assert!(redis_addr("127.0.0.1:6379", false).await.is_ok());
    }
}
