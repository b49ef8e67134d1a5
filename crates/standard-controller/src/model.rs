//! What the planner reads and writes: the observed pods and sentinel view ([`Observed`]), the
//! actions ([`Action`]), why a plan waits ([`Wait`]) and the plan itself ([`Plan`]). Data only.

use std::collections::BTreeMap;
use std::time::Instant;

use kvrocks_api::labels::Role;

/// What one kvrocks process said (`INFO replication`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Role is master.
    pub master: bool,
    /// For a replica: the host it follows (`127.0.0.1` for a pod that just started).
    pub master_host: Option<String>,
    /// For a replica: whether the link is up.
    pub link_up: bool,
    /// For a replica: whether a full sync is running.
    pub syncing: bool,
    /// Replication offset (the master's own, or what the replica applied).
    pub offset: i64,
    /// `slave-priority` as configured now.
    pub priority: Option<String>,
}

/// One pod of the StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Pod IP.
    pub ip: Option<String>,
    /// Being deleted.
    pub deleting: bool,
    /// Value of the `kvrocks.io/role` label.
    pub role_label: Option<Role>,
    /// The process's answer; `None` when it could not be reached.
    pub node: Option<NodeView>,
    /// Runs an old pod template (image, resources, or config kvrocks refused to change live).
    pub outdated: bool,
    /// Runs the current template but an older kvrocks.conf, which may be set live.
    pub config_stale: bool,
    /// The pod's `Ready` condition is True: Services route to it.
    pub ready: bool,
    /// It answers only to the fence password: a planned switchover fenced it (see
    /// `kvrocks_operator_core::fence`) and nobody lifted the fence yet.
    pub fenced: bool,
}

/// The password in the operator's record (`<cr>-auth-applied`) against the user's Secret.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordState {
    /// The recorded password is the Secret's: nothing to do.
    #[default]
    InEffect,
    /// Nothing recorded yet (first start): record the Secret's.
    Unrecorded,
    /// The Secret holds a new password: roll it out.
    Changed,
}

/// Everything the plan looks at.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `spec.replicas`.
    pub desired: u32,
    /// The StatefulSet's current `spec.replicas` (None: not created yet).
    pub statefulset_replicas: Option<u32>,
    /// The pods, by ordinal.
    pub pods: Vec<PodView>,
    /// The master address (IP) the sentinel group reports, if it monitors this instance.
    pub sentinel_master: Option<String>,
    /// Whether the sentinel group monitors this instance at all.
    pub monitored: bool,
    /// A sentinel of the group reports the master subjectively or objectively down.
    pub sentinel_master_down: bool,
    /// A sentinel of the group reports the master objectively down (a quorum agrees).
    pub sentinel_master_odown: bool,
    /// A sentinel of the group is failing this instance's master over right now.
    pub sentinel_failing_over: bool,
    /// Every sentinel that answered names the same master.
    pub sentinels_agree: bool,
    /// Sentinel pods of the group (0: none runs yet).
    pub sentinel_group: usize,
    /// How many of them answered.
    pub sentinels_answering: usize,
    /// The master pod recorded in status.
    pub status_master: Option<String>,
    /// The `slave-priority` replicas get once synced (from spec.config, default 100).
    pub priority: String,
    /// Since when sentinel's choice has reported itself a replica of another pod without a
    /// break (see [`crate::plan::sentinel_choice_stuck`]); None while it does not.
    pub sentinel_stuck_since: Option<Instant>,
    /// The password in effect against the Secret's.
    pub password: PasswordState,
}

/// One step to take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record the Secret's password as the one in effect (first start).
    RecordPassword,
    /// Roll the Secret's new password out: `masterauth` on every pod, then `requirepass`, then
    /// sentinel's auth-pass, then record it.
    RotatePassword,
    /// Set `spec.config` live on the pod and mark it as running the current kvrocks.conf.
    ApplyConfig {
        /// Pod name.
        pod: String,
    },
    /// `SLAVEOF NO ONE` on the pod.
    Promote {
        /// Pod name.
        pod: String,
    },
    /// `SLAVEOF <master> 6379` on the pod.
    Follow {
        /// Pod name.
        pod: String,
        /// The master's IP.
        master_ip: String,
    },
    /// `CONFIG SET slave-priority <value>`.
    SetPriority {
        /// Pod name.
        pod: String,
        /// The value.
        value: String,
    },
    /// Set the `kvrocks.io/role` label.
    Label {
        /// Pod name.
        pod: String,
        /// The role.
        role: Role,
    },
    /// A planned switchover through sentinel (`SENTINEL FAILOVER`), to move the master off a pod
    /// that is about to be removed or restarted, or that restarted and came back empty-handed.
    Switchover {
        /// The current master.
        from: String,
    },
    /// `SENTINEL FAILOVER` for a master that is gone (no fence: it cannot be reached), when a
    /// quorum of sentinels calls it down but none fails it over (sentinel refuses a failover of
    /// the same master within twice its failover-timeout of the last one; a forced failover is
    /// not held back).
    ForceFailover {
        /// The master that is gone.
        from: String,
    },
    /// Delete the pod so it starts again from the current template (a rolling update step).
    Restart {
        /// Pod name.
        pod: String,
    },
    /// Lift the fence of a pod a switchover left fenced: `SLAVEOF` the master first when it is
    /// another pod, then `requirepass` back.
    Unfence {
        /// Pod name.
        pod: String,
        /// The master it must follow first (None: it is the master; the switchover was given up).
        follow: Option<String>,
    },
}

