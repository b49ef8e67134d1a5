//! The KvrocksSentinel controller: a group of redis-sentinel pods that monitors the masters of
//! every KvrocksStandard (and every shard of every KvrocksCluster) that names it.
//!
//! A reconcile is `observe -> plan -> act -> report`:
//! - the group's objects are applied (ConfigMap `<cr>-config`, StatefulSet `<cr>`, headless
//!   Service `<cr>`, PodDisruptionBudget `<cr>`; see
//!   [`kvrocks_operator_core::builders::sentinel`]), written only when they changed;
//! - the owners that name the group, their passwords and the group's pods are read, and every
//!   sentinel is asked what it monitors ([`observe`]);
//! - [`plan::plan`] decides which `SENTINEL MONITOR / REMOVE / SET / RESET` go where (pure);
//! - [`act`] sends them;
//! - [`report`] writes the status (only when it changed) and Events.
//!
//! Alongside, one task per sentinel pod ([`state`]) subscribes to its `+switch-master`,
//! `+odown`, `-odown` and `+sdown` events and wakes the owning Standard or Cluster at once.
//!
//! Deletion: the finalizer [`SENTINEL_FINALIZER`] holds the group while any Standard or Cluster
//! still names it (`Ready=False`, reason `InUse`, a Warning Event naming them); the monitors
//! keep being maintained meanwhile. When none is left, a last pass removes the group's monitors
//! from the sentinels that answer, the finalizer goes and the garbage collector takes the pods.

#![warn(missing_docs)]

pub mod act;
pub mod auth;
pub mod desired;
pub mod model;
pub mod observe;
pub mod plan;
pub mod report;
pub mod state;
pub mod triggers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use kvrocks_api::labels::{COMPONENT, Component, SENTINEL_FINALIZER, selector};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksSentinelStatus, KvrocksStandard};
use kvrocks_operator_core::builders::sentinel as builders;
use kvrocks_operator_core::conditions::{self, ConditionStatus};
use kvrocks_operator_core::controller;
use kvrocks_operator_core::{
    Context, WakeBus, finalizers, get_and_apply_if_changed, patch_status_if_changed,
};
use tokio_util::sync::CancellationToken;

use crate::model::{Owner, Settings};
use crate::plan::PlanInput;
use crate::state::{GroupKey, Shared};

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "sentinel";
/// Requeue while something is in motion or wrong (and not watched: a Secret that appears).
const BUSY: Duration = Duration::from_secs(10);
/// Requeue of a steady group; watches and sentinel events wake it sooner.
const STEADY: Duration = Duration::from_secs(45);
/// Requeue while sentinels count gone peers: a reset sentinel rediscovers its peers from their
/// hello messages (every 2 s), after which the next one can be reset.
const RESET_SPACING: Duration = Duration::from_secs(3);

/// What can make a reconcile fail (the shared controller error).
pub use kvrocks_operator_core::ControllerError as Error;

/// Runs the KvrocksSentinel controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let shared = Arc::new(Shared::default());
    let client = ctx.client.clone();
    let wake = ctx.wake.clone();
    let reconcile = move |cr: Arc<KvrocksSentinel>, ctx: Arc<Context>| {
        let shared = shared.clone();
        async move { reconcile(cr, ctx, shared).await }
    };
    controller::run(
        ctx,
        CONTROLLER,
        move |c, api| configure(c, api, &client, &wake),
        reconcile,
        shutdown,
    )
    .await;
}

