//! The KvrocksStandard controller: one kvrocks master and its replicas, failed over by a
//! KvrocksSentinel group; the operator follows sentinel and repairs everything else.
//!
//! `reconcile` is `observe -> plan -> act -> report`: the objects are applied (Secret, ConfigMap,
//! StatefulSet, Services, PDB), every pod's `INFO replication` and the sentinel group's view of
//! the master are read, [`plan::plan`] decides, the actions run, and the status says what is.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use kvrocks_api::labels::{
    self, Component, MONITOR_FINALIZER, PASSWORD_KEY, ROLE, SENTINEL, names,
};
use kvrocks_api::standard::{KvrocksStandardStatus, MasterStatus, ReplicaStatus};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, SentinelClient, Timeouts};
use kvrocks_operator_core::builders::{self, kvrocks as kb};
use kvrocks_operator_core::conditions::{self, ConditionStatus};
use kvrocks_operator_core::controller::{self, REASON_INVALID_SPEC};
use kvrocks_operator_core::server;
use kvrocks_operator_core::{Context, OwnedObjects, patch_status_if_changed};
use tokio_util::sync::CancellationToken;

use crate::plan::{Action, NodeView, Observed, PodView};

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "standard";
/// Requeue while something is in motion.
const BUSY: Duration = Duration::from_secs(2);
/// Requeue of a steady instance (sentinel events wake it sooner).
const STEADY: Duration = Duration::from_secs(15);

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shared helper failed.
    #[error(transparent)]
    Core(#[from] kvrocks_operator_core::Error),
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        source: Box<kube::Error>,
    },
    /// A command to kvrocks or sentinel failed.
    #[error("{0}")]
    Kvrocks(String),
}

impl kvrocks_operator_core::ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Core(e) => e.metric_label(),
            Error::Kube { .. } => "kube",
            Error::Kvrocks(_) => "kvrocks",
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |e| Error::Kube {
        action,
        source: Box::new(e),
    }
}

/// Runs the KvrocksStandard controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    controller::run_owning_statefulsets::<KvrocksStandard, _, _, _>(
        ctx,
        CONTROLLER,
        Component::Standard,
        reconcile,
        shutdown,
    )
    .await;
}

