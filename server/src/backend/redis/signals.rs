//! Signal batching across connections: the signals of every connection of this
//! node go to Redis in as few `signal.lua` calls as possible.
//!
//! Sessions hand their signals (one or more per job, see `Session::on_texts`)
//! to one task per node. It keeps at most a few calls in flight; whatever
//! arrives meanwhile waits and goes out together in the next call. An idle node
//! therefore sends each job at once, and a busy one sends fewer, larger calls:
//! Redis runs one script and the recipient node gets one message where it
//! would otherwise have run dozens. With `SIGNAL_LINGER_MS` a job also waits
//! that long for others to share its call (less Redis CPU under light paced
//! traffic, for that much latency; docs/redis.md).
//!
//! On a single Redis a call may carry jobs of any rooms (every room's key is
//! passed in `KEYS`). On a Redis Cluster a script may only touch one hash slot,
//! so a call carries jobs of one room and calls for different rooms run side by
//! side.
//!
//! A connection waits for its job before it handles its next request, so each
//! sender's signals keep their order.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use redis::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::backend::Member;
use crate::protocol::{EventBody, ProtocolError};

/// The result of each signal of a job, in order.
pub(super) type Results = Vec<Result<(), ProtocolError>>;

/// The signals of one connection, waiting for a call.
pub(super) struct Job {
    pub member: Member,
    pub signals: Vec<(String, EventBody)>,
    pub done: oneshot::Sender<Results>,
    /// Whether the job was sent again after Redis had lost its sender and the
    /// node restored it (a job is retried once).
    pub retried: bool,
    /// When the job was handed to the batcher (its linger counts from here).
    pub queued: Instant,
}

impl Job {
    fn bytes(&self) -> usize {
        self.signals
            .iter()
            .map(|(to, b)| to.len() + b.json.len())
            .sum()
    }
}

/// How calls are formed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batching {
    /// Calls in flight at once.
    pub calls: usize,
    /// Whether a call may only carry jobs of one room (Redis Cluster).
    pub one_room: bool,
    /// A call takes further jobs only while it stays within these.
    pub max_signals: usize,
    pub max_bytes: usize,
    /// How long a job may wait for others to share its call (zero: a job
    /// goes as soon as a call is free).
    pub linger: Duration,
}

impl Batching {
    pub fn new(cluster: bool, linger: Duration) -> Self {
        Self {
            // One call being run by Redis while the next one fills is enough
            // for a single Redis; on a cluster, calls of different rooms may
            // go to different shards.
            calls: if cluster { 16 } else { 2 },
            one_room: cluster,
            max_signals: 512,
            max_bytes: 1 << 20,
            linger,
        }
    }
}

/// Takes the jobs of the next call off the queue: the oldest, then the later
/// ones that fit (of the same room only, when `one_room`). Jobs left behind
/// keep their order.
pub(super) fn take_lot(queue: &mut VecDeque<Job>, b: Batching) -> Vec<Job> {
    let Some(first) = queue.pop_front() else {
        return Vec::new();
    };
    let mut signals = first.signals.len();
    let mut bytes = first.bytes();
    let mut lot = vec![first];
    let mut rest = VecDeque::with_capacity(queue.len());
    while let Some(job) = queue.pop_front() {
        let fits = signals + job.signals.len() <= b.max_signals
            && bytes + job.bytes() <= b.max_bytes
            && (!b.one_room || job.member.room == lot[0].member.room);
        if fits {
            signals += job.signals.len();
            bytes += job.bytes();
            lot.push(job);
        } else {
            rest.push_back(job);
            if !b.one_room {
                // Full: everything else waits for the next call.
                rest.append(queue);
            }
        }
    }
    *queue = rest;
    lot
}

