//! The pure heart of the KvrocksStandard controller: from what was observed (pods, what each
//! kvrocks process says about its replication, what sentinel says about the master, which
//! password and kvrocks.conf are in effect) to the next actions. No I/O here; every rule is
//! unit-tested and the safety rules are property-tested (`plan_tests.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kvrocks_api::labels::Role;

/// How far a replica may trail the master and still count as caught up, in kvrocks' units:
/// replication offsets are RocksDB sequence numbers, about one per key written, so this is a
/// number of writes (not bytes).
pub const CAUGHT_UP_SEQUENCES: i64 = 1000;

/// How long sentinel's choice may report itself a replica of another pod before the operator
/// makes sentinel's choice true.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

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
    /// A sentinel of the group is failing this instance's master over right now.
    pub sentinel_failing_over: bool,
    /// The master pod recorded in status.
    pub status_master: Option<String>,
    /// The `slave-priority` replicas get once synced (from spec.config, default 100).
    pub priority: String,
    /// Since when sentinel's choice has reported itself a replica of another pod without a
    /// break (see [`sentinel_choice_stuck`]); None while it does not.
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
    /// Delete the pod so it starts again from the current template (a rolling update step).
    Restart {
        /// Pod name.
        pod: String,
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
    /// [`STUCK_AFTER`] (the stuck clock starts again).
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

    fn wait(&mut self, why: Wait) {
        self.wait = Some(why);
    }
}

/// The one reachable pod (other than `except`) that reports itself master, when there is
/// exactly one: while sentinel fails over a lost master, the replica it promoted says so seconds
/// before sentinel's own view switches (kvrocks takes a moment to confirm the promotion).
fn promoted_by_sentinel<'a>(pods: &'a [PodView], except: Option<&str>) -> Option<&'a PodView> {
    let mut masters = pods
        .iter()
        .filter(|p| Some(p.name.as_str()) != except && reachable(p).is_some_and(|(n, _)| n.master));
    let first = masters.next()?;
    masters.next().is_none().then_some(first)
}

/// A replica of itself: what every pod is right after it starts.
pub fn restarted(node: &NodeView) -> bool {
    !node.master
        && matches!(
            node.master_host.as_deref(),
            None | Some("127.0.0.1" | "localhost")
        )
}

/// The pod's answer and IP, when it is not being deleted and answered.
pub fn reachable(pod: &PodView) -> Option<(&NodeView, &str)> {
    if pod.deleting {
        return None;
    }
    Some((pod.node.as_ref()?, pod.ip.as_deref()?))
}

/// Whether sentinel's choice answers as a replica of another pod right now (not as a pod that
/// just started): a sentinel with an older view may have turned it back. The caller keeps the
/// time this began ([`Observed::sentinel_stuck_since`]).
pub fn sentinel_choice_stuck(observed: &Observed) -> bool {
    observed.sentinel_master.as_deref().is_some_and(|ip| {
        observed.pods.iter().any(|p| {
            p.ip.as_deref() == Some(ip)
                && p.node.as_ref().is_some_and(|n| !n.master && !restarted(n))
        })
    })
}

/// While sentinel may be choosing a new master (the master does not answer, or sentinel
/// reports it down, or a failover is under way), only the most advanced replica may be chosen:
/// every reachable replica behind another one gets `slave-priority 0`. With the master gone the
/// replicas' offsets no longer move, so the comparison is exact; sentinel's own comparison
/// reads replica offsets that may be seconds old. Only ever lowers a priority: raising one is
/// for a settled master ([`converge`]).
///
/// Candidates are the replicas sentinel knows as such: not the pod at sentinel's master address,
/// and not a pod that just started (a replica of itself, which sentinel cannot choose).
fn fence_laggards(observed: &Observed, plan: &mut Plan) -> Vec<String> {
    let replicas: Vec<(&PodView, &NodeView)> = observed
        .pods
        .iter()
        .filter_map(|p| reachable(p).map(|(n, ip)| (p, n, ip)))
        .filter(|(_, n, ip)| {
            !n.master && !restarted(n) && observed.sentinel_master.as_deref() != Some(*ip)
        })
        .map(|(p, n, _)| (p, n))
        .collect();
    let Some(best) = replicas.iter().map(|(_, n)| n.offset).max() else {
        return Vec::new();
    };
    let mut laggards = Vec::new();
    for (pod, node) in replicas.into_iter().filter(|(_, n)| n.offset < best) {
        if node.priority.as_deref() != Some("0") {
            plan.actions.push(Action::SetPriority {
                pod: pod.name.clone(),
                value: "0".to_owned(),
            });
        }
        laggards.push(pod.name.clone());
    }
    laggards
}