async fn reconcile(cr: Arc<KvrocksStandard>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    let crs: Api<KvrocksStandard> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = cr.metadata.generation;
    let old_status = cr.status.clone().unwrap_or_default();

    if cr.metadata.deletion_timestamp.is_some() {
        return finalize(&cr, &ctx, &crs).await;
    }
    kvrocks_operator_core::finalizers::add(&crs, cr.as_ref(), MONITOR_FINALIZER).await?;

    let problems = cr.spec.validate();
    if !problems.is_empty() {
        let message = format!("the spec is invalid: {}", problems.join("; "));
        ctx.warning(
            cr.as_ref(),
            REASON_INVALID_SPEC,
            "Validate",
            message.clone(),
        )
        .await;
        let updates = [
            conditions::ready(
                ConditionStatus::False,
                REASON_INVALID_SPEC,
                &message,
                generation,
            ),
            conditions::progressing(
                ConditionStatus::False,
                REASON_INVALID_SPEC,
                &message,
                generation,
            ),
        ];
        report_not_ready(&ctx, &crs, &cr, &old_status, updates).await?;
        return Ok(Requeue::await_change());
    }

    // Objects.
    let password = match ensure_password(&cr, &ctx, &ns).await? {
        Ok(p) => p,
        Err(message) => {
            let ready = conditions::ready(
                ConditionStatus::False,
                "AuthSecretMissing",
                &message,
                generation,
            );
            report_not_ready(&ctx, &crs, &cr, &old_status, [ready]).await?;
            return Ok(Requeue::requeue(Duration::from_secs(10)));
        }
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut pods = pods_api
        .list(&ListParams::default().labels(&labels::selector(&name, Component::Standard)))
        .await
        .map_err(kube_err(format!("list pods of {ns}/{name}")))?
        .items;
    pods.retain(|p| ordinal(&p.name_any(), &name).is_some());
    pods.sort_by_key(|p| ordinal(&p.name_any(), &name));
    // What the running kvrocks knows decides which spec.config keys are rendered and set live.
    let verdict = server::judge(
        &pods,
        labels::KVROCKS_PORT as u16,
        &password,
        &cr.spec.pod.config,
        &old_status.unsupported_config,
        old_status.kvrocks_version.as_deref(),
    )
    .await;
    let conf = kb::render_config(&cr.spec.pod, false, &verdict.unsupported);
    let config_hash = kb::text_hash(&conf);
    let mut owned = OwnedObjects::new(cr.as_ref(), Component::Standard)?;
    let selector = labels::common_labels(&name, Component::Standard);
    let config_name = format!("{name}-config");
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = kb::config_map(
        builders::owned_meta(cr.as_ref(), &config_name, selector.clone())?,
        conf,
    );
    owned.apply(&cms, &cm, None).await?;

    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let live_set = sets
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("get statefulset {ns}/{name}")))?;
    let live_replicas = live_set
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .map(|r| r.max(0) as u32);

    // The desired StatefulSet; its size is decided by the plan below.
    let mut pod_labels = builders::pod_labels(&selector, &cr.spec.pod.pod_metadata);
    pod_labels.insert(SENTINEL.to_owned(), cr.spec.sentinel.name.clone());
    let build =
        |replicas: u32, annotations: BTreeMap<String, String>| -> Result<StatefulSet, Error> {
            Ok(kb::statefulset(&kb::KvrocksSet {
                meta: builders::owned_meta(cr.as_ref(), &name, selector.clone())?,
                pod_labels: pod_labels.clone(),
                selector: selector.clone(),
                pod_annotations: annotations,
                service_name: name.clone(),
                replicas: replicas as i32,
                spec: &cr.spec.pod,
                config_map: config_name.clone(),
                secret: secret_name(&cr),
                cluster: false,
            }))
        };
    // Two hashes on the pod template: of kvrocks.conf (a change kvrocks may take live), and of
    // the rest of the template (a change that needs a restart).
    let user_annotations = cr.spec.pod.pod_metadata.pod_annotations.clone();
    let template_hash = {
        let bare = build(0, user_annotations.clone())?;
        let template = bare.spec.map(|s| s.template);
        kb::text_hash(&serde_json::to_string(&template).unwrap_or_default())
    };
    let mut annotations = user_annotations;
    annotations.insert(kb::CONFIG_HASH_ANNOTATION.to_owned(), config_hash.clone());
    annotations.insert(
        kb::TEMPLATE_HASH_ANNOTATION.to_owned(),
        template_hash.clone(),
    );
    let update_revision = live_set
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());

    // Observe.
    // Password rotation: the password in effect is kept in the operator's own Secret
    // `<cr>-auth-applied`; a new one in the user's Secret is rolled out as masterauth on every
    // pod, then requirepass, then sentinel auth-pass, so replication never breaks.
    let applied = applied_password(&cr, &ctx, &ns, &password).await?;
    if applied.expose() != password.expose() {
        let done = rotate_password(&pods, &applied, &password).await;
        if done {
            set_sentinel_auth_pass(&ctx, &ns, &cr, &password).await;
            store_applied_password(&cr, &ctx, &ns, &password).await?;
            ctx.event(
                cr.as_ref(),
                "PasswordRotated",
                "Rotate",
                "the new password from the Secret is in effect on every pod and sentinel",
            )
            .await;
        } else {
            tracing::info!(standard = %name, namespace = %ns, "password rotation not complete yet");
        }
    }
    let mut views = observe_pods(&pods, &name, &password, &applied).await;
    if let Some((reason, message)) = verdict.condition().filter(|_| verdict.changed) {
        ctx.warning(cr.as_ref(), &reason, "Configure", message)
            .await;
    }
    let live_config = verdict.supported(&cr.spec.pod.config);
    for (view, pod) in views.iter_mut().zip(&pods) {
        let annotations = pod.annotations();
        if annotations.get(kb::TEMPLATE_HASH_ANNOTATION) != Some(&template_hash) {
            view.outdated = true;
        } else if annotations.get(kb::CONFIG_HASH_ANNOTATION) != Some(&config_hash)
            && view.node.is_some()
        {
            // Only kvrocks.conf changed: set it live; a key kvrocks refuses to change live, or
            // a removed key, means a restart.
            let live = apply_config_live(view, &live_config, &password).await;
            if live {
                mark_current(&pods_api, pod, &config_hash, update_revision.as_deref()).await?;
                ctx.event(
                    cr.as_ref(),
                    "ConfigApplied",
                    "Configure",
                    format!("kvrocks.conf applied live on {}", view.name),
                )
                .await;
            } else {
                view.outdated = true;
            }
        }
    }
    let monitor = names::standard_monitor(&name);
    let sentinel = sentinel_view(&ctx, &ns, &cr.spec.sentinel.name, &monitor).await;
    let observed = Observed {
        desired: cr.spec.replicas.max(1) as u32,
        statefulset_replicas: live_replicas,
        pods: views.clone(),
        monitored: sentinel.master.is_some(),
        sentinel_master: sentinel.master,
        sentinel_failing_over: sentinel.failing_over,
        sentinel_master_down: sentinel.master_down,
        status_master: old_status.master.as_ref().map(|m| m.pod.clone()),
        priority: cr
            .spec
            .pod
            .config
            .get("slave-priority")
            .cloned()
            .unwrap_or_else(|| "100".to_owned()),
        sentinel_stuck: false,
    };
    let mut observed = observed;
    observed.sentinel_stuck = sentinel_stuck(&cr, &observed);
    let plan = plan::plan(&observed);
    if !plan.steady() {
        tracing::info!(standard = %name, namespace = %ns, master = ?plan.master,
            sentinel_master = ?observed.sentinel_master, waiting = ?plan.waiting,
            actions = ?plan.actions, "plan");
    }

    let replicas = if live_set.is_none() {
        observed.desired
    } else {
        plan.statefulset_replicas
    };
    let set = build(replicas, annotations)?;
    owned.apply(&sets, &set, live_set.as_ref()).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let headless = kb::service(
        builders::owned_meta(cr.as_ref(), &name, selector.clone())?,
        selector.clone(),
        true,
    );
    owned.apply(&services, &headless, None).await?;
    let mut master_selector = selector.clone();
    master_selector.insert(ROLE.to_owned(), labels::ROLE_MASTER.to_owned());
    let master_service = kb::service(
        builders::owned_meta(cr.as_ref(), &names::master_service(&name), selector.clone())?,
        master_selector,
        false,
    );
    owned.apply(&services, &master_service, None).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let pdb = builders::pdb(
        builders::owned_meta(cr.as_ref(), &name, selector.clone())?,
        &selector,
        1,
    );
    owned.apply(&pdbs, &pdb, None).await?;

    // Act.
    let mut switched = false;
    for action in &plan.actions {
        let result = act(action, &pods, &pods_api, &password, &ctx, &ns, &cr).await;
        match result {
            Ok(()) => {
                if matches!(action, Action::Switchover { .. }) {
                    switched = true;
                }
            }
            Err(e) => {
                tracing::warn!(standard = %name, namespace = %ns, ?action, error = %e, "action failed")
            }
        }
    }
    if plan.operator_promotes
        && let Some(master) = &plan.master
    {
        ctx.event(
            cr.as_ref(),
            "MasterPromoted",
            "Promote",
            format!(
                "{master} promoted to master (the pod with the most data; no master was running)"
            ),
        )
        .await;
    }
    if switched {
        ctx.event(
            cr.as_ref(),
            "Switchover",
            "Switchover",
            "planned switchover through sentinel before scaling in",
        )
        .await;
        ctx.metrics.failover("standard", &ns, &name);
    }

    // Report.
    let master = plan
        .master
        .as_ref()
        .and_then(|m| views.iter().find(|p| &p.name == m));
    if let (Some(new), Some(old)) = (master, old_status.master.as_ref())
        && new.name != old.pod
    {
        ctx.warning(
            cr.as_ref(),
            "Failover",
            "Failover",
            format!("the master moved from {} to {}", old.pod, new.name),
        )
        .await;
        ctx.metrics.failover("standard", &ns, &name);
    }
    let master_status = master
        .map(|m| MasterStatus {
            pod: m.name.clone(),
            ip: m.ip.clone().unwrap_or_default(),
        })
        .or(old_status
            .master
            .clone()
            .filter(|_| master.is_none() && plan.master.is_none()));
    let master_offset = master.and_then(|m| m.node.as_ref()).map_or(0, |n| n.offset);
    let replicas: Vec<ReplicaStatus> = views
        .iter()
        .filter(|p| Some(&p.name) != plan.master.as_ref())
        .map(|p| ReplicaStatus {
            pod: p.name.clone(),
            ip: p.ip.clone().unwrap_or_default(),
            link_up: plan.synced.get(&p.name).copied().unwrap_or(false),
            lag_bytes: p
                .node
                .as_ref()
                .map_or(0, |n| master_offset.saturating_sub(n.offset).max(0)),
        })
        .collect();
    let desired = observed.desired as usize;
    let synced = plan.synced.values().filter(|s| **s).count();
    let all_there = views.len() == desired && synced + 1 == desired && master.is_some();
    let (ready, reason, message) = if plan.waiting.is_some() {
        let (reason, message) = plan.waiting.clone().unwrap_or_default();
        (false, reason, message)
    } else if let Some(pod) = master
        .filter(|_| all_there && plan.steady())
        .and_then(|m| observed.pods.iter().find(|p| p.name == m.name))
        .filter(|p| !p.ready)
    {
        (
            false,
            "MasterPodNotReady".to_owned(),
            format!(
                "master {} answers, but its pod is not Ready yet, so the master Service does not route to it",
                pod.name
            ),
        )
    } else if all_there && plan.steady() && !observed.monitored {
        (
            false,
            "NotMonitored".to_owned(),
            format!(
                "master {} and {synced} synced replicas, but the sentinel group {} does not monitor this instance yet, so nothing would fail it over",
                master.map(|m| m.name.as_str()).unwrap_or_default(),
                cr.spec.sentinel.name
            ),
        )
    } else if all_there && plan.steady() {
        (
            true,
            "AllReplicasSynced".to_owned(),
            format!(
                "master {} and {} synced replicas",
                master.map(|m| m.name.as_str()).unwrap_or_default(),
                synced
            ),
        )
    } else if master.is_none() {
        (false, "NoMaster".to_owned(), "no master yet".to_owned())
    } else {
        (
            false,
            "Syncing".to_owned(),
            format!(
                "{synced} of {} replicas synced; {} pods of {desired} answer",
                desired.saturating_sub(1),
                views.iter().filter(|v| v.node.is_some()).count()
            ),
        )
    };
    let unsupported_condition = verdict.condition();
    let status = KvrocksStandardStatus {
        unsupported_config: verdict.unsupported.clone(),
        observed_generation: generation,
        current_replicas: Some(views.len() as i32),
        selector: Some(labels::selector(&name, Component::Standard)),
        master: master_status,
        replicas,
        kvrocks_version: verdict.version.clone(),
        conditions: conditions::merge(
            &old_status.conditions,
            conditions::health(
                ready,
                &reason,
                &message,
                if master.is_none() && old_status.master.is_some() {
                    (true, "NoMaster", "no writable master right now")
                } else if let Some((reason, message)) = &unsupported_condition {
                    (true, reason.as_str(), message.as_str())
                } else {
                    (false, "Healthy", "a master is writable")
                },
                generation,
            ),
        ),
    };
    ctx.metrics
        .set_ready(CONTROLLER, &ns, &name, &status.conditions);
    ctx.metrics
        .set_shard_masters(CONTROLLER, &ns, &name, &[master.is_some()]);
    patch_status_if_changed(&crs, cr.as_ref(), &status).await?;
    Ok(Requeue::requeue(if ready && plan.steady() {
        STEADY
    } else {
        BUSY
    }))
}

