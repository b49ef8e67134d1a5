//! The pure planner of a KvrocksCluster: from the spec, the status (the operator's recorded
//! truth) and what was observed, at a given time, the next layout, the commands to send and why
//! it waits. No I/O and no clock of its own; every safety rule of the cluster is a property test
//! of [`plan`].
//!
//! One module per concern, applied in this order:
//! - [`layout`]: the first split, a newer layout a node runs, pods that moved, joined or left;
//! - [`failover`]: a master unreachable for `spec.failover.timeout` loses its shard to the
//!   replica with the most data;
//! - [`handover`]: a master on an ordinal that goes away, or due for a restart, hands its shard
//!   to a caught-up replica first;
//! - [`slots`] (the slot arithmetic) and [`migration`] (driving one migration at a time);
//! - [`rollout`]: kvrocks.conf set live, or pods restarted one at a time, masters last;
//! - [`version`]: the topology version and which node is pushed what.

#![warn(missing_docs)]

pub mod failover;
pub mod handover;
pub mod layout;
pub mod migration;
pub mod rollout;
pub mod slots;
pub mod version;

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod slots_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use kvrocks_api::cluster::{
    KvrocksClusterSpec, KvrocksClusterStatus, MigrationStatus, ShardStatus,
};
use kvrocks_client::{MigrationState, NodeId, Topology};

pub use failover::{Candidate, choose_promotion};
pub use slots::{Assignment, Move, PlanError};

/// One kvrocks node as read in this pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeObs {
    /// It answered this pass's reads (and the prober does not count it down).
    pub reachable: bool,
    /// `CLUSTERX MYID`.
    pub myid: Option<NodeId>,
    /// `CLUSTERX VERSION`.
    pub version: Option<u64>,
    /// Replication offset (`master_repl_offset` on a master, `slave_repl_offset` on a replica).
    pub offset: i64,
    /// A master, or a replica whose link to its master is up.
    pub link_up: bool,
    /// For a replica: seconds since it last heard from its master (`master_last_io_seconds_ago`;
    /// kvrocks masters send a heartbeat every few seconds).
    pub last_io_secs: Option<i64>,
    /// It answers only to the fence password: a switchover fenced it and did not lift the fence
    /// yet (see `kvrocks_operator_core::fence`).
    pub fenced: bool,
    /// It was seen linked to its master (or serving as one) since its process started, by this
    /// operator: it holds the shard's data. Its offset alone cannot tell: a node started on an
    /// empty volume counts a few sequences of its own (seen: 1).
    pub synced: bool,
}

/// A data pod of the cluster as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodObs {
    /// Shard index (from its label).
    pub shard: u32,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Pod name.
    pub pod: String,
    /// IP, once it runs.
    pub ip: Option<String>,
    /// It runs the current pod template (everything but kvrocks.conf).
    pub template_ok: bool,
    /// It runs the current kvrocks.conf.
    pub config_ok: bool,
    /// kvrocks refused the current kvrocks.conf live on it: only a restart brings it.
    pub live_refused: bool,
    /// Since when the prober has seen it unreachable (None: reachable, or not probed yet).
    pub unreachable_since: Option<SystemTime>,
    /// When the pod was created (None: not known).
    pub created: Option<SystemTime>,
    /// For a pod being deleted: by when its containers should have stopped (its deletion
    /// timestamp, the end of its grace period).
    pub stop_by: Option<SystemTime>,
}

/// Everything the planner reads besides spec and status.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The resource's UID (node ids derive from it).
    pub uid: String,
    /// Its data pods (not the ones being deleted).
    pub pods: Vec<PodObs>,
    /// Its data pods being deleted that still run (a preStop hook holds a master's process until
    /// it handed over, see `handover::off_stopping_pods`).
    pub stopping: Vec<PodObs>,
    /// What each pod's kvrocks said, by pod name.
    pub nodes: BTreeMap<String, NodeObs>,
    /// A newer layout a node runs than status records (the operator stopped between a push and
    /// its status write), with that node's version.
    pub ahead: Option<(Topology, u64)>,
    /// The source master's state of the migration `status.migration` records (or of the one
    /// in `adopt`).
    pub migration: Option<MigrationState>,
    /// A migration a source master runs or finished that status does not record (the record was
    /// lost: a pass on an older copy wrote it away): adopted rather than started again, which
    /// kvrocks would refuse.
    pub adopt: Option<Move>,
    /// Before the first layout: the topology each pod's volume persisted, by pod (see
    /// [`crate::previous`]).
    pub previous: BTreeMap<String, crate::previous::Previous>,
    /// Before the first layout: why a pod's persisted topology could not be read (its log).
    pub previous_unread: Option<String>,
}