/// Chooses the master and the actions that make every other pod follow it; `now` is the time
/// of the observation (for how long sentinel's choice has been stuck).
pub fn plan(observed: &Observed, now: Instant) -> Plan {
    let mut plan = Plan {
        statefulset_replicas: observed.desired,
        ..Default::default()
    };
    let master = choose_master(observed, now, &mut plan);
    let Some(master) = master else {
        fence_laggards(observed, &mut plan);
        plan.statefulset_replicas = observed
            .statefulset_replicas
            .unwrap_or(observed.desired)
            .max(observed.desired);
        return with_upkeep(observed, plan);
    };
    // Sentinel thinks the master is down while this operator still reaches it: sentinel may be
    // choosing a replica right now, so only the most advanced may be chosen.
    let fenced = if observed.sentinel_master_down {
        fence_laggards(observed, &mut plan)
    } else {
        Vec::new()
    };
    plan.master = Some(master.name.clone());
    converge(observed, master, &fenced, &mut plan);
    scale(observed, master, &mut plan);
    roll(observed, master, &mut plan);
    with_upkeep(observed, plan)
}

/// Step 1: who is the master? Sentinel's choice when it holds, else the operator's.
fn choose_master<'a>(observed: &'a Observed, now: Instant, plan: &mut Plan) -> Option<&'a PodView> {
    let mut master = None;
    if observed.sentinel_failing_over {
        // Sentinel is between promoting a replica and announcing it: pods report a mix of the
        // old and the new master. Acting on that mix would turn the promoted replica back (or
        // make the old master, maybe restarted empty, the source of a full sync).
        plan.wait(Wait::SentinelFailingOver);
    } else if let Some(ip) = observed.sentinel_master.as_deref() {
        master = follow_sentinel(observed, ip, now, plan);
    }
    if master.is_none() && plan.wait.is_none() {
        master = own_choice(observed, plan);
    }
    master
}