/// The watches of one per-namespace controller: its StatefulSets, the Standards and Clusters
/// that name a group (so a new, changed or deleted owner reconciles the group at once; see
/// [`triggers`]), and wake-ups from the group's own event tasks.
fn configure(
    c: Controller<KvrocksSentinel>,
    api: &Api<KvrocksSentinel>,
    client: &Client,
    wake: &WakeBus,
) -> Controller<KvrocksSentinel> {
    let namespace = api.namespace().map(str::to_owned);
    fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let only_ours =
        watcher::Config::default().labels(&format!("{COMPONENT}={}", Component::Sentinel.as_str()));
    let wakes = wake
        .stream::<KvrocksSentinel>(Component::Sentinel)
        .filter(move |r| {
            let keep = namespace.is_none() || r.namespace == namespace;
            async move { keep }
        });
    c.owns(scoped::<StatefulSet>(client, api.namespace()), only_ours)
        .reconcile_on(triggers::group_triggers(
            scoped::<KvrocksStandard>(client, api.namespace()),
            triggers::standard_signature,
        ))
        .reconcile_on(triggers::group_triggers(
            scoped::<KvrocksCluster>(client, api.namespace()),
            triggers::cluster_signature,
        ))
        .reconcile_on(wakes)
}

#[tracing::instrument(skip_all, fields(namespace = cr.namespace(), sentinel = %cr.name_any()))]
async fn reconcile(
    cr: Arc<KvrocksSentinel>,
    ctx: Arc<Context>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let name = cr.name_any();
    let namespace = cr
        .namespace()
        .ok_or_else(|| Error::NoNamespace(format!("KvrocksSentinel {name}")))?;
    let group = GroupKey {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let groups: Api<KvrocksSentinel> = Api::namespaced(ctx.client.clone(), &namespace);

    let (standards, clusters) = observe::owners(&ctx, &namespace).await?;
    let references = desired::references(&name, &standards, &clusters);
    let has_finalizer = finalizers::has(&*cr, SENTINEL_FINALIZER);

    let in_use_by = if cr.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        if references.is_empty() {
            release(&ctx, &cr, &group, &shared).await?;
            shared.forget_group(&group);
            finalizers::remove(&groups, &*cr, SENTINEL_FINALIZER).await?;
            ctx.metrics.forget_object(CONTROLLER, &namespace, &name);
            tracing::info!("no Standard or Cluster uses the group any more: deletion proceeds");
            return Ok(Action::await_change());
        }
        Some(references.as_slice())
    } else {
        if !has_finalizer {
            finalizers::add(&groups, &*cr, SENTINEL_FINALIZER).await?;
        }
        None
    };

    let previous = cr.status.clone().unwrap_or_default();
    let problems = cr.spec.validate();
    if !problems.is_empty() {
        return report_invalid(&ctx, &cr, &problems, in_use_by).await;
    }

    let named = cr.spec.auth.secret_name.as_deref();
    let Some(wanted) =
        controller::password_or_report(&ctx, CONTROLLER, &*cr, Component::Sentinel, named).await?
    else {
        return Ok(Action::requeue(BUSY));
    };
    let own = observe::group_passwords(&ctx, &cr, wanted).await?;
    apply_objects(&ctx, &cr).await?;

    // Observe.
    let pods = observe::sentinel_pods(&ctx, &group).await?;
    shared.sync_watchers(&ctx, &group, &observe::watched(&pods, &own.applied));
    let live_uids: BTreeSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
    shared.retain_pods(&group, &live_uids.iter().map(String::as_str).collect());
    let (observed, clients, pod_auth) =
        observe::ask_sentinels(&pods, cr.spec.replicas, &shared, &group, &own).await;
    let secrets = desired::needed_secrets(&name, &standards, &clusters);
    let passwords = observe::passwords(&ctx, &namespace, &secrets).await?;
    let (desired, pending) = desired::desired_monitors(&name, &standards, &clusters, &passwords);
    let serving = observed
        .iter()
        .filter(|p| p.pod_ready && !p.terminating && p.monitors().is_some())
        .count();
    let settings = Settings {
        quorum: plan::effective_quorum(cr.spec.replicas, serving),
        down_after_ms: u64::try_from(cr.spec.down_after_milliseconds).unwrap_or(5000),
        failover_timeout_ms: u64::try_from(cr.spec.failover_timeout_milliseconds).unwrap_or(10000),
        parallel_syncs: u32::try_from(cr.spec.parallel_syncs).unwrap_or(1),
    };
    let owner_ips = observe::owner_ips(
        &ctx,
        &namespace,
        &plan::owners_to_check(&desired, &observed),
    )
    .await?;

    // Plan and act.
    let plan = plan::plan(PlanInput {
        desired: &desired,
        pending: &pending,
        settings,
        pods: &observed,
        owner_ips: &owner_ips,
    });
    for note in &plan.notes {
        tracing::info!(note = %note, "plan");
    }
    let password = rotate_password(&ctx, &cr, &own, &pod_auth, &clients).await?;
    let outcomes = act::run(&plan, &clients, &observed, &desired, &shared, &group).await;
    for client in clients.values() {
        client.close().await;
    }

    // Report.
    let after: Vec<_> = observed
        .iter()
        .map(|p| {
            let done = outcomes.get(&p.name).map_or(0, |o| o.done);
            plan::pod_after(p, &plan, done, &desired)
        })
        .collect();
    let pod_selector = selector(&name, Component::Sentinel);
    let (status, steady) = report::status(&report::Inputs {
        replicas: cr.spec.replicas,
        generation: cr.metadata.generation,
        selector: &pod_selector,
        pods: &after,
        desired: &desired,
        pending: &pending,
        quorum: settings.quorum,
        plan: &plan,
        outcomes: &outcomes,
        previous: &previous,
        in_use_by,
        password: &password,
    });
    publish(&ctx, &cr, &groups, &status, &previous, in_use_by).await?;
    for note in report::notes(&plan, &outcomes) {
        ctx.publish(&*cr, note.type_, note.reason, note.action, note.text)
            .await;
    }
    let next = if !plan.stale.is_empty() {
        RESET_SPACING
    } else if steady {
        STEADY
    } else {
        BUSY
    };
    Ok(Action::requeue(next))
}

