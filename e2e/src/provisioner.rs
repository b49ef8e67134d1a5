//! The testbed's local dynamic PV provisioner (`testbed provision`): backs each PVC of the
//! `testbed-local` StorageClass with a directory under `<root>/pv`, exposed as a pre-bound PV
//! (kube-controller-manager's binder then binds the pair), and removes the directory and the PV
//! once it is released (reclaim policy Delete).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The StorageClass this provisioner serves (the cluster's default class).
pub const STORAGE_CLASS: &str = "testbed-local";
/// The provisioner name, in the StorageClass and in the PVs' `pv.kubernetes.io/provisioned-by`.
pub const PROVISIONER: &str = "testbed.kvrocks.io/local";

/// Field manager of the StorageClass apply.
const FIELD_MANAGER: &str = "testbed";
/// Annotation naming the provisioner that created a PV.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Annotations the PV controller sets on a PVC awaiting an external provisioner.
const STORAGE_PROVISIONER: [&str; 2] = [
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];
/// How often everything is listed again, in case a watch event was missed or a retry is due.
const RELIST: Duration = Duration::from_secs(30);

/// The PVC annotation naming the node the scheduler picked (WaitForFirstConsumer).
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The directory backing the PV `pv_name`.
pub fn pv_dir(pv_root: &Path, pv_name: &str) -> PathBuf {
    pv_root.join(pv_name)
}

/// The name of the PV provisioned for the PVC of that uid.
pub fn pv_name(pvc_uid: &str) -> String {
    format!("pvc-{pvc_uid}")
}

/// The StorageClass `testbed-local`: default class, this provisioner, reclaim policy Delete,
/// expansion allowed, bound once the scheduler placed the first pod (the volume is local to
/// that pod's node).
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.to_owned()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.to_owned(),
        reclaim_policy: Some("Delete".to_owned()),
        volume_binding_mode: Some("WaitForFirstConsumer".to_owned()),
        allow_volume_expansion: Some(true),
        ..Default::default()
    }
}

/// Server-side applies the StorageClass `testbed-local` (see [`storage_class`]).
pub async fn ensure_storage_class(client: &kube::Client) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(STORAGE_CLASS, &params, &Patch::Apply(&storage_class()))
        .await
        .map(drop)
        .map_err(|e| Error::kube(format!("apply storageclass {STORAGE_CLASS}"), e))
}

/// Whether this provisioner should create a PV for the PVC: it asks for `testbed-local` (by class
/// or by the PV controller's storage-provisioner annotation), is still Pending, names no volume,
/// is not being deleted and is not a raw block claim.
pub fn needs_pv(pvc: &PersistentVolumeClaim) -> bool {
    if pvc.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(spec) = &pvc.spec else {
        return false;
    };
    let ours = spec.storage_class_name.as_deref() == Some(STORAGE_CLASS)
        || pvc.metadata.annotations.as_ref().is_some_and(|a| {
            STORAGE_PROVISIONER
                .iter()
                .any(|k| a.get(*k).map(String::as_str) == Some(PROVISIONER))
        });
    let unbound = spec.volume_name.as_deref().is_none_or(str::is_empty);
    let pending = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    let filesystem = spec.volume_mode.as_deref() != Some("Block");
    ours && unbound && pending && filesystem
}

/// The node a `local` volume for the PVC goes to: the scheduler's pick, once it made one.
pub fn selected_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()?
        .get(SELECTED_NODE)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

