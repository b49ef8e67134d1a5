//! The KvrocksCluster controller: shards of kvrocks in cluster mode whose topology the operator
//! keeps (in status, with a version) and pushes with `CLUSTERX SETNODEID` / `SETNODES`.
//!
//! `reconcile` is `observe -> plan -> act -> report`: one StatefulSet per shard, every node's id,
//! version and replication state read, the layout updated (first split, pods that moved, replicas
//! that joined or left, a replica promoted when a master stays unreachable), the version bumped
//! when the layout changed and pushed to every node that lags, and the status written.
//!
//! Not yet here (issue 5 continues): changing the shard count (slot migration, draining),
//! `spec.slotMigrations`, rolling updates.

pub mod planning;
pub mod topo;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::controller::Action as Requeue;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksCluster;
use kvrocks_api::cluster::{KvrocksClusterStatus, ShardStatus};
use kvrocks_api::labels::{self, Component, MONITOR_FINALIZER, Role, SHARD, names};
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, NodeId, Password, Timeouts};
use kvrocks_operator_core::builders::{self, kvrocks as kb};
use kvrocks_operator_core::conditions::{self, ConditionStatus};
use kvrocks_operator_core::controller::{self, REASON_INVALID_SPEC};
use kvrocks_operator_core::server;
use kvrocks_operator_core::{Context, OwnedObjects, patch_status_if_changed};
use tokio_util::sync::CancellationToken;

use crate::topo::PlacedPod;

/// Name of this controller in logs and metrics.
pub const CONTROLLER: &str = "cluster";
/// How often nodes are probed (the reconcile runs this often).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one reconcile watches a running migration closely before it requeues.
const MIGRATION_POLL: Duration = Duration::from_secs(5);
/// Consecutive failed probes of a master before its shard fails over.
const FAILED_PROBES: u32 = 3;

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
}

impl kvrocks_operator_core::ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Core(e) => e.metric_label(),
            Error::Kube { .. } => "kube",
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

/// Consecutive failed probes per (cluster uid, pod).
static FAILURES: Mutex<Option<HashMap<(String, String), u32>>> = Mutex::new(None);

fn count_failure(uid: &str, pod: &str, failed: bool) -> u32 {
    let mut guard = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let key = (uid.to_owned(), pod.to_owned());
    if failed {
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n
    } else {
        map.remove(&key);
        0
    }
}

/// Runs the KvrocksCluster controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    controller::run_owning_statefulsets::<KvrocksCluster, _, _, _>(
        ctx,
        CONTROLLER,
        Component::Cluster,
        reconcile,
        shutdown,
    )
    .await;
}

/// One node as observed.
#[derive(Clone, Debug, Default)]
struct NodeObs {
    reachable: bool,
    myid: Option<NodeId>,
    version: Option<u64>,
    offset: i64,
    link_up: bool,
}

fn endpoint(ip: &str, password: &Password) -> Endpoint {
    Endpoint::new(NodeAddr::new(ip, labels::KVROCKS_PORT as u16))
        .with_password(password.clone())
        .with_timeouts(Timeouts::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
        ))
}

async fn observe(ip: &str, password: &Password) -> NodeObs {
    let Ok(client) = NodeClient::connect(endpoint(ip, password)).await else {
        return NodeObs::default();
    };
    let myid = client.clusterx_myid().await.ok().flatten();
    let version = client.clusterx_version().await.ok().flatten();
    let info = client.info_replication().await.ok();
    client.close().await;
    let (offset, link_up) = match &info {
        Some(i) if matches!(i.role, kvrocks_client::ReplicationRole::Master) => {
            (i.master_repl_offset.unwrap_or(0), true)
        }
        Some(i) => (
            i.slave_repl_offset.unwrap_or(0),
            matches!(i.master_link_status, Some(kvrocks_client::LinkStatus::Up)),
        ),
        None => (0, false),
    };
    NodeObs {
        reachable: true,
        myid,
        version,
        offset,
        link_up,
    }
}

