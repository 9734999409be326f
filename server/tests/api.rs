//! The Server API (`/api/v1`) against one embedded node and against two
//! nodes sharing one real redis-server (every call made on the node that
//! does not hold the peer it acts on), plus what only one setup needs: the
//! API off without keys, and on the internal listener.

mod server_api;
mod support;

use std::time::{Duration, Instant};

use support::http;
use support::{Cluster, Settings};

mod embedded {
    use super::*;
    server_api::api_suite!(Cluster::embedded);
}

mod redis {
    use super::*;
    server_api::api_suite!(|settings| Cluster::redis(2, settings));
}

#[tokio::test]
async fn without_a_key_every_api_path_is_404() {
    let c = Cluster::embedded(Settings::new()).await;
    for path in ["/api/v1/rooms", "/api/v1/openapi.json", "/api/v1/rooms/r1"] {
        let r = http::get_with(
            c.addr(0),
            path,
            &[("Authorization", &format!("Bearer {}", server_api::KEY))],
        )
        .await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}

/// The internal listener's address, from the node's startup log.
async fn internal_addr(c: &Cluster) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = c.node(0).output().iter().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if v["fields"]["message"] != "internal listener (metrics, status)" {
                return None;
            }
            v["fields"]["addr"].as_str()?.parse().ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(Instant::now() < deadline, "no internal listener logged");
        // The log is read by a background thread: poll it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn with_an_internal_listener_the_api_moves_there() {
    let settings = server_api::with_keys(Settings::new().set("INTERNAL_ADDR", "127.0.0.1:0"));
    let c = Cluster::embedded(settings).await;
    let internal = internal_addr(&c).await;
    let auth = format!("Bearer {}", server_api::KEY);
    let headers = [("Authorization", auth.as_str())];
    let public = http::get_with(c.addr(0), "/api/v1/rooms", &headers).await;
    assert_eq!(public.status, 404, "{}", public.body);
    let inside = http::get_with(internal, "/api/v1/rooms", &headers).await;
    assert_eq!(inside.status, 200, "{}", inside.body);
    assert_eq!(inside.json()["rooms"], serde_json::json!([]));
}
