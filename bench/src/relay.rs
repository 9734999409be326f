//! `relay`: pairs of peers ping-pong `signal`s through the server(s).
//!
//! Connection `i` sits in room `i / S` as peer `p{i % S}`; peers `p0`/`p1`,
//! `p2`/`p3`, ... of a room form pairs. The even peer (the initiator) sends a
//! signal stamped with its monotonic send time; the odd peer (the echoer) sends
//! the same stamp straight back; the initiator's receive time minus the stamp is
//! one round trip. Every signal a client receives inside the measured window
//! counts as one relayed signal (so a round trip is two). With several `--url`s
//! the two peers of a pair connect to different nodes.
//!
//! Each connection is one task owning its socket unsplit: it reads whatever is
//! ready (up to a batch), queues the replies with `feed`, and flushes once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{check_count, check_phase, RelayArgs};
use crate::client::{self, Slot, Ws};
use crate::procfs::{CpuMeter, SleepMeter};
use crate::proto::{self, SignalTemplate};
use crate::stats::{ErrorCounts, Percentiles, ShardedHistogram};
use crate::{limits, run_id, target};

/// Most messages handled between two flushes of one connection.
const MAX_BATCH: usize = 64;
/// Round-trip samples a task collects before adding them to the shared histogram.
const SAMPLE_BATCH: usize = 256;
/// Shortest pacing tick in fixed-rate mode (the timer's resolution).
const MIN_TICK: Duration = Duration::from_millis(1);
/// Most signals in flight per pair.
const MAX_IN_FLIGHT: usize = 4096;

/// What every connection task shares.
struct Shared {
    /// Zero of the stamps.
    base: Instant,
    /// Start and end of the measured window.
    start: Instant,
    end: Instant,
    in_flight: usize,
    /// Round trips per second per pair in fixed-rate mode.
    pair_rate: Option<f64>,
    payload_bytes: usize,
    hist: ShardedHistogram,
    /// Signals received so far (warm-up included), for the progress line.
    live: AtomicU64,
}

impl Shared {
    fn stamp(&self, at: Instant) -> u64 {
        at.duration_since(self.base).as_nanos() as u64
    }
}

/// One connection's part in the run.
struct Role {
    index: usize,
    partner: String,
    initiator: bool,
}

/// Counts of one connection task.
#[derive(Default)]
struct ConnResult {
    relayed: u64,
    round_trips: u64,
    sent: u64,
    skipped: u64,
    errors: ErrorCounts,
}

/// The printed (or JSON) result.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub connections: usize,
    pub pairs: usize,
    pub room_size: usize,
    pub in_flight: usize,
    pub target_rate: Option<u64>,
    pub payload_bytes: usize,
    pub setup_secs: f64,
    pub duration_secs: f64,
    pub relayed: u64,
    pub relayed_per_sec: f64,
    pub round_trips: u64,
    pub round_trips_per_sec: f64,
    pub round_trip: Percentiles,
    /// Fixed-rate ticks skipped because the pair already had K in flight.
    pub skipped_ticks: u64,
    pub errors: ErrorCounts,
    /// Cores used by the load generator during the measured window.
    pub bench_cores: Option<f64>,
    /// Cores used by the `--server-pid` processes during the measured window.
    pub server_cores: Option<f64>,
    /// Cores used by each `--redis-pid` process during the measured window.
    pub redis_cores: Vec<f64>,
    /// CPU time of the `--server-pid` processes per relayed signal, in µs.
    pub server_us_per_signal: Option<f64>,
    /// CPU time of all `--redis-pid` processes per relayed signal, in µs.
    pub redis_us_per_signal: Option<f64>,
    /// Times the `--server-pid` processes' threads went to sleep waiting, per
    /// relayed signal (see `procfs::sleeps`).
    pub server_sleeps_per_signal: Option<f64>,
    /// The same for all `--redis-pid` processes.
    pub redis_sleeps_per_signal: Option<f64>,
}

/// Runs the relay benchmark and prints its summary.
pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let json = args.target.json;
    let summary = measure(args).await?;
    print_summary(&summary, json)
}