async fn reconcile(cached: Arc<KvrocksCluster>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let crs: Api<KvrocksCluster> = Api::namespaced(ctx.client.clone(), &ns);
    // Every pass builds on the status as the API server holds it, not as the cache last saw it:
    // the previous pass may have recorded a slot migration 100 ms ago, and a pass on the older
    // copy would plan that migration again (kvrocks refuses a migrated slot) and write the
    // record away, leaving the slots wedged.
    let Some(fresh) = crs
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("get kvrockscluster {ns}/{name}")))?
    else {
        return Ok(Requeue::await_change());
    };
    let cr = Arc::new(fresh);
    let uid = cr.uid().unwrap_or_default();
    let generation = cr.metadata.generation;
    let old = cr.status.clone().unwrap_or_default();
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
        report_not_ready(&ctx, &crs, &cr, &old, updates).await?;
        return Ok(Requeue::await_change());
    }
    let password = match kvrocks_operator_core::auth::ensure_password(
        &ctx.client,
        cr.as_ref(),
        Component::Cluster,
        cr.spec.pod.auth.secret_name.as_deref(),
    )
    .await?
    {
        Ok(p) => Password::new(p),
        Err(message) => {
            let ready = conditions::ready(
                ConditionStatus::False,
                "AuthSecretMissing",
                &message,
                generation,
            );
            report_not_ready(&ctx, &crs, &cr, &old, [ready]).await?;
            return Ok(Requeue::requeue(Duration::from_secs(10)));
        }
    };
    let secret =
        kvrocks_operator_core::auth::secret_name(&name, cr.spec.pod.auth.secret_name.as_deref());

    // StatefulSets: every shard of the spec, plus shards still being drained.
    let desired_shards = cr.spec.shards.max(1) as u32;
    let shard_set: std::collections::BTreeSet<u32> = (0..desired_shards)
        .chain(
            old.shards
                .iter()
                .filter_map(|s| u32::try_from(s.index).ok()),
        )
        .collect();
    let per_shard = 1 + cr.spec.replicas_per_shard.max(0) as u32;
    // A shard shrinks only once its master is below the new size (the master is moved first).
    let set_size = |shard: u32| -> u32 {
        old.shards
            .iter()
            .find(|s| s.index == shard as i32)
            .and_then(topo::master_of)
            .and_then(|m| topo::ordinal_of(&m.pod))
            .map_or(per_shard, |o| per_shard.max(o + 1))
    };

    // Objects.
    let mut owned = OwnedObjects::new(cr.as_ref(), Component::Cluster)?;
    let selector = labels::common_labels(&name, Component::Cluster);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&labels::selector(&name, Component::Cluster)))
        .await
        .map_err(kube_err(format!("list pods of {ns}/{name}")))?
        .items;
    // What the running kvrocks knows decides which spec.config keys are rendered and set live.
    let verdict = server::judge(
        &pods,
        labels::KVROCKS_PORT as u16,
        &password,
        &cr.spec.pod.config,
        &old.unsupported_config,
        old.kvrocks_version.as_deref(),
    )
    .await;
    let unsupported_condition = verdict.condition();
    if let Some((reason, message)) = unsupported_condition.clone().filter(|_| verdict.changed) {
        ctx.warning(cr.as_ref(), &reason, "Configure", message)
            .await;
    }
    let live_config = verdict.supported(&cr.spec.pod.config);
    let conf = kb::render_config(&cr.spec.pod, true, &verdict.unsupported);
    let config_name = format!("{name}-config");
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    owned
        .apply(
            &cms,
            &kb::config_map(
                builders::owned_meta(cr.as_ref(), &config_name, selector.clone())?,
                conf.clone(),
            ),
            None,
        )
        .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    owned
        .apply(
            &services,
            &kb::service(
                builders::owned_meta(cr.as_ref(), &name, selector.clone())?,
                selector.clone(),
                true,
            ),
            None,
        )
        .await?;
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let config_hash = kb::text_hash(&conf);
    let mut template_hashes: BTreeMap<u32, String> = BTreeMap::new();
    for &shard in &shard_set {
        let set_name = names::shard_statefulset(&name, shard);
        let mut shard_selector = selector.clone();
        shard_selector.insert(SHARD.to_owned(), shard.to_string());
        let mut pod_labels = builders::pod_labels(&shard_selector, &cr.spec.pod.pod_metadata);
        if let Some(sentinel) = &cr.spec.sentinel {
            pod_labels.insert(labels::SENTINEL.to_owned(), sentinel.name.clone());
        }
        let user_annotations = cr.spec.pod.pod_metadata.pod_annotations.clone();
        let build = |annotations: BTreeMap<String, String>| -> Result<StatefulSet, Error> {
            Ok(kb::statefulset(&kb::KvrocksSet {
                meta: builders::owned_meta(cr.as_ref(), &set_name, shard_selector.clone())?,
                pod_labels: pod_labels.clone(),
                selector: shard_selector.clone(),
                pod_annotations: annotations,
                service_name: set_name.clone(),
                replicas: set_size(shard) as i32,
                spec: &cr.spec.pod,
                config_map: config_name.clone(),
                secret: secret.clone(),
                cluster: true,
            }))
        };
        // Two hashes on the template, as for Standard: kvrocks.conf (may be applied live) and
        // everything else (needs a restart).
        let template_hash = kb::text_hash(
            &serde_json::to_string(&build(user_annotations.clone())?.spec.map(|s| s.template))
                .unwrap_or_default(),
        );
        let mut annotations = user_annotations;
        annotations.insert(kb::CONFIG_HASH_ANNOTATION.to_owned(), config_hash.clone());
        annotations.insert(
            kb::TEMPLATE_HASH_ANNOTATION.to_owned(),
            template_hash.clone(),
        );
        template_hashes.insert(shard, template_hash);
        let set = build(annotations)?;
        owned.apply(&sets, &set, None).await?;
        owned
            .apply(
                &services,
                &kb::service(
                    builders::owned_meta(cr.as_ref(), &set_name, shard_selector.clone())?,
                    shard_selector.clone(),
                    true,
                ),
                None,
            )
            .await?;
        owned
            .apply(
                &pdbs,
                &builders::pdb(
                    builders::owned_meta(cr.as_ref(), &set_name, shard_selector.clone())?,
                    &shard_selector,
                    1,
                ),
                None,
            )
            .await?;
    }

    // Shards drained and dropped from the layout lose their objects.
    owned.delete_orphans(&sets).await?;
    owned.delete_orphans(&services).await?;
    owned.delete_orphans(&pdbs).await?;

    // Observe.
    let mut placed: Vec<PlacedPod> = Vec::new();
    for pod in &pods {
        let shard = pod.labels().get(SHARD).and_then(|s| s.parse::<u32>().ok());
        let ordinal = topo::ordinal_of(&pod.name_any());
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let (Some(shard), Some(ordinal)) = (shard, ordinal) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty() && running);
        placed.push(PlacedPod {
            shard,
            ordinal,
            pod: pod.name_any(),
            ip,
        });
    }
    let observed: BTreeMap<String, NodeObs> = futures::future::join_all(placed.iter().map(|p| {
        let password = password.clone();
        async move {
            let obs = match &p.ip {
                Some(ip) => observe(ip, &password).await,
                None => NodeObs::default(),
            };
            (p.pod.clone(), obs)
        }
    }))
    .await
    .into_iter()
    .collect();

    // Plan: the layout.
    let mut layout: Vec<ShardStatus> = old.shards.clone();
    let mut changed = false;
    // A node ahead of status runs a layout this operator pushed but never recorded (it stopped
    // in between): adopt it rather than push the older one over it.
    let status_version = old.topology_version.unwrap_or(0).max(0) as u64;
    let mut adopted_version: Option<u64> = None;
    let ahead = placed
        .iter()
        .filter_map(|p| Some((p, observed.get(&p.pod)?.version?)))
        .filter(|(_, v)| *v > status_version)
        .max_by_key(|(_, v)| *v);
    if !layout.is_empty()
        && let Some((pod, seen)) = ahead
        && let Some(ip) = &pod.ip
    {
        let client = NodeClient::new(endpoint(ip, &password));
        let nodes = client.cluster_nodes().await;
        client.close().await;
        let topology = nodes
            .ok()
            .and_then(|n| kvrocks_client::Topology::from_cluster_nodes(&n).ok());
        if let Some(topology) = topology
            && topo::adopt(&mut layout, &topology)
        {
            tracing::info!(cluster = %name, version = seen, pod = %pod.pod, "adopted the newer layout a node runs");
            adopted_version = Some(seen);
        }
    }
    let mut waiting: Option<(String, String)> = None;
    let mut failovers: Vec<(String, String)> = Vec::new();
    if layout.is_empty() {
        let by_shard: Vec<Vec<PlacedPod>> = (0..desired_shards)
            .map(|s| {
                placed
                    .iter()
                    .filter(|p| p.shard == s && p.ordinal < per_shard)
                    .cloned()
                    .collect()
            })
            .collect();
        let complete = by_shard.iter().all(|s| s.len() as u32 == per_shard)
            && placed
                .iter()
                .all(|p| observed.get(&p.pod).is_some_and(|o| o.reachable));
        match topo::initial(&uid, &by_shard, labels::KVROCKS_PORT as u16) {
            Some(first) if complete => {
                layout = first;
                changed = true;
            }
            _ => {
                waiting = Some((
                    "WaitingForPods".into(),
                    format!(
                        "waiting for all {} pods ({desired_shards} shards x {per_shard}) to run before the first topology",
                        desired_shards * per_shard
                    ),
                ));
            }
        }
    } else {
        changed |= topo::refresh(
            &mut layout,
            &uid,
            &placed,
            per_shard,
            labels::KVROCKS_PORT as u16,
        );
        // Failover: a master that failed several probes in a row, and a replica to promote.
        for shard in &mut layout {
            let Some(master) = topo::master_of(shard).cloned() else {
                continue;
            };
            let down = !observed.get(&master.pod).is_some_and(|o| o.reachable);
            let failures = count_failure(&uid, &master.pod, down);
            if failures < FAILED_PROBES {
                continue;
            }
            let best = shard
                .nodes
                .iter()
                .filter(|n| n.role == Role::Replica)
                .filter_map(|n| observed.get(&n.pod).filter(|o| o.reachable).map(|o| (n, o)))
                .max_by_key(|(n, o)| {
                    (
                        o.link_up || o.offset > 0,
                        o.offset,
                        std::cmp::Reverse(n.pod.clone()),
                    )
                })
                .map(|(n, _)| n.pod.clone());
            match best {
                Some(pod) => {
                    topo::promote(shard, &pod);
                    count_failure(&uid, &master.pod, false);
                    failovers.push((master.pod.clone(), pod));
                    changed = true;
                }
                None => {
                    waiting = Some((
                        "NoFailoverCandidate".into(),
                        format!(
                            "shard {}: master {} is down and no replica can take over; waiting",
                            shard.index, master.pod
                        ),
                    ));
                }
            }
        }
    }

    // Slots: new shards join empty, a migration in flight is driven, the next one started.
    let in_sync = !layout.is_empty()
        && layout.iter().flat_map(|s| &s.nodes).all(|n| {
            observed
                .get(&n.pod)
                .is_some_and(|o| o.reachable && o.version == old.topology_version.map(|v| v as u64))
        });
    let mut migration = old.migration.clone();
    let mut done = old.slot_migrations_done.unwrap_or(0).max(0) as usize;
    let mut rebalance = old.rebalance_target;
    if !layout.is_empty() && failovers.is_empty() && waiting.is_none() {
        if old.shards.len() as u32 != desired_shards {
            rebalance = Some(desired_shards as i32);
        }
        // Shards the spec added join the layout (empty) once their pods run.
        while (layout.len() as u32) < desired_shards {
            let index = layout.len() as u32;
            let pods: Vec<PlacedPod> = placed
                .iter()
                .filter(|p| p.shard == index && p.ordinal < per_shard)
                .cloned()
                .collect();
            let ready = pods.len() as u32 == per_shard
                && pods
                    .iter()
                    .all(|p| observed.get(&p.pod).is_some_and(|o| o.reachable));
            match topo::initial(&uid, &[pods], labels::KVROCKS_PORT as u16) {
                Some(mut joined) if ready => {
                    if let Some(mut shard) = joined.pop() {
                        shard.index = index as i32;
                        shard.slots.clear();
                        layout.push(shard);
                        changed = true;
                    }
                }
                _ => {
                    waiting = Some((
                        "WaitingForShard".into(),
                        format!("waiting for the pods of new shard {index} to run"),
                    ));
                    break;
                }
            }
        }
        if layout.len() as u32 != desired_shards
            || rebalance.is_some_and(|t| t as u32 != desired_shards)
        {
            rebalance = Some(desired_shards as i32);
        }
        // A master on an ordinal that is going away hands over to a synced replica first.
        for shard in &mut layout {
            let Some(master) = topo::master_of(shard).cloned() else {
                continue;
            };
            if topo::ordinal_of(&master.pod).is_some_and(|o| o >= per_shard) {
                let master_offset = observed.get(&master.pod).map_or(0, |o| o.offset);
                let candidate = shard
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.role == Role::Replica
                            && topo::ordinal_of(&n.pod).is_some_and(|o| o < per_shard)
                    })
                    .filter_map(|n| {
                        observed
                            .get(&n.pod)
                            .filter(|o| o.reachable && o.link_up)
                            .map(|o| (n, o))
                    })
                    .filter(|(_, o)| o.offset >= master_offset)
                    .max_by_key(|(_, o)| o.offset)
                    .map(|(n, _)| n.pod.clone());
                if let Some(pod) = candidate {
                    topo::promote(shard, &pod);
                    changed = true;
                    ctx.event(
                        cr.as_ref(),
                        "Switchover",
                        "Switchover",
                        format!(
                            "shard {}: master moved from {} to {} before the shard shrinks",
                            shard.index, master.pod, pod
                        ),
                    )
                    .await;
                }
            }
        }
    }
    if !layout.is_empty() && in_sync && !changed && waiting.is_none() {
        match drive_slots(
            &cr,
            &layout,
            &observed,
            &password,
            &mut migration,
            &mut done,
            &mut rebalance,
            desired_shards,
        )
        .await
        {
            Ok(Some(moved)) => {
                // The migration finished: the new owner goes out with the next version.
                let mut assignment = planning::Assignment::from_status(&layout)
                    .unwrap_or_else(|_| planning::Assignment::initial(0));
                assignment.apply(&moved);
                for shard in &mut layout {
                    shard.slots = assignment.status_slots(shard.index as u32);
                }
                ctx.metrics
                    .slots_migrated(&ns, &name, moved.slot_count() as u64);
                ctx.event(
                    cr.as_ref(),
                    "SlotsMigrated",
                    "Migrate",
                    format!(
                        "slots {} moved from shard {} to shard {}",
                        moved.range, moved.from, moved.to
                    ),
                )
                .await;
                changed = true;
            }
            Ok(None) => {}
            Err(message) => waiting = Some(("SlotMigrationBlocked".into(), message)),
        }
        // Drained shards leave the layout once they own nothing.
        if migration.is_none() && rebalance.is_some() {
            let before = layout.len();
            layout.retain(|s| s.index < desired_shards as i32 || !s.slots.is_empty());
            if layout.len() != before {
                changed = true;
            }
        }
    }

    // Rolling update, one pod at a time from a quiet, in-sync cluster: kvrocks.conf changes are
    // applied live where kvrocks allows; other changes restart replicas first, then each master
    // after its shard switched to a synced replica.
    let mut rolling = 0usize;
    let mut restart: Option<String> = None;
    for pod in &pods {
        let Some(place) = placed.iter().find(|p| p.pod == pod.name_any()) else {
            continue;
        };
        let annotations = pod.annotations();
        let template_ok =
            annotations.get(kb::TEMPLATE_HASH_ANNOTATION) == template_hashes.get(&place.shard);
        let config_ok = annotations.get(kb::CONFIG_HASH_ANNOTATION) == Some(&config_hash);
        if template_ok && config_ok {
            continue;
        }
        let reachable = observed.get(&place.pod).is_some_and(|o| o.reachable);
        if template_ok
            && reachable
            && let Some(ip) = &place.ip
            && apply_config_live(ip, &live_config, &password).await
        {
            let patch = serde_json::json!({"metadata": {"annotations": {kb::CONFIG_HASH_ANNOTATION: config_hash}}});
            pods_api
                .patch(
                    &place.pod,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .map_err(kube_err(format!("mark pod {} current", place.pod)))?;
            continue;
        }
        rolling += 1;
        let is_master = layout
            .iter()
            .filter_map(topo::master_of)
            .any(|m| m.pod == place.pod);
        let quiet =
            in_sync && !changed && waiting.is_none() && migration.is_none() && failovers.is_empty();
        if !quiet || restart.is_some() {
            continue;
        }
        if !is_master {
            restart = Some(place.pod.clone());
        }
    }
    if restart.is_none()
        && rolling > 0
        && in_sync
        && !changed
        && waiting.is_none()
        && migration.is_none()
    {
        // Only masters are left: hand one over to a synced replica, or restart it in place when
        // its shard has no replica.
        for shard in &mut layout {
            let Some(master) = topo::master_of(shard).cloned() else {
                continue;
            };
            let Some(pod) = pods.iter().find(|p| p.name_any() == master.pod) else {
                continue;
            };
            let outdated = pod.annotations().get(kb::TEMPLATE_HASH_ANNOTATION)
                != template_hashes.get(&(shard.index as u32))
                || pod.annotations().get(kb::CONFIG_HASH_ANNOTATION) != Some(&config_hash);
            if !outdated {
                continue;
            }
            let master_offset = observed.get(&master.pod).map_or(0, |o| o.offset);
            let candidate = shard
                .nodes
                .iter()
                .filter(|n| n.role == Role::Replica)
                .filter_map(|n| {
                    observed
                        .get(&n.pod)
                        .filter(|o| o.reachable && o.link_up)
                        .map(|o| (n, o))
                })
                .filter(|(_, o)| o.offset >= master_offset)
                .max_by_key(|(_, o)| o.offset)
                .map(|(n, _)| n.pod.clone());
            match candidate {
                Some(replica) => {
                    topo::promote(shard, &replica);
                    changed = true;
                    ctx.event(
                        cr.as_ref(),
                        "Switchover",
                        "Switchover",
                        format!(
                            "shard {}: master moved from {} to {} before its restart",
                            shard.index, master.pod, replica
                        ),
                    )
                    .await;
                }
                None if shard.nodes.len() == 1 => restart = Some(master.pod.clone()),
                None => {}
            }
            break;
        }
    }
    if let Some(pod) = &restart {
        tracing::info!(cluster = %name, %pod, "restarting the pod for a rolling update");
        pods_api
            .delete(pod, &Default::default())
            .await
            .map_err(kube_err(format!("delete pod {ns}/{pod}")))?;
    }
    if rolling > 0 && waiting.is_none() {
        waiting = Some((
            "RollingUpdate".into(),
            format!(
                "{rolling} pod(s) run an old template or kvrocks.conf; restarting them one at a time, masters last"
            ),
        ));
    }

    // Act: identities, then the topology at its version.
    let mut version = adopted_version.unwrap_or(status_version);
    let max_seen = observed
        .values()
        .filter_map(|o| o.version)
        .max()
        .unwrap_or(0);
    if changed || max_seen > version {
        version = version.max(max_seen) + 1;
    }
    let mut lagging = 0;
    if !layout.is_empty() {
        match topo::to_topology(&layout) {
            Ok(topology) => {
                // Every node at once: the shorter the time nodes disagree about a slot's owner,
                // the fewer MOVED ping-pongs clients see.
                let pushes = layout.iter().flat_map(|s| &s.nodes).map(|node| {
                    let obs = observed.get(&node.pod).filter(|o| o.reachable).cloned();
                    let topology = &topology;
                    let password = &password;
                    let name = &name;
                    async move {
                        let Some(obs) = obs else { return false };
                        let Ok(id) = NodeId::new(node.node_id.clone()) else {
                            return false;
                        };
                        let client = NodeClient::new(endpoint(&node.ip, password));
                        let fresh = obs.myid.as_ref() != Some(&id);
                        if fresh && let Err(e) = client.clusterx_setnodeid(&id).await {
                            tracing::warn!(cluster = %name, pod = %node.pod, error = %e, "SETNODEID failed");
                            client.close().await;
                            return false;
                        }
                        let mut ok = true;
                        if fresh || obs.version != Some(version) {
                            let pushed = if fresh || obs.version.is_some_and(|v| v >= version) {
                                client.clusterx_setnodes_force(topology, version).await
                            } else {
                                client.clusterx_setnodes(topology, version).await
                            };
                            match pushed {
                                Ok(()) => tracing::info!(cluster = %name, pod = %node.pod, version, "topology pushed"),
                                Err(e) => {
                                    tracing::warn!(cluster = %name, pod = %node.pod, error = %e, "SETNODES failed");
                                    ok = false;
                                }
                            }
                        }
                        client.close().await;
                        ok
                    }
                });
                lagging += futures::future::join_all(pushes)
                    .await
                    .into_iter()
                    .filter(|ok| !ok)
                    .count();
            }
            Err(e) => {
                waiting = Some(("InvalidTopology".into(), e));
            }
        }
    }
    for (from, to) in &failovers {
        ctx.warning(
            cr.as_ref(),
            "Failover",
            "Failover",
            format!("master {from} did not answer {FAILED_PROBES} probes in a row: {to} promoted"),
        )
        .await;
        ctx.metrics.failover("cluster", &ns, &name);
    }
    ctx.metrics.set_topology_version(&ns, &name, version as i64);

    // Report.
    let masters_down = layout
        .iter()
        .filter_map(topo::master_of)
        .filter(|m| !observed.get(&m.pod).is_some_and(|o| o.reachable))
        .count();
    let nodes = layout.iter().map(|s| s.nodes.len()).sum::<usize>();
    let shard_change_pending = migration.is_some()
        || rebalance.is_some()
        || layout.len() as u32 != desired_shards
        || done < cr.spec.slot_migrations.len();
    let ready = waiting.is_none()
        && !layout.is_empty()
        && lagging == 0
        && masters_down == 0
        && nodes as u32 == layout.len() as u32 * per_shard
        && !shard_change_pending;
    let (reason, message) = if let Some(w) = waiting.clone() {
        w
    } else if shard_change_pending {
        (
            "MigratingSlots".to_owned(),
            match &migration {
                Some(m) => format!(
                    "moving slots {} from shard {} to shard {} ({}); {} shards now, {desired_shards} wanted",
                    m.slots,
                    m.from_shard,
                    m.to_shard,
                    m.state,
                    layout.len()
                ),
                None => format!(
                    "rebalancing toward {desired_shards} shards; {} shards now",
                    layout.len()
                ),
            },
        )
    } else if ready {
        (
            "TopologyInSync".to_owned(),
            format!(
                "{} shards x {per_shard} nodes, every node at topology version {version}",
                layout.len()
            ),
        )
    } else {
        (
            "Converging".to_owned(),
            format!(
                "{lagging} node(s) not at version {version}; {masters_down} master(s) not answering"
            ),
        )
    };
    let down_message = format!("{masters_down} shard master(s) not answering");
    let status = KvrocksClusterStatus {
        observed_generation: generation,
        topology_version: (!layout.is_empty()).then_some(version as i64),
        shards: layout,
        migration: migration.clone(),
        slot_migrations_done: (done > 0).then_some(done as i32),
        rebalance_target: rebalance,
        kvrocks_version: verdict.version.clone(),
        unsupported_config: verdict.unsupported.clone(),
        conditions: conditions::merge(
            &old.conditions,
            conditions::health(
                ready,
                &reason,
                &message,
                if masters_down > 0 {
                    (true, "MasterDown", &down_message)
                } else if let Some((reason, message)) = &unsupported_condition {
                    (true, reason.as_str(), message.as_str())
                } else {
                    (false, "Healthy", "every shard has a master")
                },
                generation,
            ),
        ),
    };
    record_health(&ctx, &ns, &name, &status, &observed);
    patch_status_if_changed(&crs, cr.as_ref(), &status).await?;
    Ok(Requeue::requeue(if status.migration.is_some() {
        Duration::from_millis(100)
    } else {
        PROBE_EVERY
    }))
}