/// The PV for the PVC, backed by `dir`: a `local` volume only `node` can mount (kubelet hands it
/// to the pod's `fsGroup` as it does a real disk), pre-bound to the claim (`claimRef` with its
/// uid), with the claim's requested storage and access modes, reclaim policy Delete.
pub fn build_pv(pvc: &PersistentVolumeClaim, dir: &Path, node: &str) -> Result<PersistentVolume> {
    let what = || {
        format!(
            "persistentvolumeclaim {}/{}",
            pvc.namespace().unwrap_or_default(),
            pvc.name_any()
        )
    };
    let uid = pvc
        .metadata
        .uid
        .clone()
        .ok_or_else(|| Error::invalid(what(), "no uid"))?;
    let namespace = pvc
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::invalid(what(), "no namespace"))?;
    let name = pvc
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::invalid(what(), "no name"))?;
    let spec = pvc
        .spec
        .as_ref()
        .ok_or_else(|| Error::invalid(what(), "no spec"))?;
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| Error::invalid(what(), "no storage request"))?;
    let access_modes = match &spec.access_modes {
        Some(modes) if !modes.is_empty() => modes.clone(),
        _ => vec!["ReadWriteOnce".to_owned()],
    };
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name(&uid)),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_owned(),
                PROVISIONER.to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_owned(), storage)])),
            access_modes: Some(access_modes),
            persistent_volume_reclaim_policy: Some("Delete".to_owned()),
            storage_class_name: Some(STORAGE_CLASS.to_owned()),
            volume_mode: Some("Filesystem".to_owned()),
            local: Some(LocalVolumeSource {
                path: dir.display().to_string(),
                fs_type: None,
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![node.to_owned()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: Some(namespace),
                name: Some(name),
                uid: Some(uid),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// Whether the PV is one of ours, released (or failed) with reclaim policy Delete.
pub fn needs_reclaim(pv: &PersistentVolume) -> bool {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    let released = matches!(
        pv.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Released" | "Failed")
    );
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    ours && released && delete
}

/// The PV's directory if it lies strictly inside `pv_root` (no `..`, not the root itself).
fn owned_dir(pv: &PersistentVolume, pv_root: &Path) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    let path = PathBuf::from(&spec.local.as_ref()?.path);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    (plain && path.starts_with(pv_root) && path != pv_root).then_some(path)
}

/// Creates the directory and the PV for a PVC that needs one. An existing PV is fine.
async fn provision(
    pvs: &Api<PersistentVolume>,
    pv_root: &Path,
    pvc: &PersistentVolumeClaim,
) -> Result<()> {
    if !needs_pv(pvc) {
        return Ok(());
    }
    // Provisioned once the scheduler has placed the first pod.
    let Some(node) = selected_node(pvc) else {
        return Ok(());
    };
    let Some(uid) = pvc.metadata.uid.as_deref() else {
        return Ok(());
    };
    let name = pv_name(uid);
    let dir = pv_dir(pv_root, &name);
    let pv = build_pv(pvc, &dir, node)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(
                pv = %name,
                pvc = %pvc.name_any(),
                namespace = %pvc.namespace().unwrap_or_default(),
                "volume provisioned"
            );
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("create persistentvolume {name}"), e)),
    }
}

/// Removes the directory and the object of a released PV of ours.
async fn reclaim(pvs: &Api<PersistentVolume>, pv_root: &Path, pv: &PersistentVolume) -> Result<()> {
    if !needs_reclaim(pv) || pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let name = pv.name_any();
    match owned_dir(pv, pv_root) {
        Some(dir) => match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove directory", &dir, e)),
        },
        None => tracing::warn!(
            pv = %name,
            root = %pv_root.display(),
            "the volume's directory is not under the PV root: left in place"
        ),
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pvs.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(pv = %name, "volume reclaimed");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete persistentvolume {name}"), e)),
    }
}

/// Lists every PVC and PV and handles each (the periodic safety net beside the watches).
async fn relist(
    pvcs: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    pv_root: &Path,
) -> Result<()> {
    let claims = pvcs
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("list persistentvolumeclaims", e))?;
    for pvc in &claims.items {
        if let Err(e) = provision(pvs, pv_root, pvc).await {
            tracing::warn!(error = %e, "provisioning failed; retrying later");
        }
    }
    let volumes = pvs
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("list persistentvolumes", e))?;
    for pv in &volumes.items {
        if let Err(e) = reclaim(pvs, pv_root, pv).await {
            tracing::warn!(error = %e, "reclaiming failed; retrying later");
        }
    }
    Ok(())
}

