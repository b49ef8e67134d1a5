//! Applying a data StatefulSet when its volume claims changed. Kubernetes refuses every change to
//! `volumeClaimTemplates` of a StatefulSet; a controller that simply applied it would fail each
//! pass before it reached failover, pushes or migrations. Here:
//! - a larger `storage.size` (same class) is an expansion: each existing claim is patched to the
//!   new size when its StorageClass allows expansion, then the StatefulSet is deleted with the
//!   orphan cascade (its pods keep running) and written again on the next pass, which adopts
//!   them ([`SetApply::Replaced`]);
//! - any other claim change, a class that does not allow expansion, or a write the API server
//!   refuses as invalid is [`SetApply::Refused`] with the reason, for a condition: the live
//!   StatefulSet stays, and the caller keeps comparing pods with the live pod template
//!   ([`live_template_hash`]) so nothing rolls towards a template that was never applied.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, ResourceExt};

use crate::apply::{Applied, apply_if_changed};
use crate::builders::kvrocks::TEMPLATE_HASH_ANNOTATION;
use crate::compare::parse_quantity;
use crate::error::{Error, Result};

/// What applying a StatefulSet came to.
#[derive(Clone, Debug, PartialEq)]
pub enum SetApply {
    /// Written or already current.
    Applied(Box<StatefulSet>),
    /// Its claims grew: they were patched and the StatefulSet deleted without its pods; the next
    /// pass creates it again.
    Replaced,
    /// Not applied (the reason, for a condition); the live one stays.
    Refused(String),
}

/// The pod template hash of the live StatefulSet (what its pods run).
pub fn live_template_hash(live: &StatefulSet) -> Option<String> {
    live.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH_ANNOTATION)
        .cloned()
}

/// What differs between two sets of claim templates.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimChange {
    /// Nothing.
    None,
    /// Only the requested storage of existing claims, each to the new size, by claim name.
    Grow(Vec<(String, Quantity, Option<String>)>),
    /// Anything else (the message says what).
    Other(String),
}

fn claims(set: &StatefulSet) -> Vec<PersistentVolumeClaim> {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
}

fn request(spec: Option<&PersistentVolumeClaimSpec>) -> Option<Quantity> {
    spec?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

/// How the claim templates of `desired` differ from `live`'s (pure).
pub fn claim_change(live: &StatefulSet, desired: &StatefulSet) -> ClaimChange {
    let (old, new) = (claims(live), claims(desired));
    if old.len() != new.len() {
        return ClaimChange::Other(if old.is_empty() {
            "storage added to a StatefulSet that runs on emptyDir volumes".into()
        } else if new.is_empty() {
            "storage removed from a StatefulSet that runs on persistent volumes".into()
        } else {
            "the volume claims changed".into()
        });
    }
    let mut grown = Vec::new();
    for (o, n) in old.iter().zip(&new) {
        let (os, ns) = (o.spec.as_ref(), n.spec.as_ref());
        if o.name_any() != n.name_any() {
            return ClaimChange::Other("the volume claims changed".into());
        }
        let class =
            |s: Option<&PersistentVolumeClaimSpec>| s.and_then(|s| s.storage_class_name.clone());
        if class(ns).is_some() && class(os) != class(ns) {
            return ClaimChange::Other(format!(
                "storage.storageClassName cannot change on a running StatefulSet ({:?} -> {:?})",
                class(os),
                class(ns)
            ));
        }
        let (Some(was), Some(wanted)) = (request(os), request(ns)) else {
            continue;
        };
        if was == wanted {
            continue;
        }
        match (parse_quantity(&was.0), parse_quantity(&wanted.0)) {
            (Some(a), Some(b)) if b > a => grown.push((n.name_any(), wanted, class(os))),
            (Some(a), Some(b)) if b < a => {
                return ClaimChange::Other(format!(
                    "storage.size cannot shrink ({} -> {}): volumes only grow",
                    was.0, wanted.0
                ));
            }
            (Some(_), Some(_)) => {}
            _ => {
                return ClaimChange::Other(format!(
                    "storage.size {} cannot be compared with {}",
                    wanted.0, was.0
                ));
            }
        }
    }
    if grown.is_empty() {
        ClaimChange::None
    } else {
        ClaimChange::Grow(grown)
    }
}

/// Applies `desired` against `live` (see the module documentation); `existing` is how many
/// ordinals may hold claims (the live or desired size, whichever is larger).
pub async fn apply(
    api: &Api<StatefulSet>,
    claims_api: &Api<PersistentVolumeClaim>,
    classes: &Api<StorageClass>,
    desired: &StatefulSet,
    live: Option<&StatefulSet>,
) -> Result<SetApply> {
    if let Some(live) = live {
        match claim_change(live, desired) {
            ClaimChange::None => {}
            ClaimChange::Other(why) => return Ok(SetApply::Refused(why)),
            ClaimChange::Grow(grown) => {
                return expand(api, claims_api, classes, live, &grown).await;
            }
        }
    }
    match apply_if_changed(api, desired, live).await {
        Ok(applied) => Ok(SetApply::Applied(Box::new(Applied::into_object(applied)))),
        Err(Error::Apply { source, .. }) if is_invalid(&source) => Ok(SetApply::Refused(format!(
            "the API server refuses the StatefulSet: {source}"
        ))),
        Err(e) => Err(e),
    }
}

fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 422)
}