impl Action {
    /// Upkeep that does not touch replication (password, kvrocks.conf): it neither holds a
    /// rolling update nor makes the instance un-Ready.
    pub fn is_upkeep(&self) -> bool {
        matches!(
            self,
            Action::RecordPassword | Action::RotatePassword | Action::ApplyConfig { .. }
        )
    }
}

/// Why the plan is waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Sentinel is failing the master over.
    SentinelFailingOver,
    /// Sentinel names a master that still reports itself a replica.
    SentinelChoiceIsReplica {
        /// Sentinel's choice.
        pod: String,
    },
    /// The master sentinel knows is no pod any more; replicas still follow it.
    MasterGone {
        /// Its address.
        ip: String,
    },
    /// The master's process restarted; sentinel was asked to promote a replica.
    MasterRestarted {
        /// The master.
        pod: String,
    },
    /// The master does not answer.
    MasterUnreachable {
        /// The master.
        pod: String,
        /// Its address.
        ip: String,
    },
    /// No master, and not every pod answers, so the one with the most data is not known.
    Pods {
        /// `spec.replicas`.
        desired: u32,
    },
    /// Fewer sentinels answer than a quorum of the group: their view may be a minority's.
    NoSentinelQuorum {
        /// How many answered.
        answering: usize,
        /// Pods of the group.
        group: usize,
    },
    /// Scaling in needs the master off a pod that goes.
    Switchover {
        /// The master.
        master: String,
        /// `spec.replicas`.
        desired: u32,
    },
}

impl Wait {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::SentinelFailingOver
            | Wait::SentinelChoiceIsReplica { .. }
            | Wait::MasterGone { .. } => "WaitingForSentinel",
            Wait::MasterRestarted { .. } => "MasterRestarted",
            Wait::MasterUnreachable { .. } => "MasterUnreachable",
            Wait::Pods { .. } => "WaitingForPods",
            Wait::NoSentinelQuorum { .. } => "NoSentinelQuorum",
            Wait::Switchover { .. } => "WaitingForSwitchover",
        }
    }

    /// The condition message.
    pub fn message(&self) -> String {
        match self {
            Wait::SentinelFailingOver => {
                "sentinel is failing the master over; the pods follow its choice once it ends"
                    .into()
            }
            Wait::SentinelChoiceIsReplica { pod } => format!(
                "sentinel names {pod} the master but it still reports itself a replica; waiting for the failover to finish"
            ),
            Wait::MasterGone { ip } => {
                format!("the master {ip} is gone; waiting for sentinel to promote a replica")
            }
            Wait::MasterRestarted { pod } => format!(
                "the master {pod}'s process restarted; sentinel was asked to promote a replica"
            ),
            Wait::MasterUnreachable { pod, ip } => format!(
                "the master {pod} ({ip}) does not answer; sentinel will fail over once it is down for down-after-milliseconds"
            ),
            Wait::Pods { desired } => format!(
                "no master yet: waiting until all {desired} pods answer, to promote the one with the most data"
            ),
            Wait::NoSentinelQuorum { answering, group } => format!(
                "{answering} of {group} sentinels answer, fewer than a quorum ({}): the operator neither follows a minority's view nor chooses a master itself; waiting",
                group / 2 + 1
            ),
            Wait::Switchover { master, desired } => format!(
                "scaling in needs the master off {master}: waiting for a synced replica below ordinal {desired} and sentinel monitoring"
            ),
        }
    }
}

/// The outcome of planning.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// The master pod after this plan.
    pub master: Option<String>,
    /// Whether the master is chosen by the operator (first start, or no one else can).
    pub operator_promotes: bool,
    /// The promotion makes sentinel's choice true after it stayed a replica for
    /// [`crate::plan::STUCK_AFTER`] (the stuck clock starts again).
    pub overrides_stuck_sentinel: bool,
    /// Steps, upkeep first.
    pub actions: Vec<Action>,
    /// The StatefulSet size to apply.
    pub statefulset_replicas: u32,
    /// Why the plan is waiting, if it is.
    pub wait: Option<Wait>,
    /// Replicas linked to the master and caught up, by pod name.
    pub synced: BTreeMap<String, bool>,
}

impl Plan {
    /// Nothing to do for replication and nothing to wait for (upkeep may be under way).
    pub fn steady(&self) -> bool {
        self.actions.iter().all(Action::is_upkeep) && self.wait.is_none()
    }

    /// Nothing to do at all.
    pub fn idle(&self) -> bool {
        self.actions.is_empty() && self.wait.is_none()
    }

    pub(crate) fn wait(&mut self, why: Wait) {
        self.wait = Some(why);
    }
}
