//! Running one controller: a kube-runtime `Controller` per watched namespace, with the shared
//! timing, success counting and error policy around the controller's own reconcile.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::object::HasStatus;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource};
use kvrocks_api::CommonStatus;
use kvrocks_api::labels::{self, Component};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::apply::patch_status_if_changed;
use crate::conditions::{self, ConditionStatus};
use crate::context::Context;
use crate::error::{ReconcileError, Result};

/// Reconciles one controller runs at once (per watched namespace): enough to keep up with many
/// resources, few enough that a storm (hundreds of resources not Ready at once) does not hold a
/// connection to every data pod at the same time and blow up the operator's memory.
pub const CONCURRENT_RECONCILES: u16 = 16;

/// Reason of the condition that says a spec failed checks CEL cannot express.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason of the condition a controller sets before its reconciler has landed.
pub const REASON_NOT_IMPLEMENTED: &str = "NotImplemented";

/// A kvrocks custom resource as the shared controller code runs it: namespaced, with a status
/// that has conditions.
pub trait Kvrocks:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + HasStatus<Status: CommonStatus + Send + Sync>
    + Serialize
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Kvrocks for T where
    T: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus<Status: CommonStatus + Send + Sync>
        + Serialize
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Runs the controller `name` for `K` in every watched namespace until `shutdown`.
///
/// `configure` adds the controller's own watches (`owns`, `watches`, `reconcile_on`) to each
/// per-namespace `Controller`; `reconcile` is the controller's pipeline. Around it this times
/// every reconcile, counts successes (resetting the object's backoff) and applies the shared
/// error policy.
pub async fn run<K, F, Fut, E, C>(
    ctx: Arc<Context>,
    name: &'static str,
    configure: C,
    reconcile: F,
    shutdown: CancellationToken,
) where
    K: Kvrocks,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
    E: ReconcileError + Send + Sync + 'static,
    C: Fn(Controller<K>, &Api<K>) -> Controller<K>,
{
    let runs = ctx.watched_apis::<K>().into_iter().map(|api| {
        let reconcile = reconcile.clone();
        let wrapped = move |obj: Arc<K>, ctx: Arc<Context>| {
            let reconcile = reconcile.clone();
            async move {
                let _timer = ctx.measure_reconcile(name);
                let result = reconcile(obj.clone(), ctx.clone()).await;
                match &result {
                    Ok(_) => ctx.reconcile_succeeded(name, obj.as_ref()),
                    Err(e) => report_refused_apply(&ctx, name, obj.as_ref(), e).await,
                }
                result
            }
        };
        let controller = Controller::new(api.clone(), watcher::Config::default().any_semantic())
            .with_config(
                kube::runtime::controller::Config::default().concurrency(CONCURRENT_RECONCILES),
            );
        configure(controller, &api)
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(
                wrapped,
                move |obj: Arc<K>, error: &E, ctx: Arc<Context>| {
                    ctx.error_policy(name, obj.as_ref(), error)
                },
                ctx.clone(),
            )
            .for_each(move |result| async move {
                if let Err(error) = result {
                    tracing::debug!(controller = name, %error, "controller stream");
                }
            })
    });
    tracing::info!(controller = name, "controller started");
    futures::future::join_all(runs).await;
    tracing::info!(controller = name, "controller stopped");
}

