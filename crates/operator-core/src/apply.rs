//! Server-side apply of the objects a controller owns, and of its custom resources' status.
//!
//! Every write uses field manager [`MANAGER`] and `force`, so the operator owns the fields it
//! sets even after someone edited them with another tool.
//!
//! # Skipping writes that change nothing
//!
//! [`apply_if_changed`] compares the desired object with the live one (from a reflector store
//! or a GET) and writes only when they differ. Two checks together make that sound:
//!
//! 1. **A hash of the desired object** goes into the [`APPLIED_HASH_ANNOTATION`] annotation of
//!    every applied object. When the desired object changes in any way, including a field the
//!    operator *stopped* setting (which server-side apply must remove), the hash changes and
//!    the object is written. Comparing fields alone cannot see removals: the live object still
//!    holds the field the operator no longer asks for.
//! 2. **The desired fields must be present in the live object** ([`is_subset`]), so drift of a
//!    field the operator sets (someone ran `kubectl scale` or `kubectl edit`) is put back. Fields
//!    only the live object has (defaults, other managers' fields, status) are ignored.
//!
//! The subset check forgives what the API server does to an applied object (dropped zero
//! values, normalized quantities); anything else it cannot forgive only costs an extra apply,
//! which the server treats as a no-op (no new `resourceVersion`, no watch event), so it can
//! never become an update loop. Builders should still emit what the server stores (use `data`
//! rather than `stringData` in Secrets, canonical quantities) to keep the steady state silent.
//!
//! The alternative, parsing `managedFields` to learn which fields the operator owns, needs the
//! schema's list-merge keys for every kind and was judged not worth its complexity.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kvrocks_api::labels::MANAGER;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::compare::{is_subset, same_ignoring_empty, strip_nulls};
use crate::error::{Error, Result, kind_of, object_name};

/// Annotation holding a hash of the object as the operator last applied it.
pub const APPLIED_HASH_ANNOTATION: &str = "kvrocks.io/applied-hash";

/// Metadata fields the server owns; sending them in an apply is wrong (`resourceVersion` would
/// turn the apply into a conditional update, `managedFields` would overwrite the server's).
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The patch parameters of every apply: field manager [`MANAGER`], forced.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// What [`apply_if_changed`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied<K> {
    /// The object was written; this is the server's answer.
    Written(K),
    /// The live object already held the desired fields; nothing was sent.
    Unchanged(K),
}

impl<K> Applied<K> {
    /// The object as the server holds it.
    pub fn object(&self) -> &K {
        match self {
            Applied::Written(obj) | Applied::Unchanged(obj) => obj,
        }
    }

    /// The object as the server holds it, by value.
    pub fn into_object(self) -> K {
        match self {
            Applied::Written(obj) | Applied::Unchanged(obj) => obj,
        }
    }

    /// Whether a request was sent.
    pub fn was_written(&self) -> bool {
        matches!(self, Applied::Written(_))
    }
}

/// Applies `obj` with server-side apply and returns the object the server holds afterwards.
///
/// Server-owned metadata (`managedFields`, `resourceVersion`, `uid`, ...) and `status` are never
/// sent; `apiVersion` and `kind` always are. The body carries [`APPLIED_HASH_ANNOTATION`].
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let name = name_of(obj)?;
    let body = apply_body(obj)?;
    send_apply(api, &name, obj, &body).await
}

/// Applies `desired` unless `live` already holds it (see the module documentation).
///
/// `live` is the current object, from a reflector store or a GET, or `None` when it does not
/// exist (or is not known, in which case the object is simply written).
pub async fn apply_if_changed<K>(api: &Api<K>, desired: &K, live: Option<&K>) -> Result<Applied<K>>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let name = name_of(desired)?;
    let body = apply_body(desired)?;
    if let Some(live) = live {
        let live_json = to_json(live)?;
        if is_subset(&body, &live_json) {
            tracing::trace!(kind = %kind_of::<K>(), object = %object_name(desired), "unchanged, not applied");
            return Ok(Applied::Unchanged(live.clone()));
        }
    }
    send_apply(api, &name, desired, &body)
        .await
        .map(Applied::Written)
}

/// Reads the live object with a GET, then [`apply_if_changed`]: for callers without a cache.
/// This still saves the write (and the watch events it would cause) in the steady state.
pub async fn get_and_apply_if_changed<K>(api: &Api<K>, desired: &K) -> Result<Applied<K>>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let name = name_of(desired)?;
    let live = api.get_opt(&name).await.map_err(|source| Error::Get {
        kind: kind_of::<K>(),
        object: object_name(desired),
        source: Box::new(source),
    })?;
    apply_if_changed(api, desired, live.as_ref()).await
}

