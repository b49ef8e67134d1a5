//! Adding and removing one finalizer with a merge patch guarded by the resourceVersion (a
//! concurrent change makes the patch fail with 409 and the reconcile runs again).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, object_name};

fn patch_err<K: Resource<DynamicType = ()>>(obj: &K) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Apply {
        kind: K::kind(&()).into_owned(),
        object: object_name(obj),
        source: Box::new(source),
    }
}

/// Whether `obj` carries `finalizer`.
pub fn has<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

/// Adds `finalizer` unless present.
pub async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has(obj, finalizer) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(finalizer.to_owned());
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(patch_err(obj))
}

/// Removes `finalizer`; an object already gone is fine.
pub async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !has(obj, finalizer) {
        return Ok(());
    }
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(patch_err(obj)(e)),
    }
}
