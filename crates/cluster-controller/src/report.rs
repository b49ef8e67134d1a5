//! The status, conditions and Events of a pass, built from the plan and what its actions came to
//! (pure; `lib.rs` writes them).

use kube::runtime::events::EventType;
use kvrocks_api::KvrocksClusterSpec;
use kvrocks_api::cluster::KvrocksClusterStatus;
use kvrocks_operator_core::conditions;
use kvrocks_operator_core::server::ConfigVerdict;

use crate::act::Outcome;
use crate::plan::{Action, Note, Observed, Plan, masters, migration};

/// What the report reads.
pub struct Inputs<'a> {
    /// The spec.
    pub spec: &'a KvrocksClusterSpec,
    /// The generation the status describes.
    pub generation: Option<i64>,
    /// The status before this pass.
    pub previous: &'a KvrocksClusterStatus,
    /// What was observed.
    pub observed: &'a Observed,
    /// The plan.
    pub plan: &'a Plan,
    /// What its actions came to.
    pub outcomes: &'a [Outcome],
    /// What the running kvrocks said about `spec.config`.
    pub verdict: &'a ConfigVerdict,
    /// StatefulSets that keep their previous spec, and why.
    pub refused: &'a [String],
}

/// The failures worth saying in status (a live setting kvrocks refused is not one: the pod is
/// restarted instead).
fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !matches!(o.action, Action::SetConfigLive { .. }))
        .filter_map(|o| o.result.as_ref().err().cloned())
        .collect()
}

/// What the status is judged by, counted once.
struct Counts {
    per_shard: usize,
    wanted: usize,
    masters_down: usize,
    unreachable: usize,
    nodes: usize,
    /// Replicas that answer but have not completed their sync with their master (right after
    /// the first topology, a replica's full sync can hold it for a second).
    syncing: usize,
    moving: bool,
    /// A topology pushed in this pass is not yet seen running (and what the nodes said before
    /// it was about their old roles): the next pass decides.
    pushing: bool,
    /// The pods' kvrocks version is read once they take the password (a node starts fenced).
    version_known: bool,
}

impl Counts {
    fn of(inputs: &Inputs<'_>) -> Self {
        let plan = inputs.plan;
        let layout = &plan.layout;
        let wanted = inputs.spec.shards.max(1).unsigned_abs() as usize;
        let answers = |pod: &str| inputs.observed.reachable(pod);
        let all_nodes = || layout.iter().flat_map(|s| &s.nodes);
        Counts {
            per_shard: 1 + inputs.spec.replicas_per_shard.max(0).unsigned_abs() as usize,
            wanted,
            masters_down: masters(layout).into_iter().filter(|m| !answers(m)).count(),
            unreachable: all_nodes().filter(|n| !answers(&n.pod)).count(),
            nodes: all_nodes().count(),
            syncing: crate::plan::syncing(inputs.observed, layout),
            moving: plan.migration.is_some()
                || plan.rebalance.is_some()
                || layout.len() != wanted
                || plan.migrations_done < inputs.spec.slot_migrations.len(),
            pushing: plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Push { .. })),
            version_known: inputs.verdict.version.is_some(),
        }
    }
}

/// Ready, its reason and its message.
fn readiness(inputs: &Inputs<'_>, c: &Counts, failed: &[String]) -> (bool, String, String) {
    let plan = inputs.plan;
    let layout = &plan.layout;
    let ready = plan.wait.is_none()
        && !c.pushing
        && c.version_known
        && inputs.refused.is_empty()
        && !layout.is_empty()
        && failed.is_empty()
        && c.unreachable == 0
        && c.nodes == layout.len() * c.per_shard
        && c.syncing == 0
        && !c.moving;
    let (reason, message) = if let Some(wait) = &plan.wait {
        (wait.reason(), wait.message())
    } else if !inputs.refused.is_empty() {
        (
            "SpecNotApplied",
            format!(
                "StatefulSets keep their previous spec: {}",
                inputs.refused.join("; ")
            ),
        )
    } else if !failed.is_empty() {
        ("ActionFailed", failed.join("; "))
    } else if c.moving {
        ("MigratingSlots", moving_message(plan, c.wanted))
    } else if ready {
        (
            "TopologyInSync",
            format!(
                "{} shards x {} nodes, every node at topology version {}",
                layout.len(),
                c.per_shard,
                plan.version
            ),
        )
    } else if c.unreachable == 0 && c.pushing {
        (
            "TopologyPushed",
            format!(
                "topology version {} pushed; waiting to see every node run it",
                plan.version
            ),
        )
    } else if c.unreachable == 0 && c.syncing == 0 && !c.version_known {
        (
            "ReadingVersion",
            "the pods' kvrocks version is not known yet".to_owned(),
        )
    } else if c.unreachable == 0 && c.syncing > 0 {
        (
            "ReplicasSyncing",
            format!(
                "{} replica(s) have not completed their sync with their master yet",
                c.syncing
            ),
        )
    } else {
        (
            "Converging",
            format!(
                "{} node(s) do not answer; {} of {} nodes placed",
                c.unreachable,
                c.nodes,
                layout.len() * c.per_shard
            ),
        )
    };
    (ready, reason.to_owned(), message)
}