fn ordinal(pod: &str, set: &str) -> Option<u32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn secret_name(cr: &KvrocksStandard) -> String {
    kvrocks_operator_core::auth::secret_name(
        &cr.name_any(),
        cr.spec.pod.auth.secret_name.as_deref(),
    )
}

/// The password (see `kvrocks_operator_core::auth`); `Ok(Err(message))` when the named Secret
/// is missing or unusable.
async fn ensure_password(
    cr: &KvrocksStandard,
    ctx: &Context,
    _ns: &str,
) -> Result<std::result::Result<Password, String>, Error> {
    let found = kvrocks_operator_core::auth::ensure_password(
        &ctx.client,
        cr,
        Component::Standard,
        cr.spec.pod.auth.secret_name.as_deref(),
    )
    .await?;
    Ok(found.map(Password::new))
}

fn endpoint(ip: &str, port: u16, password: Option<&Password>) -> Endpoint {
    Endpoint::new(NodeAddr::new(ip, port))
        .with_optional_password(password.cloned())
        .with_timeouts(Timeouts::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
        ))
}

/// Each pod's view of replication (unreachable pods: `node: None`).
async fn observe_pods(
    pods: &[Pod],
    set: &str,
    password: &Password,
    fallback: &Password,
) -> Vec<PodView> {
    let queries = pods.iter().map(|pod| async move {
        let name = pod.name_any();
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty());
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let node = match (&ip, running) {
            (Some(ip), true) => match node_view(ip, password).await {
                Ok(view) => Some(view),
                // A pod not yet on the new password (rotation in progress).
                Err(kvrocks_client::Error::Auth { .. }) => node_view(ip, fallback).await.ok(),
                Err(_) => None,
            },
            _ => None,
        };
        PodView {
            ordinal: ordinal(&name, set).unwrap_or(u32::MAX),
            name,
            ip,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            role_label: pod.labels().get(ROLE).cloned(),
            node,
            outdated: false,
            ready: kvrocks_operator_core::pods::is_ready(pod),
        }
    });
    futures::future::join_all(queries).await
}

