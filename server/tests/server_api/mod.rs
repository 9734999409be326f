//! The Server API suite: every `/api/v1` call as plain `async fn case(c:
//! &Cluster)` functions, and `api_suite!`, which turns each case into a
//! `#[tokio::test]` against a cluster built by a given constructor (one
//! embedded node, two nodes sharing one redis-server, a Redis Cluster).
//!
//! Cases put their peers on successive node indices and make their calls
//! on another node than the peer they act on, so on two nodes every call
//! acts across nodes.
//!
//! # Layout
//! - this file: [`Api`], a client of the calls over real HTTP, and the macro;
//! - `rooms`: listing, reading, closing rooms;
//! - `peers`: `server` messages and kicks;
//! - `state`: merge patches with and without `If-Match`;
//! - `input`: keys, bad input (nothing changes), the OpenAPI document, metrics.

#![allow(dead_code)]

pub mod input;
pub mod peers;
pub mod rooms;
pub mod state;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::http::{self, HttpResponse};
use crate::support::{Cluster, Settings};

/// The two keys every suite node accepts (rotation: both at once).
pub const KEY: &str = "test-api-key-one-0123456789";
pub const OTHER_KEY: &str = "test-api-key-two-0123456789";

/// Settings with both keys.
pub fn with_keys(settings: Settings) -> Settings {
    settings.set("API_KEYS", format!("{KEY}, {OTHER_KEY}"))
}

/// A client of the Server API of one node, with a key.
pub struct Api {
    pub addr: SocketAddr,
    pub key: String,
}

impl Api {
    /// The API of node `i` of `c`, with [`KEY`].
    pub fn of(c: &Cluster, i: usize) -> Api {
        Api {
            addr: c.addr(i),
            key: KEY.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let auth = format!("Bearer {}", self.key);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        http::send(self.addr, method, path, &all, body).await
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.call("GET", path, &[], b"").await
    }

    pub async fn delete(&self, path: &str) -> HttpResponse {
        self.call("DELETE", path, &[], b"").await
    }

    pub async fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.call("POST", path, &[], body.to_string().as_bytes())
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value, if_match: Option<&str>) -> HttpResponse {
        let headers: Vec<(&str, &str)> = if_match.map(|v| ("If-Match", v)).into_iter().collect();
        self.call("PATCH", path, &headers, body.to_string().as_bytes())
            .await
    }

    /// `GET /api/v1/rooms/{room}`, asserting 200.
    pub async fn room(&self, room: &str) -> Value {
        let r = self.get(&format!("/api/v1/rooms/{room}")).await;
        assert_eq!(r.status, 200, "GET room {room}: {}", r.body);
        r.json()
    }

    /// Reads the room until `done` holds for it (bounded): for what the
    /// cluster does in the background, such as noticing a closed socket.
    pub async fn room_until(&self, room: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.room(room).await;
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "room never showed {what}: {r}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Asserts an error answer: status, `error.code`, and a message.
#[track_caller]
pub fn assert_api_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got {}: {}",
        r.status, r.body
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {v}"
    );
}

/// The peer ids of a room's `peers` list.
pub fn peers_of(room: &Value) -> Vec<String> {
    room["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["peer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Instantiates every case as a `#[tokio::test]`; `$start` is an async fn
/// or closure `|settings: Settings| -> impl Future<Output = Cluster>`. The
/// settings each case needs besides the keys are listed next to it.
macro_rules! api_suite {
    ($start:expr) => {
        $crate::server_api::api_suite!(@cases $start;
            rooms {
                rooms_are_listed_a_page_at_a_time => Settings::new(),
                rooms_that_ended_are_skipped_and_pruned => Settings::new(),
                a_room_shows_peers_nodes_away_and_state => Settings::new(),
                closing_a_room_closes_every_peer_and_deletes_it => Settings::new(),
            }
            peers {
                messages_reach_one_peer_or_all => Settings::new(),
                a_message_to_an_away_peer_is_replayed_on_resume => Settings::new(),
                a_kicked_peer_is_closed_and_cannot_resume => Settings::new(),
                an_away_peer_can_be_kicked => Settings::new(),
            }
            state {
                state_patches_reach_every_peer_with_by_null => Settings::new(),
                a_stale_if_match_changes_nothing => Settings::new(),
                a_patch_over_the_state_limit_changes_nothing => Settings::new().set("MAX_STATE_BYTES", 200),
            }
            input {
                keys_are_required_and_both_are_accepted => Settings::new(),
                bad_input_changes_nothing => Settings::new(),
                unknown_rooms_and_peers_are_404 => Settings::new(),
                the_served_document_is_the_committed_one => Settings::new(),
                calls_are_counted_by_call_and_status => Settings::new(),
            }
        );
    };
    (@cases $start:expr; $($module:ident { $($case:ident => $settings:expr),* $(,)? })*) => {
        $($(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                #[allow(unused_imports)]
                use $crate::support::Settings;
                let settings = $crate::server_api::with_keys($settings);
                let cluster = ($start)(settings).await;
                $crate::server_api::$module::$case(&cluster).await;
                cluster.assert_alive();
            }
        )*)*
    };
}
pub(crate) use api_suite;