/// The status to write.
pub fn status(inputs: &Inputs<'_>) -> KvrocksClusterStatus {
    let plan = inputs.plan;
    let layout = &plan.layout;
    let counts = Counts::of(inputs);
    let failed = failures(inputs.outcomes);
    let (ready, reason, message) = readiness(inputs, &counts, &failed);
    let down_message = format!("{} shard master(s) not answering", counts.masters_down);
    let unsupported = inputs.verdict.condition();
    let failing = plan.migration.as_ref().and_then(|m| {
        let failures = m.failures.filter(|n| *n >= migration::FAILURES_DEGRADED)?;
        Some(format!(
            "moving slots {} from shard {} to shard {} failed {failures} times in a row on the source; it is sent again after a backoff (see the MigrationFailed Events and the source's log)",
            m.slots, m.from_shard, m.to_shard
        ))
    });
    let degraded = if counts.masters_down > 0 {
        (true, "MasterDown", down_message.as_str())
    } else if let Some(message) = &failing {
        (true, "MigrationFailing", message.as_str())
    } else if let Some((reason, message)) = &unsupported {
        (true, reason.as_str(), message.as_str())
    } else {
        (false, "Healthy", "every shard has a master")
    };
    KvrocksClusterStatus {
        observed_generation: inputs.generation,
        topology_version: (!layout.is_empty()).then_some(plan.version as i64),
        shards: layout.clone(),
        migration: plan.migration.clone(),
        slot_migrations_done: (plan.migrations_done > 0).then_some(plan.migrations_done as i32),
        rebalance_target: plan.rebalance,
        kvrocks_version: inputs.verdict.version.clone(),
        unsupported_config: inputs.verdict.unsupported.clone(),
        conditions: conditions::merge(
            &inputs.previous.conditions,
            conditions::health(ready, &reason, &message, degraded, inputs.generation),
        ),
    }
}

fn moving_message(plan: &Plan, wanted: usize) -> String {
    match &plan.migration {
        Some(m) => format!(
            "moving slots {} from shard {} to shard {} ({}); {} shards now, {wanted} wanted",
            m.slots,
            m.from_shard,
            m.to_shard,
            m.state,
            plan.layout.len()
        ),
        None => format!(
            "rebalancing toward {wanted} shards; {} shards now",
            plan.layout.len()
        ),
    }
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason.
    pub reason: &'static str,
    /// Action.
    pub action: &'static str,
    /// Text.
    pub text: String,
}

/// The Events of a pass: its notes, and every action that failed.
pub fn events(plan: &Plan, outcomes: &[Outcome]) -> Vec<Event> {
    let mut out: Vec<Event> = plan.notes.iter().map(note_event).collect();
    for failure in failures(outcomes) {
        out.push(Event {
            type_: EventType::Warning,
            reason: "ActionFailed",
            action: "Reconcile",
            text: failure,
        });
    }
    out
}

fn note_event(note: &Note) -> Event {
    match note {
        Note::Failover {
            shard,
            from,
            to,
            down_for,
        } => Event {
            type_: EventType::Warning,
            reason: "Failover",
            action: "Failover",
            text: format!(
                "shard {shard}: master {from} did not answer for {:.1} s: {to} promoted",
                down_for.as_secs_f64()
            ),
        },
        Note::Switchover {
            shard,
            from,
            to,
            why,
        } => Event {
            type_: EventType::Normal,
            reason: "Switchover",
            action: "Switchover",
            text: format!("shard {shard}: master moved from {from} to {to} {why}"),
        },
        Note::SlotsMigrated(mv) => Event {
            type_: EventType::Normal,
            reason: "SlotsMigrated",
            action: "Migrate",
            text: format!(
                "slots {} moved from shard {} to shard {}",
                mv.range, mv.from, mv.to
            ),
        },
        Note::MigrationFailed { mv, failures } => Event {
            type_: EventType::Warning,
            reason: "MigrationFailed",
            action: "Migrate",
            text: format!(
                "moving slots {} from shard {} to shard {} failed on the source (failure {failures}); sent again in {} s",
                mv.range,
                mv.from,
                mv.to,
                crate::plan::migration::retry_after(*failures).as_secs()
            ),
        },
        Note::MasterBehind {
            shard,
            from,
            to,
            master_offset,
            replica_offset,
        } => Event {
            type_: EventType::Warning,
            reason: "MasterBehindReplica",
            action: "Failover",
            text: format!(
                "shard {shard}: master {from} came back with less data (offset {master_offset}) than its replica {to} ({replica_offset}): {to} promoted, {from} follows it"
            ),
        },
        Note::WritesDiscarded {
            shard,
            pod,
            to,
            sequences,
            count,
        } => Event {
            type_: EventType::Warning,
            reason: "WritesDiscarded",
            action: "Failover",
            text: format!(
                "shard {shard}: {pod} came back holding {count} write(s) (sequences {sequences}) that {to} never received when it was promoted; they are discarded as {pod} resyncs from {to}"
            ),
        },
        Note::VolumesAdopted(version) => Event {
            type_: EventType::Normal,
            reason: "VolumesAdopted",
            action: "Adopt",
            text: format!(
                "the pods' volumes hold data laid out by topology version {version} of an earlier cluster of this name: the first layout keeps its masters and slots"
            ),
        },
        Note::Adopted(version) => Event {
            type_: EventType::Normal,
            reason: "TopologyAdopted",
            action: "Adopt",
            text: format!(
                "a node runs topology version {version}, newer than status recorded: taken over"
            ),
        },
    }
}