async fn node_view(ip: &str, password: &Password) -> Result<NodeView, kvrocks_client::Error> {
    let client =
        NodeClient::connect(endpoint(ip, labels::KVROCKS_PORT as u16, Some(password))).await?;
    let info = client.info_replication().await;
    let priority = match &info {
        Ok(_) => client.config_get_one("slave-priority").await.ok().flatten(),
        Err(_) => None,
    };
    client.close().await;
    let info = info?;
    let master = matches!(info.role, kvrocks_client::ReplicationRole::Master);
    Ok(NodeView {
        master,
        master_host: info.master_host.clone(),
        link_up: matches!(
            info.master_link_status,
            Some(kvrocks_client::LinkStatus::Up)
        ),
        syncing: info.master_sync_in_progress.unwrap_or(false),
        offset: if master {
            info.master_repl_offset.unwrap_or(0)
        } else {
            info.slave_repl_offset.unwrap_or(0)
        },
        priority,
    })
}

/// The sentinel group's pods that answer, by IP.
async fn sentinel_ips(ctx: &Context, ns: &str, group: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&labels::selector(group, Component::Sentinel)))
        .await
    else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect()
}

/// What the sentinel group says about one monitored instance.
#[derive(Debug, Default)]
struct SentinelView {
    /// The master IP most sentinels report (None: not monitored).
    master: Option<String>,
    /// Some sentinel is failing this master over right now.
    failing_over: bool,
    /// Some sentinel reports the master subjectively or objectively down.
    master_down: bool,
}