/// ARGV of `signal.lua` after the common prefix, for a lot (KEYS are the
/// jobs' rooms, in the same order).
pub(super) fn arguments(lot: &[Job]) -> Vec<Cow<'_, str>> {
    let mut args = Vec::new();
    for job in lot {
        args.push(Cow::Borrowed(job.member.peer.as_str()));
        args.push(Cow::Owned(job.member.attachment.to_string()));
        args.push(Cow::Owned(job.signals.len().to_string()));
        for (to, body) in &job.signals {
            args.push(Cow::Borrowed(to.as_str()));
            args.push(Cow::Borrowed(body.json.as_str()));
        }
    }
    args
}

/// What `signal.lua` said about one job.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome {
    /// The sender is no longer attached; nothing was sent.
    Stale,
    /// Per signal: whether the recipient was in the room.
    Delivered(Vec<bool>),
}

/// Reads a `signal.lua` reply (status and published count already checked
/// by the caller are at the front). `None` when it does not fit the lot.
pub(super) fn outcomes(reply: &[Value], lot: &[Job]) -> Option<Vec<Outcome>> {
    let mut it = reply.get(2..)?.iter();
    let mut out = Vec::with_capacity(lot.len());
    for job in lot {
        let status = match it.next()? {
            Value::BulkString(s) => s.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            _ => return None,
        };
        let mut delivered = Vec::with_capacity(job.signals.len());
        for _ in &job.signals {
            match it.next()? {
                Value::Int(n) => delivered.push(*n == 1),
                _ => return None,
            }
        }
        out.push(match status {
            b"OK" => Outcome::Delivered(delivered),
            b"STALE" => Outcome::Stale,
            _ => return None,
        });
    }
    it.next().is_none().then_some(out)
}

