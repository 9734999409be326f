//! Paced traffic for fault tests: pairs of peers that keep sending each other
//! numbered signals, the way real signaling traffic trickles, while a test
//! kills nodes, drains them or restarts Redis underneath.
//!
//! Each peer runs as a task and behaves like a correct client: it keeps its
//! session token and the last `seq` it processed, and when its connection ends
//! (crash, drain, `reconnect` hint) it resumes on a live node. It records what
//! the assertions need: the signal numbers the server acknowledged, the ones it
//! received (which must arrive in order and once), every error code answered,
//! resumes that did not recover, and close codes.
//!
//! Waits are bounded and event-driven: a test waits for every peer to receive
//! a few more signals ("progress"), never for a fixed time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::client::{Client, Incoming};

/// Longest a peer keeps trying to reconnect before it gives up (and the test
/// fails on its report).
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Bound of the final wait for acknowledged signals to arrive.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A signal acknowledged this close to the moment Redis was killed may be
/// lost with it: Redis wrote the reply but died before writing the pub/sub
/// message (docs/redis.md, "What does not"). Such losses are counted and
/// shown, not failed; everything acknowledged outside the window must arrive.
const REDIS_DEATH_WINDOW: Duration = Duration::from_millis(250);

/// The WebSocket URLs of the nodes that are up, by slot; a test updates it as
/// it kills and starts nodes.
#[derive(Clone, Default)]
pub struct Nodes(Arc<Mutex<Vec<Option<String>>>>);

impl Nodes {
    pub fn new(urls: Vec<String>) -> Nodes {
        Nodes(Arc::new(Mutex::new(urls.into_iter().map(Some).collect())))
    }

    pub fn set(&self, slot: usize, url: Option<String>) {
        let mut nodes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if nodes.len() <= slot {
            nodes.resize(slot + 1, None);
        }
        nodes[slot] = url;
    }

    /// The URL of the first live node at or after `slot` (wrapping).
    fn pick(&self, slot: usize) -> Option<String> {
        let nodes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = nodes.len();
        (0..n).find_map(|i| nodes[(slot + i) % n].clone())
    }
}

/// What one peer saw; read by the test while it runs and at the end.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub peer: String,
    /// Signal numbers the server answered `ok` to, and when.
    pub acked: Vec<u64>,
    pub acked_at: Vec<Instant>,
    /// Signal numbers received from the partner, in arrival order.
    pub received: Vec<u64>,
    /// Error codes answered to this peer's requests, with counts.
    pub errors: BTreeMap<String, u64>,
    /// Close codes (or "none") of connections the server ended.
    pub closes: Vec<String>,
    pub resumes: u64,
    /// Resumes answered `recovered: false`.
    pub unrecovered: u64,
    /// Events whose `seq` did not increase, or signals out of order or repeated.
    pub violations: Vec<String>,
    /// Peers listed by the last `discover` (after `stop`).
    pub final_peers: Option<Vec<String>>,
    pub gave_up: Option<String>,
    /// When the test killed Redis (the same list in every report).
    pub redis_deaths: Vec<Instant>,
}

/// A running set of pairs.
pub struct Traffic {
    reports: Vec<Arc<Mutex<Report>>>,
    stop: watch::Sender<bool>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    redis_deaths: Mutex<Vec<Instant>>,
}