/// `SENTINEL MASTER <monitor>` on every sentinel of the group: the master IP most of them report
/// and whether one of them is in the middle of a failover.
async fn sentinel_view(ctx: &Context, ns: &str, group: &str, monitor: &str) -> SentinelView {
    let ips = sentinel_ips(ctx, ns, group).await;
    let answers = futures::future::join_all(ips.iter().map(|ip| async move {
        let client = SentinelClient::connect(endpoint(ip, labels::SENTINEL_PORT as u16, None))
            .await
            .ok()?;
        let master = client.master(monitor).await.ok().flatten();
        client.close().await;
        master
    }))
    .await;
    let mut view = SentinelView::default();
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for master in answers.into_iter().flatten() {
        view.failing_over |= master.is_failover_in_progress();
        view.master_down |= master.is_sdown() || master.is_odown();
        *votes.entry(master.addr.host).or_default() += 1;
    }
    view.master = votes.into_iter().max_by_key(|(_, n)| *n).map(|(ip, _)| ip);
    view
}

async fn act(
    action: &Action,
    pods: &[Pod],
    pods_api: &Api<Pod>,
    password: &Password,
    ctx: &Context,
    ns: &str,
    cr: &KvrocksStandard,
) -> Result<(), Error> {
    let ip_of = |name: &str| {
        pods.iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
            .ok_or_else(|| Error::Kvrocks(format!("pod {name} has no IP")))
    };
    let node = |name: &str| -> Result<NodeClient, Error> {
        let ip = ip_of(name)?;
        Ok(NodeClient::new(endpoint(
            &ip,
            labels::KVROCKS_PORT as u16,
            Some(password),
        )))
    };
    let kv = |e: kvrocks_client::Error| Error::Kvrocks(e.to_string());
    match action {
        Action::Promote { pod } => {
            tracing::info!(%pod, "SLAVEOF NO ONE");
            node(pod)?.slaveof_no_one().await.map_err(kv)
        }
        Action::Follow { pod, master_ip } => {
            tracing::info!(%pod, %master_ip, "SLAVEOF");
            node(pod)?
                .slaveof(&NodeAddr::new(master_ip, labels::KVROCKS_PORT as u16))
                .await
                .map_err(kv)
        }
        Action::SetPriority { pod, value } => node(pod)?
            .config_set("slave-priority", value)
            .await
            .map_err(kv),
        Action::Label { pod, role } => {
            let patch = serde_json::json!({"metadata": {"labels": {ROLE: role}}});
            pods_api
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
                .map_err(kube_err(format!("label pod {ns}/{pod}")))
        }
        Action::Restart { pod } => {
            tracing::info!(%pod, "restarting the pod for a rolling update");
            pods_api
                .delete(pod, &Default::default())
                .await
                .map(drop)
                .map_err(kube_err(format!("delete pod {ns}/{pod}")))
        }
        Action::Switchover { from } => {
            let monitor = names::standard_monitor(&cr.name_any());
            let ips = sentinel_ips(ctx, ns, &cr.spec.sentinel.name).await;
            let mut last = String::from("no sentinel pod answers");
            // The next sentinel is asked only when one does not answer: a second forced
            // failover next to one under way would promote a second replica.
            for ip in ips {
                let client = SentinelClient::new(endpoint(&ip, labels::SENTINEL_PORT as u16, None));
                match client.failover(&monitor).await {
                    Ok(()) => {
                        tracing::info!(%from, "SENTINEL FAILOVER (planned switchover)");
                        return Ok(());
                    }
                    Err(e) if e.is_failover_in_progress() => {
                        tracing::info!(%from, sentinel = %ip, "a failover is under way already");
                        return Ok(());
                    }
                    Err(e) if e.is_unreachable() => last = e.to_string(),
                    Err(e) => return Err(Error::Kvrocks(format!("switchover off {from}: {e}"))),
                }
            }
            Err(Error::Kvrocks(format!("switchover off {from}: {last}")))
        }
    }
}

