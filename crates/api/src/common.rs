//! Spec pieces shared by the three kinds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodSecurityContext, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::config::{MAX_CONFIG_ENTRIES, MAX_CONFIG_VALUE_LEN, check_config, config_validations};

/// Where pods are placed. Every field is passed to the pod template as it is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Affinity rules. When absent the operator adds a preferred anti-affinity that spreads the
    /// pods of one StatefulSet across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations for the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Topology spread constraints for the pods (for example across zones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Labels and annotations added to every pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Extra labels on every pod. Labels the operator sets itself take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations on every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// A reference to the KvrocksSentinel group in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentinelRef {
    /// Name of the KvrocksSentinel in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Where the password comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret in the same namespace whose key `password` holds the password. When absent the
    /// operator creates `<name>-auth` with a random password. Changing the Secret's value rotates
    /// the password without breaking replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Longest name of a KvrocksStandard, KvrocksCluster or KvrocksSentinel: the names derived from
/// it must stay valid, the longest being a cluster's StatefulSet `<name>-<shard>` in the
/// `controller-revision-hash` label `<name>-<shard>-<10 characters>` (63 at most).
pub const MAX_NAME_LEN: usize = 40;

/// The CEL rule that bounds a resource's name ([`MAX_NAME_LEN`]).
pub fn name_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("size(self.metadata.name) <= {MAX_NAME_LEN}")).message(
        kube::core::Message::Message(format!(
            "metadata.name must be at most {MAX_NAME_LEN} characters: the pods, StatefulSets and labels named after it must stay within Kubernetes' limits"
        )),
    )
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}

/// Persistent storage for each data pod. When `storage` is absent pods use an emptyDir and lose
/// their data when they are deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(oldSelf.storageClassName) || (has(self.storageClassName) && self.storageClassName == oldSelf.storageClassName)"
).message("storage.storageClassName is immutable once set"))]
pub struct StorageSpec {
    /// Size of each pod's PersistentVolumeClaim.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = kube::core::Rule::new(
        "string(self).matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')"
    ).message("storage.size must be a quantity such as 10Gi or 500Mi"))]
    pub size: Quantity,
    /// StorageClass of the claims; the cluster default when absent. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete the PersistentVolumeClaims when the resource is deleted. By default they are kept,
    /// so deleting a resource by mistake loses no data.
    #[serde(default)]
    pub delete_claims_on_delete: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            delete_claims_on_delete: false,
        }
    }
}

fn default_exporter_image() -> String {
    "kvrocks/kvrocks-exporter:latest".to_string()
}

/// The Prometheus exporter sidecar in each data pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Run the exporter sidecar (port 9121, path /metrics).
    #[serde(default)]
    pub enabled: bool,
    /// Image of a kvrocks-aware exporter.
    #[serde(default = "default_exporter_image")]
    pub image: String,
    /// Resources of the exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ExporterSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            image: default_exporter_image(),
            resources: None,
        }
    }
}

/// Default kvrocks image of Standard and Cluster.
pub fn default_kvrocks_image() -> String {
    "apache/kvrocks:2.10.1".to_string()
}

/// What every kvrocks data pod of a Standard or a Cluster is made of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KvrocksPodSpec {
    /// Container image of kvrocks.
    #[serde(default = "default_kvrocks_image")]
    pub image: String,
    /// Where the password comes from. One password per Standard or Cluster.
    #[serde(default)]
    pub auth: AuthSpec,
    /// kvrocks.conf keys and values. Keys the operator owns (bind, port, dir, requirepass, ...)
    /// are refused. Keys kvrocks changes live are applied with CONFIG SET; others roll the pods.
    /// In a Cluster on kvrocks 2.10 (the version the default image runs), `migrate-speed` (keys
    /// per second, default 4096, 0 = unlimited) trades slot-migration speed against client
    /// latency; kvrocks 2.17 replaces it with `migrate-batch-rate-limit-mb`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_CONFIG_ENTRIES, "additionalProperties" = {"type": "string", "maxLength": MAX_CONFIG_VALUE_LEN}, "x-kubernetes-validations" = config_validations()))]
    pub config: BTreeMap<String, String>,
    /// Persistent storage; an emptyDir when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Resources of the kvrocks container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The pods' security context. The operator runs kvrocks non-root as uid and gid 999 (the
    /// official image's `kvrocks` user) with `fsGroup` 999 (`OnRootMismatch`) and the
    /// `RuntimeDefault` seccomp profile; each field set here replaces the operator's (for
    /// example `fsGroup` for an image with another user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Scheduling of the pods.
    #[serde(flatten)]
    pub scheduling: Scheduling,
    /// Extra pod labels and annotations.
    #[serde(flatten)]
    pub pod_metadata: PodMetadata,
    /// The metrics exporter sidecar.
    #[serde(default)]
    pub exporter: ExporterSpec,
}

impl KvrocksPodSpec {
    /// Problems with the pod spec that the Rust-side checks find.
    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = check_config(&self.config)
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        if self.image.trim().is_empty() {
            problems.push("image is empty".to_string());
        }
        problems
    }
}
