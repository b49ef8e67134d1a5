//! The KvrocksStandard controller: one kvrocks master and its replicas, failed over by a
//! KvrocksSentinel group; the operator follows sentinel and repairs everything else.
//!
//! A reconcile goes:
//! - deletion: wait until the sentinel group no longer monitors the instance, then drop the
//!   finalizer [`MONITOR_FINALIZER`] and forget the resource's [`state`];
//! - an invalid spec or a missing password Secret: say so in status and stop (the shared early
//!   exits of `kvrocks_operator_core::controller`);
//! - [`objects`]: kvrocks.conf (without keys the running kvrocks does not know), then, once the
//!   plan chose the StatefulSet's size, the StatefulSet, Services and PodDisruptionBudget; each
//!   written only when its live copy differs (a claim change the StatefulSet cannot take is
//!   refused with `SpecNotApplied` and stops nothing else; a larger `storage.size` grows the
//!   claims in place, see `kvrocks_operator_core::statefulset`);
//! - [`observe`] (reads only): the pods (a pod a switchover left fenced is read with the fence
//!   password), every pod's `INFO replication`, the sentinel group's view of the master (and how
//!   many of its sentinels answer) and the password in effect; [`state`] adds since when
//!   sentinel's choice has reported itself a replica;
//! - [`plan::plan`] (pure) decides the master and the actions, or why it waits (a
//!   [`model::Wait`]); the data it reads and writes is in [`model`];
//! - [`act`] runs the actions (password rotation, kvrocks.conf set live, `SLAVEOF`, priorities,
//!   role labels, fenced switchovers through sentinel, a forced failover during sentinel's
//!   lockout, fences lifted, pod restarts), one outcome per action;
//! - [`report`] (pure) makes the status, conditions and Events from all that; the status is
//!   written only when it changed, and every failed action counts in the error metric.
//!
//! Requeue: every [`STEADY`] when Ready and nothing is to do (watches and sentinel events wake
//! it sooner), every [`BUSY`] otherwise.

#![warn(missing_docs)]

pub mod act;
pub mod model;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod report;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use kvrocks_api::labels::{Component, MONITOR_FINALIZER, names};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_client::Password;
use kvrocks_operator_core::server::ConfigVerdict;
use kvrocks_operator_core::statefulset::SetApply;
use kvrocks_operator_core::{Context, controller, finalizers, patch_status_if_changed};
use tokio_util::sync::CancellationToken;

use crate::state::{Key, State};

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "standard";
/// Requeue while something is in motion.
pub const BUSY: Duration = Duration::from_secs(2);
/// Requeue of a steady instance (watches and sentinel events wake it sooner).
pub const STEADY: Duration = Duration::from_secs(30);
/// Requeue while the password Secret is missing (a Secret is not watched).
const NO_SECRET: Duration = Duration::from_secs(10);

/// What can make a reconcile fail (the shared controller error). A kvrocks or sentinel command
/// that fails is no reconcile error: it is an outcome, in the status and the error metric.
pub use kvrocks_operator_core::ControllerError as Error;

/// Runs the KvrocksStandard controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let state = Arc::new(State::default());
    let reconcile = move |cr: Arc<KvrocksStandard>, ctx: Arc<Context>| {
        let state = state.clone();
        async move { reconcile(cr, ctx, state).await }
    };
    controller::run_owning_statefulsets::<KvrocksStandard, _, _, _>(
        ctx,
        CONTROLLER,
        Component::Standard,
        reconcile,
        shutdown,
    )
    .await;
}

