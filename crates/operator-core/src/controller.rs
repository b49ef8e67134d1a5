//! Running one controller: a kube-runtime `Controller` per watched namespace, with the shared
//! timing, success counting and error policy around the controller's own reconcile.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource};
use kvrocks_api::labels::{self, Component};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::apply::patch_status_if_changed;
use crate::conditions::{self, ConditionStatus};
use crate::context::Context;
use crate::error::{ReconcileError, Result};

/// Reason of the condition that says a spec failed checks CEL cannot express.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason of the condition a controller sets before its reconciler has landed.
pub const REASON_NOT_IMPLEMENTED: &str = "NotImplemented";

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
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
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
                if result.is_ok() {
                    ctx.reconcile_succeeded(name, obj.as_ref());
                }
                result
            }
        };
        let controller = Controller::new(api.clone(), watcher::Config::default().any_semantic());
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
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
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

/// The conditions of a resource whose controller has not landed yet: `InvalidSpec` when the
/// spec fails the Rust-side checks, otherwise an honest `NotImplemented`.
pub fn not_implemented_conditions(
    existing: &[Condition],
    problems: &[String],
    generation: Option<i64>,
) -> Vec<Condition> {
    let updates = if problems.is_empty() {
        let message = "the operator accepted this resource, but this controller's reconciler has \
                       not landed yet: nothing is created for it";
        vec![
            conditions::ready(
                ConditionStatus::False,
                REASON_NOT_IMPLEMENTED,
                message,
                generation,
            ),
            conditions::progressing(
                ConditionStatus::True,
                REASON_NOT_IMPLEMENTED,
                message,
                generation,
            ),
        ]
    } else {
        let message = format!("the spec is invalid: {}", problems.join("; "));
        vec![
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
    };
    conditions::merge(existing, updates)
}

/// Reconcile of a controller that has not landed yet: writes [`not_implemented_conditions`]
/// (only when they changed) and an Event for an invalid spec, then waits for the next change.
pub async fn report_not_implemented<K>(
    ctx: &Context,
    obj: &K,
    existing: &[Condition],
    problems: &[String],
) -> Result<Action>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + Clone
        + DeserializeOwned
        + Debug,
{
    let generation = obj.meta().generation;
    let status = json!({
        "observedGeneration": generation,
        "conditions": not_implemented_conditions(existing, problems, generation),
    });
    let api: Api<K> = ctx.api_for(obj);
    let written = patch_status_if_changed(&api, obj, &status).await?;
    if written.is_some() && !problems.is_empty() {
        ctx.warning(obj, REASON_INVALID_SPEC, "Validate", problems.join("; "))
            .await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_spec_is_honestly_not_implemented() {
        let conditions = not_implemented_conditions(&[], &[], Some(3));
        let ready = conditions::find(&conditions, conditions::READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", REASON_NOT_IMPLEMENTED)
        );
        assert_eq!(ready.observed_generation, Some(3));
        let progressing =
            conditions::find(&conditions, conditions::PROGRESSING).expect("progressing");
        assert_eq!(progressing.status, "True");
    }

    #[test]
    fn an_invalid_spec_says_why() {
        let problems = vec!["config key \"port\" is owned by the operator".to_string()];
        let conditions = not_implemented_conditions(&[], &problems, Some(1));
        let ready = conditions::find(&conditions, conditions::READY).expect("ready");
        assert_eq!(ready.reason, REASON_INVALID_SPEC);
        assert!(ready.message.contains("port"), "{}", ready.message);
    }

    #[test]
    fn an_unchanged_outcome_keeps_its_transition_time() {
        let first = not_implemented_conditions(&[], &[], Some(1));
        let second = not_implemented_conditions(&first, &[], Some(1));
        assert_eq!(first, second);
    }
}
