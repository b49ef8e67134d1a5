//! The error type of the shared operator machinery, and the trait every controller error
//! implements so [`crate::Context::error_policy`] can count it under a stable label.

use kube::Resource;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What failed in the shared machinery, and on which object.
///
/// `object` is always `namespace/name` (or `name` for cluster-scoped objects) and `kind` the
/// Kubernetes kind, so a log line or an Event tells a person where to look.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object handed to a helper has no `metadata.name`.
    #[error("{kind} in namespace {namespace:?} has no metadata.name")]
    MissingName {
        /// Kind of the object.
        kind: String,
        /// Namespace of the object, if it had one.
        namespace: Option<String>,
    },

    /// The object has no `metadata.uid`, which orphan cleanup needs to tell objects apart.
    #[error("{kind} {object} has no metadata.uid")]
    MissingUid {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
    },

    /// An object could not be turned into JSON for a request.
    #[error("serializing {kind} {object}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// The serializer's error.
        source: serde_json::Error,
    },

    /// Reading an object from the API server failed.
    #[error("getting {kind} {object}: {source}")]
    Get {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Server-side apply of an object failed.
    #[error("applying {kind} {object}: {source}")]
    Apply {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Server-side apply of the status subresource failed.
    #[error("applying status of {kind} {object}: {source}")]
    PatchStatus {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Listing the objects of a kind for orphan cleanup failed.
    #[error("listing {kind} labelled {selector} for orphan cleanup of {owner}: {source}")]
    ListOrphans {
        /// Kind of the objects listed.
        kind: String,
        /// `namespace/name` of the owning custom resource.
        owner: String,
        /// The label selector used.
        selector: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Deleting an orphaned object failed.
    #[error("deleting orphaned {kind} {object}: {source}")]
    DeleteOrphan {
        /// Kind of the object.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Publishing a Kubernetes Event failed.
    #[error("publishing event {reason} on {kind} {object}: {source}")]
    PublishEvent {
        /// Kind of the object the event is about.
        kind: String,
        /// `namespace/name` of the object the event is about.
        object: String,
        /// The event's reason.
        reason: String,
        /// The client's error.
        source: Box<kube::Error>,
    },

    /// Creating, registering or encoding a metric failed.
    #[error("metrics: {what}: {source}")]
    Metrics {
        /// Which metric or step failed.
        what: String,
        /// The prometheus crate's error.
        source: prometheus::Error,
    },
}

impl Error {
    /// A short, stable label for the `reason` of `kvrocks_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingName { .. } => "missing_name",
            Error::MissingUid { .. } => "missing_uid",
            Error::Serialize { .. } => "serialize",
            Error::Get { .. } => "get",
            Error::Apply { .. } => "apply",
            Error::PatchStatus { .. } => "patch_status",
            Error::ListOrphans { .. } => "list_orphans",
            Error::DeleteOrphan { .. } => "delete_orphan",
            Error::PublishEvent { .. } => "publish_event",
            Error::Metrics { .. } => "metrics",
        }
    }
}

/// An error a controller's `reconcile` returns: it knows its stable metric label.
///
/// Controllers implement this for their own error enums (usually by delegating to
/// [`Error::metric_label`] for the variant that wraps [`Error`]) so that
/// [`crate::Context::error_policy`] can count every failure under a bounded set of labels.
pub trait ReconcileError: std::error::Error {
    /// A short, stable, low-cardinality label naming what failed (`apply`, `invalid_spec`, ...).
    fn metric_label(&self) -> &'static str;

    /// When the apiserver refused an object the operator applied (invalid, forbidden, too
    /// large: a 4xx other than a conflict or throttling), what it said, for a condition: retrying
    /// will not help until the spec (or the operator's permissions) change.
    fn refused_apply(&self) -> Option<String> {
        None
    }
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        Error::metric_label(self)
    }

    fn refused_apply(&self) -> Option<String> {
        match self {
            Error::Apply {
                kind,
                object,
                source,
            } => match source.as_ref() {
                kube::Error::Api(status)
                    if (400..500).contains(&status.code) && ![409, 429].contains(&status.code) =>
                {
                    Some(format!(
                        "the apiserver refused {kind} {object} ({}): {}",
                        status.code, status.message
                    ))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// What can make one controller's reconcile fail (and be retried with backoff). A data pod or
/// sentinel that does not answer is not an error: it is observed, planned around and reported.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A shared helper (apply, status, finalizer) failed.
    #[error(transparent)]
    Core(#[from] Error),
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, on which object.
        action: String,
        /// The client error.
        source: Box<kube::Error>,
    },
    /// The custom resource has no namespace (it is namespaced; the API server always sets it).
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl ControllerError {
    /// A `map_err` adapter for kube errors: `action` says what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ControllerError {
        let action = action.into();
        move |source| ControllerError::Kube {
            action,
            source: Box::new(source),
        }
    }
}

impl ReconcileError for ControllerError {
    fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Core(e) => e.metric_label(),
            ControllerError::Kube { .. } => "kube",
            ControllerError::NoNamespace(_) => "no_namespace",
        }
    }

    fn refused_apply(&self) -> Option<String> {
        match self {
            ControllerError::Core(e) => e.refused_apply(),
            _ => None,
        }
    }
}

/// `namespace/name` of an object, or `name` alone for a cluster-scoped object.
///
/// An object without a name (only possible before it was created) shows as `<unnamed>`.
pub fn object_name<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or("<unnamed>");
    match meta.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The Kubernetes kind of `K` as an owned string, for error messages.
pub(crate) fn kind_of<K>() -> String
where
    K: Resource,
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    #[test]
    fn object_name_is_namespace_slash_name() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        assert_eq!(object_name(&cm), "ns/a");
        let cluster_scoped = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        assert_eq!(object_name(&cluster_scoped), "a");
        assert_eq!(object_name(&ConfigMap::default()), "<unnamed>");
    }

    #[test]
    fn only_a_refusal_of_the_object_itself_is_a_refused_apply() {
        let apply = |code: u16| Error::Apply {
            kind: "StatefulSet".into(),
            object: "ns/db".into(),
            source: Box::new(kube::Error::Api(Box::new(
                kube::core::Status::failure("spec.volumeClaimTemplates: Forbidden", "Invalid")
                    .with_code(code),
            ))),
        };
        let said = apply(422).refused_apply().unwrap();
        assert!(
            said.contains("StatefulSet ns/db (422)") && said.contains("Forbidden"),
            "{said}"
        );
        assert!(apply(403).refused_apply().is_some());
        assert_eq!(apply(409).refused_apply(), None, "a conflict is retried");
        assert_eq!(apply(429).refused_apply(), None, "throttling is retried");
        assert_eq!(
            apply(500).refused_apply(),
            None,
            "a server error is retried"
        );
        let wrapped = ControllerError::Core(apply(422));
        assert!(wrapped.refused_apply().is_some());
    }

    #[test]
    fn messages_name_the_object_and_labels_are_stable() {
        let err = Error::MissingUid {
            kind: "Service".into(),
            object: "ns/svc".into(),
        };
        assert_eq!(err.to_string(), "Service ns/svc has no metadata.uid");
        assert_eq!(err.metric_label(), "missing_uid");
        assert_eq!(ReconcileError::metric_label(&err), "missing_uid");
    }
}