/// The group's own password, brought to what its Secret says on every sentinel that answers
/// ([`auth`]), and recorded as in effect once every sentinel takes it.
async fn rotate_password(
    ctx: &Context,
    cr: &KvrocksSentinel,
    passwords: &observe::GroupPasswords,
    pods: &std::collections::BTreeMap<String, auth::PodAuth>,
    clients: &std::collections::BTreeMap<String, kvrocks_client::SentinelClient>,
) -> Result<report::PasswordReport, Error> {
    let hashes = auth::Hashes::of(&passwords.applied, &passwords.wanted);
    let replicas = usize::try_from(cr.spec.replicas.max(0)).unwrap_or(0);
    let plan = auth::plan(&hashes, pods, replicas);
    for step in &plan.steps {
        tracing::info!(step = %auth::describe(step), "sentinel password");
    }
    let sent = auth::act(&plan, clients, &passwords.applied, &passwords.wanted).await;
    let recorded = sent.is_ok() && plan.record;
    if recorded {
        kvrocks_operator_core::auth::record_password(
            &ctx.client,
            cr,
            Component::Sentinel,
            &passwords.wanted,
        )
        .await?;
        ctx.publish(
            cr,
            kube::runtime::events::EventType::Normal,
            report::REASON_PASSWORD_ROTATED,
            "RotatePassword",
            "every sentinel of the group now requires the new password".to_owned(),
        )
        .await;
    }
    Ok(report::PasswordReport::new(&plan, sent.err(), recorded))
}

/// The group's ConfigMap, Service, PodDisruptionBudget and StatefulSet, applied when they changed.
async fn apply_objects(ctx: &Context, cr: &KvrocksSentinel) -> Result<(), Error> {
    get_and_apply_if_changed(&ctx.api_for::<ConfigMap, _>(cr), &builders::config_map(cr)?).await?;
    get_and_apply_if_changed(&ctx.api_for::<Service, _>(cr), &builders::service(cr)?).await?;
    get_and_apply_if_changed(
        &ctx.api_for::<PodDisruptionBudget, _>(cr),
        &builders::pdb(cr)?,
    )
    .await?;
    get_and_apply_if_changed(
        &ctx.api_for::<StatefulSet, _>(cr),
        &builders::statefulset(
            cr,
            &kvrocks_operator_core::auth::secret_name(
                &cr.name_any(),
                cr.spec.auth.secret_name.as_deref(),
            ),
        )?,
    )
    .await?;
    Ok(())
}

