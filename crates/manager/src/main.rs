//! `kvrocks-operator`: runs the KvrocksSentinel, KvrocksStandard and KvrocksCluster controllers
//! in one process, or prints their CRDs.

mod cli;
mod crd;
mod http;
mod leader;
mod logging;
mod metrics_auth;
mod preflight;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser;
use kvrocks_operator_core::context::Context;
use kvrocks_operator_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, ControllerName, RunArgs};
use crate::http::{Health, Phase};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd {
            output_dir: Some(dir),
        } => crd::write_dir(&dir),
        Command::Crd { output_dir: None } => crd::render_all().map(|yaml| print!("{yaml}")),
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvrocks-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<()> {
    logging::init(&args.log_level, args.log_format)?;
    let namespaces = args.watched_namespaces();
    let controllers = args.enabled_controllers();
    if controllers.is_empty() {
        anyhow::bail!("--controllers names no controller: give sentinel, standard and/or cluster");
    }
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found: set KUBECONFIG or run inside a pod")?;
    preflight::ensure_crds(&client, namespaces.as_deref()).await?;

    let metrics = Arc::new(Metrics::new().context("creating the metrics registry")?);
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), namespaces.clone())
            .with_instance(leader::identity(&args)),
    );
    let health = Health::default();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    metrics.set_leader(false);
    let auth = args
        .metrics_auth
        .then(|| Arc::new(metrics_auth::MetricsAuth::new(client.clone())));
    let server = tokio::spawn(http::serve(
        args.metrics_address,
        metrics.clone(),
        health.clone(),
        auth,
        shutdown.clone(),
    ));

    let election = leader::Election::join(client, &args).await?;
    health.set(Phase::Standby);
    tracing::info!(namespaces = ?namespaces, "waiting for the lease");
    let outcome = match election.acquired(&shutdown).await {
        Some(lease) => {
            health.set(Phase::Leading);
            metrics.set_leader(true);
            tracing::info!(?controllers, "holding the lease: starting the controllers");
            let running = run_controllers(ctx, &controllers, shutdown.clone());
            let outcome = tokio::select! {
                () = running => Ok(()),
                () = lease.lost() => {
                    shutdown.cancel();
                    Err(anyhow::anyhow!("lost the lease; exiting so that only one replica reconciles"))
                }
            };
            metrics.set_leader(false);
            lease.release().await;
            outcome
        }
        None => Ok(()),
    };
    health.set(Phase::Stopping);
    shutdown.cancel();
    server.await.context("metrics server task")??;
    tracing::info!("stopped");
    outcome
}

/// The chosen controllers, each an independent reconciler on the shared client.
async fn run_controllers(
    ctx: Arc<Context>,
    controllers: &BTreeSet<ControllerName>,
    shutdown: CancellationToken,
) {
    let on = |c: ControllerName| controllers.contains(&c);
    let sentinel = async {
        if on(ControllerName::Sentinel) {
            kvrocks_sentinel_controller::run(ctx.clone(), shutdown.clone()).await;
        }
    };
    let standard = async {
        if on(ControllerName::Standard) {
            kvrocks_standard_controller::run(ctx.clone(), shutdown.clone()).await;
        }
    };
    let cluster = async {
        if on(ControllerName::Cluster) {
            kvrocks_cluster_controller::run(ctx.clone(), shutdown.clone()).await;
        }
    };
    tokio::join!(sentinel, standard, cluster);
}

/// Cancels `shutdown` on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
