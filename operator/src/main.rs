//! `switchboard-operator`: `run` (the default) starts the operator; `crd` prints
//! the CustomResourceDefinition.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard_operator::controller;
use switchboard_operator::leader::{Elector, LeaseConfig};
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
    /// Only watch this namespace; empty or unset: all namespaces.
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
    // An empty WATCH_NAMESPACE (how a manifest switches to cluster-wide) means
    // every namespace, like an unset one.
    let watch_namespace = args.watch_namespace.clone().filter(|ns| !ns.is_empty());
    if let Err(e) = controller::check_crd(&client, watch_namespace.as_deref()).await {
        // One line, and a non-zero exit: the pod's last log says how to fix it.
        eprintln!("switchboard-operator: {e}");
        std::process::exit(1);
    }
    let metrics = Arc::new(Metrics::default());
    serve_metrics(args.metrics_addr, metrics.clone());

    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("switchboard-operator-{}", std::process::id()));
    let mut elector = None;
    if args.leader_election {
        let cfg = LeaseConfig::new(&args.lease_name, &args.lease_namespace, &identity);
        let mut e = Elector::new(client.clone(), cfg);
        tokio::select! {
            () = e.acquire() => {}
            () = shutdown_signal() => return Ok(()),
        }
        elector = Some(e);
    }
    metrics.leader.set(1);
    tracing::info!(namespace = ?watch_namespace, "starting controller");
    // The controller finishes its reconciles on SIGTERM; should that take too long
    // (an API server that does not answer), stop anyway before the kubelet kills.
    tokio::spawn(async {
        shutdown_signal().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!("graceful shutdown took too long; exiting");
        std::process::exit(1);
    });
    let lost = reconcile_while_leading(
        client,
        metrics.clone(),
        identity,
        watch_namespace,
        elector.as_mut(),
    )
    .await;
    metrics.leader.set(0);
    if lost {
        anyhow::bail!("lost leadership; exiting so a fresh start can rejoin the election");
    }
    if let Some(e) = elector.as_mut() {
        e.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves `/metrics` and `/healthz`; the process exits if that fails.
fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, metrics).await {
            tracing::error!(error = %e, %addr, "metrics endpoint failed");
            std::process::exit(1);
        }
    });
}

/// Runs the controller until shutdown, or until the Lease is lost: then the
/// controller is dropped at once, cancelling every reconcile in flight, so a
/// stale leader never writes after another replica took over. Returns whether
/// leadership was lost.
async fn reconcile_while_leading(
    client: kube::Client,
    metrics: Arc<Metrics>,
    identity: String,
    watch_namespace: Option<String>,
    elector: Option<&mut Elector>,
) -> bool {
    let lost = async {
        match elector {
            Some(e) => e.keep().await,
            None => std::future::pending().await,
        }
    };
    let run = controller::run(
        client,
        metrics,
        Some(identity),
        watch_namespace,
        shutdown_signal(),
    );
    tokio::select! {
        () = run => false,
        () = lost => true,
    }
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
