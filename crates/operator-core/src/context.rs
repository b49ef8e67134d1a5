//! What every controller shares, built once in `main` and passed around in an `Arc`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource};
use kvrocks_api::labels::MANAGER;

use crate::backoff::{Backoff, BackoffConfig, BackoffKey};
use crate::error::{ReconcileError, kind_of, object_name};
use crate::events::{self, EventType};
use crate::metrics::{Metrics, ReconcileMeasurer};

/// Which namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchNamespaces {
    /// Every namespace (a cluster-wide watch).
    All,
    /// Only these namespaces (one watch each); never empty.
    Only(BTreeSet<String>),
}

impl From<Option<Vec<String>>> for WatchNamespaces {
    /// `None` (or an empty list) means all namespaces.
    fn from(list: Option<Vec<String>>) -> Self {
        list.map_or(WatchNamespaces::All, WatchNamespaces::from_list)
    }
}

impl WatchNamespaces {
    /// The namespaces in `list`; an empty list (or only blank names) means all namespaces.
    pub fn from_list<I, S>(list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set: BTreeSet<String> = list
            .into_iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if set.is_empty() {
            WatchNamespaces::All
        } else {
            WatchNamespaces::Only(set)
        }
    }

    /// Whether objects in `namespace` are watched.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            WatchNamespaces::All => true,
            WatchNamespaces::Only(set) => set.contains(namespace),
        }
    }

    /// One `Api` per watch: `Api::all` for all namespaces, else one namespaced `Api` each.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            WatchNamespaces::All => vec![Api::all(client.clone())],
            WatchNamespaces::Only(set) => set
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

/// The shared state of all controllers: client, event recorder, metrics, watched namespaces
/// and per-object error backoff.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes Events as controller [`MANAGER`]; one recorder for all objects, so kube's
    /// deduplication of repeated events works across reconciles.
    pub recorder: Recorder,
    /// The operator's metrics, shared with the `/metrics` endpoint.
    pub metrics: Arc<Metrics>,
    /// The namespaces the operator watches.
    pub namespaces: WatchNamespaces,
    /// Requeue delays of failing objects.
    pub backoff: Backoff,
    /// Cross-controller wake-ups (sentinel events wake Standards and Clusters).
    pub wake: crate::wake::WakeBus,
}

impl Context {
    /// A context with the default backoff, publishing Events as controller [`MANAGER`].
    ///
    /// `namespaces` is a [`WatchNamespaces`] or an `Option<Vec<String>>` (`None`: all). Events
    /// name no reporting instance until [`with_instance`](Self::with_instance) sets one.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        namespaces: impl Into<WatchNamespaces>,
    ) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter(None)),
            client,
            metrics,
            namespaces: namespaces.into(),
            backoff: Backoff::new(BackoffConfig::default()),
            wake: crate::wake::WakeBus::new(),
        }
    }

    /// The same context naming this operator process (usually its pod name) as the
    /// `reportingInstance` of its Events, so events of different replicas can be told apart.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.recorder = Recorder::new(self.client.clone(), reporter(Some(instance.into())));
        self
    }

    /// The same context with another backoff configuration.
    pub fn with_backoff(mut self, config: BackoffConfig) -> Self {
        self.backoff = Backoff::new(config);
        self
    }

    /// An `Api` for `K` in `namespace`, or across all namespaces when `None`.
    pub fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// An `Api` for `K` in the namespace of `obj` (all namespaces if it has none).
    pub fn api_for<K, O>(&self, obj: &O) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
        O: Resource,
    {
        self.api(obj.meta().namespace.as_deref())
    }

    /// The `Api`s a controller of `K` watches; see [`WatchNamespaces::apis`].
    pub fn watched_apis<K>(&self) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        self.namespaces.apis(&self.client)
    }

    /// Starts timing a reconcile; see [`Metrics::measure_reconcile`].
    pub fn measure_reconcile(&self, controller: &str) -> ReconcileMeasurer {
        self.metrics.measure_reconcile(controller)
    }

    /// Publishes a `Normal` event about `obj` (best effort); see [`events::normal`].
    pub async fn event<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource,
        K::DynamicType: Default,
    {
        events::normal(&self.recorder, obj, reason, action, note).await;
    }

    /// Publishes a `Warning` event about `obj` (best effort); see [`events::warning`].
    pub async fn warning<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource,
        K::DynamicType: Default,
    {
        events::warning(&self.recorder, obj, reason, action, note).await;
    }

    /// Publishes an event of `type_` about `obj` (best effort).
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) where
        K: Resource,
        K::DynamicType: Default,
    {
        match type_ {
            EventType::Normal => self.event(obj, reason, action, note).await,
            EventType::Warning => self.warning(obj, reason, action, note).await,
        }
    }

    /// Call when a reconcile of `obj` by `controller` returned `Ok`: counts the success and
    /// resets the object's backoff.
    pub fn reconcile_succeeded<K>(&self, controller: &str, obj: &K)
    where
        K: Resource,
        K::DynamicType: Default,
    {
        self.metrics.reconcile_succeeded(controller);
        self.backoff.reset(&BackoffKey::new(controller, obj));
    }

    /// The body of a kube-runtime `error_policy`: logs the error with the object's name, counts
    /// it under its [`ReconcileError::metric_label`], and requeues after the object's next
    /// backoff delay (growing per consecutive failure, capped; reset by
    /// [`reconcile_succeeded`](Self::reconcile_succeeded)).
    pub fn error_policy<K, E>(&self, controller: &str, obj: &K, error: &E) -> Action
    where
        K: Resource,
        K::DynamicType: Default,
        E: ReconcileError,
    {
        let key = BackoffKey::new(controller, obj);
        let delay = self.backoff.next_delay(&key);
        let reason = error.metric_label();
        self.metrics.reconcile_failed(controller, reason);
        tracing::warn!(
            controller,
            kind = %kind_of::<K>(),
            object = %object_name(obj),
            reason,
            failures = self.backoff.failures(&key),
            retry_in_ms = duration_ms(delay),
            %error,
            "reconcile failed"
        );
        Action::requeue(delay)
    }
}

fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: MANAGER.to_string(),
        instance,
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::testing::mock_client;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    fn context(client: Client) -> Context {
        Context::new(
            client,
            Arc::new(Metrics::new().unwrap()),
            WatchNamespaces::All,
        )
        .with_backoff(BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        })
    }

    #[tokio::test]
    async fn namespaces_select_the_apis() {
        let (client, _server) = mock_client();
        assert_eq!(
            WatchNamespaces::from_list(Vec::<String>::new()),
            WatchNamespaces::All
        );
        assert_eq!(WatchNamespaces::from_list([" ", ""]), WatchNamespaces::All);
        assert_eq!(WatchNamespaces::from(None), WatchNamespaces::All);
        assert_eq!(
            WatchNamespaces::from(Some(vec!["a".to_string()])),
            WatchNamespaces::Only(["a".to_string()].into())
        );
        let only = WatchNamespaces::from_list(["b", "a", "a"]);
        assert!(only.contains("a") && !only.contains("c"));
        assert!(WatchNamespaces::All.contains("anything"));

        let apis = only.apis::<Service>(&client);
        let urls: Vec<_> = apis.iter().map(|a| a.resource_url().to_string()).collect();
        assert_eq!(
            urls,
            [
                "/api/v1/namespaces/a/services",
                "/api/v1/namespaces/b/services"
            ]
        );
        let all = WatchNamespaces::All.apis::<Service>(&client);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].resource_url(), "/api/v1/services");

        let ctx = context(client);
        assert_eq!(
            ctx.api::<Service>(Some("x")).resource_url(),
            "/api/v1/namespaces/x/services"
        );
        assert_eq!(ctx.api::<Service>(None).resource_url(), "/api/v1/services");
        let owner: Service =
            serde_json::from_value(json!({"metadata": {"name": "o", "namespace": "y"}})).unwrap();
        assert_eq!(
            ctx.api_for::<Service, _>(&owner).resource_url(),
            "/api/v1/namespaces/y/services"
        );
        assert_eq!(ctx.watched_apis::<Service>().len(), 1);
    }

    #[tokio::test]
    async fn events_name_the_reporting_instance() {
        let (client, mut server) = mock_client();
        let ctx = context(client).with_instance("kvrocks-operator-7d9f-abcde");
        let verifier = tokio::spawn(async move {
            let req = server.next().await;
            assert_eq!(req.body["reportingController"], "kvrocks-operator");
            assert_eq!(req.body["reportingInstance"], "kvrocks-operator-7d9f-abcde");
            assert_eq!(req.body["type"], "Warning");
            assert_eq!(req.body["reason"], "InvalidSpec");
            let body = req.body.clone();
            req.respond(&body);
        });
        let obj: Service =
            serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "ns"}})).unwrap();
        ctx.publish(
            &obj,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            "replicas must be odd",
        )
        .await;
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn error_policy_backs_off_counts_and_resets() {
        let (client, _server) = mock_client();
        let ctx = context(client);
        let obj: Service =
            serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "ns"}})).unwrap();
        let err = Error::MissingUid {
            kind: "Service".into(),
            object: "ns/db".into(),
        };
        let delays: Vec<_> = (0..3)
            .map(|_| ctx.error_policy("standard", &obj, &err))
            .collect();
        assert_eq!(
            delays,
            [
                Action::requeue(Duration::from_secs(2)),
                Action::requeue(Duration::from_secs(4)),
                Action::requeue(Duration::from_secs(8)),
            ]
        );
        ctx.reconcile_succeeded("standard", &obj);
        assert_eq!(
            ctx.error_policy("standard", &obj, &err),
            Action::requeue(Duration::from_secs(2))
        );

        let text = ctx.metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"kvrocks_operator_reconcile_total{controller="standard",result="error"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kvrocks_operator_reconcile_total{controller="standard",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kvrocks_operator_reconcile_errors_total{controller="standard",reason="missing_uid"} 4"#),
            "{text}"
        );
    }
}
