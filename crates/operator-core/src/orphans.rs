//! Orphan cleanup, the Stackable way: every object applied in a reconcile pass is recorded by
//! UID; afterwards, every object that carries the instance's labels and is owned by the custom
//! resource but was not applied in this pass is an orphan (a shard scaled away, a Service no
//! longer needed) and is deleted.
//!
//! Call [`OwnedObjects::delete_orphans`] only after a pass applied *everything* it wanted: a pass
//! that stopped early (an error, an invalid spec) would otherwise delete objects it merely did not
//! get to. Returning early with `?` on apply errors gives exactly that.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;

use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Preconditions};
use kube::{Resource, ResourceExt};
use kvrocks_api::labels::{Component, selector};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::{Applied, apply_if_changed};
use crate::error::{Error, Result, kind_of, object_name};

/// The objects one reconcile pass of one custom resource applied, and the cleanup of the rest.
#[derive(Clone, Debug)]
pub struct OwnedObjects {
    owner: String,
    owner_uid: String,
    selector: String,
    applied: HashSet<String>,
}

impl OwnedObjects {
    /// Tracks the objects of `owner`, selected by the common labels of `component`
    /// ([`kvrocks_api::labels::selector`]).
    pub fn new<O>(owner: &O, component: Component) -> Result<Self>
    where
        O: Resource,
        O::DynamicType: Default,
    {
        Self::with_selector(owner, selector(&owner.name_any(), component))
    }

    /// Tracks the objects of `owner` that match `label_selector`.
    pub fn with_selector<O>(owner: &O, label_selector: String) -> Result<Self>
    where
        O: Resource,
        O::DynamicType: Default,
    {
        let owner_uid = owner.meta().uid.clone().ok_or_else(|| Error::MissingUid {
            kind: kind_of::<O>(),
            object: object_name(owner),
        })?;
        Ok(OwnedObjects {
            owner: object_name(owner),
            owner_uid,
            selector: label_selector,
            applied: HashSet::new(),
        })
    }

    /// The label selector used to find candidate orphans.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Records `obj` (as the server returned it) as applied in this pass.
    pub fn record<K>(&mut self, obj: &K) -> Result<()>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let uid = obj.meta().uid.clone().ok_or_else(|| Error::MissingUid {
            kind: kind_of::<K>(),
            object: object_name(obj),
        })?;
        self.applied.insert(uid);
        Ok(())
    }

    /// Whether an object with this UID was recorded in this pass.
    pub fn is_recorded(&self, uid: &str) -> bool {
        self.applied.contains(uid)
    }

    /// [`apply_if_changed`] and [`record`](Self::record) the result.
    pub async fn apply<K>(
        &mut self,
        api: &Api<K>,
        desired: &K,
        live: Option<&K>,
    ) -> Result<Applied<K>>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + Debug,
        K::DynamicType: Default,
    {
        let applied = apply_if_changed(api, desired, live).await?;
        self.record(applied.object())?;
        Ok(applied)
    }

    /// Whether the object with `meta` is an orphan: owned by this custom resource, not applied
    /// in this pass, and not already being deleted.
    pub fn is_orphan(&self, meta: &ObjectMeta) -> bool {
        let Some(uid) = meta.uid.as_deref() else {
            return false;
        };
        let owned = meta
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == self.owner_uid);
        owned && !self.applied.contains(uid) && meta.deletion_timestamp.is_none()
    }

    /// Lists the objects of kind `K` in `api` that carry the selector's labels and deletes the
    /// orphans among them; returns the names deleted, sorted.
    ///
    /// Each delete is conditional on the UID, so an object recreated under the same name in the
    /// meantime is left alone. Objects already gone are not an error.
    pub async fn delete_orphans<K>(&self, api: &Api<K>) -> Result<Vec<String>>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let listed = api
            .list_metadata(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|source| Error::ListOrphans {
                kind: kind_of::<K>(),
                owner: self.owner.clone(),
                selector: self.selector.clone(),
                source: Box::new(source),
            })?;
        let mut deleted = BTreeSet::new();
        for item in listed
            .items
            .iter()
            .filter(|item| self.is_orphan(&item.metadata))
        {
            let name = item.name_any();
            let object = match item.metadata.namespace.as_deref() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            let params = DeleteParams::background().preconditions(Preconditions {
                uid: item.metadata.uid.clone(),
                resource_version: None,
            });
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(kind = %kind_of::<K>(), object = %object, owner = %self.owner, "deleted orphan");
                    deleted.insert(name);
                }
                // 404: already gone; 409: the UID precondition failed, so the name now belongs
                // to a newer object, which is not ours to delete.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                    tracing::debug!(kind = %kind_of::<K>(), object = %object, code = status.code, "orphan already gone or replaced");
                }
                Err(source) => {
                    return Err(Error::DeleteOrphan {
                        kind: kind_of::<K>(),
                        object,
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(deleted.into_iter().collect())
    }
}

#[cfg(test)]
#[path = "orphans_tests.rs"]
mod tests;