/// The master sentinel names (at `ip`), when it holds.
fn follow_sentinel<'a>(
    observed: &'a Observed,
    ip: &str,
    now: Instant,
    plan: &mut Plan,
) -> Option<&'a PodView> {
    let pods = &observed.pods;
    let Some(pod) = pods.iter().find(|p| p.ip.as_deref() == Some(ip)) else {
        // The master sentinel knows is no pod any more (its pod was recreated with a new IP).
        // While replicas still follow that address, sentinel will promote one of them;
        // otherwise nobody will, and the operator picks.
        let followers = pods.iter().any(|p| {
            reachable(p).is_some_and(|(n, _)| !n.master && n.master_host.as_deref() == Some(ip))
        });
        if let Some(promoted) = promoted_by_sentinel(pods, None) {
            // Sentinel's failover is under way and has already promoted this one.
            return Some(promoted);
        }
        if followers {
            plan.wait(Wait::MasterGone { ip: ip.to_owned() });
        }
        return None;
    };
    let stuck = observed
        .sentinel_stuck_since
        .is_some_and(|since| now.saturating_duration_since(since) >= STUCK_AFTER);
    let other_promoted = promoted_by_sentinel(pods, Some(&pod.name));
    match reachable(pod) {
        Some((node, _)) if node.master => Some(pod),
        // Restarted, and a failover has already promoted another pod (sentinel's view lags by
        // a moment): that one is the master, the restarted one follows.
        Some((node, _)) if restarted(node) && other_promoted.is_some() => other_promoted,
        Some((node, pod_ip)) if restarted(node) => {
            // The master's process restarted (as a replica of itself, as every pod starts)
            // faster than sentinel's down-after: sentinel would wait another down-after + 20 s
            // before acting. While replicas still follow it, ask sentinel to fail over now.
            // With nobody following it (a single pod, or every pod restarted), the general rule
            // applies: the pod with the most data becomes master, never the restarted one just
            // for being it.
            let followers = pods.iter().any(|p| {
                p.name != pod.name
                    && reachable(p)
                        .is_some_and(|(n, _)| !n.master && n.master_host.as_deref() == Some(pod_ip))
            });
            if followers {
                plan.actions.push(Action::Switchover {
                    from: pod.name.clone(),
                });
                plan.wait(Wait::MasterRestarted {
                    pod: pod.name.clone(),
                });
            }
            None
        }
        Some(_) if stuck => {
            // Sentinel's choice has reported itself a replica for STUCK_AFTER (a sentinel with
            // an older view turned it back): make sentinel's choice true.
            plan.operator_promotes = true;
            plan.overrides_stuck_sentinel = true;
            plan.actions.push(Action::Promote {
                pod: pod.name.clone(),
            });
            Some(pod)
        }
        Some(_) => {
            plan.wait(Wait::SentinelChoiceIsReplica {
                pod: pod.name.clone(),
            });
            None
        }
        None if other_promoted.is_some() => other_promoted,
        None => {
            plan.wait(Wait::MasterUnreachable {
                pod: pod.name.clone(),
                ip: ip.to_owned(),
            });
            None
        }
    }
}

/// No master from sentinel: the one reachable master (the recorded one among several), or, once
/// every pod answers, the pod with the most data (ties: the lowest ordinal) is promoted.
fn own_choice<'a>(observed: &'a Observed, plan: &mut Plan) -> Option<&'a PodView> {
    let pods = &observed.pods;
    let masters: Vec<&PodView> = pods
        .iter()
        .filter(|p| reachable(p).is_some_and(|(n, _)| n.master))
        .collect();
    let recorded = observed
        .status_master
        .as_deref()
        .and_then(|name| masters.iter().find(|p| p.name == name).copied());
    match (recorded, masters.as_slice()) {
        (Some(pod), _) => return Some(pod),
        (None, [only]) => return Some(*only),
        _ => {}
    }
    let expected = observed
        .statefulset_replicas
        .unwrap_or(observed.desired)
        .max(1);
    let all_reachable = pods.len() as u32 >= expected.min(observed.desired)
        && pods
            .iter()
            .filter(|p| p.ordinal < observed.desired)
            .all(|p| reachable(p).is_some());
    if !all_reachable || pods.is_empty() {
        plan.wait(Wait::Pods {
            desired: observed.desired,
        });
        return None;
    }
    // First start, or every pod restarted as a replica of itself: the most advanced data wins;
    // a brand-new set (all offsets equal) takes ordinal 0.
    let master = pods
        .iter()
        .filter(|p| p.ordinal < observed.desired.max(1))
        .filter_map(|p| reachable(p).map(|(n, _)| (p, n.offset)))
        .max_by_key(|(p, offset)| (*offset, std::cmp::Reverse(p.ordinal)))
        .map(|(p, _)| p);
    if let Some(pod) = master
        && pod.node.as_ref().is_some_and(|n| !n.master)
    {
        plan.operator_promotes = true;
        plan.actions.push(Action::Promote {
            pod: pod.name.clone(),
        });
    }
    master
}

