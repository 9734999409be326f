//! `idle`: opens and joins N connections, holds them, and reports how much the
//! server's resident memory grew per joined connection (with `--server-pid`).
//!
//! Each held connection has a small task that keeps reading, so the server's
//! pings are answered and presence events drained, as a real idle client would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{check_count, check_phase, IdleArgs};
use crate::client::{self, Slot, Ws};
use crate::procfs::rss_kib_sum;
use crate::{limits, run_id, target};

/// The printed (or JSON) result.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub connections: usize,
    pub room_size: usize,
    pub setup_secs: f64,
    pub joins_per_sec: f64,
    /// Server VmRSS before connecting, after all joined (plus settle), and at
    /// the end of the hold, in KiB.
    pub rss_before_kib: Option<u64>,
    pub rss_joined_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// (rss_joined - rss_before) / connections.
    pub kib_per_connection: Option<f64>,
    /// Connections the server closed during the hold.
    pub closed_during_hold: usize,
}

/// Runs the idle benchmark and prints its summary.
pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    let json = args.target.json;
    let summary = measure(args).await?;
    print_summary(&summary, json)
}

/// Runs the idle benchmark and returns its summary (progress goes to stderr).
pub async fn measure(args: IdleArgs) -> anyhow::Result<Summary> {
    let n = args.connections;
    let s = args.room_size;
    check_count("connections", n)?;
    check_phase("hold", args.hold)?;
    check_phase("settle", args.settle)?;
    anyhow::ensure!(s >= 1, "--room-size must be at least 1");
    let t = &args.target;
    let targets = target::resolve(&t.urls, t.allow_remote).await?;
    limits::ensure_open_files(n)?;

    let run = run_id();
    let slots: Vec<Slot> = (0..n)
        .map(|i| Slot {
            target: i % targets.len(),
            room: format!("bench-{run}-{}", i / s),
            peer: format!("p{}", i % s),
        })
        .collect();
    let rss_before = rss_kib_sum(&t.server_pids)?;
    eprintln!(
        "idle: opening {n} connections (rooms of {s}) to {} node(s)",
        targets.len()
    );
    let setup = Instant::now();
    let sockets = client::open_all(&slots, &targets, t.source_addrs, t.connect_concurrency).await?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let joined_at = Instant::now();
    eprintln!(
        "idle: {n} joined in {setup_secs:.2} s; holding {:?}",
        args.hold
    );

    let cancel = CancellationToken::new();
    let closed = Arc::new(AtomicUsize::new(0));
    let keepers: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(keep(ws, cancel.clone(), closed.clone())))
        .collect();

    tokio::time::sleep(args.settle.min(args.hold)).await;
    let rss_joined = rss_kib_sum(&t.server_pids)?;
    if let (Some(b), Some(j)) = (rss_before, rss_joined) {
        eprintln!("idle: server RSS {b} KiB -> {j} KiB");
    }
    tokio::time::sleep_until((joined_at + args.hold).into()).await;
    let rss_end = rss_kib_sum(&t.server_pids)?;
    cancel.cancel();
    for k in keepers {
        k.await?;
    }

    let summary = Summary {
        nodes: targets.len(),
        connections: n,
        room_size: s,
        setup_secs,
        joins_per_sec: n as f64 / setup_secs.max(1e-9),
        rss_before_kib: rss_before,
        rss_joined_kib: rss_joined,
        rss_end_kib: rss_end,
        kib_per_connection: rss_before
            .zip(rss_joined)
            .map(|(b, j)| (j as f64 - b as f64) / n as f64),
        closed_during_hold: closed.load(Ordering::Relaxed),
    };
    Ok(summary)
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let kib = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} KiB"));
        println!(
            "idle: {} connections, rooms of {}, {} node(s)",
            summary.connections, summary.room_size, summary.nodes
        );
        println!(
            "  setup        {:.2} s ({:.0} joins/s)",
            summary.setup_secs, summary.joins_per_sec
        );
        println!(
            "  server RSS   before {}  joined {}  end of hold {}",
            kib(summary.rss_before_kib),
            kib(summary.rss_joined_kib),
            kib(summary.rss_end_kib)
        );
        match summary.kib_per_connection {
            Some(k) => println!("  per conn     {k:.2} KiB"),
            None => println!("  per conn     - (pass --server-pid to measure)"),
        }
        println!("  closed early {}", summary.closed_during_hold);
    }
    Ok(())
}

/// Reads (answering pings, draining events) until cancelled, then leaves.
async fn keep(mut ws: Ws, cancel: CancellationToken, closed: Arc<AtomicUsize>) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            msg = ws.next() => {
                if !matches!(msg, Some(Ok(_))) {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    client::leave_and_close(ws).await;
}
