//! The KvrocksCluster controller: shards of kvrocks in cluster mode whose topology the operator
//! keeps (in status, with a version) and pushes with `CLUSTERX SETNODEID` / `SETNODES`.
//!
//! A reconcile is `observe -> plan -> act -> report`:
//! - the objects are applied where they differ from the live ones ([`objects`]: ConfigMap,
//!   Services, one StatefulSet and PDB per shard);
//! - the pods, every node's id, version and replication, and the prober's verdicts are read
//!   ([`observe`]);
//! - [`plan::plan`] (pure) decides the layout (first split, pods that moved, failover of a
//!   master unreachable for `spec.failover.timeout`, handovers, new and drained shards), the slot
//!   migration step (`spec.slotMigrations`, then the rebalance), the rollout and the version;
//! - [`act`] fences the old master of a planned switchover until the new one caught up (or the
//!   plan is held, `plan::hold`), pushes the topology to every node that lags, lifts the fences,
//!   sets kvrocks.conf live, restarts one pod, stops a failed-over master's pod, starts a
//!   migration status already records;
//! - [`report`] builds the status and Events, written here (the status only when it changed).
//!
//! Alongside, one prober task per cluster ([`state`], `kvrocks_operator_core::prober`) pings
//! every pod every 500 ms and wakes the reconcile when a pod's verdict changes, so a failover
//! is timed in seconds since the master last answered, not in reconcile passes.
//!
//! Deletion: when a sentinel group watches the shards, the finalizer waits until it no longer
//! lists any of this cluster's monitors; the objects go with the garbage collector.

#![warn(missing_docs)]

pub mod act;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod previous;
pub mod report;
pub mod state;
pub mod topo;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use kvrocks_api::labels::{Component, MONITOR_FINALIZER};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel};
use kvrocks_operator_core::{
    Context, auth, conditions, controller, finalizers, patch_status_if_changed, server,
};
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "cluster";

/// What can make a reconcile fail (the shared controller error).
pub use kvrocks_operator_core::ControllerError as Error;

/// Runs the KvrocksCluster controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let state = Arc::new(State::new(ctx.wake.clone()));
    let reconcile = move |cr: Arc<KvrocksCluster>, ctx: Arc<Context>| {
        let state = state.clone();
        async move { reconcile(cr, ctx, state).await }
    };
    controller::run_owning_statefulsets::<KvrocksCluster, _, _, _>(
        ctx,
        CONTROLLER,
        Component::Cluster,
        reconcile,
        shutdown,
    )
    .await;
}