async fn expand(
    api: &Api<StatefulSet>,
    claims_api: &Api<PersistentVolumeClaim>,
    classes: &Api<StorageClass>,
    live: &StatefulSet,
    grown: &[(String, Quantity, Option<String>)],
) -> Result<SetApply> {
    let set = live.name_any();
    let replicas = live
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0)
        .max(0);
    for (claim, size, class) in grown {
        for ordinal in 0..replicas {
            let name = format!("{claim}-{set}-{ordinal}");
            let Some(pvc) = claims_api.get_opt(&name).await.map_err(get_error(&name))? else {
                continue;
            };
            let class = pvc
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .or_else(|| class.clone());
            if let Some(why) = not_expandable(classes, class.as_deref()).await? {
                return Ok(SetApply::Refused(why));
            }
            if request(pvc.spec.as_ref()).as_ref() == Some(size) {
                continue;
            }
            let patch =
                serde_json::json!({"spec": {"resources": {"requests": {"storage": size.0}}}});
            if let Err(e) = claims_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                return Ok(SetApply::Refused(format!(
                    "the claim {name} cannot grow to {}: {e}",
                    size.0
                )));
            }
            tracing::info!(claim = %name, size = %size.0, "volume claim grown");
        }
    }
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    api.delete(&set, &orphan).await.map_err(|e| Error::Apply {
        kind: "StatefulSet".into(),
        object: set.clone(),
        source: Box::new(e),
    })?;
    tracing::info!(statefulset = %set, "StatefulSet deleted without its pods, to be written with the larger claims");
    Ok(SetApply::Replaced)
}

fn get_error(name: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Get {
        kind: "PersistentVolumeClaim".into(),
        object: name.to_owned(),
        source: Box::new(e),
    }
}

/// Why claims of `class` cannot grow, if they cannot.
async fn not_expandable(
    classes: &Api<StorageClass>,
    class: Option<&str>,
) -> Result<Option<String>> {
    let Some(class) = class else {
        return Ok(Some(
            "storage.size grew, but the claims name no StorageClass to ask whether it allows expansion".into(),
        ));
    };
    let found = match classes.get_opt(class).await {
        Ok(found) => found,
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Ok(Some(format!(
                "storage.size grew, but the operator may not read StorageClass {class} to see whether it allows expansion"
            )));
        }
        Err(e) => return Err(get_error(class)(e)),
    };
    Ok(match found {
        Some(sc) if sc.allow_volume_expansion == Some(true) => None,
        Some(_) => Some(format!(
            "storage.size grew, but StorageClass {class} does not allow volume expansion (allowVolumeExpansion)"
        )),
        None => Some(format!(
            "storage.size grew, but StorageClass {class} does not exist"
        )),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(claims: &[(&str, &str, Option<&str>)]) -> StatefulSet {
        let templates = claims
            .iter()
            .map(|(name, size, class)| PersistentVolumeClaim {
                metadata: kube::api::ObjectMeta {
                    name: Some((*name).into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    storage_class_name: class.map(Into::into),
                    resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
                        requests: Some([("storage".to_owned(), Quantity((*size).into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        StatefulSet {
            spec: Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
                volume_claim_templates: Some(templates),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_larger_size_of_the_same_claims_is_an_expansion() {
        let live = set(&[("data", "1Gi", Some("fast"))]);
        assert_eq!(claim_change(&live, &live), ClaimChange::None);
        assert_eq!(
            claim_change(&live, &set(&[("data", "1024Mi", Some("fast"))])),
            ClaimChange::None
        );
        assert_eq!(
            claim_change(&live, &set(&[("data", "2Gi", Some("fast"))])),
            ClaimChange::Grow(vec![(
                "data".into(),
                Quantity("2Gi".into()),
                Some("fast".into())
            )])
        );
        // The class left to the default in the spec: no change of class.
        assert!(matches!(
            claim_change(&live, &set(&[("data", "2Gi", None)])),
            ClaimChange::Grow(_)
        ));
        for refused in [
            set(&[("data", "512Mi", Some("fast"))]),
            set(&[("data", "1Gi", Some("slow"))]),
            set(&[]),
            set(&[("other", "1Gi", Some("fast"))]),
            set(&[("data", "lots", Some("fast"))]),
        ] {
            assert!(
                matches!(claim_change(&live, &refused), ClaimChange::Other(_)),
                "{refused:?}"
            );
        }
        assert!(matches!(
            claim_change(&set(&[]), &live),
            ClaimChange::Other(m) if m.contains("emptyDir")
        ));
    }
}