/// Watches PVCs and PVs (and lists them all every 30 s) until `shutdown`: provisions a PV for
/// each PVC of ours that needs one, and reclaims released PVs of ours. Errors are logged and
/// retried on the next event or relist.
pub async fn run(client: kube::Client, pv_root: PathBuf, shutdown: CancellationToken) {
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client);
    let claims = watcher::watcher(pvcs.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let volumes = watcher::watcher(pvs.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(claims, volumes);
    let mut ticks = tokio::time::interval(RELIST);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut claims_open = true;
    let mut volumes_open = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(e) = relist(&pvcs, &pvs, &pv_root).await {
                    tracing::warn!(error = %e, "volume relist failed; retrying later");
                }
            }
            item = claims.next(), if claims_open => match item {
                Some(Ok(pvc)) => {
                    if let Err(e) = provision(&pvs, &pv_root, &pvc).await {
                        tracing::warn!(error = %e, "provisioning failed; retrying later");
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "persistentvolumeclaim watch failed"),
                None => claims_open = false,
            },
            item = volumes.next(), if volumes_open => match item {
                Some(Ok(pv)) => {
                    if let Err(e) = reclaim(&pvs, &pv_root, &pv).await {
                        tracing::warn!(error = %e, "reclaiming failed; retrying later");
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "persistentvolume watch failed"),
                None => volumes_open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn pvc(value: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(value).unwrap()
    }

    fn pending_claim() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-kv-0", "namespace": "ns1", "uid": "1234-abcd"},
            "spec": {
                "storageClassName": "testbed-local",
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}
            },
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn pending_claim_of_our_class_needs_a_pv() {
        assert!(needs_pv(&pvc(pending_claim())));
        let mut fresh = pending_claim();
        fresh.as_object_mut().unwrap().remove("status");
        assert!(needs_pv(&pvc(fresh)));
    }

    #[test]
    fn claim_annotated_for_our_provisioner_needs_a_pv() {
        for key in STORAGE_PROVISIONER {
            let mut value = pending_claim();
            value["spec"]["storageClassName"] = serde_json::json!("other");
            value["metadata"]["annotations"] = serde_json::json!({ key: PROVISIONER });
            assert!(needs_pv(&pvc(value)), "{key}");
        }
    }

    #[test]
    fn other_claims_do_not_need_a_pv() {
        let mut other_class = pending_claim();
        other_class["spec"]["storageClassName"] = serde_json::json!("fast");
        other_class["metadata"]["annotations"] =
            serde_json::json!({"volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"});
        assert!(!needs_pv(&pvc(other_class)));

        let mut bound = pending_claim();
        bound["status"]["phase"] = serde_json::json!("Bound");
        bound["spec"]["volumeName"] = serde_json::json!("pvc-1234-abcd");
        assert!(!needs_pv(&pvc(bound)));

        let mut named = pending_claim();
        named["spec"]["volumeName"] = serde_json::json!("some-pv");
        assert!(!needs_pv(&pvc(named)));

        let mut deleting = pending_claim();
        deleting["metadata"]["deletionTimestamp"] = serde_json::json!("2024-01-01T00:00:00Z");
        assert!(!needs_pv(&pvc(deleting)));

        let mut lost = pending_claim();
        lost["status"]["phase"] = serde_json::json!("Lost");
        assert!(!needs_pv(&pvc(lost)));

        let mut block = pending_claim();
        block["spec"]["volumeMode"] = serde_json::json!("Block");
        assert!(!needs_pv(&pvc(block)));
    }

    #[test]
    fn pv_is_a_prebound_local_volume_on_the_chosen_node() {
        let claim = pvc(pending_claim());
        let dir = pv_dir(Path::new("/root/pv"), "pvc-1234-abcd");
        assert_eq!(dir, Path::new("/root/pv/pvc-1234-abcd"));
        let pv = build_pv(&claim, &dir, "node-1").unwrap();
        let value = serde_json::to_value(&pv).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": "pvc-1234-abcd",
                    "annotations": {"pv.kubernetes.io/provisioned-by": "testbed.kvrocks.io/local"}
                },
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "testbed-local",
                    "volumeMode": "Filesystem",
                    "local": {"path": "/root/pv/pvc-1234-abcd"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}
                    ]}]}},
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": "ns1",
                        "name": "data-kv-0",
                        "uid": "1234-abcd"
                    }
                }
            })
        );
    }

    #[test]
    fn pv_needs_a_storage_request() {
        let mut value = pending_claim();
        value["spec"]["resources"] = serde_json::json!({});
        assert!(build_pv(&pvc(value), Path::new("/x"), "node-1").is_err());
    }

    fn released_pv(path: &str) -> PersistentVolume {
        let mut pv = build_pv(&pvc(pending_claim()), Path::new(path), "node-1").unwrap();
        pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Released".to_owned()),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn released_pv_of_ours_is_reclaimed() {
        let pv = released_pv("/root/pv/pvc-1234-abcd");
        assert!(needs_reclaim(&pv));
        let mut failed = pv.clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".to_owned());
        assert!(needs_reclaim(&failed));
        let mut bound = pv.clone();
        bound.status.as_mut().unwrap().phase = Some("Bound".to_owned());
        assert!(!needs_reclaim(&bound));
        let mut retain = pv.clone();
        retain
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Retain".to_owned());
        assert!(!needs_reclaim(&retain));
        let mut foreign = pv;
        foreign.metadata.annotations = None;
        assert!(!needs_reclaim(&foreign));
    }

    #[test]
    fn only_directories_under_the_root_are_removed() {
        let root = Path::new("/root/pv");
        assert_eq!(
            owned_dir(&released_pv("/root/pv/pvc-1"), root),
            Some(PathBuf::from("/root/pv/pvc-1"))
        );
        assert_eq!(owned_dir(&released_pv("/root/pv"), root), None);
        assert_eq!(owned_dir(&released_pv("/root/pv/../etc"), root), None);
        assert_eq!(owned_dir(&released_pv("/root/pvx/pvc-1"), root), None);
        assert_eq!(owned_dir(&released_pv("/elsewhere/pvc-1"), root), None);
    }

    #[test]
    fn storage_class_is_default_and_immediate() {
        let value = serde_json::to_value(storage_class()).unwrap();
        assert_eq!(value["provisioner"], PROVISIONER);
        assert_eq!(value["reclaimPolicy"], "Delete");
        assert_eq!(value["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(value["allowVolumeExpansion"], true);
        assert_eq!(
            value["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
            "true"
        );
    }
}
