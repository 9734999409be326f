//! Start-up as an operator meets it: SIGINT or SIGTERM stops the process at
//! any moment, also while it is still waiting for an unreachable Redis.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a stopped process may take to exit; start-up would otherwise go on
/// retrying Redis for 30 s.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

fn stops_while_waiting_for_redis(signal: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .envs([
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn switchboard");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Wait for the first failed attempt: start-up is now in its retry loop.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("retrying") => break,
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                panic!("no retry line from a node pointed at an unreachable Redis");
            }
        }
    }
    let sent = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success());
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "{signal}: exit {status}");
            break;
        }
        if sent.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            panic!("{signal} during start-up: still running after {EXIT_WITHIN:?}");
        }
        // A child's exit has no event to await without libc: poll it.
        std::thread::sleep(Duration::from_millis(20));
    }
    // The rest of its output, up to the end of the pipe (it has exited).
    let mut said = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        said.push(line);
    }
    assert!(
        said.iter().any(|l| l.contains("during start-up")),
        "{said:?}"
    );
}

#[test]
fn sigint_stops_start_up_waiting_for_redis() {
    stops_while_waiting_for_redis("-INT");
}

#[test]
fn sigterm_stops_start_up_waiting_for_redis() {
    stops_while_waiting_for_redis("-TERM");
}
