//! The `switchboard` binary: parses the command line, sets up logging, binds
//! the listener and hands over to [`switchboard::run`] with SIGTERM/SIGINT as
//! the shutdown signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use switchboard::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see `switchboard --help`)");
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
    let config = match cli.serve.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::PrintConfig) = cli.command {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
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
