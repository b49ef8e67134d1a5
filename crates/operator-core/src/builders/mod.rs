//! Pure builders of the Kubernetes objects the controllers own: owner references, metadata,
//! default anti-affinity, headless Services and PodDisruptionBudgets. Kind-specific builders live
//! in the submodules.

pub mod kvrocks;
pub mod sentinel;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, EnvVar, EnvVarSource, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use kvrocks_api::common::{PodMetadata, Scheduling};

use crate::error::{Error, Result};

/// The user and group of the official `apache/kvrocks` and `redis` images (`kvrocks` and
/// `redis`, 999 on their Debian bases).
pub const IMAGE_USER: i64 = 999;

/// The pod security context of every pod the operator makes: not root, as the image's user, the
/// volumes handed to its group (`fsGroup`, changed only when a volume's root does not match, so a
/// large volume is not walked at every start), the runtime's default seccomp profile. Each field
/// set in `spec.securityContext` replaces the operator's.
pub fn pod_security_context(user: Option<&PodSecurityContext>) -> PodSecurityContext {
    let base = PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(IMAGE_USER),
        run_as_group: Some(IMAGE_USER),
        fs_group: Some(IMAGE_USER),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    };
    let Some(user) = user else {
        return base;
    };
    let (Ok(serde_json::Value::Object(mut merged)), Ok(serde_json::Value::Object(overrides))) =
        (serde_json::to_value(&base), serde_json::to_value(user))
    else {
        return base;
    };
    merged.extend(overrides);
    serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or(base)
}

/// The security context of every container the operator makes: no privilege escalation, no
/// capabilities, a read-only root filesystem (each writes only to its volumes).
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

/// The controller owner reference to `owner` (garbage collection, `owns` watches).
pub fn owner_reference<K>(owner: &K) -> Result<OwnerReference>
where
    K: Resource<DynamicType = ()>,
{
    owner
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid {
            kind: K::kind(&()).into_owned(),
            object: crate::error::object_name(owner),
        })
}

/// Metadata of an owned object: name, the owner's namespace, labels, owner reference.
pub fn owned_meta<K>(owner: &K, name: &str, labels: BTreeMap<String, String>) -> Result<ObjectMeta>
where
    K: Resource<DynamicType = ()>,
{
    Ok(ObjectMeta {
        name: Some(name.to_owned()),
        namespace: owner.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(owner)?]),
        ..Default::default()
    })
}

/// A label selector with exactly `labels`.
pub fn label_selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    }
}

/// Pod labels: the user's `podLabels` first, then ours (ours win).
pub fn pod_labels(
    ours: &BTreeMap<String, String>,
    metadata: &PodMetadata,
) -> BTreeMap<String, String> {
    let mut labels = metadata.pod_labels.clone();
    labels.extend(ours.clone());
    labels
}

/// Preferred anti-affinity across nodes for pods matching `selector` (the default when the spec
/// gives no affinity of its own).
pub fn spread_across_nodes(selector: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(label_selector(selector)),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Applies the spec's scheduling to a pod spec; without an affinity of its own, pods matching
/// `spread` prefer different nodes.
pub fn apply_scheduling(
    pod: &mut PodSpec,
    scheduling: &Scheduling,
    spread: &BTreeMap<String, String>,
) {
    pod.affinity = Some(
        scheduling
            .affinity
            .clone()
            .unwrap_or_else(|| spread_across_nodes(spread)),
    );
    if !scheduling.tolerations.is_empty() {
        pod.tolerations = Some(scheduling.tolerations.clone());
    }
    if !scheduling.node_selector.is_empty() {
        pod.node_selector = Some(scheduling.node_selector.clone());
    }
    if !scheduling.topology_spread_constraints.is_empty() {
        pod.topology_spread_constraints = Some(scheduling.topology_spread_constraints.clone());
    }
    pod.priority_class_name = scheduling.priority_class_name.clone();
}

/// A TCP service port.
pub fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

/// A Service selecting `selector`; headless (`clusterIP: None`, not-ready addresses published,
/// as StatefulSet peers need) or a normal ClusterIP one.
pub fn service(
    meta: ObjectMeta,
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
    headless: bool,
) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_owned()),
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A PodDisruptionBudget allowing `max_unavailable` voluntary disruptions among `selector`.
pub fn pdb(
    meta: ObjectMeta,
    selector: &BTreeMap<String, String>,
    max_unavailable: i32,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(label_selector(selector)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The environment variable `name` holding the password (key `password`) of the Secret `secret`.
pub fn password_env(name: &str, secret: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: kvrocks_api::labels::PASSWORD_KEY.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pods_run_as_the_image_user_unless_the_spec_says_otherwise() {
        let default = pod_security_context(None);
        assert_eq!(default.run_as_user, Some(999));
        assert_eq!(default.fs_group, Some(999));
        assert_eq!(default.run_as_non_root, Some(true));
        assert_eq!(
            default.fs_group_change_policy.as_deref(),
            Some("OnRootMismatch")
        );
        assert_eq!(default.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let user = PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000]),
            ..Default::default()
        };
        let merged = pod_security_context(Some(&user));
        assert_eq!(merged.fs_group, Some(2000));
        assert_eq!(merged.supplemental_groups, Some(vec![3000]));
        assert_eq!(
            merged.run_as_user,
            Some(999),
            "fields not set by the user stay ours"
        );
        let container = container_security_context();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(
            container.capabilities.unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
    }

    #[test]
    fn user_labels_never_override_ours() {
        let ours: BTreeMap<String, String> = [("app".to_owned(), "kvrocks".to_owned())].into();
        let meta = PodMetadata {
            pod_labels: [
                ("app".to_owned(), "mine".to_owned()),
                ("team".to_owned(), "a".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let labels = pod_labels(&ours, &meta);
        assert_eq!(labels["app"], "kvrocks");
        assert_eq!(labels["team"], "a");
    }

    #[test]
    fn default_affinity_spreads_unless_given() {
        let sel: BTreeMap<String, String> = [("a".to_owned(), "b".to_owned())].into();
        let mut pod = PodSpec::default();
        apply_scheduling(&mut pod, &Scheduling::default(), &sel);
        let preferred = pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(
            preferred[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        let mut pod = PodSpec::default();
        let own = Scheduling {
            affinity: Some(Affinity::default()),
            ..Default::default()
        };
        apply_scheduling(&mut pod, &own, &sel);
        assert_eq!(pod.affinity, Some(Affinity::default()));
    }
}
