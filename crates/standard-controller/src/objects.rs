//! The objects a KvrocksStandard owns: ConfigMap `<cr>-config` (kvrocks.conf), StatefulSet
//! `<cr>`, headless Service `<cr>`, master Service `<cr>-master`, PodDisruptionBudget `<cr>`, and
//! the record of the password in effect, Secret `<cr>-auth-applied`. Each is written only when
//! its live copy differs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksStandard;
use kvrocks_api::labels::{self, Component, ROLE, Role, SENTINEL, names};
use kvrocks_client::Password;
use kvrocks_operator_core::builders::{self, kvrocks as kb};
use kvrocks_operator_core::server::ConfigVerdict;
use kvrocks_operator_core::statefulset::{self, SetApply};
use kvrocks_operator_core::{Context, get_and_apply_if_changed};

use crate::Error;

/// The current revision of the pods: two hashes on the pod template, of kvrocks.conf (a change
/// kvrocks may take live) and of the rest of the template (a change that needs a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashes {
    /// Hash of kvrocks.conf.
    pub config: String,
    /// Hash of the pod template without the two hash annotations.
    pub template: String,
}

fn selector(cr: &KvrocksStandard) -> BTreeMap<String, String> {
    labels::common_labels(&cr.name_any(), Component::Standard)
}

fn config_name(cr: &KvrocksStandard) -> String {
    format!("{}-config", cr.name_any())
}

/// The Secret holding the password (generated when `spec.auth.secretName` is absent).
pub fn secret_name(cr: &KvrocksStandard) -> String {
    kvrocks_operator_core::auth::secret_name(
        &cr.name_any(),
        cr.spec.pod.auth.secret_name.as_deref(),
    )
}

/// Applies kvrocks.conf (without the keys the running kvrocks does not know) and returns the
/// hashes of the current revision.
pub async fn apply_config(
    ctx: &Context,
    cr: &KvrocksStandard,
    verdict: &ConfigVerdict,
) -> Result<Hashes, Error> {
    let conf = kb::render_config(&cr.spec.pod, false, &verdict.unsupported);
    let config = kb::text_hash(&conf);
    let cm = kb::config_map(
        builders::owned_meta(cr, &config_name(cr), selector(cr))?,
        conf,
    );
    get_and_apply_if_changed(&ctx.api_for::<ConfigMap, _>(cr), &cm).await?;
    let bare = statefulset(cr, 0, cr.spec.pod.pod_metadata.pod_annotations.clone())?;
    let template = bare.spec.map(|s| s.template);
    let template = kb::text_hash(&serde_json::to_string(&template).unwrap_or_default());
    Ok(Hashes { config, template })
}

/// Pods are compared with the live StatefulSet's pod template while its volume claims changed in
/// a way that cannot be applied (see `kvrocks_operator_core::statefulset`): the new template is
/// not applied either, and nothing may roll towards it.
pub fn template_in_force(cr: &KvrocksStandard, live: Option<&StatefulSet>, hashes: &mut Hashes) {
    let Some(live) = live else { return };
    let Ok(desired) = statefulset(cr, 0, BTreeMap::new()) else {
        return;
    };
    if matches!(
        statefulset::claim_change(live, &desired),
        statefulset::ClaimChange::Other(_)
    ) && let Some(hash) = statefulset::live_template_hash(live)
    {
        hashes.template = hash;
    }
}

/// The live StatefulSet, read once per pass.
pub async fn live_statefulset(
    ctx: &Context,
    cr: &KvrocksStandard,
) -> Result<Option<StatefulSet>, Error> {
    let api: Api<StatefulSet> = ctx.api_for(cr);
    api.get_opt(&cr.name_any())
        .await
        .map_err(Error::kube(format!(
            "get statefulset {}/{}",
            cr.namespace().unwrap_or_default(),
            cr.name_any()
        )))
}

/// The StatefulSet's `spec.replicas` and `status.updateRevision`.
pub fn live_facts(set: Option<&StatefulSet>) -> (Option<u32>, Option<String>) {
    let replicas = set
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .map(|r| r.max(0) as u32);
    let revision = set
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    (replicas, revision)
}

fn statefulset(
    cr: &KvrocksStandard,
    replicas: u32,
    annotations: BTreeMap<String, String>,
) -> Result<StatefulSet, Error> {
    let name = cr.name_any();
    let selector = selector(cr);
    let mut pod_labels = builders::pod_labels(&selector, &cr.spec.pod.pod_metadata);
    pod_labels.insert(SENTINEL.to_owned(), cr.spec.sentinel.name.clone());
    Ok(kb::statefulset(&kb::KvrocksSet {
        meta: builders::owned_meta(cr, &name, selector.clone())?,
        pod_labels,
        selector,
        pod_annotations: annotations,
        service_name: name.clone(),
        replicas: replicas as i32,
        spec: &cr.spec.pod,
        config_map: config_name(cr),
        secret: secret_name(cr),
        cluster: false,
    }))
}

/// Applies the StatefulSet at `replicas` pods (against `live`, read once per pass; what it came
/// to is returned: a claim change may replace it or be refused), the two Services and the
/// PodDisruptionBudget.
pub async fn apply_workload(
    ctx: &Context,
    cr: &KvrocksStandard,
    replicas: u32,
    hashes: &Hashes,
    live: Option<&StatefulSet>,
) -> Result<SetApply, Error> {
    let name = cr.name_any();
    let selector = selector(cr);
    let mut annotations = cr.spec.pod.pod_metadata.pod_annotations.clone();
    annotations.insert(kb::CONFIG_HASH_ANNOTATION.to_owned(), hashes.config.clone());
    annotations.insert(
        kb::TEMPLATE_HASH_ANNOTATION.to_owned(),
        hashes.template.clone(),
    );
    let set = statefulset(cr, replicas, annotations)?;
    let applied = statefulset::apply(
        &ctx.api_for::<StatefulSet, _>(cr),
        &ctx.api_for::<PersistentVolumeClaim, _>(cr),
        &Api::all(ctx.client.clone()),
        &set,
        live,
    )
    .await?;
    let services: Api<Service> = ctx.api_for(cr);
    let headless = kb::service(
        builders::owned_meta(cr, &name, selector.clone())?,
        selector.clone(),
        true,
    );
    get_and_apply_if_changed(&services, &headless).await?;
    let mut master_selector = selector.clone();
    master_selector.insert(ROLE.to_owned(), Role::Master.as_str().to_owned());
    let master = kb::service(
        builders::owned_meta(cr, &names::master_service(&name), selector.clone())?,
        master_selector,
        false,
    );
    get_and_apply_if_changed(&services, &master).await?;
    let pdb = builders::pdb(
        builders::owned_meta(cr, &name, selector.clone())?,
        &selector,
        1,
    );
    get_and_apply_if_changed(&ctx.api_for::<PodDisruptionBudget, _>(cr), &pdb).await?;
    Ok(applied)
}

/// Records `password` as the one in effect on the pods (Secret `<cr>-auth-applied`).
pub async fn record_password(
    ctx: &Context,
    cr: &KvrocksStandard,
    password: &Password,
) -> Result<(), Error> {
    kvrocks_operator_core::auth::record_password(&ctx.client, cr, Component::Standard, password)
        .await?;
    Ok(())
}
