//! `switchboard-operator`: `run` (the default) starts the operator; `crd` prints
//! the CustomResourceDefinition.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard_operator::controller::{self, Context};
use switchboard_operator::leader::{self, LeaseConfig};
use switchboard_operator::metrics::{self, Metrics};

/// Longest wait for the controller to stop after SIGTERM (the Deployment's grace
/// period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Kubernetes operator for Switchboard SignalingCluster resources.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the SignalingCluster CRD as YAML.
    Crd,
    /// Run the operator (the default).
    Run,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Address of the /metrics and /healthz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Elect a leader through a Lease (needed when more than one replica runs).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "switchboard-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "switchboard-system")]
    lease_namespace: String,
    /// This replica's identity (its pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Log format: json or pretty.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "pretty" {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", switchboard_operator::crd::crd_yaml());
            Ok(())
        }
        Some(Command::Run) | None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found (in-cluster or kubeconfig)")?;
    if let Err(e) = controller::check_crd(&client, args.watch_namespace.as_deref()).await {
        // One line, and a non-zero exit: the pod's last log says how to fix it.
        eprintln!("switchboard-operator: {e}");
        std::process::exit(1);
    }

    let metrics = Arc::new(Metrics::default());
    let addr = args.metrics_addr;
    let http_metrics = metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, http_metrics).await {
            tracing::error!(error = %e, %addr, "metrics endpoint failed");
            std::process::exit(1);
        }
    });

    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("switchboard-operator-{}", std::process::id()));
    let lease = LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: identity.clone(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    };

    // Resolves when the leader Lease is lost. Without leader election the sender
    // lives until the end of this function, so it never resolves.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lost_tx = Some(lost_tx);
    if args.leader_election {
        tokio::select! {
            () = leader::acquire(client.clone(), &lease) => {}
            () = shutdown_signal() => return Ok(()),
        }
        let (c, l, tx) = (client.clone(), lease.clone(), lost_tx.take());
        tokio::spawn(async move {
            leader::keep(c, l).await;
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        });
    }
    metrics.leader.set(1);

    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lost_flag = lost.clone();
    let shutdown = async move {
        if lost_rx.await.is_ok() {
            lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Some(identity),
        metrics.clone(),
    ));
    tracing::info!(namespace = ?args.watch_namespace, "starting controller");
    // The controller finishes its reconciles on SIGTERM; should that take too long
    // (an API server that does not answer), stop anyway before the kubelet kills.
    tokio::spawn(async {
        shutdown_signal().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!("graceful shutdown took too long; exiting");
        std::process::exit(1);
    });
    controller::run(client.clone(), ctx, args.watch_namespace.clone(), shutdown).await;
    metrics.leader.set(0);

    drop(lost_tx);
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("lost leadership; exiting so a fresh start can rejoin the election");
    }
    if args.leader_election {
        leader::release(client, &lease).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
