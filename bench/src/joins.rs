//! `joins`: fresh connections connect and join as fast as `--concurrency`
//! allows, spread round-robin over the `--url`s; reports joins/s and the
//! latency of the TCP + WebSocket handshake and of `join` -> `joined`.
//! Joined connections stay open until the end, so rooms fill up as they would.

use std::time::Instant;

use futures_util::{stream, StreamExt};
use serde::Serialize;

use crate::cli::{check_count, JoinsArgs};
use crate::client::{self, source_for};
use crate::procfs::CpuMeter;
use crate::stats::{latency_histogram, ErrorCounts, Percentiles};
use crate::{limits, run_id, target};

/// The printed (or JSON) result.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub count: usize,
    pub concurrency: usize,
    pub room_size: usize,
    pub joined: u64,
    pub secs: f64,
    pub joins_per_sec: f64,
    /// TCP connect plus WebSocket handshake.
    pub connect: Percentiles,
    /// `join` sent to `joined` received.
    pub join: Percentiles,
    /// Both.
    pub total: Percentiles,
    pub errors: ErrorCounts,
    pub bench_cores: Option<f64>,
    pub server_cores: Option<f64>,
}

/// Runs the joins benchmark and prints its summary.
pub async fn run(args: JoinsArgs) -> anyhow::Result<()> {
    let json = args.target.json;
    let summary = measure(args).await?;
    print_summary(&summary, json)
}

/// Runs the joins benchmark and returns its summary (progress goes to stderr).
pub async fn measure(args: JoinsArgs) -> anyhow::Result<Summary> {
    let n = args.count;
    let s = args.room_size;
    check_count("count", n)?;
    anyhow::ensure!(s >= 1, "--room-size must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let t = &args.target;
    let targets = target::resolve(&t.urls, t.allow_remote).await?;
    limits::ensure_open_files(n)?;
    let run = run_id();
    eprintln!(
        "joins: {n} fresh connections, {} at a time, rooms of {s}, {} node(s)",
        args.concurrency,
        targets.len()
    );

    let bench_cpu = CpuMeter::of_self().ok();
    let server_cpu = CpuMeter::of(&t.server_pids);
    let started = Instant::now();
    let targets_ref = &targets;
    let run_ref = &run;
    let mut attempts = stream::iter(0..n)
        .map(|i| async move {
            let target = &targets_ref[i % targets_ref.len()];
            let t0 = Instant::now();
            let mut ws =
                client::connect(target, source_for(i, t.source_addrs, &target.addr)).await?;
            let t1 = Instant::now();
            client::join(
                &mut ws,
                &format!("bench-{run_ref}-{}", i / s),
                &format!("p{}", i % s),
            )
            .await?;
            let t2 = Instant::now();
            Ok::<_, client::ClientError>((ws, t1 - t0, t2 - t1))
        })
        .buffer_unordered(args.concurrency);

    let mut connect = latency_histogram();
    let mut join = latency_histogram();
    let mut total = latency_histogram();
    let mut errors = ErrorCounts::default();
    let mut sockets = Vec::with_capacity(n);
    while let Some(r) = attempts.next().await {
        match r {
            Ok((ws, c, j)) => {
                sockets.push(ws);
                connect.saturating_record(c.as_nanos() as u64);
                join.saturating_record(j.as_nanos() as u64);
                total.saturating_record((c + j).as_nanos() as u64);
            }
            Err(e) => errors.add(&e.code()),
        }
    }
    drop(attempts);
    let secs = started.elapsed().as_secs_f64();
    let bench_cores = bench_cpu.and_then(|m| m.cores().ok());
    let server_cores = server_cpu.and_then(|m| m.cores().ok());
    let joined = sockets.len() as u64;
    stream::iter(sockets)
        .for_each_concurrent(256, client::leave_and_close)
        .await;

    let summary = Summary {
        nodes: targets.len(),
        count: n,
        concurrency: args.concurrency,
        room_size: s,
        joined,
        secs,
        joins_per_sec: joined as f64 / secs.max(1e-9),
        connect: Percentiles::of(&connect),
        join: Percentiles::of(&join),
        total: Percentiles::of(&total),
        errors,
        bench_cores,
        server_cores,
    };
    Ok(summary)
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "joins: {} of {} joined in {:.2} s = {:.0} joins/s ({} at a time, rooms of {}, {} node(s))",
            summary.joined,
            summary.count,
            summary.secs,
            summary.joins_per_sec,
            summary.concurrency,
            summary.room_size,
            summary.nodes
        );
        println!("  connect      {}", summary.connect.line());
        println!("  join         {}", summary.join.line());
        println!("  total        {}", summary.total.line());
        let cores = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.2}"));
        println!(
            "  cpu (cores)  bench {}  server(s) {}",
            cores(summary.bench_cores),
            cores(summary.server_cores)
        );
        println!("  errors       {}", summary.errors.line());
    }
    if let Some(hint) = summary.errors.rate_limit_hint() {
        eprintln!("{hint}");
    }
    Ok(())
}