/// Deletion: wait until the sentinel group no longer monitors this instance (the sentinel
/// controller removes the monitor of a Standard being deleted), then drop the finalizer; the
/// owned objects go with the garbage collector, PVCs as `storage.deleteClaimsOnDelete` says.
async fn finalize(
    cr: &KvrocksStandard,
    ctx: &Context,
    crs: &Api<KvrocksStandard>,
) -> Result<Requeue, Error> {
    if !cr.finalizers().iter().any(|f| f == MONITOR_FINALIZER) {
        return Ok(Requeue::await_change());
    }
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    let monitor = names::standard_monitor(&name);
    let groups: Api<KvrocksSentinel> = Api::namespaced(ctx.client.clone(), &ns);
    let group = groups
        .get_opt(&cr.spec.sentinel.name)
        .await
        .map_err(kube_err(format!(
            "get kvrockssentinel {ns}/{}",
            cr.spec.sentinel.name
        )))?;
    let still_monitored = group
        .as_ref()
        .and_then(|g| g.status.as_ref())
        .is_some_and(|s| s.monitors.iter().any(|m| m.name == monitor));
    let live = match &group {
        Some(_) => sentinel_view(ctx, &ns, &cr.spec.sentinel.name, &monitor)
            .await
            .master
            .is_some(),
        None => false,
    };
    if still_monitored || live {
        tracing::info!(standard = %name, namespace = %ns, "waiting for the sentinel group to drop its monitor");
        return Ok(Requeue::requeue(BUSY));
    }
    kvrocks_operator_core::finalizers::remove(crs, cr, MONITOR_FINALIZER).await?;
    ctx.metrics.forget_object("standard", &ns, &name);
    Ok(Requeue::await_change())
}

