//! The objects a KvrocksCluster owns: ConfigMap `<cr>-config`, headless Service `<cr>`, and per
//! shard a StatefulSet, a headless Service and a PodDisruptionBudget `<cr>-<shard>`. Each is
//! compared with its live copy and written only when it differs; objects of shards that left
//! the layout are deleted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksCluster;
use kvrocks_api::labels::{self, Component, SHARD, names, ordinal};
use kvrocks_operator_core::builders::{self, kvrocks as kb};
use kvrocks_operator_core::server::ConfigVerdict;
use kvrocks_operator_core::statefulset::{self, ClaimChange, SetApply};
use kvrocks_operator_core::{Context, OwnedObjects, get_and_apply_if_changed};

use crate::{Error, topo};

/// The hashes pods are compared with.
#[derive(Clone, Debug, Default)]
pub struct Hashes {
    /// Of kvrocks.conf.
    pub config: String,
    /// Of each shard's pod template without kvrocks.conf, by shard (the live StatefulSet's
    /// while a claim change keeps the new one from being applied).
    pub templates: BTreeMap<u32, String>,
    /// StatefulSets that keep their previous spec, and why.
    pub refused: Vec<String>,
}

/// The shards that have objects: every shard of the spec, plus shards still in the layout
/// (being drained).
fn shard_set(cr: &KvrocksCluster) -> BTreeSet<u32> {
    let wanted = cr.spec.shards.max(1).unsigned_abs();
    let recorded = cr
        .status
        .iter()
        .flat_map(|s| &s.shards)
        .filter_map(|s| u32::try_from(s.index).ok());
    (0..wanted).chain(recorded).collect()
}

/// A shard's StatefulSet size: the spec's, or larger while its master sits on an ordinal that
/// goes away (it hands over first; see `plan::handover`).
fn set_size(cr: &KvrocksCluster, shard: u32) -> u32 {
    let per_shard = 1 + cr.spec.replicas_per_shard.max(0).unsigned_abs();
    cr.status
        .iter()
        .flat_map(|s| &s.shards)
        .find(|s| s.index == shard as i32)
        .and_then(topo::master_of)
        .and_then(|m| ordinal(&m.pod))
        .map_or(per_shard, |o| per_shard.max(o + 1))
}