/// The pass's status, its metrics, and the `InUse` warning when a deletion waits on new owners.
async fn publish(
    ctx: &Context,
    cr: &KvrocksSentinel,
    groups: &Api<KvrocksSentinel>,
    status: &KvrocksSentinelStatus,
    previous: &KvrocksSentinelStatus,
    in_use_by: Option<&[Owner]>,
) -> Result<(), Error> {
    let (namespace, name) = (cr.namespace().unwrap_or_default(), cr.name_any());
    ctx.metrics
        .set_ready(CONTROLLER, &namespace, &name, &status.conditions);
    ctx.metrics.set_sentinel(
        &namespace,
        &name,
        status.ready_replicas.unwrap_or(0),
        status.quorum.unwrap_or(0),
    );
    let written = patch_status_if_changed(groups, cr, status).await?;
    if let Some(owners) = in_use_by
        && in_use_changed(previous, owners, written.is_some())
    {
        ctx.warning(
            cr,
            report::REASON_IN_USE,
            "Delete",
            report::in_use_message(owners),
        )
        .await;
    }
    Ok(())
}

/// The last pass of a group being deleted that nothing uses any more: every monitor of ours is
/// removed from the sentinels that answer (best effort: the pods go anyway, and an unreachable
/// sentinel must not hold up the deletion).
async fn release(
    ctx: &Context,
    cr: &KvrocksSentinel,
    group: &GroupKey,
    shared: &Shared,
) -> Result<(), Error> {
    let pods = observe::sentinel_pods(ctx, group).await?;
    let applied = kvrocks_operator_core::auth::applied_password(&ctx.client, cr)
        .await?
        .unwrap_or_else(|| kvrocks_client::Password::new(""));
    let passwords = observe::GroupPasswords {
        applied: applied.clone(),
        wanted: applied,
    };
    let (observed, clients, _) =
        observe::ask_sentinels(&pods, i32::MAX, shared, group, &passwords).await;
    let settings = Settings {
        quorum: plan::effective_quorum(cr.spec.replicas, 0),
        down_after_ms: 0,
        failover_timeout_ms: 0,
        parallel_syncs: 0,
    };
    let plan = plan::plan(PlanInput {
        desired: &[],
        pending: &[],
        settings,
        pods: &observed,
        owner_ips: &std::collections::BTreeMap::new(),
    });
    let outcomes = act::run(&plan, &clients, &observed, &[], shared, group).await;
    for client in clients.values() {
        client.close().await;
    }
    for note in report::notes(&plan, &outcomes) {
        ctx.publish(cr, note.type_, note.reason, note.action, note.text)
            .await;
    }
    Ok(())
}

/// Whether the in-use warning is news: the status was written and its Ready message changed.
fn in_use_changed(
    previous: &kvrocks_api::KvrocksSentinelStatus,
    owners: &[Owner],
    written: bool,
) -> bool {
    let message = report::in_use_message(owners);
    written
        && conditions::find(&previous.conditions, conditions::READY)
            .is_none_or(|c| c.reason != report::REASON_IN_USE || c.message != message)
}

/// An invalid spec (one CEL could not catch): say so, build nothing, touch no sentinel. A group
/// being deleted while in use says that first.
async fn report_invalid(
    ctx: &Context,
    cr: &KvrocksSentinel,
    problems: &[String],
    in_use_by: Option<&[Owner]>,
) -> Result<Action, Error> {
    let Some(owners) = in_use_by else {
        return Ok(controller::report_invalid(ctx, CONTROLLER, cr, problems).await?);
    };
    let generation = cr.metadata.generation;
    let [_, progressing] = controller::invalid_spec_conditions(problems, generation);
    let ready = conditions::ready(
        ConditionStatus::False,
        report::REASON_IN_USE,
        report::in_use_message(owners),
        generation,
    );
    controller::report_not_ready(ctx, CONTROLLER, cr, [ready, progressing]).await?;
    Ok(Action::requeue(STEADY))
}