/// Step 2: everybody else follows the master; priorities and labels follow the facts.
fn converge(observed: &Observed, master: &PodView, fenced: &[String], plan: &mut Plan) {
    let master_ip = master.ip.clone().unwrap_or_default();
    let master_offset = master.node.as_ref().map_or(0, |n| n.offset);
    for pod in &observed.pods {
        let is_master = pod.name == master.name;
        let want_label = if is_master {
            Role::Master
        } else {
            Role::Replica
        };
        if pod.role_label != Some(want_label) && !pod.deleting {
            plan.actions.push(Action::Label {
                pod: pod.name.clone(),
                role: want_label,
            });
        }
        if is_master {
            continue;
        }
        let Some((node, _)) = reachable(pod) else {
            continue;
        };
        let follows = !node.master && node.master_host.as_deref() == Some(master_ip.as_str());
        if !follows {
            plan.actions.push(Action::Follow {
                pod: pod.name.clone(),
                master_ip: master_ip.clone(),
            });
        }
        let synced = follows
            && node.link_up
            && !node.syncing
            && master_offset.saturating_sub(node.offset) <= CAUGHT_UP_SEQUENCES;
        plan.synced.insert(pod.name.clone(), synced);
        let leaving = pod.ordinal >= observed.desired;
        if fenced.contains(&pod.name) {
            continue;
        }
        let want_priority = if synced && !leaving {
            observed.priority.clone()
        } else {
            "0".to_owned()
        };
        if node.priority.as_deref() != Some(want_priority.as_str()) {
            plan.actions.push(Action::SetPriority {
                pod: pod.name.clone(),
                value: want_priority,
            });
        }
    }
}

/// Step 3: scale, never removing the master: it is moved off a leaving pod first.
fn scale(observed: &Observed, master: &PodView, plan: &mut Plan) {
    let current = observed.statefulset_replicas.unwrap_or(observed.desired);
    if master.ordinal < observed.desired {
        return;
    }
    plan.statefulset_replicas = current.max(master.ordinal + 1);
    let candidate = observed.pods.iter().any(|p| {
        p.ordinal < observed.desired && plan.synced.get(&p.name).copied().unwrap_or(false)
    });
    if candidate && observed.monitored {
        plan.actions.push(Action::Switchover {
            from: master.name.clone(),
        });
    } else if plan.wait.is_none() {
        plan.wait(Wait::Switchover {
            master: master.name.clone(),
            desired: observed.desired,
        });
    }
}

/// Step 4: rolling update, one pod at a time, only from a healthy, quiet state: replicas from
/// the highest ordinal down, the master last after a switchover.
fn roll(observed: &Observed, master: &PodView, plan: &mut Plan) {
    let pods = &observed.pods;
    let quiet = plan.actions.is_empty() && plan.wait.is_none();
    let all_synced = pods
        .iter()
        .filter(|p| p.name != master.name)
        .all(|p| plan.synced.get(&p.name).copied().unwrap_or(false));
    if !(quiet && all_synced && pods.len() as u32 == plan.statefulset_replicas) {
        return;
    }
    let replica = pods
        .iter()
        .filter(|p| p.outdated && p.name != master.name && !p.deleting)
        .max_by_key(|p| p.ordinal);
    if let Some(pod) = replica {
        plan.actions.push(Action::Restart {
            pod: pod.name.clone(),
        });
    } else if master.outdated {
        if pods.len() > 1 && observed.monitored {
            plan.actions.push(Action::Switchover {
                from: master.name.clone(),
            });
        } else {
            // A single pod has nobody to hand over to: restart it in place.
            plan.actions.push(Action::Restart {
                pod: master.name.clone(),
            });
        }
    }
}

/// Upkeep goes first: the password (every later command uses the Secret's), then kvrocks.conf
/// set live on every answering pod that runs an older one.
fn with_upkeep(observed: &Observed, mut plan: Plan) -> Plan {
    let mut upkeep = match observed.password {
        PasswordState::InEffect => Vec::new(),
        PasswordState::Unrecorded => vec![Action::RecordPassword],
        PasswordState::Changed => vec![Action::RotatePassword],
    };
    upkeep.extend(
        observed
            .pods
            .iter()
            .filter(|p| p.config_stale && !p.outdated && p.node.is_some())
            .map(|p| Action::ApplyConfig {
                pod: p.name.clone(),
            }),
    );
    upkeep.append(&mut plan.actions);
    plan.actions = upkeep;
    plan
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
