//! `KvrocksCluster`: shards of kvrocks in cluster mode, topology pushed by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{KvrocksPodSpec, SentinelRef};
use crate::slots::{parse_slot_string, slot_list_rule};

fn default_shards() -> i32 {
    3
}
fn default_replicas_per_shard() -> i32 {
    1
}

/// Largest number of manual slot moves in one spec (bounds the CEL cost).
pub const MAX_SLOT_MIGRATIONS: u32 = 64;
/// Largest number of slot strings in one manual move.
pub const MAX_SLOTS_PER_MIGRATION: u32 = 512;

/// A manual move of slots to a shard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotMigration {
    /// Index of the shard that receives the slots.
    #[schemars(range(min = 0))]
    pub to_shard: i32,
    /// Slots to move: `"300"` or `"100-200"` (0 <= A < B <= 16383).
    #[schemars(length(min = 1, max = MAX_SLOTS_PER_MIGRATION), inner(length(min = 1, max = 11)))]
    #[x_kube(validation = slot_list_rule())]
    pub slots: Vec<String>,
}

/// Shards of kvrocks in cluster mode. Each shard is a master and `replicasPerShard` replicas; the
/// operator assigns the 16384 slots, pushes the topology with CLUSTERX, fails over and rebalances.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "kvrocks.io",
    version = "v1alpha1",
    kind = "KvrocksCluster",
    validation = crate::common::name_rule(),
    plural = "kvrocksclusters",
    shortname = "kvcluster",
    category = "kvrocks",
    namespaced,
    status = "KvrocksClusterStatus",
    derive = "PartialEq",
    doc = "Shards of kvrocks in cluster mode with operator-driven failover and rebalancing.",
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicasPerShard"
    ),
    printcolumn(
        name = "Topology",
        type_ = "integer",
        json_path = ".status.topologyVersion"
    ),
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
#[x_kube(validation = kube::core::Rule::new("!has(self.slotMigrations) || self.slotMigrations.all(m, m.toShard < self.shards)").message("slotMigrations[].toShard must name an existing shard (< shards)"))]
#[serde(rename_all = "camelCase")]
pub struct KvrocksClusterSpec {
    /// Number of shards (at least 1).
    #[serde(default = "default_shards")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 1024").message("shards must be between 1 and 1024"))]
    pub shards: i32,
    /// Replicas in each shard besides its master (0 or more).
    #[serde(default = "default_replicas_per_shard")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0 && self <= 16").message("replicasPerShard must be between 0 and 16"))]
    pub replicas_per_shard: i32,
    /// Optional KvrocksSentinel group: it monitors every shard master, and its +odown wakes the
    /// operator at once. The operator, not sentinel, decides every failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelRef>,
    /// The kvrocks pods of every shard.
    #[serde(flatten)]
    pub pod: KvrocksPodSpec,
    /// When the operator fails a shard over.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// Manual slot moves, performed in order and each only once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SLOT_MIGRATIONS))]
    pub slot_migrations: Vec<SlotMigration>,
}

/// When the operator fails a shard over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// How long a shard's master must stay unreachable (every pod is probed every 500 ms)
    /// before its most up-to-date synced replica is promoted: `<n>s` or `<n>ms`, default `3s`.
    #[serde(default = "default_failover_timeout")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[0-9]{1,6}(ms|s)$')").message("failover.timeout must look like 3s or 1500ms"))]
    pub timeout: String,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            timeout: default_failover_timeout(),
        }
    }
}

fn default_failover_timeout() -> String {
    "3s".to_owned()
}

impl FailoverSpec {
    /// The timeout as a duration; None when it is not `<n>s` or `<n>ms`.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        let t = self.timeout.trim();
        if let Some(ms) = t.strip_suffix("ms") {
            return ms.parse().ok().map(std::time::Duration::from_millis);
        }
        t.strip_suffix('s')?
            .parse()
            .ok()
            .map(std::time::Duration::from_secs)
    }
}

/// One node of a shard.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNodeStatus {
    /// Pod name.
    pub pod: String,
    /// Pod IP the topology was pushed with.
    pub ip: String,
    /// kvrocks port.
    pub port: i32,
    /// The node's 40-character cluster node id.
    pub node_id: String,
    /// `master` or `replica`.
    pub role: crate::labels::Role,
    /// Node id of its master, for a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_id: Option<String>,
}

/// One shard of a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index.
    pub index: i32,
    /// Slots the shard owns, as `N` or `A-B`.
    #[serde(default)]
    pub slots: Vec<String>,
    /// The shard's nodes.
    #[serde(default)]
    pub nodes: Vec<ClusterNodeStatus>,
    /// Since when the shard's master has not answered the operator's probes (kept here so a
    /// restarted operator continues the count toward `spec.failover.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_unreachable_since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The shard's last failover, kept until the old master came back and what it held beyond the
    /// new master was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

/// A failover of a shard's master, and the writes the old master took that the new one never
/// received: they are discarded when the old master comes back and resyncs from the new one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// The master that was replaced.
    pub from: String,
    /// The replica promoted.
    pub to: String,
    /// The promoted replica's replication offset (RocksDB sequence) when it was promoted.
    pub promoted_offset: i64,
    /// Once the old master answered again: the sequences it held beyond `promotedOffset`
    /// (`A-B`, discarded as it resynced), or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded: Option<String>,
}

/// A slot migration in flight, persisted so a restarted operator resumes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// The slots being moved, as `N` or `A-B`.
    pub slots: String,
    /// Source shard.
    pub from_shard: i32,
    /// Destination shard.
    pub to_shard: i32,
    /// `start`, `success`, `fail` or `none`, as kvrocks last reported it.
    pub state: String,
    /// How many times the source reported this migration failed; each failure is retried, after
    /// 2 s, doubling up to a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<i32>,
    /// When it last failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// Observed state of a KvrocksCluster: the operator's persisted truth about the topology.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KvrocksClusterStatus {
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
    /// Version of the topology last pushed with CLUSTERX SETNODES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_version: Option<i64>,
    /// Every shard with its slots and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// The slot migration in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// How many entries of spec.slotMigrations are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_migrations_done: Option<i32>,
    /// The shard count a rebalance in progress aims at (set when spec.shards changes, cleared
    /// once the slots are spread evenly and drained shards are gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_target: Option<i32>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl KvrocksClusterSpec {
    /// Checks CEL cannot express (or that an object stored before a rule existed may break).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.pod.validate();
        if self.shards < 1 {
            problems.push(format!("shards is {}; it must be at least 1", self.shards));
        }
        if self.replicas_per_shard < 0 {
            problems.push(format!(
                "replicasPerShard is {}; it must be 0 or more",
                self.replicas_per_shard
            ));
        }
        if self.failover.timeout().is_none() {
            problems.push(format!(
                "failover.timeout is {:?}; it must look like 3s or 1500ms",
                self.failover.timeout
            ));
        }
        for (i, migration) in self.slot_migrations.iter().enumerate() {
            if migration.to_shard < 0 || migration.to_shard >= self.shards {
                problems.push(format!(
                    "slotMigrations[{i}].toShard is {}; shards are 0..{}",
                    migration.to_shard,
                    self.shards - 1
                ));
            }
            for slot in &migration.slots {
                if let Err(e) = parse_slot_string(slot) {
                    problems.push(format!("slotMigrations[{i}]: {e}"));
                }
            }
        }
        problems
    }
}