/// Runs the relay benchmark and returns its summary (progress goes to stderr).
pub async fn measure(args: RelayArgs) -> anyhow::Result<Summary> {
    let n = args.connections;
    let s = args.room_size;
    check_count("connections", n)?;
    check_phase("duration", args.duration)?;
    check_phase("warmup", args.warmup)?;
    anyhow::ensure!(
        s >= 2 && s % 2 == 0,
        "--room-size must be even and at least 2"
    );
    anyhow::ensure!(
        n % s == 0,
        "--connections must be a multiple of --room-size"
    );
    anyhow::ensure!(
        (1..=MAX_IN_FLIGHT).contains(&args.in_flight),
        "--in-flight must be 1..={MAX_IN_FLIGHT}"
    );
    anyhow::ensure!(args.rate != Some(0), "--rate must be positive");
    anyhow::ensure!(
        args.payload_bytes <= 60 * 1024,
        "--payload-bytes must be at most 60 KiB"
    );
    let t = &args.target;
    let targets = target::resolve(&t.urls, t.allow_remote).await?;
    limits::ensure_open_files(n)?;

    let pairs = n / 2;
    let run = run_id();
    let slots: Vec<Slot> = (0..n)
        .map(|i| {
            let pair = i / 2;
            let second = i % 2 == 1;
            Slot {
                target: (pair + usize::from(second)) % targets.len(),
                room: format!("bench-{run}-{}", i / s),
                peer: format!("p{}", i % s),
            }
        })
        .collect();
    eprintln!(
        "relay: opening {n} connections ({pairs} pairs, rooms of {s}) to {} node(s)",
        targets.len()
    );
    let setup = Instant::now();
    let sockets = client::open_all(&slots, &targets, t.source_addrs, t.connect_concurrency).await?;
    let setup_secs = setup.elapsed().as_secs_f64();
    eprintln!(
        "relay: {n} joined in {setup_secs:.2} s; warm-up {:?}, measuring {:?}",
        args.warmup, args.duration
    );

    let base = Instant::now();
    let start = base + args.warmup;
    let end = start + args.duration;
    // `r` relayed signals/s in total is r/2 round trips/s spread over the pairs.
    let pair_rate = args.rate.map(|r| r as f64 / 2.0 / pairs as f64);
    let shared = Arc::new(Shared {
        base,
        start,
        end,
        in_flight: args.in_flight,
        pair_rate,
        payload_bytes: args.payload_bytes,
        hist: ShardedHistogram::new(64),
        live: AtomicU64::new(0),
    });

    let progress = tokio::spawn(progress(shared.clone()));
    let cpu = tokio::spawn(measure_cpu(
        start,
        end,
        t.server_pids.clone(),
        args.redis_pids.clone(),
    ));
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let role = Role {
                index: i,
                partner: format!("p{}", (i % s) ^ 1),
                initiator: i % 2 == 0,
            };
            tokio::spawn(connection(ws, role, shared.clone()))
        })
        .collect();
    let mut total = ConnResult::default();
    for task in tasks {
        let r = task.await?;
        total.relayed += r.relayed;
        total.round_trips += r.round_trips;
        total.sent += r.sent;
        total.skipped += r.skipped;
        total.errors.merge(&r.errors);
    }
    progress.abort();
    let Window {
        bench_cores,
        server_cores,
        redis_cores,
        server_sleeps,
        redis_sleeps,
    } = cpu.await?;

    let secs = args.duration.as_secs_f64();
    // Cores × seconds / signals = CPU seconds per signal.
    let per_signal =
        |cores: f64| (total.relayed > 0).then(|| cores * secs * 1e6 / total.relayed as f64);
    let server_us_per_signal = server_cores.and_then(per_signal);
    let redis_us_per_signal = if redis_cores.is_empty() {
        None
    } else {
        per_signal(redis_cores.iter().sum())
    };
    let sleeps_per_signal = |n: u64| (total.relayed > 0).then(|| n as f64 / total.relayed as f64);
    let server_sleeps_per_signal = server_sleeps.and_then(sleeps_per_signal);
    let redis_sleeps_per_signal = redis_sleeps.and_then(sleeps_per_signal);
    let summary = Summary {
        nodes: targets.len(),
        connections: n,
        pairs,
        room_size: s,
        in_flight: args.in_flight,
        target_rate: args.rate,
        payload_bytes: args.payload_bytes,
        setup_secs,
        duration_secs: secs,
        relayed: total.relayed,
        relayed_per_sec: total.relayed as f64 / secs,
        round_trips: total.round_trips,
        round_trips_per_sec: total.round_trips as f64 / secs,
        round_trip: Percentiles::of(&shared.hist.merged()),
        skipped_ticks: total.skipped,
        errors: total.errors,
        bench_cores,
        server_cores,
        redis_cores,
        server_us_per_signal,
        redis_us_per_signal,
        server_sleeps_per_signal,
        redis_sleeps_per_signal,
    };
    Ok(summary)
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        let mode = match s.target_rate {
            Some(r) => format!("fixed rate {r} signals/s"),
            None => "closed loop".to_string(),
        };
        println!(
            "relay: {} connections, {} pairs, rooms of {}, {} in flight, {} node(s), {mode}, {} B padding",
            s.connections, s.pairs, s.room_size, s.in_flight, s.nodes, s.payload_bytes
        );
        println!(
            "  measured     {:.1} s (setup {:.2} s)",
            s.duration_secs, s.setup_secs
        );
        println!(
            "  relayed      {} signals = {:.0} signals/s",
            s.relayed, s.relayed_per_sec
        );
        println!(
            "  round trips  {} = {:.0}/s",
            s.round_trips, s.round_trips_per_sec
        );
        println!("  round trip   {}", s.round_trip.line());
        if s.target_rate.is_some() {
            println!(
                "  skipped      {} ticks (pair already had K in flight)",
                s.skipped_ticks
            );
        }
        // Two decimals, or "-" when not measured: cores and sleeps per signal.
        let two = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.2}"));
        let redis = if s.redis_cores.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = s.redis_cores.iter().map(|c| format!("{c:.2}")).collect();
            format!("  redis {}", each.join(" + "))
        };
        println!(
            "  cpu (cores)  bench {}  server(s) {}{redis}",
            two(s.bench_cores),
            two(s.server_cores)
        );
        let us = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.1}"));
        if s.server_us_per_signal.is_some() || s.redis_us_per_signal.is_some() {
            println!(
                "  cpu/signal   server(s) {} µs  redis {} µs",
                us(s.server_us_per_signal),
                us(s.redis_us_per_signal)
            );
        }
        if s.server_sleeps_per_signal.is_some() || s.redis_sleeps_per_signal.is_some() {
            println!(
                "  sleeps/signal server(s) {}  redis {}  (threads going idle, each a wake-up later)",
                two(s.server_sleeps_per_signal),
                two(s.redis_sleeps_per_signal)
            );
        }
        println!("  errors       {}", s.errors.line());
    }
    if let Some(hint) = s.errors.rate_limit_hint() {
        eprintln!("{hint}");
    }
    Ok(())
}