/// Runs lots with `run` until every sender of jobs is gone; at most
/// `b.calls` at once. The oldest job waiting sets the pace: once it has
/// lingered `b.linger` (or the queue holds a full call), every call slot free
/// is filled, so lots that became due together also go out together.
pub(super) async fn batch<F, Fut>(mut jobs: UnboundedReceiver<Job>, b: Batching, run: F)
where
    F: Fn(Vec<Job>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut queued_signals = 0;
    let mut calls = FuturesUnordered::new();
    let mut open = true;
    loop {
        let mut wait = None;
        if let Some(front) = queue.front() {
            let due = front.queued + b.linger;
            if open && queued_signals < b.max_signals && due > Instant::now() {
                wait = Some(due);
            } else {
                while calls.len() < b.calls && !queue.is_empty() {
                    let lot = take_lot(&mut queue, b);
                    queued_signals -= lot.iter().map(|j| j.signals.len()).sum::<usize>();
                    calls.push(run(lot));
                }
            }
        }
        if !open && calls.is_empty() && queue.is_empty() {
            return;
        }
        let linger = async {
            match wait {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            job = jobs.recv(), if open => match job {
                Some(job) => {
                    queued_signals += job.signals.len();
                    queue.push_back(job);
                    while let Ok(job) = jobs.try_recv() {
                        queued_signals += job.signals.len();
                        queue.push_back(job);
                    }
                }
                None => open = false,
            },
            Some(()) = calls.next(), if !calls.is_empty() => {}
            () = linger => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageType;

    fn job(room: &str, peer: &str, signals: &[(&str, &str)]) -> (Job, oneshot::Receiver<Results>) {
        let (done, rx) = oneshot::channel();
        let job = Job {
            retried: false,
            member: Member {
                room: room.into(),
                peer: peer.into(),
                attachment: 7,
            },
            signals: signals
                .iter()
                .map(|(to, json)| {
                    (
                        (*to).to_owned(),
                        EventBody {
                            kind: MessageType::Signal,
                            json: (*json).to_owned(),
                        },
                    )
                })
                .collect(),
            done,
            queued: Instant::now(),
        };
        (job, rx)
    }

    /// Jobs whose senders are not waiting for the results.
    fn queue_of<const N: usize>(jobs: [(Job, oneshot::Receiver<Results>); N]) -> VecDeque<Job> {
        jobs.into_iter().map(|(job, _)| job).collect()
    }

    fn peers(jobs: &[Job]) -> Vec<&str> {
        jobs.iter().map(|j| j.member.peer.as_str()).collect()
    }

    #[test]
    fn lots_take_any_room_on_a_single_redis() {
        let b = Batching {
            max_signals: 3,
            ..Batching::new(false, Duration::ZERO)
        };
        let mut queue: VecDeque<Job> = queue_of([
            job("r1", "a", &[("b", "{}")]),
            job("r2", "c", &[("d", "{}"), ("d", "{}")]),
            job("r1", "e", &[("b", "{}")]),
            job("r3", "f", &[("g", "{}")]),
        ]);
        assert_eq!(peers(&take_lot(&mut queue, b)), ["a", "c"]);
        assert_eq!(peers(&take_lot(&mut queue, b)), ["e", "f"]);
        assert!(take_lot(&mut queue, b).is_empty());
    }

    #[test]
    fn lots_keep_to_one_room_on_a_cluster() {
        let b = Batching::new(true, Duration::ZERO);
        let mut queue: VecDeque<Job> = queue_of([
            job("r1", "a", &[("b", "{}")]),
            job("r2", "c", &[("d", "{}")]),
            job("r1", "e", &[("b", "{}")]),
            job("r2", "f", &[("c", "{}")]),
        ]);
        assert_eq!(peers(&take_lot(&mut queue, b)), ["a", "e"]);
        let left: Vec<Job> = queue.into_iter().collect();
        assert_eq!(peers(&left), ["c", "f"]);
    }

    #[test]
    fn an_oversized_job_still_goes_alone() {
        let b = Batching {
            max_bytes: 4,
            ..Batching::new(false, Duration::ZERO)
        };
        let mut queue: VecDeque<Job> = queue_of([
            job("r1", "a", &[("b", "{\"big\":1}")]),
            job("r1", "c", &[("b", "{}")]),
        ]);
        assert_eq!(peers(&take_lot(&mut queue, b)), ["a"]);
        assert_eq!(peers(&take_lot(&mut queue, b)), ["c"]);
    }

    /// While the only call allowed is in flight, jobs queue up; they go out
    /// together once it returns, and the loop ends when the senders are gone.
    #[tokio::test]
    async fn jobs_wait_for_a_free_call_and_then_go_together() {
        use std::sync::Arc;
        use std::time::Duration;
        use tokio::sync::{mpsc, Semaphore};

        let (jobs, queue) = mpsc::unbounded_channel();
        let (lots, mut seen) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let b = Batching {
            calls: 1,
            ..Batching::new(false, Duration::ZERO)
        };
        let run = {
            let gate = gate.clone();
            move |lot: Vec<Job>| {
                let (gate, lots) = (gate.clone(), lots.clone());
                async move {
                    let names: Vec<String> = lot.iter().map(|j| j.member.peer.clone()).collect();
                    let _ = lots.send(names);
                    gate.acquire().await.expect("gate open").forget();
                }
            }
        };
        let batcher = tokio::spawn(batch(queue, b, run));
        async fn next(seen: &mut mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
            tokio::time::timeout(Duration::from_secs(5), seen.recv())
                .await
                .expect("a call within 5 s")
                .expect("batcher alive")
        }

        let (a, _a) = job("r1", "a", &[("b", "{}")]);
        assert!(jobs.send(a).is_ok(), "batcher alive");
        assert_eq!(next(&mut seen).await, ["a"]);
        // The call for `a` is held at the gate: these two wait and then go together.
        let (c, _c) = job("r2", "c", &[("d", "{}")]);
        let (e, _e) = job("r1", "e", &[("b", "{}")]);
        assert!(jobs.send(c).is_ok(), "batcher alive");
        assert!(jobs.send(e).is_ok(), "batcher alive");
        gate.add_permits(1);
        assert_eq!(next(&mut seen).await, ["c", "e"]);
        drop(jobs);
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), batcher)
            .await
            .expect("the batcher ends when its senders are gone")
            .expect("no panic");
    }

    /// A batcher over `b` whose calls report their jobs' peers on the
    /// returned receiver and finish at once.
    fn recording(
        b: Batching,
    ) -> (
        tokio::sync::mpsc::UnboundedSender<Job>,
        tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
    ) {
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        let (lots, seen) = tokio::sync::mpsc::unbounded_channel();
        let run = move |lot: Vec<Job>| {
            let _ = lots.send(lot.iter().map(|j| j.member.peer.clone()).collect());
            async {}
        };
        tokio::spawn(batch(queue, b, run));
        (jobs, seen)
    }

    /// With a linger, a job waits for it to pass and takes along whatever
    /// arrived meanwhile; the clock starts with the oldest job.
    #[tokio::test(start_paused = true)]
    async fn a_job_lingers_for_others_to_share_its_call() {
        let linger = Duration::from_millis(5);
        let (jobs, mut seen) = recording(Batching::new(false, linger));
        let started = Instant::now();
        let (a, _a) = job("r1", "a", &[("b", "{}")]);
        assert!(jobs.send(a).is_ok(), "batcher alive");
        tokio::time::sleep(Duration::from_millis(3)).await;
        assert!(seen.try_recv().is_err(), "no call before the linger passed");
        let (c, _c) = job("r2", "c", &[("d", "{}")]);
        assert!(jobs.send(c).is_ok(), "batcher alive");
        // Paused time runs ahead to the batcher's timer once all is idle.
        assert_eq!(seen.recv().await.expect("a call"), ["a", "c"]);
        assert_eq!(
            started.elapsed(),
            linger,
            "the linger counts from the oldest job"
        );
        // A lone job later goes after its own linger.
        let (e, _e) = job("r1", "e", &[("b", "{}")]);
        let sent = Instant::now();
        assert!(jobs.send(e).is_ok(), "batcher alive");
        assert_eq!(seen.recv().await.expect("a call"), ["e"]);
        assert_eq!(sent.elapsed(), linger);
    }

    /// A queue that holds a full call does not wait for the linger.
    #[tokio::test(start_paused = true)]
    async fn a_full_call_goes_without_lingering() {
        let b = Batching {
            max_signals: 2,
            ..Batching::new(false, Duration::from_secs(3600))
        };
        let (jobs, mut seen) = recording(b);
        let started = Instant::now();
        for (peer, _) in [("a", 0), ("c", 1)] {
            let (j, _rx) = job("r1", peer, &[("b", "{}")]);
            assert!(jobs.send(j).is_ok(), "batcher alive");
        }
        assert_eq!(seen.recv().await.expect("a call"), ["a", "c"]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// Without a linger a job goes as soon as a call is free.
    #[tokio::test(start_paused = true)]
    async fn without_a_linger_a_job_goes_at_once() {
        let (jobs, mut seen) = recording(Batching::new(false, Duration::ZERO));
        let started = Instant::now();
        let (a, _a) = job("r1", "a", &[("b", "{}")]);
        assert!(jobs.send(a).is_ok(), "batcher alive");
        assert_eq!(seen.recv().await.expect("a call"), ["a"]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn replies_are_read_per_job() {
        let lot: Vec<Job> = queue_of([
            job("r1", "a", &[("b", "{}"), ("x", "{}")]),
            job("r1", "c", &[("b", "{}")]),
        ])
        .into();
        assert_eq!(
            arguments(&lot),
            ["a", "7", "2", "b", "{}", "x", "{}", "c", "7", "1", "b", "{}"]
        );
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let reply = [
            s("OK"),
            Value::Int(1),
            s("OK"),
            Value::Int(1),
            Value::Int(0),
            s("STALE"),
            Value::Int(0),
        ];
        assert_eq!(
            outcomes(&reply, &lot),
            Some(vec![Outcome::Delivered(vec![true, false]), Outcome::Stale])
        );
        assert_eq!(outcomes(&reply[..6], &lot), None);
        let mut long = reply.to_vec();
        long.push(Value::Int(1));
        assert_eq!(outcomes(&long, &lot), None);
        let mut wrong = reply.to_vec();
        wrong[2] = s("NOPE");
        assert_eq!(outcomes(&wrong, &lot), None);
    }
}