impl Traffic {
    /// Starts `pairs` pairs, each in its own room; pair `i` puts its two peers
    /// on node slots `i` and `i + 1` (so on different nodes when there are
    /// several). Each peer sends a signal every `period`. Returns once every
    /// peer has joined.
    pub async fn start(nodes: &Nodes, pairs: usize, period: Duration) -> Traffic {
        let (stop, _) = watch::channel(false);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut reports = Vec::new();
        let mut tasks = Vec::new();
        let mut joined = Vec::new();
        for i in 0..pairs {
            let room = format!("pair-{i}");
            for (me, other, slot) in [("a", "b", i), ("b", "a", i + 1)] {
                let report = Arc::new(Mutex::new(Report {
                    peer: format!("{room}/{me}"),
                    ..Report::default()
                }));
                let (tx, rx) = tokio::sync::oneshot::channel();
                joined.push(rx);
                let peer = Peer {
                    nodes: nodes.clone(),
                    slot,
                    room: room.clone(),
                    me: me.to_owned(),
                    partner: other.to_owned(),
                    period,
                    report: report.clone(),
                    stop: stop.subscribe(),
                    stopping: stopping.clone(),
                    session: None,
                    last_seq: 0,
                    next_n: 1,
                };
                tasks.push(tokio::spawn(peer.run(tx)));
                reports.push(report);
            }
        }
        for rx in joined {
            let _ = tokio::time::timeout(RECONNECT_DEADLINE, rx).await;
        }
        Traffic {
            reports,
            stop,
            stopping,
            tasks,
            redis_deaths: Mutex::new(Vec::new()),
        }
    }

    /// A copy of every peer's report.
    pub fn reports(&self) -> Vec<Report> {
        let deaths = self
            .redis_deaths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.reports
            .iter()
            .map(|r| {
                let mut r = r.lock().unwrap_or_else(|e| e.into_inner()).clone();
                r.redis_deaths = deaths.clone();
                r
            })
            .collect()
    }

    /// Records that the test is about to kill Redis now.
    pub fn redis_dies(&self) {
        self.redis_deaths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Instant::now());
    }

    /// Waits until every peer has received `more` further signals; returns
    /// how long that took, or panics after `timeout` naming the peers that
    /// did not.
    pub async fn wait_progress(&self, more: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        let base: Vec<usize> = self.reports().iter().map(|r| r.received.len()).collect();
        loop {
            let reports = self.reports();
            let behind: Vec<String> = reports
                .iter()
                .zip(&base)
                .filter(|(r, b)| r.received.len() < *b + more)
                .map(|(r, _)| format!("{} ({:?})", r.peer, r.errors))
                .collect();
            if behind.is_empty() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "no traffic within {timeout:?} for: {}",
                behind.join(", ")
            );
            // The reports are shared memory with no notification: poll them.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops sending, waits until every acknowledged signal has arrived (or
    /// the settle timeout passed), takes a final `discover` on every peer, and
    /// returns the reports.
    pub async fn stop(mut self) -> Vec<Report> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let reports = self.reports();
            if settled(&reports) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(SETTLE_TIMEOUT, task).await;
        }
        self.reports()
    }
}

/// Whether every peer has its final `discover` answer and its acknowledged
/// signals were received by its partner.
fn settled(reports: &[Report]) -> bool {
    reports
        .iter()
        .all(|r| r.final_peers.is_some() || r.gave_up.is_some())
        && reports.chunks(2).all(|pair| {
            let [a, b] = pair else { return true };
            lost(a, b).0.is_empty() && lost(b, a).0.is_empty()
        })
}

/// The signals `me` had acknowledged that `other` never received: those that
/// count, and those acknowledged as Redis died (see `REDIS_DEATH_WINDOW`).
fn lost(me: &Report, other: &Report) -> (Vec<u64>, Vec<u64>) {
    let got: std::collections::HashSet<u64> = other.received.iter().copied().collect();
    let near_death = |at: &Instant| {
        me.redis_deaths.iter().any(|death| {
            let gap = if at > death {
                *at - *death
            } else {
                *death - *at
            };
            gap <= REDIS_DEATH_WINDOW
        })
    };
    let (mut counted, mut excused) = (Vec::new(), Vec::new());
    for (n, at) in me.acked.iter().zip(&me.acked_at) {
        if got.contains(n) {
            continue;
        }
        if near_death(at) {
            excused.push(*n);
        } else {
            counted.push(*n);
        }
    }
    (counted, excused)
}

