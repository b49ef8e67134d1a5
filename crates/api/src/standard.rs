//! `KvrocksStandard`: one kvrocks master and its replicas, failed over by a sentinel group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{KvrocksPodSpec, SentinelRef};

fn default_replicas() -> i32 {
    3
}

/// One kvrocks master and `replicas - 1` replicas. A sentinel group promotes a replica when the
/// master fails; the operator keeps roles, labels, the `<name>-master` Service and sentinel
/// monitors true.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kvrocks.io",
    version = "v1alpha1",
    kind = "KvrocksStandard",
    validation = crate::common::name_rule(),
    plural = "kvrocksstandards",
    shortname = "kvstandard",
    category = "kvrocks",
    namespaced,
    status = "KvrocksStandardStatus",
    derive = "PartialEq",
    doc = "A kvrocks master with replicas, failed over by a KvrocksSentinel group.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.currentReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Master", type_ = "string", json_path = ".status.master.pod"),
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
pub struct KvrocksStandardSpec {
    /// Number of kvrocks pods, the master included (at least 1).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("replicas must be at least 1"))]
    pub replicas: i32,
    /// The KvrocksSentinel group that detects a failed master and promotes a replica.
    pub sentinel: SentinelRef,
    /// The kvrocks pods.
    #[serde(flatten)]
    pub pod: KvrocksPodSpec,
}

/// The current master of a Standard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MasterStatus {
    /// Pod name of the master.
    pub pod: String,
    /// Pod IP of the master.
    pub ip: String,
}

/// One replica of a Standard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pod name of the replica.
    pub pod: String,
    /// Pod IP of the replica.
    pub ip: String,
    /// Whether its link to the master is up.
    pub link_up: bool,
    /// Bytes of replication stream it is behind the master.
    pub lag_bytes: i64,
}

/// Observed state of a KvrocksStandard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KvrocksStandardStatus {
    /// The kvrocks versions the pods run (`INFO server`), several while an image change rolls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvrocks_version: Option<String>,
    /// `spec.config` keys the running kvrocks does not list in `CONFIG GET *`: neither rendered
    /// into kvrocks.conf nor set live (the `Degraded` condition names them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_config: Vec<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The current master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterStatus>,
    /// The replicas with their link state and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl KvrocksStandardSpec {
    /// Checks CEL cannot express (or that an object stored before a rule existed may break).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.pod.validate();
        if self.replicas < 1 {
            problems.push(format!(
                "replicas is {}; it must be at least 1",
                self.replicas
            ));
        }
        if self.sentinel.name.is_empty() {
            problems.push("sentinel.name is empty".to_string());
        }
        problems
    }
}