impl Observed {
    /// Whether the pod answered this pass.
    pub fn reachable(&self, pod: &str) -> bool {
        self.nodes.get(pod).is_some_and(|o| o.reachable)
    }
}

/// What [`plan`] reads.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The spec.
    pub spec: &'a KvrocksClusterSpec,
    /// The status as the API server holds it.
    pub status: &'a KvrocksClusterStatus,
    /// What was observed.
    pub observed: &'a Observed,
    /// Now.
    pub now: SystemTime,
}

impl Input<'_> {
    /// Shards the spec wants.
    pub fn shards(&self) -> u32 {
        self.spec.shards.max(1).unsigned_abs()
    }

    /// Pods per shard the spec wants (master + replicas).
    pub fn per_shard(&self) -> u32 {
        1 + self.spec.replicas_per_shard.max(0).unsigned_abs()
    }

    /// The topology version status records.
    pub fn status_version(&self) -> u64 {
        self.status
            .topology_version
            .unwrap_or(0)
            .max(0)
            .unsigned_abs()
    }

    /// Every node of the recorded layout answers and runs the recorded version.
    pub fn in_sync(&self, layout: &[ShardStatus]) -> bool {
        let version = self
            .status
            .topology_version
            .map(|v| v.max(0).unsigned_abs());
        !layout.is_empty()
            && layout.iter().flat_map(|s| &s.nodes).all(|n| {
                self.observed
                    .nodes
                    .get(&n.pod)
                    .is_some_and(|o| o.reachable && o.version == version)
            })
    }
}

/// One command for the data plane or the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `CLUSTERX SETNODEID` (when `set_id`) and `SETNODES` of the plan's topology and version
    /// (forced when `force`) on one node.
    Push {
        /// Pod name.
        pod: String,
        /// Its IP.
        ip: String,
        /// The id it must carry.
        node_id: String,
        /// It does not carry it yet.
        set_id: bool,
        /// It runs the same or a newer version (or no id): SETNODES must be forced.
        force: bool,
    },
    /// `CONFIG SET` of `spec.config` on one pod, then the pod marked current.
    SetConfigLive {
        /// Pod name.
        pod: String,
        /// Its IP.
        ip: String,
    },
    /// Delete the pod (the StatefulSet brings it back on the current template).
    Restart {
        /// Pod name.
        pod: String,
    },
    /// Delete the pod of a master just failed over, with a one-second grace period: its kubelet
    /// stops the process, so it cannot take writes from clients with an old slot map when its
    /// network comes back (the StatefulSet brings it back, as a replica).
    Stop {
        /// Pod name.
        pod: String,
    },
    /// Lift the fence of a node (its `requirepass` back), after this pass's pushes, and only if
    /// the push to it did not fail: a fenced master is unfenced only once it runs the topology in
    /// which it is a replica, or the one in which it stays master (a switchover given up).
    Unfence {
        /// Pod name.
        pod: String,
        /// Its IP.
        ip: String,
    },
    /// `CLUSTERX MIGRATE` on the source master of a migration status already records.
    Migrate {
        /// The move.
        mv: Move,
        /// The source master's IP.
        source_ip: String,
        /// The destination master's node id.
        target: String,
    },
}

/// Why the cluster is not where the spec wants it, in a way a condition can say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The first topology waits for every pod.
    Pods {
        /// Shards wanted.
        shards: u32,
        /// Pods per shard wanted.
        per_shard: u32,
    },
    /// A shard the spec added waits for its pods.
    NewShard(u32),
    /// A master is down and no replica may take over.
    NoFailoverCandidate {
        /// Shard index.
        shard: i32,
        /// The master's pod.
        master: String,
    },
    /// A master does not answer; the failover is due once it has been down for the timeout.
    MasterUnreachable {
        /// Shard index.
        shard: i32,
        /// The master's pod.
        master: String,
        /// How long until the failover.
        left: Duration,
    },
    /// A master is due for failover: its pod is being stopped first, so it cannot serve clients
    /// that still reach it once its replica serves its slots.
    StoppingOldMaster {
        /// Shard index.
        shard: i32,
        /// The master's pod.
        master: String,
        /// The replica to promote once it stopped.
        to: String,
    },
    /// A master the operator cannot reach is still heard by one of its replicas: no failover.
    MasterHeardByReplica {
        /// Shard index.
        shard: i32,
        /// The master's pod.
        master: String,
        /// The replica that hears it.
        replica: String,
    },
    /// Slots cannot move now (the message says why).
    SlotMigrationBlocked(String),
    /// Pods run an old template or kvrocks.conf.
    RollingUpdate(usize),
    /// The layout cannot be turned into a topology.
    InvalidTopology(String),
    /// A planned switchover was given up this pass (the message says why); it is tried again.
    SwitchoverPostponed(String),
    /// The volumes hold a topology the first layout cannot take, or it could not be read.
    VolumesNotAdopted(String),
}