#[tracing::instrument(skip_all, fields(namespace = cached.namespace(), cluster = %cached.name_any()))]
async fn reconcile(
    cached: Arc<KvrocksCluster>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<Requeue, Error> {
    let Some(cr) = fresh(&ctx, &cached).await? else {
        state.forget(&state::key(&cached));
        return Ok(Requeue::await_change());
    };
    let key = state::key(&cr);
    if cr.metadata.deletion_timestamp.is_some() {
        state.forget(&key);
        return finalize(&cr, &ctx).await;
    }
    let crs: Api<KvrocksCluster> = ctx.api_for(&cr);
    finalizers::add(&crs, &cr, MONITOR_FINALIZER).await?;
    let problems = cr.spec.validate();
    if !problems.is_empty() {
        return Ok(controller::report_invalid(&ctx, CONTROLLER, &cr, &problems).await?);
    }
    let named = cr.spec.pod.auth.secret_name.as_deref();
    let Some(secret) =
        controller::password_or_report(&ctx, CONTROLLER, &cr, Component::Cluster, named).await?
    else {
        return Ok(Requeue::requeue(Duration::from_secs(10)));
    };
    let previous = cr.status.clone().unwrap_or_default();
    let listed = observe::pods(&ctx, &cr).await?;
    // The password the nodes take: the Secret's once it is rolled out to every node.
    let applied = auth::applied_password(&ctx.client, &cr).await?;
    let (password, rotation) = act::settle_password(&ctx, &cr, &listed, applied, &secret).await;
    // A pod the prober counts unreachable is not asked (it would cost a connect timeout, and
    // a failover that is due would wait for it).
    let answering = observe::answering(&listed, &state, &key);
    let verdict = server::judge(
        &answering,
        kvrocks_api::labels::KVROCKS_PORT as u16,
        &password,
        &cr.spec.pod.config,
        &previous.unsupported_config,
        previous.kvrocks_version.as_deref(),
    )
    .await;
    let hashes = objects::apply(&ctx, &cr, &verdict).await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ctx.api_for(&cr);
    let observed = observe::observe(&pods, &cr, &listed, &hashes, &password, &state, &key).await;
    let input = plan::Input {
        spec: &cr.spec,
        status: &previous,
        observed: &observed,
        now: SystemTime::now(),
    };
    let mut plan = plan::plan(&input);
    if !plan.actions.is_empty() || !plan.notes.is_empty() {
        tracing::debug!(version = plan.version, wait = ?plan.wait, notes = ?plan.notes, actions = ?plan.actions, "plan");
    }
    if let Err(why) = act::fence(&plan, &password).await {
        plan = plan::hold(&input, plan, why);
    }
    let live_config = verdict.supported(&cr.spec.pod.config);
    let tools = act::Tools {
        pods: &pods,
        password: &password,
        live_config: &live_config,
        config_hash: &hashes.config,
    };
    let outcomes = act::run(&plan, &tools).await;
    remember(&state, &key, &outcomes, &hashes.config);
    let mut refused = hashes.refused.clone();
    refused.extend(rotation);
    let inputs = report::Inputs {
        spec: &cr.spec,
        generation: cr.metadata.generation,
        previous: &previous,
        observed: &observed,
        plan: &plan,
        outcomes: &outcomes,
        verdict: &verdict,
        refused: &refused,
    };
    publish(&ctx, &cr, &inputs).await?;
    Ok(Requeue::requeue(state.requeue(&key, plan.next)))
}

/// The cluster as the API server holds it now, not as the cache last saw it: the previous pass
/// may have recorded a slot migration a moment ago, and a pass on the older copy would plan
/// that migration again and write the record away. None when it is gone.
async fn fresh(ctx: &Context, cached: &KvrocksCluster) -> Result<Option<KvrocksCluster>, Error> {
    let crs: Api<KvrocksCluster> = ctx.api_for(cached);
    crs.get_opt(&cached.name_any())
        .await
        .map_err(Error::kube(format!(
            "get kvrockscluster {}",
            cached.name_any()
        )))
}

/// Keeps what the next pass needs from this one's outcomes: the pods that refused kvrocks.conf
/// live.
fn remember(
    state: &State,
    key: &kvrocks_operator_core::WakeTarget,
    outcomes: &[act::Outcome],
    hash: &str,
) {
    for outcome in outcomes.iter().filter(|o| o.failed()) {
        if let plan::Action::SetConfigLive { pod, .. } = &outcome.action {
            tracing::info!(%pod, "kvrocks.conf not changeable live: the pod will be restarted");
            state.refuse_live(key, pod, hash);
        }
    }
}

/// Writes the status (when it changed), the metrics and the Events of a pass.
async fn publish(
    ctx: &Context,
    cr: &KvrocksCluster,
    inputs: &report::Inputs<'_>,
) -> Result<(), Error> {
    let status = report::status(inputs);
    let (ns, name) = (cr.namespace().unwrap_or_default(), cr.name_any());
    let metrics = &ctx.metrics;
    metrics.set_ready(CONTROLLER, &ns, &name, &status.conditions);
    let up: Vec<bool> = status
        .shards
        .iter()
        .map(|s| topo::master_of(s).is_some_and(|m| inputs.observed.reachable(&m.pod)))
        .collect();
    metrics.set_shard_masters(CONTROLLER, &ns, &name, &up);
    let assigned: usize = status
        .shards
        .iter()
        .map(|s| {
            topo::parse_slots(&s.slots)
                .iter()
                .map(|r| r.len())
                .sum::<usize>()
        })
        .sum();
    metrics.set_cluster_slots(&ns, &name, assigned as u32, status.migration.is_some());
    metrics.set_topology_version(&ns, &name, inputs.plan.version as i64);
    for note in &inputs.plan.notes {
        if let plan::Note::Failover {
            from, to, down_for, ..
        } = note
        {
            tracing::warn!(%from, %to, down_for = ?down_for, "failover");
            metrics.failover(CONTROLLER, &ns, &name);
        }
        if let plan::Note::SlotsMigrated(mv) = note {
            metrics.slots_migrated(&ns, &name, mv.slot_count() as u64);
        }
    }
    let crs: Api<KvrocksCluster> = ctx.api_for(cr);
    if patch_status_if_changed(&crs, cr, &status).await?.is_some() {
        let ready = conditions::find(&status.conditions, conditions::READY);
        tracing::info!(
            version = status.topology_version,
            ready = ready.map(|c| c.status.as_str()),
            reason = ready.map(|c| c.reason.as_str()),
            message = ready.map(|c| c.message.as_str()),
            migration = ?status.migration,
            rebalance = ?status.rebalance_target,
            "status written"
        );
    }
    for event in report::events(inputs.plan, inputs.outcomes) {
        ctx.publish(cr, event.type_, event.reason, event.action, event.text)
            .await;
    }
    Ok(())
}

/// Deletion: when a sentinel group watches the shards, wait until it no longer lists any of
/// this cluster's monitors (the sentinel controller removes them once the cluster is being
/// deleted), then drop the finalizer; the objects go with the garbage collector.
async fn finalize(cr: &KvrocksCluster, ctx: &Context) -> Result<Requeue, Error> {
    let (ns, name) = (cr.namespace().unwrap_or_default(), cr.name_any());
    if let Some(group) = &cr.spec.sentinel {
        let groups: Api<KvrocksSentinel> = ctx.api_for(cr);
        let found = groups
            .get_opt(&group.name)
            .await
            .map_err(Error::kube(format!(
                "get kvrockssentinel {ns}/{}",
                group.name
            )))?;
        let prefix = kvrocks_api::labels::names::cluster_monitor_prefix(&name);
        let monitored = found
            .as_ref()
            .and_then(|g| g.status.as_ref())
            .is_some_and(|s| s.monitors.iter().any(|m| m.name.starts_with(&prefix)));
        if monitored {
            tracing::info!("waiting for the sentinel group to drop the shard monitors");
            return Ok(Requeue::requeue(Duration::from_secs(2)));
        }
    }
    let crs: Api<KvrocksCluster> = ctx.api_for(cr);
    finalizers::remove(&crs, cr, MONITOR_FINALIZER).await?;
    ctx.metrics.forget_object(CONTROLLER, &ns, &name);
    Ok(Requeue::await_change())
}
