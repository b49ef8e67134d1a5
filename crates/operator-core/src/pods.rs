//! Facts about pods every controller reads the same way.

use k8s_openapi::api::core::v1::Pod;

/// Whether the pod's `Ready` condition is True (Services route to it).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP once it has one and runs (`Running` phase), None before.
pub fn running_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    status.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// Records on the pod that it runs the current kvrocks.conf (`config_hash`) and, when given, the
/// StatefulSet's current revision, so the rollout does not restart it.
pub async fn mark_current(
    pods: &kube::Api<Pod>,
    pod: &str,
    config_hash: &str,
    revision: Option<&str>,
) -> crate::Result<()> {
    use crate::builders::kvrocks::CONFIG_HASH_ANNOTATION;
    let mut patch = serde_json::json!({
        "metadata": {"annotations": {CONFIG_HASH_ANNOTATION: config_hash}}
    });
    if let Some(revision) = revision {
        patch["metadata"]["labels"] = serde_json::json!({"controller-revision-hash": revision});
    }
    pods.patch(
        pod,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| crate::Error::Apply {
        kind: "Pod".to_owned(),
        object: format!("{}/{pod}", pods.namespace().unwrap_or_default()),
        source: Box::new(source),
    })
}