/// What the bench, the server and the Redis processes used over the measured
/// window.
struct Window {
    bench_cores: Option<f64>,
    server_cores: Option<f64>,
    /// Per `--redis-pid` process.
    redis_cores: Vec<f64>,
    server_sleeps: Option<u64>,
    redis_sleeps: Option<u64>,
}

/// CPU use of the bench, (optionally) the server and each Redis process over
/// the measured window, and how often the server's and Redis's threads slept.
async fn measure_cpu(start: Instant, end: Instant, server: Vec<u32>, redis: Vec<u32>) -> Window {
    tokio::time::sleep_until(start.into()).await;
    let bench = CpuMeter::of_self().ok();
    let srv = CpuMeter::of(&server);
    let each: Vec<Option<CpuMeter>> = redis.iter().map(|&pid| CpuMeter::of(&[pid])).collect();
    let srv_sleeps = SleepMeter::of(&server);
    let redis_sleeps = SleepMeter::of(&redis);
    tokio::time::sleep_until(end.into()).await;
    Window {
        bench_cores: bench.and_then(|m| m.cores().ok()),
        server_cores: srv.and_then(|m| m.cores().ok()),
        redis_cores: each
            .into_iter()
            .filter_map(|m| m.and_then(|m| m.cores().ok()))
            .collect(),
        server_sleeps: srv_sleeps.and_then(|m| m.count().ok()),
        redis_sleeps: redis_sleeps.and_then(|m| m.count().ok()),
    }
}

/// Prints signals/s once a second on stderr.
async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        let from = Instant::now();
        tick.tick().await;
        let now = shared.live.load(Ordering::Relaxed);
        let phase = if from < shared.start {
            "warm-up"
        } else {
            "measure"
        };
        eprintln!("  [{phase}] {} signals/s", now - last);
        last = now;
    }
}

/// Waits for the next pacing tick and returns how many round trips are due in
/// total by now; without pacing, waits forever.
async fn next_tick(pacing: &mut Option<(Interval, Instant, f64)>) -> u64 {
    match pacing {
        Some((t, first, rate)) => {
            let at = t.tick().await;
            (at.into_std().duration_since(*first).as_secs_f64() * *rate) as u64 + 1
        }
        None => std::future::pending().await,
    }
}

