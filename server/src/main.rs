//! The `switchboard` binary: parses the command line, sets up logging, binds
//! the listener and hands over to [`switchboard::run`] with SIGTERM/SIGINT as
//! the shutdown signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};
use switchboard::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Token(args)) = &cli.command {
        // Only the token on stdout, so `$(switchboard token …)` captures it.
        return match switchboard::auth::mint(args, switchboard::auth::unix_now()) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot mint a token: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Healthcheck { path }) = &cli.command {
        return match healthcheck(cli.serve.port, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("not healthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match cli.serve.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::PrintConfig) = cli.command {
        print!("{}", effective_settings());
        return ExitCode::SUCCESS;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        switchboard::telemetry::init(config.log_format);
        let shutdown = shutdown_signal();
        let addr = SocketAddr::new(config.host, config.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    "cannot listen on {addr}: {e}; is another process using the port? set PORT"
                );
                return ExitCode::FAILURE;
            }
        };
        match switchboard::run(config, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// clap's whole message (what is missing, the valid values, "a similar
/// argument exists", usage), plus the environment variable a bad value came
/// from: a user who set `LOG_FORMAT=xml` should read `LOG_FORMAT`, not only
/// `--log-format`.
fn usage_error(e: &clap::Error) -> String {
    let mut text = e.to_string();
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return text;
    };
    // "--log-format <LOG_FORMAT>" -> "log-format"
    let Some(long) = arg
        .split_whitespace()
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
    else {
        return text;
    };
    let given_as_flag = std::env::args().any(|a| {
        a.strip_prefix("--")
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    if let Some(var) = env_of(&Cli::command(), long) {
        if !given_as_flag {
            if let Some(value) = std::env::var_os(&var) {
                text.push_str(&format!(
                    "note: the value {:?} came from the environment variable {var}; fix or unset it\n",
                    value.to_string_lossy()
                ));
            }
        }
    }
    text
}

/// The effective settings as environment lines a user can copy (`KEY=value`),
/// each with where its value came from; secrets hidden, a password in
/// `REDIS_URL` redacted. Called once the configuration validated.
fn effective_settings() -> String {
    use clap::parser::ValueSource;
    let matches = Cli::command().get_matches();
    let mut out = String::from("# effective settings (value source after each)\n");
    for arg in Cli::command().get_arguments() {
        let Some(var) = arg.get_env().map(|v| v.to_string_lossy().into_owned()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let value = matches
            .get_raw(id)
            .map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let value = if value.is_empty() {
            value
        } else if arg.is_hide_env_values_set() {
            "<hidden>".to_owned()
        } else if var == "REDIS_URL" {
            switchboard::config::redact_url(&value)
        } else {
            value
        };
        let note = if var == "SERVER_ID" && source == "unset" {
            " (a node id is chosen at each start from the host name; set SERVER_ID to fix it)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{var}={}  # {source}{note}\n",
            shell_quoted(&value)
        ));
    }
    out
}

/// `value` as a shell word (quoted when it holds anything but safe characters).
fn shell_quoted(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:,@%+=*".contains(c);
    if value.chars().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The environment variable behind `--long`, in the command or a subcommand.
fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .or_else(|| cmd.get_subcommands().find_map(|sub| env_of(sub, long)))
}

/// One HTTP GET of `path` on the local node; Ok when it answers 200.
fn healthcheck(port: u16, path: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let timeout = Duration::from_secs(2);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status_line = status_line.lines().next().unwrap_or("");
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{path} answered {status_line:?}")),
    }
}

/// Registers the SIGTERM/SIGINT handlers now (before the node announces it
/// is listening, so an early SIGTERM also drains instead of killing the
/// process) and returns the future that resolves on either signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(
                    "cannot listen for SIGTERM/SIGINT ({e}); the node will not drain on shutdown"
                );
                std::future::pending::<()>().await;
            }
        }
    }
}