impl Wait {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::Pods { .. } => "WaitingForPods",
            Wait::NewShard(_) => "WaitingForShard",
            Wait::NoFailoverCandidate { .. } => "NoFailoverCandidate",
            Wait::MasterUnreachable { .. } => "MasterUnreachable",
            Wait::MasterHeardByReplica { .. } => "MasterUnreachableFromOperator",
            Wait::StoppingOldMaster { .. } => "StoppingOldMaster",
            Wait::SlotMigrationBlocked(_) => "SlotMigrationBlocked",
            Wait::RollingUpdate(_) => "RollingUpdate",
            Wait::InvalidTopology(_) => "InvalidTopology",
            Wait::SwitchoverPostponed(_) => "SwitchoverPostponed",
            Wait::VolumesNotAdopted(_) => "VolumesNotAdopted",
        }
    }

    /// The condition message.
    pub fn message(&self) -> String {
        match self {
            Wait::Pods { shards, per_shard } => format!(
                "waiting for all {} pods ({shards} shards x {per_shard}) to run before the first topology",
                shards * per_shard
            ),
            Wait::NewShard(index) => format!("waiting for the pods of new shard {index} to run"),
            Wait::NoFailoverCandidate { shard, master } => format!(
                "shard {shard}: master {master} is down and no reachable replica that completed a sync can take over; waiting"
            ),
            Wait::MasterUnreachable {
                shard,
                master,
                left,
            } => format!(
                "shard {shard}: master {master} does not answer; failover in {:.1} s unless it comes back",
                left.as_secs_f64()
            ),
            Wait::StoppingOldMaster { shard, master, to } => format!(
                "shard {shard}: master {master} did not answer for the failover timeout; its pod is stopped before {to} takes its slots, so two masters never serve them"
            ),
            Wait::MasterHeardByReplica {
                shard,
                master,
                replica,
            } => format!(
                "shard {shard}: the operator cannot reach master {master}, but its replica {replica} still hears from it; no failover while it is alive on the data path"
            ),
            Wait::SlotMigrationBlocked(message) => message.clone(),
            Wait::RollingUpdate(n) => format!(
                "{n} pod(s) run an old template or kvrocks.conf; restarting them one at a time, masters last"
            ),
            Wait::InvalidTopology(message) | Wait::SwitchoverPostponed(message) => message.clone(),
            Wait::VolumesNotAdopted(message) => format!(
                "the pods' volumes hold data of an earlier cluster of this name: {message}; nothing is pushed until its layout can be taken over (fix spec.shards, or delete the claims to start empty)"
            ),
        }
    }
}

/// Something worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A replica replaced a master that stayed unreachable.
    Failover {
        /// Shard index.
        shard: i32,
        /// The old master.
        from: String,
        /// The new one.
        to: String,
        /// How long the old one had been unreachable.
        down_for: Duration,
    },
    /// A master handed its shard to a caught-up replica.
    Switchover {
        /// Shard index.
        shard: i32,
        /// The old master.
        from: String,
        /// The new one.
        to: String,
        /// Why (`before the shard shrinks`, `before its restart`).
        why: &'static str,
    },
    /// A migration finished; the new owner goes out with this plan's version.
    SlotsMigrated(Move),
    /// The source reported a migration failed; it is sent again after a backoff.
    MigrationFailed {
        /// The migration.
        mv: Move,
        /// Its failures so far.
        failures: i32,
    },
    /// A layout a node ran, newer than status, was taken over.
    Adopted(u64),
    /// The first layout took masters and slots from the topology (this version) the volumes
    /// hold.
    VolumesAdopted(u64),
    /// A master came back with less data than a replica (an emptied volume): the replica took
    /// its shard.
    MasterBehind {
        /// Shard index.
        shard: i32,
        /// The master that came back.
        from: String,
        /// The replica promoted.
        to: String,
        /// The master's offset.
        master_offset: i64,
        /// The replica's.
        replica_offset: i64,
    },
    /// A failed-over master came back holding writes its successor never received.
    WritesDiscarded {
        /// Shard index.
        shard: i32,
        /// The old master.
        pod: String,
        /// The master promoted in its place.
        to: String,
        /// The sequences it held beyond the promotion (`A-B`).
        sequences: String,
        /// How many.
        count: i64,
    },
}