#[tracing::instrument(skip_all, fields(namespace = cr.namespace(), standard = %cr.name_any()))]
async fn reconcile(
    cr: Arc<KvrocksStandard>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<Requeue, Error> {
    let name = cr.name_any();
    let namespace = cr
        .namespace()
        .ok_or_else(|| Error::NoNamespace(format!("KvrocksStandard {name}")))?;
    let key = Key { namespace, name };
    if cr.metadata.deletion_timestamp.is_some() {
        return finalize(&cr, &ctx, &state, &key).await;
    }
    finalizers::add(
        &ctx.api_for::<KvrocksStandard, _>(&*cr),
        &*cr,
        MONITOR_FINALIZER,
    )
    .await?;
    let problems = cr.spec.validate();
    if !problems.is_empty() {
        return Ok(controller::report_invalid(&ctx, CONTROLLER, &*cr, &problems).await?);
    }
    let named = cr.spec.pod.auth.secret_name.as_deref();
    let Some(password) =
        controller::password_or_report(&ctx, CONTROLLER, &*cr, Component::Standard, named).await?
    else {
        return Ok(Requeue::requeue(NO_SECRET));
    };

    // kvrocks.conf, then observe.
    let pass = observe_pass(&ctx, &cr, &state, &key, &password).await?;
    let observed = &pass.observed;

    // Plan, the rest of the objects, act.
    let plan = plan::plan(observed, pass.now);
    if plan.overrides_stuck_sentinel {
        state.reset_stuck(&key);
    }
    if !plan.idle() {
        tracing::info!(master = ?plan.master, sentinel_master = ?observed.sentinel_master,
            wait = ?plan.wait, actions = ?plan.actions, "plan");
    }
    let replicas = match pass.live_set {
        None => observed.desired,
        Some(_) => plan.statefulset_replicas,
    };
    let set =
        objects::apply_workload(&ctx, &cr, replicas, &pass.hashes, pass.live_set.as_ref()).await?;
    let refused = match set {
        SetApply::Refused(why) => Some(why),
        SetApply::Applied(_) | SetApply::Replaced => None,
    };
    let outcomes = act_pass(&ctx, &cr, &pass, &password, &plan).await;
    remember_refusals(&state, &key, &outcomes, &pass.hashes.config);

    // Report.
    let report = report::report(&report::Inputs {
        name: &key.name,
        generation: cr.metadata.generation,
        sentinel_group: &cr.spec.sentinel.name,
        observed,
        verdict: &pass.verdict,
        plan: &plan,
        outcomes: &outcomes,
        previous: &cr.status.clone().unwrap_or_default(),
        refused: refused.as_deref(),
    });
    publish(&ctx, &cr, &report).await?;
    let steady = report.ready && plan.idle() && report.failures.is_empty();
    Ok(Requeue::requeue(if steady { STEADY } else { BUSY }))
}

/// What one pass saw, with kvrocks.conf applied first (what the running kvrocks knows decides
/// which keys it holds) and the live StatefulSet read once.
struct Pass {
    pods: Vec<Pod>,
    verdict: ConfigVerdict,
    hashes: objects::Hashes,
    live_set: Option<StatefulSet>,
    revision: Option<String>,
    applied: Option<Password>,
    observed: plan::Observed,
    now: Instant,
}

async fn observe_pass(
    ctx: &Context,
    cr: &KvrocksStandard,
    state: &State,
    key: &Key,
    password: &Password,
) -> Result<Pass, Error> {
    let pods = observe::pods(ctx, &key.namespace, &key.name).await?;
    let verdict = observe::config_verdict(cr, &pods, password).await;
    let mut hashes = objects::apply_config(ctx, cr, &verdict).await?;
    let live_set = objects::live_statefulset(ctx, cr).await?;
    objects::template_in_force(cr, live_set.as_ref(), &mut hashes);
    let (live_replicas, revision) = objects::live_facts(live_set.as_ref());
    let applied = observe::applied_password(ctx, cr).await?;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    state.retain_pods(key, &names.iter().map(String::as_str).collect());
    let refused = state.refused(key, &hashes.config);
    let now = Instant::now();
    let inputs = observe::Inputs {
        cr,
        ns: &key.namespace,
        password,
        applied: applied.as_ref(),
        revisions: observe::Revisions {
            template_hash: &hashes.template,
            config_hash: &hashes.config,
            refused: &refused,
        },
        statefulset_replicas: live_replicas,
    };
    let mut observed = observe::observe(ctx, &pods, &inputs).await;
    observed.sentinel_stuck_since = state.stuck(key, plan::sentinel_choice_stuck(&observed), now);
    Ok(Pass {
        pods,
        verdict,
        hashes,
        live_set,
        revision,
        applied,
        observed,
        now,
    })
}

/// Runs the plan's actions with what the pass saw.
async fn act_pass(
    ctx: &Context,
    cr: &KvrocksStandard,
    pass: &Pass,
    password: &Password,
    plan: &plan::Plan,
) -> Vec<act::Outcome> {
    let live_config = pass.verdict.supported(&cr.spec.pod.config);
    let env = act::Env {
        ctx,
        cr,
        pods: &pass.pods,
        password,
        applied: pass.applied.as_ref().unwrap_or(password),
        live_config: &live_config,
        config_hash: &pass.hashes.config,
        revision: pass.revision.as_deref(),
    };
    act::run(plan, &env).await
}

/// Pods that refused kvrocks.conf live are restarted from the next pass on.
fn remember_refusals(state: &State, key: &Key, outcomes: &[act::Outcome], config_hash: &str) {
    for outcome in outcomes {
        if let (plan::Action::ApplyConfig { pod }, act::Result::NeedsRestart(_)) =
            (&outcome.action, &outcome.result)
        {
            state.record_refused(key, pod, config_hash);
        }
    }
}

/// Publishes a report: metrics, the status (when it changed), Events.
async fn publish(
    ctx: &Context,
    cr: &KvrocksStandard,
    report: &report::Report,
) -> Result<(), Error> {
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    ctx.metrics
        .set_ready(CONTROLLER, &ns, &name, &report.status.conditions);
    ctx.metrics
        .set_shard_masters(CONTROLLER, &ns, &name, &[report.master_up]);
    for _ in 0..report.failovers {
        ctx.metrics.failover(CONTROLLER, &ns, &name);
    }
    for failure in &report.failures {
        ctx.metrics
            .reconcile_errors
            .with_label_values(&[CONTROLLER, failure.kind.label()])
            .inc();
    }
    patch_status_if_changed(&ctx.api_for::<KvrocksStandard, _>(cr), cr, &report.status).await?;
    for note in &report.notes {
        ctx.publish(cr, note.type_, &note.reason, note.action, note.text.clone())
            .await;
    }
    Ok(())
}

/// Deletion: wait until the sentinel group no longer monitors this instance (the sentinel
/// controller removes the monitor of a Standard being deleted), then drop the finalizer; the
/// owned objects go with the garbage collector, PVCs as `storage.deleteClaimsOnDelete` says.
async fn finalize(
    cr: &KvrocksStandard,
    ctx: &Context,
    state: &State,
    key: &Key,
) -> Result<Requeue, Error> {
    if !finalizers::has(cr, MONITOR_FINALIZER) {
        state.forget(key);
        return Ok(Requeue::await_change());
    }
    let ns = &key.namespace;
    let group_name = &cr.spec.sentinel.name;
    let monitor = names::standard_monitor(&key.name);
    let groups: Api<KvrocksSentinel> = Api::namespaced(ctx.client.clone(), ns);
    let group = groups
        .get_opt(group_name)
        .await
        .map_err(Error::kube(format!(
            "get kvrockssentinel {ns}/{group_name}"
        )))?;
    let still_monitored = group
        .as_ref()
        .and_then(|g| g.status.as_ref())
        .is_some_and(|s| s.monitors.iter().any(|m| m.name == monitor));
    let live = match &group {
        Some(_) => observe::sentinel_view(ctx, ns, group_name, &monitor)
            .await
            .master
            .is_some(),
        None => false,
    };
    if still_monitored || live {
        tracing::info!("waiting for the sentinel group to drop its monitor");
        return Ok(Requeue::requeue(BUSY));
    }
    finalizers::remove(
        &ctx.api_for::<KvrocksStandard, _>(cr),
        cr,
        MONITOR_FINALIZER,
    )
    .await?;
    state.forget(key);
    ctx.metrics.forget_object(CONTROLLER, ns, &key.name);
    Ok(Requeue::await_change())
}