/// Applies `spec.config` live. True when something differed and kvrocks took every change;
/// false when it refused one, or nothing differed (a removed key cannot be unset live): then the
/// pod restarts.
async fn apply_config_live(
    view: &PodView,
    config: &BTreeMap<String, String>,
    password: &Password,
) -> bool {
    let Some(ip) = view.ip.as_deref() else {
        return false;
    };
    let Ok(client) =
        NodeClient::connect(endpoint(ip, labels::KVROCKS_PORT as u16, Some(password))).await
    else {
        return false;
    };
    let result = client.config_set_all(config).await;
    client.close().await;
    if let Err(e) = &result {
        tracing::info!(pod = %view.name, error = %e, "not changeable live: the pod will be restarted");
    }
    matches!(result, Ok(n) if n > 0)
}

/// Records on the pod that it runs the current config (and so the current revision).
async fn mark_current(
    pods: &Api<Pod>,
    pod: &Pod,
    config_hash: &str,
    revision: Option<&str>,
) -> Result<(), Error> {
    let mut patch = serde_json::json!({
        "metadata": {"annotations": {kb::CONFIG_HASH_ANNOTATION: config_hash}}
    });
    if let Some(revision) = revision {
        patch["metadata"]["labels"] = serde_json::json!({"controller-revision-hash": revision});
    }
    pods.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(kube_err(format!("mark pod {} current", pod.name_any())))
}

fn applied_secret_name(cr: &KvrocksStandard) -> String {
    names::applied_auth_secret(&cr.name_any())
}

/// The password in effect on the pods (from `<cr>-auth-applied`); created with `current` on
/// first use.
async fn applied_password(
    cr: &KvrocksStandard,
    ctx: &Context,
    ns: &str,
    current: &Password,
) -> Result<Password, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = applied_secret_name(cr);
    let found = secrets
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("get secret {ns}/{name}")))?;
    let value = found
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(PASSWORD_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .filter(|p| !p.is_empty());
    match value {
        Some(p) => Ok(Password::new(p)),
        None => {
            store_applied_password(cr, ctx, ns, current).await?;
            Ok(current.clone())
        }
    }
}