/// Asserts the promises of the cluster on a stopped run: no joined connection
/// was answered `NOT_JOINED`; every acknowledged signal arrived once and in
/// order; every resume recovered; each peer sees exactly its partner.
pub fn assert_delivery(reports: &[Report]) {
    let mut problems = Vec::new();
    for pair in reports.chunks(2) {
        let [a, b] = pair else { continue };
        for (me, other) in [(a, b), (b, a)] {
            if let Some(why) = &me.gave_up {
                problems.push(format!("{} gave up: {why}", me.peer));
            }
            if let Some(n) = me.errors.get("NOT_JOINED") {
                problems.push(format!("{} was answered NOT_JOINED {n} times", me.peer));
            }
            if me.unrecovered > 0 {
                problems.push(format!(
                    "{}: {} resumes did not recover",
                    me.peer, me.unrecovered
                ));
            }
            problems.extend(me.violations.iter().map(|v| format!("{}: {v}", me.peer)));
            let (lost, excused) = lost(me, other);
            if !excused.is_empty() {
                println!(
                    "{}: acknowledged as Redis was killed, lost with it: {excused:?}",
                    me.peer
                );
            }
            if !lost.is_empty() {
                problems.push(format!(
                    "{}: acknowledged signals never reached {}: {lost:?}",
                    me.peer, other.peer
                ));
            }
            let partner = other.peer.rsplit('/').next().unwrap_or("");
            if me.final_peers.as_deref() != Some(&[partner.to_owned()][..]) {
                problems.push(format!(
                    "{} discovers {:?}, expected [{partner}]",
                    me.peer, me.final_peers
                ));
            }
        }
    }
    let sent: usize = reports.iter().map(|r| r.acked.len()).sum();
    assert!(
        problems.is_empty(),
        "{} problems over {sent} acknowledged signals:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(sent > 0, "no signal was acknowledged at all");
}

/// One peer of a pair.
struct Peer {
    nodes: Nodes,
    slot: usize,
    room: String,
    me: String,
    partner: String,
    period: Duration,
    report: Arc<Mutex<Report>>,
    stop: watch::Receiver<bool>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    session: Option<String>,
    last_seq: u64,
    next_n: u64,
}

/// Why a connection's loop ended.
enum Ended {
    /// The test is over.
    Stopped,
    /// Reconnect (and resume unless the session was lost).
    Reconnect,
}

impl Peer {
    fn with<R>(&self, f: impl FnOnce(&mut Report) -> R) -> R {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn run(mut self, joined: tokio::sync::oneshot::Sender<()>) {
        let mut joined = Some(joined);
        let mut delay = Duration::from_millis(50);
        let mut since = Instant::now();
        loop {
            if since.elapsed() > RECONNECT_DEADLINE {
                self.with(|r| r.gave_up = Some("could not rejoin in time".into()));
                return;
            }
            let Some(mut client) = self.connect().await else {
                tokio::select! {
                    _ = self.stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_millis(500));
                continue;
            };
            if let Some(tx) = joined.take() {
                let _ = tx.send(());
            }
            delay = Duration::from_millis(50);
            match self.serve(&mut client).await {
                Ended::Stopped => return,
                Ended::Reconnect => since = Instant::now(),
            }
        }
    }

    /// Connects to a live node and joins, resuming when it has a session.
    async fn connect(&mut self) -> Option<Client> {
        let url = self.nodes.pick(self.slot)?;
        let mut client = Client::try_connect(&url, &format!("{}/{}", self.room, self.me))
            .await
            .ok()?;
        let mut join = json!({"type": "join", "room": self.room, "peer": self.me, "id": "join"});
        if let Some(token) = &self.session {
            join["resume"] = json!(token);
            join["last_seq"] = json!(self.last_seq);
        }
        client
            .try_send(Message::text(join.to_string()))
            .await
            .ok()?;
        loop {
            match client.read_incoming(Duration::from_secs(10)).await? {
                Incoming::Json(v) if v["id"] == "join" => {
                    if v["type"] != "joined" {
                        // E.g. UNAVAILABLE while Redis is down: try again.
                        self.record_error(&v);
                        return None;
                    }
                    if self.session.is_some() {
                        let recovered = v["recovered"] == true;
                        self.with(|r| {
                            r.resumes += 1;
                            if !recovered {
                                r.unrecovered += 1;
                            }
                        });
                    }
                    self.session = v["session"].as_str().map(str::to_owned);
                    return Some(client);
                }
                Incoming::Json(v) => self.on_event(&v),
                _ => return None,
            }
        }
    }

    /// Sends a signal every period and handles what arrives, until the
    /// connection ends or the test stops.
    async fn serve(&mut self, client: &mut Client) -> Ended {
        let mut next_send = Instant::now();
        let mut final_discover = false;
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) && !final_discover {
                final_discover = true;
                let q = json!({"type": "discover", "id": "final"});
                if client.try_send(Message::text(q.to_string())).await.is_err() {
                    return Ended::Reconnect;
                }
            }
            let wait = next_send.saturating_duration_since(Instant::now());
            let incoming = tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return Ended::Stopped,
                i = client.read_incoming(wait) => i,
            };
            match incoming {
                None => {
                    next_send += self.period;
                    if final_discover {
                        continue;
                    }
                    let n = self.next_n;
                    self.next_n += 1;
                    let msg = json!({"type": "signal", "to": self.partner,
                        "payload": {"n": n}, "id": format!("s{n}")});
                    if client
                        .try_send(Message::text(msg.to_string()))
                        .await
                        .is_err()
                    {
                        return Ended::Reconnect;
                    }
                }
                Some(Incoming::Json(v)) => {
                    if v["type"] == "reconnect" {
                        continue;
                    }
                    self.on_message(&v);
                }
                Some(Incoming::Close(code, _)) => {
                    let code = code.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                    if code == "4001" {
                        // Lost for good: the next join is fresh.
                        self.session = None;
                    }
                    self.with(|r| r.closes.push(code));
                    return Ended::Reconnect;
                }
                Some(Incoming::Ended(_)) => {
                    self.with(|r| r.closes.push("none".into()));
                    return Ended::Reconnect;
                }
            }
        }
    }

    fn on_message(&mut self, v: &Value) {
        let id = v["id"].as_str().unwrap_or("");
        match (v["type"].as_str().unwrap_or(""), id) {
            ("ok", id) if id.starts_with('s') => {
                if let Ok(n) = id[1..].parse::<u64>() {
                    self.with(|r| {
                        r.acked.push(n);
                        r.acked_at.push(Instant::now());
                    });
                }
            }
            ("error", _) => self.record_error(v),
            ("peers", "final") => {
                let mut ids: Vec<String> = v["peers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p["peer"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                ids.sort();
                self.with(|r| r.final_peers = Some(ids));
            }
            _ if v.get("seq").is_some() => self.on_event(v),
            _ => {}
        }
    }

    fn record_error(&self, v: &Value) {
        let code = v["code"].as_str().unwrap_or("?").to_owned();
        self.with(|r| *r.errors.entry(code).or_default() += 1);
    }

    /// An event: its `seq` must increase by one per event for this peer, and a
    /// signal's number must exceed the last one received.
    fn on_event(&mut self, v: &Value) {
        let Some(seq) = v["seq"].as_u64() else { return };
        if seq <= self.last_seq {
            let last = self.last_seq;
            self.with(|r| r.violations.push(format!("seq {seq} after {last}: {v}")));
            return;
        }
        self.last_seq = seq;
        if v["type"] == "signal" {
            let Some(n) = v["payload"]["n"].as_u64() else {
                return;
            };
            self.with(|r| {
                if let Some(&last) = r.received.last() {
                    if n <= last {
                        r.violations
                            .push(format!("signal {n} arrived after {last}"));
                    }
                }
                r.received.push(n);
            });
        }
    }
}