/// Applies every object that differs from its live copy; deletes the objects of shards that
/// left. Returns the hashes the rollout compares pods with.
pub async fn apply(
    ctx: &Context,
    cr: &KvrocksCluster,
    verdict: &ConfigVerdict,
) -> Result<Hashes, Error> {
    let name = cr.name_any();
    let mut owned = OwnedObjects::new(cr, Component::Cluster)?;
    let selector = labels::common_labels(&name, Component::Cluster);
    let conf = kb::render_config(&cr.spec.pod, true, &verdict.unsupported);
    let config_name = format!("{name}-config");
    let cms: Api<ConfigMap> = ctx.api_for(cr);
    let services: Api<Service> = ctx.api_for(cr);
    let sets: Api<StatefulSet> = ctx.api_for(cr);
    let pdbs: Api<PodDisruptionBudget> = ctx.api_for(cr);
    let meta = |object: &str, labels: &BTreeMap<String, String>| {
        builders::owned_meta(cr, object, labels.clone())
    };
    let cm = kb::config_map(meta(&config_name, &selector)?, conf.clone());
    owned.record(get_and_apply_if_changed(&cms, &cm).await?.object())?;
    let headless = kb::service(meta(&name, &selector)?, selector.clone(), true);
    owned.record(
        get_and_apply_if_changed(&services, &headless)
            .await?
            .object(),
    )?;
    let mut hashes = Hashes {
        config: kb::text_hash(&conf),
        templates: BTreeMap::new(),
        refused: Vec::new(),
    };
    let claims: Api<PersistentVolumeClaim> = ctx.api_for(cr);
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let secret =
        kvrocks_operator_core::auth::secret_name(&name, cr.spec.pod.auth.secret_name.as_deref());
    let shards = shard_set(cr);
    for &shard in &shards {
        let set_name = names::shard_statefulset(&name, shard);
        let mut shard_selector = selector.clone();
        shard_selector.insert(SHARD.to_owned(), shard.to_string());
        let (set, template) = statefulset(
            cr,
            shard,
            &shard_selector,
            &config_name,
            &secret,
            &hashes.config,
        )?;
        let live = sets
            .get_opt(&set_name)
            .await
            .map_err(Error::kube(format!("get statefulset {set_name}")))?;
        let template = live
            .as_ref()
            .filter(|l| matches!(statefulset::claim_change(l, &set), ClaimChange::Other(_)))
            .and_then(statefulset::live_template_hash)
            .unwrap_or(template);
        hashes.templates.insert(shard, template);
        match statefulset::apply(&sets, &claims, &classes, &set, live.as_ref()).await? {
            SetApply::Applied(applied) => owned.record(applied.as_ref())?,
            SetApply::Replaced => {}
            SetApply::Refused(why) => {
                if let Some(live) = &live {
                    owned.record(live)?;
                }
                hashes.refused.push(format!("{set_name}: {why}"));
            }
        }
        let service = kb::service(
            meta(&set_name, &shard_selector)?,
            shard_selector.clone(),
            true,
        );
        owned.record(
            get_and_apply_if_changed(&services, &service)
                .await?
                .object(),
        )?;
        let pdb = builders::pdb(meta(&set_name, &shard_selector)?, &shard_selector, 1);
        owned.record(get_and_apply_if_changed(&pdbs, &pdb).await?.object())?;
    }
    // Objects of shards that left the layout. Only StatefulSets are listed on every pass; when
    // one is an orphan, the Services and PDBs go first and the StatefulSets last, so a pass
    // that fails halfway leaves an orphan StatefulSet that makes the next pass finish the job.
    let listed = sets
        .list_metadata(&kube::api::ListParams::default().labels(owned.selector()))
        .await
        .map_err(Error::kube(format!(
            "list statefulsets of {}",
            cr.name_any()
        )))?;
    if listed.items.iter().any(|s| owned.is_orphan(&s.metadata)) {
        owned.delete_orphans(&services).await?;
        owned.delete_orphans(&pdbs).await?;
        owned.delete_orphans(&sets).await?;
    }
    Ok(hashes)
}

/// One shard's StatefulSet, with the hash of its template (without kvrocks.conf) annotated on
/// the pods next to kvrocks.conf's.
fn statefulset(
    cr: &KvrocksCluster,
    shard: u32,
    selector: &BTreeMap<String, String>,
    config_map: &str,
    secret: &str,
    config_hash: &str,
) -> Result<(StatefulSet, String), Error> {
    let set_name = names::shard_statefulset(&cr.name_any(), shard);
    let mut pod_labels = builders::pod_labels(selector, &cr.spec.pod.pod_metadata);
    if let Some(sentinel) = &cr.spec.sentinel {
        pod_labels.insert(labels::SENTINEL.to_owned(), sentinel.name.clone());
    }
    let user_annotations = cr.spec.pod.pod_metadata.pod_annotations.clone();
    let build = |annotations: BTreeMap<String, String>| -> Result<StatefulSet, Error> {
        Ok(kb::statefulset(&kb::KvrocksSet {
            meta: builders::owned_meta(cr, &set_name, selector.clone())?,
            pod_labels: pod_labels.clone(),
            selector: selector.clone(),
            pod_annotations: annotations,
            service_name: set_name.clone(),
            replicas: set_size(cr, shard) as i32,
            spec: &cr.spec.pod,
            config_map: config_map.to_owned(),
            secret: secret.to_owned(),
            cluster: true,
        }))
    };
    let template = kb::text_hash(
        &serde_json::to_string(&build(user_annotations.clone())?.spec.map(|s| s.template))
            .unwrap_or_default(),
    );
    let mut annotations = user_annotations;
    annotations.insert(
        kb::CONFIG_HASH_ANNOTATION.to_owned(),
        config_hash.to_owned(),
    );
    annotations.insert(kb::TEMPLATE_HASH_ANNOTATION.to_owned(), template.clone());
    Ok((build(annotations)?, template))
}
