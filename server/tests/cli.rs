//! The command line as a new user meets it: a usage error prints clap's whole
//! message (what is missing, the valid values, the flag a typo was close to)
//! and names the environment variable a bad value came from; exit code 2.

use std::process::Command;

/// Runs the binary with `args` and `env` only (a clean environment); returns
/// the exit code and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_usage_error(args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let (code, stderr) = run(args, env);
    assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
    for part in expected {
        assert!(
            stderr.contains(part),
            "{args:?} {env:?}: expected {part:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_missing_argument_is_named() {
    assert_usage_error(
        &["token", "--sub", "alice"],
        &[],
        &["required arguments were not provided", "--room <ROOMS>"],
    );
}

#[test]
fn a_bad_value_lists_the_valid_ones_and_names_its_variable() {
    assert_usage_error(
        &["print-config"],
        &[("LOG_FORMAT", "xml")],
        &[
            "invalid value 'xml'",
            "[possible values: json, pretty, auto]",
            "environment variable LOG_FORMAT",
        ],
    );
    assert_usage_error(
        &[],
        &[("PORT", "abc")],
        &[
            "invalid value 'abc' for '--port",
            "environment variable PORT",
        ],
    );
}

#[test]
fn a_bad_flag_value_does_not_blame_the_environment() {
    let (code, stderr) = run(&["--port", "abc"], &[("PORT", "8080")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("environment variable"), "{stderr}");
}

#[test]
fn a_typo_suggests_the_flag() {
    assert_usage_error(
        &["--prot", "9"],
        &[],
        &[
            "unexpected argument '--prot'",
            "a similar argument exists: '--port'",
        ],
    );
}

#[test]
fn print_config_prints_copyable_settings_with_their_sources() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .envs([
            ("JWT_SECRET", "0123456789abcdef-secret"),
            ("REDIS_URL", "redis://:hunter2@redis.internal:6379"),
            ("API_KEYS", "api-key-one-0123456789,api-key-two-0123456789"),
        ])
        .args(["--port", "9000", "print-config"])
        .output()
        .expect("run switchboard print-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for line in [
        "PORT=9000  # flag",
        "HOST=0.0.0.0  # default",
        "REDIS_URL=redis://***@redis.internal:6379  # environment",
        "JWT_SECRET='<hidden>'  # environment",
        "API_KEYS='<hidden>'  # environment",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("-secret") && !stdout.contains("api-key-"),
        "{stdout}"
    );
    let server_id = stdout.lines().find(|l| l.starts_with("SERVER_ID="));
    assert!(
        server_id.is_some_and(|l| l.contains("chosen at each start")),
        "{server_id:?}"
    );
}

#[test]
fn bad_webhook_settings_stop_start_up_with_the_setting_named() {
    assert_usage_error(
        &[],
        &[
            ("WEBHOOK_URLS", "ftp://hooks.example.com/x"),
            ("WEBHOOK_SECRET", "s"),
        ],
        &["WEBHOOK_URLS", "not an http:// or https:// URL"],
    );
    assert_usage_error(
        &[],
        &[("WEBHOOK_URLS", "http://127.0.0.1:9/hook")],
        &["WEBHOOK_SECRET", "must be set when WEBHOOK_URLS is"],
    );
}