/// When to look again (besides watches and prober wake-ups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing in motion.
    Steady,
    /// Something is due at a known time (a failover).
    In(Duration),
    /// Waiting on a migration: poll, backing off.
    Migration,
    /// Waiting on pods or nodes: look again, backing off.
    Pods,
}

/// A planned switchover to make safe before the plan's topology is pushed: `from` is fenced and
/// `to` must catch up with it (see `act::fence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Shard index.
    pub shard: i32,
    /// The master handing over.
    pub from: String,
    /// Its IP.
    pub from_ip: String,
    /// The replica taking over.
    pub to: String,
    /// Its IP.
    pub to_ip: String,
}

/// The plan of one pass.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The layout to record and push.
    pub layout: Vec<ShardStatus>,
    /// The topology version to record (and push, when it moved).
    pub version: u64,
    /// The topology of `layout`, when it is valid.
    pub topology: Option<Topology>,
    /// Switchovers to fence before anything is pushed.
    pub fences: Vec<Fence>,
    /// Commands, in order: pushes first.
    pub actions: Vec<Action>,
    /// Why the cluster is not Ready, if it is not.
    pub wait: Option<Wait>,
    /// The migration to record.
    pub migration: Option<MigrationStatus>,
    /// Entries of `spec.slotMigrations` done.
    pub migrations_done: usize,
    /// The shard count a rebalance aims at.
    pub rebalance: Option<i32>,
    /// Pods on an old template or kvrocks.conf.
    pub rolling: usize,
    /// Events.
    pub notes: Vec<Note>,
    /// When to look again.
    pub next: Next,
}

/// Plans one pass (see the module documentation for the order of the steps).
pub fn plan(input: &Input<'_>) -> Plan {
    let start = layout::current(input);
    let baseline = start.shards.clone();
    let mut layout = start.shards;
    let mut wait = start.wait;
    let mut notes: Vec<Note> = start.adopted.map(Note::Adopted).into_iter().collect();
    notes.extend(start.from_volumes.map(Note::VolumesAdopted));
    let mut next = if wait.is_some() {
        Next::Pods
    } else {
        Next::Steady
    };
    let failed = failover::apply(input, &mut layout);
    notes.extend(failover::discarded(input, &mut layout));
    layout::follow(input, &mut layout);
    notes.extend(failed.notes.iter().cloned());
    wait = wait.or(failed.wait.clone());
    if let Some(due) = failed.due {
        next = Next::In(due);
    }
    let mut slots = migration::Slots::from_status(input.status, input.spec);
    if !layout.is_empty() && failed.notes.is_empty() && wait.is_none() {
        if let Some(w) = layout::grow(input, &mut layout) {
            wait = Some(w);
            next = Next::Pods;
        }
        slots.rebalance = layout::rebalance_target(input, &layout, slots.rebalance);
        notes.extend(handover::off_leaving_ordinals(input, &mut layout));
        notes.extend(handover::off_stopping_pods(input, &mut layout));
    }
    let changed = !layout::same(&layout, &baseline);
    if input.in_sync(&layout) && !changed && wait.is_none() {
        let driven = migration::drive(input, &mut layout, &mut slots);
        wait = wait.or(driven.wait);
        notes.extend(driven.moved.map(Note::SlotsMigrated));
        notes.extend(
            driven
                .failed
                .map(|(mv, failures)| Note::MigrationFailed { mv, failures }),
        );
        if driven.polling {
            next = Next::Migration;
        }
        if let Some(retry) = driven.retry_in {
            next = Next::In(retry);
        }
        layout::drop_drained(input, &mut layout, &slots);
    }
    let changed = !layout::same(&layout, &baseline);
    let quiet = input.in_sync(&layout) && !changed && wait.is_none() && slots.migration.is_none();
    let roll = rollout::plan(input, &mut layout, quiet);
    notes.extend(roll.notes);
    if roll.rolling > 0 && wait.is_none() {
        wait = Some(Wait::RollingUpdate(roll.rolling));
        next = Next::Pods;
    }
    let changed = !layout::same(&layout, &baseline);
    let versioned = version::plan(input, &layout, start.adopted, changed);
    if let Some(w) = versioned.wait {
        wait = Some(w);
    }
    let mut actions = versioned.pushes;
    let fences = fences(input, &notes);
    actions.extend(unfence(
        input,
        &layout,
        versioned.version,
        &actions,
        &fences,
    ));
    actions.extend(roll.actions);
    actions.extend(slots.action.take());
    actions.extend(
        failed
            .stop
            .iter()
            .map(|pod| Action::Stop { pod: pod.clone() }),
    );
    if next == Next::Steady && syncing(input.observed, &layout) > 0 {
        // Nothing wakes the controller when a replica's link comes up: look again.
        next = Next::Pods;
    }
    Plan {
        layout,
        version: versioned.version,
        topology: versioned.topology,
        fences,
        actions,
        wait,
        migration: slots.migration,
        migrations_done: slots.done,
        rebalance: slots.rebalance,
        rolling: roll.rolling,
        notes,
        next,
    }
}

