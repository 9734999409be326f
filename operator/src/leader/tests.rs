//! Leader-election tests against the mock API server, on tokio's paused
//! clock: time moves only when a test advances it, or when every task waits on
//! a timer, so the timings below are exact, not raced. Each test's scenario
//! spans all its attempts, so the elector keeps what it observed in between.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use tokio::time::{advance, Instant};

use super::*;
use crate::fixtures::mock::{mock_client, path, Reply, Scenario, Seen};
use crate::fixtures::NS;

const LEASE: &str = "switchboard-operator";

/// An elector whose requests go to `s`, served in the background.
fn elector(s: Scenario) -> (Elector, tokio::task::JoinHandle<Vec<Seen>>) {
    let (client, handle) = mock_client();
    let mock = s.run(handle);
    (
        Elector::new(client, LeaseConfig::new(LEASE, NS, "me")),
        mock,
    )
}

/// A Lease held by `holder`, renewed at `renewed_at` seconds after the epoch:
/// decades ago by any real clock, as a node with a skewed clock may write it.
fn lease(holder: &str, renewed_at: i64, transitions: i32) -> Value {
    let at = Timestamp::from_second(renewed_at).unwrap().to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NS, "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
            "renewTime": at, "acquireTime": at,
        }
    })
}

trait LeaseCalls {
    fn read(self, l: Value) -> Self;
    fn write(self, reply: Reply) -> Self;
}

impl LeaseCalls for Scenario {
    fn read(self, l: Value) -> Self {
        self.get("leases", LEASE, Reply::Json(l))
    }
    fn write(self, reply: Reply) -> Self {
        self.call(Method::PUT, path("leases", LEASE), reply)
    }
}

async fn try_once(e: &mut Elector) -> bool {
    e.try_acquire_or_renew(Timestamp::now()).await.unwrap()
}