/// Runs the controller `name` of a kvrocks custom resource `K` whose pods come from StatefulSets
/// it owns (Standard, Cluster): besides `K`, each per-namespace controller watches those
/// StatefulSets (only the ones labelled with `component`) and reconciles an object as soon as the
/// [`crate::WakeBus`] names it (a sentinel event about it).
pub async fn run_owning_statefulsets<K, F, Fut, E>(
    ctx: Arc<Context>,
    name: &'static str,
    component: Component,
    reconcile: F,
    shutdown: CancellationToken,
) where
    K: Kvrocks,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
    E: ReconcileError + Send + Sync + 'static,
{
    let wake = ctx.wake.clone();
    let client = ctx.client.clone();
    run(
        ctx,
        name,
        move |c: Controller<K>, api: &Api<K>| {
            let sets: Api<StatefulSet> = match api.namespace() {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let only_ours = watcher::Config::default().labels(&format!(
                "{}={}",
                labels::COMPONENT,
                component.as_str()
            ));
            c.owns(sets, only_ours)
                .reconcile_on(wake.stream::<K>(component))
        },
        reconcile,
        shutdown,
    )
    .await;
}

/// Reason of Ready=False while the apiserver refuses an object the operator applies.
pub const REASON_APPLY_REFUSED: &str = "ApplyRefused";

/// A reconcile that failed because the apiserver refused an object it applied says so in
/// `Ready=False` ([`REASON_APPLY_REFUSED`]) with the apiserver's message, besides the log and the
/// error metric: a user reading the resource sees why nothing progresses. Best effort.
async fn report_refused_apply<K, E>(ctx: &Context, controller: &str, cr: &K, error: &E)
where
    K: Kvrocks,
    E: ReconcileError,
{
    let Some(message) = error.refused_apply() else {
        return;
    };
    let ready = conditions::ready(
        ConditionStatus::False,
        REASON_APPLY_REFUSED,
        message,
        cr.meta().generation,
    );
    if let Err(e) = report_not_ready(ctx, controller, cr, [ready]).await {
        tracing::debug!(controller, error = %e, "could not report a refused apply");
    }
}

/// An early exit of a reconcile (a missing Secret, an invalid spec): `updates` (Ready=False,
/// ...) merged into the conditions of the status the resource has, everything else kept, the
/// Ready gauge set and the status written when it changed. True when it was written.
pub async fn report_not_ready<K>(
    ctx: &Context,
    controller: &str,
    cr: &K,
    updates: impl IntoIterator<Item = Condition>,
) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus
        + Serialize
        + Clone
        + DeserializeOwned
        + Debug,
    K::Status: CommonStatus,
{
    let old = cr.status().cloned().unwrap_or_default();
    let status = old.with_conditions(
        conditions::merge(old.conditions(), updates),
        cr.meta().generation,
    );
    let namespace = cr.meta().namespace.as_deref().unwrap_or_default();
    let name = cr.meta().name.as_deref().unwrap_or_default();
    ctx.metrics
        .set_ready(controller, namespace, name, status.conditions());
    let api: Api<K> = ctx.api_for(cr);
    Ok(patch_status_if_changed(&api, cr, &status).await?.is_some())
}

/// Reason of the Ready condition while the password Secret is missing or unusable.
pub const REASON_AUTH_SECRET_UNUSABLE: &str = "AuthSecretUnusable";

/// The data pods' password from the instance's Secret (see [`crate::auth::ensure_password`]);
/// None, with Ready=False ([`REASON_AUTH_SECRET_UNUSABLE`]) reported, when the named Secret is
/// missing or unusable.
pub async fn password_or_report<K>(
    ctx: &Context,
    controller: &str,
    cr: &K,
    component: Component,
    named: Option<&str>,
) -> Result<Option<kvrocks_client::Password>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus
        + Serialize
        + Clone
        + DeserializeOwned
        + Debug,
    K::Status: CommonStatus,
{
    match crate::auth::ensure_password(&ctx.client, cr, component, named).await? {
        Ok(password) => Ok(Some(kvrocks_client::Password::new(password))),
        Err(message) => {
            let ready = conditions::ready(
                ConditionStatus::False,
                REASON_AUTH_SECRET_UNUSABLE,
                message,
                cr.meta().generation,
            );
            report_not_ready(ctx, controller, cr, [ready]).await?;
            Ok(None)
        }
    }
}

/// The conditions of a spec that fails checks CEL cannot express: Ready and Progressing False
/// with reason [`REASON_INVALID_SPEC`], the problems in the message.
pub fn invalid_spec_conditions(problems: &[String], generation: Option<i64>) -> [Condition; 2] {
    let message = format!("the spec is invalid: {}", problems.join("; "));
    [
        conditions::ready(
            ConditionStatus::False,
            REASON_INVALID_SPEC,
            message.clone(),
            generation,
        ),
        conditions::progressing(
            ConditionStatus::False,
            REASON_INVALID_SPEC,
            message,
            generation,
        ),
    ]
}

/// The exit of a reconcile whose spec is invalid: say so in status, and in a Warning Event when
/// the status changed (not on every pass); build nothing, touch no pod. Waits for a change.
pub async fn report_invalid<K>(
    ctx: &Context,
    controller: &str,
    cr: &K,
    problems: &[String],
) -> Result<Action>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + HasStatus
        + Serialize
        + Clone
        + DeserializeOwned
        + Debug,
    K::Status: CommonStatus,
{
    let updates = invalid_spec_conditions(problems, cr.meta().generation);
    if report_not_ready(ctx, controller, cr, updates).await? {
        ctx.warning(cr, REASON_INVALID_SPEC, "Validate", problems.join("; "))
            .await;
    }
    Ok(Action::await_change())
}
