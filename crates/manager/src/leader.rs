//! Leader election on a coordination.k8s.io Lease: only the holder runs the controllers.

use anyhow::{Context as _, Result};
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

/// Seconds a lease stays valid after its last renewal: a new leader takes over this long after
/// the old one died without releasing it.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const GRACE_SECONDS: u64 = 5;

/// A replica taking part in the election.
pub struct Election {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// The lease, while this replica holds it.
pub struct Lease {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

pub fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("kvrocks-operator-{}", std::process::id()))
}

fn lease_namespace(args: &RunArgs) -> String {
    args.lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

impl Election {
    /// Starts competing for the lease named in `args`.
    pub async fn join(client: Client, args: &RunArgs) -> Result<Self> {
        let namespace = lease_namespace(args);
        let identity = identity(args);
        tracing::info!(lease = %args.lease_name, namespace = %namespace, identity = %identity, "joining the leader election");
        let manager = LeaseManagerBuilder::new(client, &args.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .build()
            .await
            .with_context(|| format!("setting up the Lease {namespace}/{}", args.lease_name))?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task })
    }

    /// Waits until this replica holds the lease, or `None` when shutdown comes first.
    pub async fn acquired(mut self, shutdown: &CancellationToken) -> Option<Lease> {
        loop {
            if *self.state.borrow_and_update() {
                return Some(Lease {
                    state: self.state,
                    task: self.task,
                });
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    drop(self.state);
                    let _ = self.task.await;
                    return None;
                }
                changed = self.state.changed() => {
                    if changed.is_err() {
                        tracing::error!("the leader election task stopped");
                        return None;
                    }
                }
            }
        }
    }
}

impl Lease {
    /// Resolves when the lease is lost.
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        loop {
            if !*state.borrow_and_update() {
                return;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up so a standby replica takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed"),
            Err(e) => tracing::warn!(error = %e, "the leader election task panicked"),
        }
    }
}