async fn store_applied_password(
    cr: &KvrocksStandard,
    ctx: &Context,
    ns: &str,
    password: &Password,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = applied_secret_name(cr);
    let secret = Secret {
        metadata: builders::owned_meta(
            cr,
            &name,
            labels::common_labels(&cr.name_any(), Component::Standard),
        )?,
        data: Some(
            [(
                PASSWORD_KEY.to_owned(),
                ByteString(password.expose().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    secrets
        .patch(
            &name,
            &PatchParams::apply(labels::MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map(drop)
        .map_err(kube_err(format!("store secret {ns}/{name}")))
}

/// masterauth on every pod, then requirepass on every pod. True when every pod accepts the new
/// password (pods that started after the change already do).
async fn rotate_password(pods: &[Pod], old: &Password, new: &Password) -> bool {
    let ips: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let port = labels::KVROCKS_PORT as u16;
    let mut clients = Vec::new();
    for ip in &ips {
        match NodeClient::connect(endpoint(ip, port, Some(old))).await {
            Ok(c) => clients.push(c),
            Err(_) => {
                // Already on the new password (started after the change), or down.
                if NodeClient::connect(endpoint(ip, port, Some(new)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
    for client in &clients {
        if client.config_set("masterauth", new.expose()).await.is_err() {
            return false;
        }
    }
    for client in &clients {
        if client
            .config_set("requirepass", new.expose())
            .await
            .is_err()
        {
            return false;
        }
        client.close().await;
    }
    true
}

/// `SENTINEL SET <monitor> auth-pass` on every pod of the group (best effort: the sentinel
/// controller sets it again whenever it (re)creates the monitor).
async fn set_sentinel_auth_pass(
    ctx: &Context,
    ns: &str,
    cr: &KvrocksStandard,
    password: &Password,
) {
    let monitor = names::standard_monitor(&cr.name_any());
    for ip in sentinel_ips(ctx, ns, &cr.spec.sentinel.name).await {
        let client = SentinelClient::new(endpoint(&ip, labels::SENTINEL_PORT as u16, None));
        if let Err(e) = client.set_auth_pass(&monitor, password).await {
            tracing::warn!(sentinel = %ip, error = %e, "cannot set auth-pass");
        }
        client.close().await;
    }
}

/// Rounds in a row in which sentinel's master reported itself a replica, per Standard.
static STUCK: std::sync::Mutex<Option<std::collections::HashMap<String, u32>>> =
    std::sync::Mutex::new(None);
/// After this many rounds (about 2 s apart) the operator makes sentinel's choice the master.
const STUCK_ROUNDS: u32 = 5;

fn sentinel_stuck(cr: &KvrocksStandard, observed: &Observed) -> bool {
    let stuck_now = observed.sentinel_master.as_deref().is_some_and(|ip| {
        observed.pods.iter().any(|p| {
            p.ip.as_deref() == Some(ip)
                && p.node.as_ref().is_some_and(|n| {
                    !n.master
                        && !matches!(
                            n.master_host.as_deref(),
                            None | Some("127.0.0.1" | "localhost")
                        )
                })
        })
    });
    let key = cr.uid().unwrap_or_default();
    let mut guard = STUCK.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(std::collections::HashMap::new);
    if stuck_now {
        let n = map.entry(key).or_insert(0);
        *n += 1;
        if *n > STUCK_ROUNDS {
            *n = 0;
            return true;
        }
    } else {
        map.remove(&key);
    }
    false
}

/// An early exit of a reconcile (invalid spec, missing Secret): `updates` (Ready=False, ...)
/// merged into the old status, the Ready gauge set, the status written.
async fn report_not_ready(
    ctx: &Context,
    crs: &Api<KvrocksStandard>,
    cr: &KvrocksStandard,
    old: &KvrocksStandardStatus,
    updates: impl IntoIterator<Item = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> Result<(), Error> {
    let status = KvrocksStandardStatus {
        observed_generation: cr.metadata.generation,
        conditions: conditions::merge(&old.conditions, updates),
        ..old.clone()
    };
    ctx.metrics.set_ready(
        CONTROLLER,
        &cr.namespace().unwrap_or_default(),
        &cr.name_any(),
        &status.conditions,
    );
    patch_status_if_changed(crs, cr, &status).await?;
    Ok(())
}