/// Applies the status subresource of the object `name` with server-side apply.
///
/// The body is `{apiVersion, kind, status}`, as server-side apply requires.
pub async fn patch_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let object = match api.namespace() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    };
    let mut status = serde_json::to_value(status).map_err(|source| Error::Serialize {
        kind: kind_of::<K>(),
        object: object.clone(),
        source,
    })?;
    strip_nulls(&mut status);
    let body = status_body::<K>(status);
    api.patch_status(name, &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(|source| Error::PatchStatus {
            kind: kind_of::<K>(),
            object,
            source: Box::new(source),
        })
}

/// Applies `status` to `live` unless `live.status` already holds exactly that; returns the
/// updated object, or `None` when nothing was sent.
///
/// The whole status belongs to the operator, so the comparison runs both ways (ignoring empty
/// values): a field the operator stopped setting is a change too.
pub async fn patch_status_if_changed<K, S>(api: &Api<K>, live: &K, status: &S) -> Result<Option<K>>
where
    K: Resource + Serialize + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let name = name_of(live)?;
    let mut desired = serde_json::to_value(status).map_err(|source| Error::Serialize {
        kind: kind_of::<K>(),
        object: object_name(live),
        source,
    })?;
    strip_nulls(&mut desired);
    let current = to_json(live)?.get("status").cloned().unwrap_or(Value::Null);
    if same_ignoring_empty(&desired, &current) {
        return Ok(None);
    }
    patch_status(api, &name, status).await.map(Some)
}

/// The JSON body of an apply of `obj`: server-owned metadata and `status` removed, `apiVersion`
/// and `kind` set, and [`APPLIED_HASH_ANNOTATION`] added.
pub fn apply_body<K>(obj: &K) -> Result<Value>
where
    K: Resource + Serialize,
    K::DynamicType: Default,
{
    let mut body = to_json(obj)?;
    strip_nulls(&mut body);
    let Value::Object(map) = &mut body else {
        return Err(Error::Serialize {
            kind: kind_of::<K>(),
            object: object_name(obj),
            source: serde::ser::Error::custom("the object did not serialize to a JSON object"),
        });
    };
    map.remove("status");
    let dt = K::DynamicType::default();
    map.insert(
        "apiVersion".into(),
        Value::String(K::api_version(&dt).into_owned()),
    );
    map.insert("kind".into(), Value::String(K::kind(&dt).into_owned()));
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(metadata) = metadata {
        for field in SERVER_METADATA {
            metadata.remove(*field);
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.remove(APPLIED_HASH_ANNOTATION);
            // A map left empty must hash like no map, or copying a live object changes the hash.
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    let hash = content_hash(&body);
    if let Some(Value::Object(metadata)) = body.get_mut("metadata") {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(annotations) = annotations {
            annotations.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(hash));
        }
    }
    Ok(body)
}

/// A stable 64-bit FNV-1a hash of `value`'s JSON, as 16 hex digits.
///
/// Stable across builds and Rust versions (unlike `std`'s hasher), so an operator upgrade does
/// not rewrite every object. serde_json's maps are ordered by key, so equal JSON hashes equally.
/// Change detection needs no cryptographic strength.
pub fn content_hash(value: &Value) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let text = value.to_string();
    let hash = text
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

fn status_body<K>(status: Value) -> Value
where
    K: Resource,
    K::DynamicType: Default,
{
    let dt = K::DynamicType::default();
    json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": status,
    })
}

async fn send_apply<K>(api: &Api<K>, name: &str, obj: &K, body: &Value) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    tracing::debug!(kind = %kind_of::<K>(), object = %object_name(obj), "applying");
    api.patch(name, &apply_params(), &Patch::Apply(body))
        .await
        .map_err(|source| Error::Apply {
            kind: kind_of::<K>(),
            object: object_name(obj),
            source: Box::new(source),
        })
}

fn name_of<K>(obj: &K) -> Result<String>
where
    K: Resource,
    K::DynamicType: Default,
{
    obj.meta().name.clone().ok_or_else(|| Error::MissingName {
        kind: kind_of::<K>(),
        namespace: obj.namespace(),
    })
}

fn to_json<K>(obj: &K) -> Result<Value>
where
    K: Resource + Serialize,
    K::DynamicType: Default,
{
    serde_json::to_value(obj).map_err(|source| Error::Serialize {
        kind: kind_of::<K>(),
        object: object_name(obj),
        source,
    })
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