/// Drives slot movement one migration at a time: a migration in flight is polled on its source
/// master (`CLUSTER INFO`) and returned once it succeeded (the caller pushes the new owner);
/// otherwise the next one starts, from `spec.slotMigrations` first, then the rebalance toward
/// the wanted shard count. Err: why nothing can move (a condition message).
#[allow(clippy::too_many_arguments)]
async fn drive_slots(
    cr: &KvrocksCluster,
    layout: &[ShardStatus],
    observed: &BTreeMap<String, NodeObs>,
    password: &Password,
    migration: &mut Option<kvrocks_api::cluster::MigrationStatus>,
    done: &mut usize,
    rebalance: &mut Option<i32>,
    desired_shards: u32,
) -> Result<Option<planning::Move>, String> {
    let master = |shard: u32| {
        layout
            .iter()
            .find(|s| s.index == shard as i32)
            .and_then(topo::master_of)
            .filter(|m| observed.get(&m.pod).is_some_and(|o| o.reachable))
    };
    let assignment = planning::Assignment::from_status(layout).map_err(|e| e.to_string())?;
    if let Some(current) = migration.clone() {
        let mv = planning::Move::from_status(&current).map_err(|e| e.to_string())?;
        if !assignment
            .slots(mv.from)
            .iter()
            .any(|r| r.overlaps(&mv.range))
        {
            // Already applied (the operator stopped after pushing): nothing left to do.
            *migration = None;
            return Ok(None);
        }
        let source = master(mv.from)
            .ok_or_else(|| format!("the master of shard {} does not answer", mv.from))?;
        let client = NodeClient::new(endpoint(&source.ip, password));
        // Poll closely for a while: between kvrocks' `success` and the new topology, source and
        // destination each send clients to the other (MOVED), so that window must stay short.
        let state = poll_migration(&client, &mv).await?;
        match state {
            Some(kvrocks_client::MigrationState::Success) => {
                client.close().await;
                *migration = None;
                return Ok(Some(mv));
            }
            Some(kvrocks_client::MigrationState::Start) => {
                client.close().await;
                return Ok(None);
            }
            _ => {
                // Failed, or forgotten after a restart or failover: start it again.
                let result = start(&client, layout, &mv).await;
                client.close().await;
                result?;
                *migration = Some(mv.to_status("start"));
                return Ok(None);
            }
        }
    }
    let mut next: Option<planning::Move> = None;
    while *done < cr.spec.slot_migrations.len() {
        let wanted = &cr.spec.slot_migrations[*done];
        let moves = planning::manual_moves(&assignment, wanted)
            .map_err(|e| format!("spec.slotMigrations[{}]: {e}", *done))?;
        match moves.into_iter().next() {
            Some(mv) => {
                next = Some(mv);
                break;
            }
            None => *done += 1,
        }
    }
    if next.is_none()
        && let Some(target) = *rebalance
    {
        let moves = planning::rebalance_moves(&assignment, target.max(1) as u32);
        next = planning::next_moves(&moves, &Default::default())
            .into_iter()
            .next();
        if next.is_none() && layout.len() as u32 == desired_shards {
            *rebalance = None;
        }
    }
    let Some(mv) = next else {
        return Ok(None);
    };
    let source = master(mv.from)
        .ok_or_else(|| format!("the master of shard {} does not answer", mv.from))?;
    let client = NodeClient::new(endpoint(&source.ip, password));
    if let Err(e) = start(&client, layout, &mv).await {
        client.close().await;
        return Err(e);
    }
    tracing::info!(cluster = %cr.name_any(), slots = %mv.range, from = mv.from, to = mv.to, "migration started");
    // Recorded in status before anything waits on it, so an operator stopped now resumes it;
    // the next reconcile (at once) watches it closely.
    *migration = Some(mv.to_status("start"));
    client.close().await;
    Ok(None)
}