/// The replicas of the layout that answer but have not completed their sync (their link is down).
pub fn syncing(observed: &Observed, layout: &[ShardStatus]) -> usize {
    layout
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.role == kvrocks_api::labels::Role::Replica)
        .filter(|n| {
            observed
                .nodes
                .get(&n.pod)
                .is_some_and(|o| o.reachable && !o.link_up)
        })
        .count()
}

/// The fences the plan's switchovers need (a master that does not answer cannot be fenced, and
/// is never handed over from: see [`handover`]).
fn fences(input: &Input<'_>, notes: &[Note]) -> Vec<Fence> {
    let ip = |pod: &str| {
        input
            .observed
            .pods
            .iter()
            .chain(&input.observed.stopping)
            .find(|p| p.pod == pod)
            .and_then(|p| p.ip.clone())
    };
    notes
        .iter()
        .filter_map(|note| match note {
            Note::Switchover {
                shard, from, to, ..
            } => Some(Fence {
                shard: *shard,
                from: from.clone(),
                from_ip: ip(from)?,
                to: to.clone(),
                to_ip: ip(to)?,
            }),
            _ => None,
        })
        .collect()
}

/// Every fenced node (this pass's and any a previous pass left) is unfenced once it runs the
/// plan's version: it already does, or is pushed it now.
fn unfence(
    input: &Input<'_>,
    layout: &[ShardStatus],
    version: u64,
    pushes: &[Action],
    fences: &[Fence],
) -> Vec<Action> {
    let pushed = |pod: &str| {
        pushes
            .iter()
            .any(|a| matches!(a, Action::Push { pod: p, .. } if p == pod))
    };
    let mut out: Vec<Action> = fences
        .iter()
        .map(|f| Action::Unfence {
            pod: f.from.clone(),
            ip: f.from_ip.clone(),
        })
        .collect();
    for node in layout.iter().flat_map(|s| &s.nodes) {
        let Some(obs) = input.observed.nodes.get(&node.pod) else {
            continue;
        };
        let current = obs.version == Some(version) || pushed(&node.pod);
        let listed = out
            .iter()
            .any(|a| matches!(a, Action::Unfence { pod, .. } if *pod == node.pod));
        if obs.fenced && obs.reachable && current && !listed {
            out.push(Action::Unfence {
                pod: node.pod.clone(),
                ip: node.ip.clone(),
            });
        }
    }
    out
}

/// The plan of a pass whose switchover was given up (`why`): nothing changes, nothing is sent;
/// the status keeps its layout and says why, and the next pass plans again.
pub fn hold(input: &Input<'_>, plan: Plan, why: String) -> Plan {
    Plan {
        layout: input.status.shards.clone(),
        version: input.status_version(),
        topology: None,
        fences: Vec::new(),
        actions: Vec::new(),
        wait: Some(Wait::SwitchoverPostponed(why)),
        migration: input.status.migration.clone(),
        migrations_done: input
            .status
            .slot_migrations_done
            .map_or(0, |d| d.max(0).unsigned_abs() as usize),
        rebalance: input.status.rebalance_target,
        rolling: plan.rolling,
        notes: Vec::new(),
        next: Next::Pods,
    }
}

/// The pods of `layout`'s shard masters.
pub fn masters(layout: &[ShardStatus]) -> BTreeSet<&str> {
    layout
        .iter()
        .filter_map(crate::topo::master_of)
        .map(|m| m.pod.as_str())
        .collect()
}
