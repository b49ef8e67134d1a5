//! `KvrocksSentinel`: a group of redis-sentinel pods that watches Standard and Cluster masters.

use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{AuthSpec, PodMetadata, Scheduling};

fn default_replicas() -> i32 {
    3
}
fn default_image() -> String {
    "redis:7.2".to_string()
}
fn default_down_after() -> i64 {
    5000
}
fn default_failover_timeout() -> i64 {
    10000
}
fn default_parallel_syncs() -> i32 {
    1
}

/// A group of redis-sentinel pods. Its size is odd and at least 3; the quorum of every monitor
/// is kept at `replicas/2 + 1`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kvrocks.io",
    version = "v1alpha1",
    kind = "KvrocksSentinel",
    validation = crate::common::name_rule(),
    plural = "kvrockssentinels",
    shortname = "kvsentinel",
    category = "kvrocks",
    namespaced,
    status = "KvrocksSentinelStatus",
    derive = "PartialEq",
    doc = "A group of redis-sentinel pods that detects failed kvrocks masters.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.currentReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Quorum", type_ = "integer", json_path = ".status.quorum"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KvrocksSentinelSpec {
    /// Number of sentinel pods: odd and at least 3.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = kube::core::Rule::new("self >= 3 && self % 2 == 1").message("sentinel replicas must be odd and at least 3"))]
    pub replicas: i32,
    /// Container image of redis-sentinel.
    #[serde(default = "default_image")]
    pub image: String,
    /// Milliseconds a master must be unreachable before a sentinel calls it down.
    #[serde(default = "default_down_after")]
    #[schemars(range(min = 100, max = 600000))]
    pub down_after_milliseconds: i64,
    /// Failover timeout in milliseconds.
    #[serde(default = "default_failover_timeout")]
    #[schemars(range(min = 1000, max = 3600000))]
    pub failover_timeout_milliseconds: i64,
    /// The group's own password: every sentinel requires it (`requirepass`, `protected-mode
    /// yes`) and sends it to its peers. When `secretName` is absent the operator creates
    /// `<name>-auth`; clients of sentinel (applications discovering a master) need it too.
    /// Changing the Secret's value rotates it on the running sentinels, without a restart or a
    /// failover.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Number of replicas reconfigured at the same time after a failover.
    #[serde(default = "default_parallel_syncs")]
    #[schemars(range(min = 1, max = 64))]
    pub parallel_syncs: i32,
    /// Resources of the sentinel container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The pods' security context. The operator runs redis-sentinel non-root as uid and gid 999
    /// (the official redis image's `redis` user) with `fsGroup` 999 and the `RuntimeDefault`
    /// seccomp profile; each field set here replaces the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Scheduling of the sentinel pods.
    #[serde(flatten)]
    pub scheduling: Scheduling,
    /// Extra pod labels and annotations.
    #[serde(flatten)]
    pub pod_metadata: PodMetadata,
}

/// What a sentinel group monitors.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentinelMonitor {
    /// Sentinel master name: `standard_<cr>` or `cluster_<cr>_<shard>`.
    pub name: String,
    /// Kind of the owner: `KvrocksStandard` or `KvrocksCluster`.
    pub kind: String,
    /// Name of the owning resource.
    pub instance: String,
    /// IP of the monitored master.
    pub ip: String,
    /// Port of the monitored master.
    pub port: i32,
}

/// Observed state of a KvrocksSentinel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KvrocksSentinelStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Sentinel pods that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Sentinel pods that are ready and carry every monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Quorum set on every monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<i32>,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Masters this group monitors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<SentinelMonitor>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Quorum for a group of `replicas` sentinels: a strict majority.
pub fn quorum(replicas: i32) -> i32 {
    replicas.max(0) / 2 + 1
}

impl KvrocksSentinelSpec {
    /// Checks CEL cannot express (or that an object stored before a rule existed may break).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.replicas < 3 || self.replicas % 2 == 0 {
            problems.push(format!(
                "replicas is {}; it must be odd and at least 3",
                self.replicas
            ));
        }
        if self.image.trim().is_empty() {
            problems.push("image is empty".to_string());
        }
        problems
    }
}