/// `CLUSTER INFO` on the source every 20 ms while the migration runs, for up to
/// [`MIGRATION_POLL`]: between kvrocks' `success` and the new topology, source and destination
/// each send clients to the other (MOVED), so that window must stay short.
async fn poll_migration(
    client: &NodeClient,
    mv: &planning::Move,
) -> Result<Option<kvrocks_client::MigrationState>, String> {
    let until = tokio::time::Instant::now() + MIGRATION_POLL;
    loop {
        let info = client.cluster_info().await.map_err(|e| e.to_string())?;
        let state = info
            .migration
            .as_ref()
            .filter(|m| m.slots == Some(mv.range))
            .map(|m| m.state.clone());
        if state != Some(kvrocks_client::MigrationState::Start)
            || tokio::time::Instant::now() >= until
        {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(
    client: &NodeClient,
    layout: &[ShardStatus],
    mv: &planning::Move,
) -> Result<(), String> {
    let destination = layout
        .iter()
        .find(|s| s.index == mv.to as i32)
        .and_then(topo::master_of)
        .ok_or_else(|| format!("shard {} has no master", mv.to))?;
    let id = NodeId::new(destination.node_id.clone()).map_err(|e| e.to_string())?;
    client
        .clusterx_migrate(mv.range, &id)
        .await
        .map_err(|e| format!("CLUSTERX MIGRATE {} to shard {}: {e}", mv.range, mv.to))
}

/// Deletion: when a sentinel group watches the shards, wait until it no longer lists any of
/// this cluster's monitors (the sentinel controller removes them once the cluster is being
/// deleted), then drop the finalizer; the objects go with the garbage collector.
async fn finalize(
    cr: &KvrocksCluster,
    ctx: &Context,
    crs: &Api<KvrocksCluster>,
) -> Result<Requeue, Error> {
    let ns = cr.namespace().unwrap_or_default();
    let name = cr.name_any();
    if let Some(group) = &cr.spec.sentinel {
        let groups: Api<kvrocks_api::KvrocksSentinel> = Api::namespaced(ctx.client.clone(), &ns);
        let found = groups
            .get_opt(&group.name)
            .await
            .map_err(kube_err(format!("get kvrockssentinel {ns}/{}", group.name)))?;
        let prefix = format!("cluster_{name}_");
        let monitored = found
            .as_ref()
            .and_then(|g| g.status.as_ref())
            .is_some_and(|s| s.monitors.iter().any(|m| m.name.starts_with(&prefix)));
        if monitored {
            tracing::info!(cluster = %name, namespace = %ns, "waiting for the sentinel group to drop the shard monitors");
            return Ok(Requeue::requeue(Duration::from_secs(2)));
        }
    }
    kvrocks_operator_core::finalizers::remove(crs, cr, MONITOR_FINALIZER).await?;
    ctx.metrics.forget_object("cluster", &ns, &name);
    Ok(Requeue::await_change())
}

/// Applies `spec.config` live. True when something differed and kvrocks took every change;
/// false when it refused one, or nothing differed (a removed key cannot be unset live): then the
/// pod restarts.
async fn apply_config_live(
    ip: &str,
    config: &BTreeMap<String, String>,
    password: &Password,
) -> bool {
    let Ok(client) = NodeClient::connect(endpoint(ip, password)).await else {
        return false;
    };
    let result = client.config_set_all(config).await;
    client.close().await;
    matches!(result, Ok(n) if n > 0)
}

/// An early exit of a reconcile (invalid spec, missing Secret): `updates` (Ready=False, ...)
/// merged into the old status, the Ready gauge set, the status written.
async fn report_not_ready(
    ctx: &Context,
    crs: &Api<KvrocksCluster>,
    cr: &KvrocksCluster,
    old: &KvrocksClusterStatus,
    updates: impl IntoIterator<Item = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> Result<(), Error> {
    let status = KvrocksClusterStatus {
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

/// Publishes the cluster's health gauges from the status about to be written: Ready, a master
/// that answers per shard, the slots owned by a master and whether a migration runs.
fn record_health(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &KvrocksClusterStatus,
    observed: &BTreeMap<String, NodeObs>,
) {
    let metrics = &ctx.metrics;
    metrics.set_ready(CONTROLLER, ns, name, &status.conditions);
    let shards = status
        .shards
        .iter()
        .map(|s| s.index.max(0) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut up = vec![false; shards];
    for shard in &status.shards {
        up[shard.index.max(0) as usize] = topo::master_of(shard)
            .is_some_and(|m| observed.get(&m.pod).is_some_and(|o| o.reachable));
    }
    metrics.set_shard_masters(CONTROLLER, ns, name, &up);
    let assigned: usize = status
        .shards
        .iter()
        .filter(|s| topo::master_of(s).is_some())
        .map(|s| {
            topo::parse_slots(&s.slots)
                .iter()
                .map(|r| r.len())
                .sum::<usize>()
        })
        .sum();
    metrics.set_cluster_slots(ns, name, assigned as u32, status.migration.is_some());
}