async fn finish(e: Elector, mock: tokio::task::JoinHandle<Vec<Seen>>) -> Vec<Seen> {
    drop(e);
    mock.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn creates_a_missing_lease() {
    let s = Scenario::default()
        .get_missing("leases", LEASE)
        .create("leases");
    let (mut e, mock) = elector(s);
    assert!(try_once(&mut e).await);
    let seen = finish(e, mock).await;
    let spec = &seen[1].body["spec"];
    assert_eq!(
        (&spec["holderIdentity"], &spec["leaseDurationSeconds"]),
        (&json!("me"), &json!(15))
    );
    assert_eq!(spec["leaseTransitions"], 0);
}

#[tokio::test(start_paused = true)]
async fn an_old_renew_time_alone_never_expires_a_lease() {
    // The holder's renewTime is decades old by our clock (skew), but we just
    // saw the record: it is valid for a whole lease duration from now.
    let s = Scenario::default().read(lease("other", 1000, 3));
    let (mut e, mock) = elector(s);
    assert!(!try_once(&mut e).await);
    let seen = finish(e, mock).await;
    assert_eq!(seen.len(), 1, "no write: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn takes_over_once_the_record_stayed_unchanged_for_a_lease_duration() {
    let held = lease("other", 1000, 3);
    let s = Scenario::default()
        .read(held.clone())
        .read(held.clone())
        .read(held)
        .write(Reply::Echo);
    let (mut e, mock) = elector(s);
    assert!(!try_once(&mut e).await);
    advance(Duration::from_secs(14)).await;
    assert!(!try_once(&mut e).await, "14 s without a change: still held");
    advance(Duration::from_secs(1)).await;
    assert!(try_once(&mut e).await, "15 s without a change: expired");
    let seen = finish(e, mock).await;
    let spec = &seen[3].body["spec"];
    assert_eq!(
        (
            spec["holderIdentity"].as_str(),
            spec["leaseTransitions"].as_i64()
        ),
        (Some("me"), Some(4))
    );
    // The write is conditional on the version read.
    assert_eq!(seen[3].body["metadata"]["resourceVersion"], "7");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_seen_restarts_the_clock() {
    let s = Scenario::default()
        .read(lease("other", 1000, 3))
        .read(lease("other", 1010, 3))
        .read(lease("other", 1010, 3))
        .read(lease("other", 1010, 3))
        .write(Reply::Echo);
    let (mut e, mock) = elector(s);
    assert!(!try_once(&mut e).await);
    advance(Duration::from_secs(14)).await;
    assert!(!try_once(&mut e).await, "renewed: the clock restarts here");
    advance(Duration::from_secs(14)).await;
    assert!(!try_once(&mut e).await, "14 s since the renewal was seen");
    advance(Duration::from_secs(1)).await;
    assert!(try_once(&mut e).await);
    finish(e, mock).await;
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let mut released = lease("other", 1000, 3);
    released["spec"]["holderIdentity"] = Value::Null;
    let s = Scenario::default().read(released).write(Reply::Echo);
    let (mut e, mock) = elector(s);
    assert!(try_once(&mut e).await);
    finish(e, mock).await;
}

#[tokio::test(start_paused = true)]
async fn renews_its_own_lease_and_loses_races() {
    let s = Scenario::default()
        .read(lease("me", 1000, 2))
        .write(Reply::Echo)
        .read(lease("other", 1000, 3))
        .read(lease("other", 1000, 3))
        .write(Reply::Status(409, "the object has been modified".into()));
    let (mut e, mock) = elector(s);
    assert!(try_once(&mut e).await);
    advance(LEASE_DURATION).await;
    assert!(!try_once(&mut e).await, "another replica holds it now");
    advance(LEASE_DURATION).await;
    assert!(
        !try_once(&mut e).await,
        "a conflicting write means another replica won"
    );
    let seen = finish(e, mock).await;
    assert_eq!(seen[1].body["spec"]["leaseTransitions"], 2);
    // Renewing keeps the time it was acquired (t = 1000 s).
    let acquired = seen[1].body["spec"]["acquireTime"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(acquired.starts_with("1970-01-01T00:16:40"), "{acquired}");
}

#[tokio::test(start_paused = true)]
async fn a_hung_renewal_ends_leadership_within_the_renew_deadline() {
    // Acquire, renew once, then the API server stops answering.
    let s = Scenario::default()
        .get_missing("leases", LEASE)
        .create("leases")
        .read(lease("me", 1000, 0))
        .write(Reply::Echo)
        .get("leases", LEASE, Reply::Hang);
    let (mut e, mock) = elector(s);
    e.acquire().await;
    let start = Instant::now();
    e.keep().await;
    let leading = start.elapsed();
    // Renewed at RETRY_PERIOD; the hung attempt is cut at that renewal plus
    // RENEW_DEADLINE, well before a follower could take over (a whole
    // LEASE_DURATION after it saw that renewal).
    assert_eq!(leading, RETRY_PERIOD + RENEW_DEADLINE);
    assert!(RENEW_DEADLINE < LEASE_DURATION);
    finish(e, mock).await;
}

#[tokio::test(start_paused = true)]
async fn failing_renewals_step_down_at_the_deadline() {
    let mut s = Scenario::default()
        .get_missing("leases", LEASE)
        .create("leases");
    // Every renewal attempt fails: at 2, 4, 6 and 8 s; at 10 s the deadline
    // has passed and no attempt is made.
    let attempts = RENEW_DEADLINE.as_secs() / RETRY_PERIOD.as_secs() - 1;
    for _ in 0..attempts {
        s = s.get(
            "leases",
            LEASE,
            Reply::Status(500, "etcd is unhappy".into()),
        );
    }
    let (mut e, mock) = elector(s);
    e.acquire().await;
    let start = Instant::now();
    e.keep().await;
    assert_eq!(start.elapsed(), RENEW_DEADLINE);
    finish(e, mock).await;
}

#[tokio::test(start_paused = true)]
async fn release_empties_the_holder() {
    let s = Scenario::default()
        .read(lease("me", 1000, 1))
        .write(Reply::Echo);
    let (mut e, mock) = elector(s);
    e.release().await;
    let seen = finish(e, mock).await;
    let spec = &seen[1].body["spec"];
    assert!(
        spec.get("holderIdentity").is_none_or(Value::is_null),
        "{spec}"
    );
    assert_eq!(spec["leaseDurationSeconds"], 1);
}
