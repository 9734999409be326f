//! `switchboard healthcheck`, the probe for container runtimes whose images
//! have no shell: exit 0 while the local node is ready, 1 otherwise.

mod support;

use std::process::Command;

use support::{Cluster, Settings};

fn healthcheck(port: u16, path: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env("PORT", port.to_string()).arg("healthcheck");
    if let Some(path) = path {
        cmd.args(["--path", path]);
    }
    let out = cmd.output().expect("run switchboard healthcheck");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ready_node_is_healthy_and_others_are_not() {
    let c = Cluster::embedded(Settings::new()).await;
    let port = c.addr(0).port();
    assert_eq!(healthcheck(port, None), (true, String::new()));
    assert!(healthcheck(port, Some("/health")).0);
    let (ok, why) = healthcheck(port, Some("/no-such-path"));
    assert!(!ok && why.contains("404"), "{why}");
    // Nothing listening on a port that was just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, why) = healthcheck(free, None);
    assert!(!ok && why.contains("cannot connect"), "{why}");
}
