//! The KvrocksCluster controller.
//!
//! Its reconciler has not landed yet: every KvrocksCluster gets `Progressing=True` with reason
//! `NotImplemented` (or `Ready=False` with `InvalidSpec` when the spec fails the Rust-side
//! checks), written only when it changes.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kvrocks_api::KvrocksCluster;
use kvrocks_operator_core::controller::{self, report_not_implemented};
use kvrocks_operator_core::{Context, Error};
use tokio_util::sync::CancellationToken;

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "cluster";

/// Runs the KvrocksCluster controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    controller::run(ctx, CONTROLLER, |c, _| c, reconcile, shutdown).await;
}

async fn reconcile(obj: Arc<KvrocksCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let existing = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    report_not_implemented(&ctx, obj.as_ref(), existing, &obj.spec.validate()).await
}