/// One connection: echo (odd peers) or originate and time round trips (even
/// peers) until the window ends, then leave and close.
async fn connection(mut ws: Ws, role: Role, shared: Arc<Shared>) -> ConnResult {
    let mut res = ConnResult::default();
    let template = SignalTemplate::new(&role.partner, shared.payload_bytes);
    let mut samples: Vec<u64> = Vec::with_capacity(SAMPLE_BATCH);
    let mut in_flight = 0usize;
    let start_ns = shared.stamp(shared.start);
    let closed_loop = shared.pair_rate.is_none();
    // Fixed rate: a tick every period, but at most one per MIN_TICK; each tick
    // sends every round trip that is due by then, so the total rate holds even
    // when the per-pair period is shorter than the timer resolution.
    let mut pacing = match (role.initiator, shared.pair_rate) {
        (true, Some(rate)) => {
            let tick = Duration::from_secs_f64(1.0 / rate).max(MIN_TICK);
            // Spread the pairs' ticks evenly over one tick.
            let first = shared.base + tick.mul_f64(rand::random::<f64>());
            let mut t = tokio::time::interval_at(first.into(), tick);
            t.set_missed_tick_behavior(MissedTickBehavior::Skip);
            Some((t, first, rate))
        }
        _ => None,
    };
    let mut issued: u64 = 0;
    let stop = tokio::time::sleep_until(shared.end.into());
    tokio::pin!(stop);

    let mut failed = false;
    if role.initiator && closed_loop {
        let now = shared.stamp(Instant::now());
        for _ in 0..shared.in_flight {
            failed |= ws.feed(Message::text(template.render(now))).await.is_err();
        }
        failed |= ws.flush().await.is_err();
        in_flight = shared.in_flight;
        res.sent += shared.in_flight as u64;
    }

    while !failed {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            first = ws.next() => {
                let mut next = first;
                let mut handled = 0;
                let mut signals = 0;
                loop {
                    let msg = match next {
                        Some(Ok(msg)) => msg,
                        Some(Err(_)) => { res.errors.add("transport"); failed = true; break; }
                        None => { res.errors.add("closed"); failed = true; break; }
                    };
                    if let Message::Text(text) = &msg {
                        let now = Instant::now();
                        match proto::parse(text.as_str()) {
                            Ok(m) if m.kind == "signal" => {
                                signals += 1;
                                let in_window = now >= shared.start && now < shared.end;
                                res.relayed += u64::from(in_window);
                                let stamp = m.payload.map_or(0, |p| p.t);
                                let reply = if role.initiator {
                                    in_flight = in_flight.saturating_sub(1);
                                    let now_ns = shared.stamp(now);
                                    if in_window && stamp >= start_ns {
                                        res.round_trips += 1;
                                        samples.push(now_ns.saturating_sub(stamp));
                                        if samples.len() == SAMPLE_BATCH {
                                            shared.hist.record_batch(role.index, &samples);
                                            samples.clear();
                                        }
                                    }
                                    (closed_loop && now < shared.end).then_some(now_ns)
                                } else {
                                    Some(stamp)
                                };
                                if let Some(stamp) = reply {
                                    if ws.feed(Message::text(template.render(stamp))).await.is_err() {
                                        res.errors.add("transport");
                                        failed = true;
                                        break;
                                    }
                                    if role.initiator {
                                        in_flight += 1;
                                        res.sent += 1;
                                    }
                                }
                            }
                            Ok(m) if m.kind == "error" => {
                                res.errors.add(m.code.as_deref().unwrap_or("?"));
                            }
                            Ok(_) => {}
                            Err(_) => res.errors.add("unparsable"),
                        }
                    }
                    handled += 1;
                    if handled >= MAX_BATCH {
                        break;
                    }
                    match ws.next().now_or_never() {
                        Some(m) => next = m,
                        None => break,
                    }
                }
                shared.live.fetch_add(signals, Ordering::Relaxed);
                if !failed && ws.flush().await.is_err() {
                    res.errors.add("transport");
                    failed = true;
                }
            }
            due = next_tick(&mut pacing) => {
                let now = Instant::now();
                let stamp = shared.stamp(now);
                while issued < due && !failed {
                    issued += 1;
                    if in_flight < shared.in_flight {
                        failed = ws.feed(Message::text(template.render(stamp))).await.is_err();
                        in_flight += 1;
                        res.sent += 1;
                    } else {
                        res.skipped += 1;
                    }
                }
                if !failed && ws.flush().await.is_err() {
                    failed = true;
                }
                if failed {
                    res.errors.add("transport");
                }
            }
        }
    }
    if !samples.is_empty() {
        shared.hist.record_batch(role.index, &samples);
    }
    if !failed {
        client::leave_and_close(ws).await;
    }
    res
}
