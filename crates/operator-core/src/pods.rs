//! Facts about pods every controller reads the same way.

use k8s_openapi::api::core::v1::Pod;

/// Whether the pod's `Ready` condition is True (Services route to it).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
