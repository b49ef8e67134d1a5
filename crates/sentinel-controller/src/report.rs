//! What the status says, computed from the pods as they are after the pass (pure), and the
//! Events that tell people what the pass changed.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kvrocks_api::sentinel::{KvrocksSentinelStatus, SentinelMonitor};
use kvrocks_operator_core::conditions::{self, ConditionStatus};
use kvrocks_operator_core::events::EventType;

use crate::act::PodOutcome;
use crate::model::{Addr, DesiredMonitor, MonitorName, ObservedPod, Owner, PendingMonitor, Reach};
use crate::plan::{Plan, RemoveWhy, Step, not_ready_reason};

/// `Ready=False` while the group is deleted but still used.
pub const REASON_IN_USE: &str = "InUse";
/// `Ready=True`: every sentinel is ready and carries every monitor.
pub const REASON_READY: &str = "SentinelsReady";
/// `Ready=False`: some sentinels are not ready or lack monitors.
pub const REASON_NOT_READY: &str = "SentinelsNotReady";
/// `Progressing=True`: the pod count differs from `spec.replicas`.
pub const REASON_SCALING: &str = "Scaling";
/// `Progressing=True`: monitors were added, removed or changed in this pass.
pub const REASON_CONFIGURING: &str = "ConfiguringMonitors";
/// `Progressing=True`: waiting for pods to become ready.
pub const REASON_WAITING_FOR_PODS: &str = "WaitingForPods";
/// `Progressing=True`: some owner cannot be monitored yet (no master, no Secret).
pub const REASON_PENDING: &str = "MonitorsPending";
/// `Progressing=False`: nothing to do.
pub const REASON_STEADY: &str = "Steady";
/// `Degraded=True`: a sentinel does not answer.
pub const REASON_UNREACHABLE: &str = "SentinelUnreachable";
/// `Degraded=True`: a sentinel command failed.
pub const REASON_COMMANDS_FAILED: &str = "CommandsFailed";
/// `Degraded=True`: sentinels count peers that are gone.
pub const REASON_STALE_PEERS: &str = "StalePeers";
/// `Degraded=False`.
pub const REASON_HEALTHY: &str = "Healthy";
/// Progressing while the group's password is being rotated.
pub const REASON_ROTATING_PASSWORD: &str = "RotatingPassword";
/// Degraded while a sentinel refuses the group's passwords or a rotation step fails.
pub const REASON_PASSWORD_REFUSED: &str = "SentinelPasswordRefused";
/// Event when every sentinel requires the new password.
pub const REASON_PASSWORD_ROTATED: &str = "PasswordRotated";

/// How the group's own password fared this pass (see [`crate::auth`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasswordReport {
    /// Set while a rotation runs: what it does or waits for.
    pub rotating: Option<String>,
    /// Set when something is wrong: pods refusing both passwords, a step that failed.
    pub problem: Option<String>,
}

impl PasswordReport {
    /// The report of a pass that planned `plan`, whose steps failed with `error` if they did,
    /// and that `recorded` the new password.
    pub fn new(plan: &crate::auth::Plan, error: Option<String>, recorded: bool) -> Self {
        let rotating = if recorded {
            None
        } else if let Some(waiting) = &plan.waiting {
            Some(waiting.clone())
        } else if plan.busy() {
            Some(format!(
                "rotating the sentinel password: {}",
                list(plan.steps.iter().map(crate::auth::describe))
            ))
        } else {
            None
        };
        let mut problems = Vec::new();
        if !plan.refused.is_empty() {
            problems.push(format!(
                "{} refuse(s) both the current and the new password of the group; restart them so they start with the Secret's",
                plan.refused.join(", ")
            ));
        }
        if let Some(e) = error {
            problems.push(format!("a password step failed: {e}"));
        }
        Self {
            rotating,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }
}

/// Everything the report is made from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The pods' label selector.
    pub selector: &'a str,
    /// The pods as they are after the pass.
    pub pods: &'a [ObservedPod],
    /// The monitors the group should have.
    pub desired: &'a [DesiredMonitor],
    /// Monitors waiting for their owner.
    pub pending: &'a [PendingMonitor],
    /// The quorum in force.
    pub quorum: u32,
    /// What was planned.
    pub plan: &'a Plan,
    /// How the plan went, per pod.
    pub outcomes: &'a BTreeMap<String, PodOutcome>,
    /// The status before the pass.
    pub previous: &'a KvrocksSentinelStatus,
    /// Set while the group is being deleted: the owners that still use it.
    pub in_use_by: Option<&'a [Owner]>,
    /// How the group's own password fared.
    pub password: &'a PasswordReport,
}

/// The new status, and whether the group is steady (nothing in motion, nothing wrong).
pub fn status(inputs: &Inputs<'_>) -> (KvrocksSentinelStatus, bool) {
    let Inputs {
        replicas,
        generation,
        pods,
        desired,
        quorum,
        plan,
        outcomes,
        previous,
        in_use_by,
        ..
    } = *inputs;
    let live: Vec<&ObservedPod> = pods.iter().filter(|p| !p.terminating).collect();
    let current = live.len();
    let not_ready: Vec<(String, String)> = live
        .iter()
        .filter_map(|p| Some((p.name.clone(), not_ready_reason(p, desired, quorum)?)))
        .collect();
    let ready = current - not_ready.len();
    let monitors = monitors(pods, desired, quorum).unwrap_or_else(|| previous.monitors.clone());

    let replicas_n = usize::try_from(replicas.max(0)).unwrap_or(0);
    let n_desired = desired.len();
    let ready_condition = match in_use_by {
        Some(owners) => conditions::ready(
            ConditionStatus::False,
            REASON_IN_USE,
            in_use_message(owners),
            generation,
        ),
        None if ready >= replicas_n => conditions::ready(
            ConditionStatus::True,
            REASON_READY,
            format!(
                "{ready} of {replicas} sentinels are ready and carry all {n_desired} monitor(s) \
                 at quorum {quorum}"
            ),
            generation,
        ),
        None => conditions::ready(
            ConditionStatus::False,
            REASON_NOT_READY,
            format!(
                "{ready} of {replicas} sentinels are ready and carry all {n_desired} monitor(s) \
                 at quorum {quorum}; {}",
                if not_ready.is_empty() {
                    "waiting for the StatefulSet to create the missing pods".to_owned()
                } else {
                    list(not_ready.iter().map(|(p, why)| format!("{p}: {why}")))
                }
            ),
            generation,
        ),
    };

    let errors: Vec<String> = outcomes
        .iter()
        .filter_map(|(pod, o)| Some(format!("{pod}: {}", o.error.as_ref()?)))
        .collect();
    let progressing = progressing(inputs, current, ready, &errors);
    let progressing_condition = match &progressing {
        Some((reason, message)) => {
            conditions::progressing(ConditionStatus::True, reason, message.clone(), generation)
        }
        None => conditions::progressing(
            ConditionStatus::False,
            REASON_STEADY,
            format!("{ready} sentinel(s) carry {n_desired} monitor(s); nothing to do"),
            generation,
        ),
    };

    let degraded = degraded(plan, &live, &errors, inputs.password.problem.as_ref());
    let degraded_condition = match &degraded {
        Some((reason, message)) => {
            conditions::degraded(ConditionStatus::True, reason, message.clone(), generation)
        }
        None => conditions::degraded(
            ConditionStatus::False,
            REASON_HEALTHY,
            "every sentinel answers",
            generation,
        ),
    };

    let conditions: Vec<Condition> = conditions::merge(
        &previous.conditions,
        [ready_condition, progressing_condition, degraded_condition],
    );
    let steady = progressing.is_none()
        && degraded.is_none()
        && plan.is_empty()
        && *inputs.password == PasswordReport::default();
    let status = KvrocksSentinelStatus {
        observed_generation: generation,
        current_replicas: Some(i32::try_from(current).unwrap_or(i32::MAX)),
        ready_replicas: Some(i32::try_from(ready).unwrap_or(i32::MAX)),
        quorum: Some(i32::try_from(quorum).unwrap_or(i32::MAX)),
        selector: Some(inputs.selector.to_owned()),
        monitors,
        conditions,
    };
    (status, steady)
}

/// Why the group is still changing (None: steady).
fn progressing(
    inputs: &Inputs<'_>,
    current: usize,
    ready: usize,
    errors: &[String],
) -> Option<(&'static str, String)> {
    let replicas = inputs.replicas;
    let replicas_n = usize::try_from(replicas.max(0)).unwrap_or(0);
    if current != replicas_n {
        Some((
            REASON_SCALING,
            format!("{current} sentinel pod(s) exist, {replicas} wanted"),
        ))
    } else if let Some(rotating) = &inputs.password.rotating {
        Some((REASON_ROTATING_PASSWORD, rotating.clone()))
    } else if !inputs.plan.is_empty() && errors.is_empty() {
        Some((REASON_CONFIGURING, summary(inputs.plan)))
    } else if ready < replicas_n {
        Some((
            REASON_WAITING_FOR_PODS,
            format!("{ready} of {replicas} sentinels are ready"),
        ))
    } else if !inputs.pending.is_empty() {
        Some((
            REASON_PENDING,
            format!(
                "not monitored yet: {}",
                list(
                    inputs
                        .pending
                        .iter()
                        .map(|p| format!("{}: {}", p.name.render(), p.reason))
                )
            ),
        ))
    } else {
        None
    }
}

/// What is wrong with the group (None: healthy): failed commands, sentinels that do not answer,
/// sentinels counting gone peers.
fn degraded(
    plan: &Plan,
    live: &[&ObservedPod],
    errors: &[String],
    password_problem: Option<&String>,
) -> Option<(&'static str, String)> {
    let unreachable: Vec<String> = live
        .iter()
        .filter_map(|p| match &p.reach {
            Reach::Unreachable(e) => Some(format!("{}: {e}", p.name)),
            _ => None,
        })
        .collect();
    let stale: Vec<String> = plan
        .stale
        .iter()
        .map(|s| {
            format!(
                "{} counts gone sentinels {} for {}; they are reset one at a time so they \
                 rediscover their peers",
                s.pod,
                s.peers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                s.monitor
            )
        })
        .collect();
    if !errors.is_empty() {
        Some((REASON_COMMANDS_FAILED, list(errors.iter().cloned())))
    } else if let Some(problem) = password_problem {
        Some((REASON_PASSWORD_REFUSED, problem.clone()))
    } else if !unreachable.is_empty() {
        Some((
            REASON_UNREACHABLE,
            format!(
                "these sentinels do not answer on port 26379 (check their logs): {}",
                list(unreachable.iter().cloned())
            ),
        ))
    } else if !stale.is_empty() {
        Some((REASON_STALE_PEERS, list(stale.iter().cloned())))
    } else {
        None
    }
}

/// The message of `Ready=False, InUse`.
pub fn in_use_message(owners: &[Owner]) -> String {
    format!(
        "deletion is waiting: the group is still used by {}; delete them or point their \
         spec.sentinel.name at another group",
        list(owners.iter().map(ToString::to_string))
    )
}

/// The monitors of ours present on every ready pod (every answering pod when none is ready);
/// `None` when no pod answered, so the previous list stands.
fn monitors(
    pods: &[ObservedPod],
    desired: &[DesiredMonitor],
    quorum: u32,
) -> Option<Vec<SentinelMonitor>> {
    let answering: Vec<&ObservedPod> = pods
        .iter()
        .filter(|p| !p.terminating && p.monitors().is_some())
        .collect();
    let ready: Vec<&ObservedPod> = answering
        .iter()
        .copied()
        .filter(|p| not_ready_reason(p, desired, quorum).is_none())
        .collect();
    let basis = if ready.is_empty() { answering } else { ready };
    let (first, rest) = basis.split_first()?;
    let mut names: BTreeSet<&String> = first.monitors()?.keys().collect();
    for p in rest {
        let held = p.monitors()?;
        names.retain(|n| held.contains_key(*n));
    }
    let mut out = Vec::new();
    for name in names {
        let Some(parsed) = MonitorName::parse(name) else {
            continue;
        };
        let mut votes: BTreeMap<&Addr, usize> = BTreeMap::new();
        for p in &basis {
            if let Some(m) = p.monitors().and_then(|m| m.get(name)) {
                *votes.entry(&m.master).or_default() += 1;
            }
        }
        let Some(addr) = votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(a, _)| a.clone())
        else {
            continue;
        };
        out.push(SentinelMonitor {
            name: name.clone(),
            kind: parsed.owner.kind.kind().to_owned(),
            instance: parsed.owner.name,
            ip: addr.ip,
            port: i32::from(addr.port),
        });
    }
    Some(out)
}

/// One line about what the plan does.
fn summary(plan: &Plan) -> String {
    let count = |f: fn(&Step) -> bool| {
        plan.pods
            .iter()
            .flat_map(|p| &p.steps)
            .filter(|s| f(s))
            .count()
    };
    let added = count(|s| matches!(s, Step::Monitor { .. }));
    let removed = count(|s| matches!(s, Step::Remove { .. }));
    let set = count(|s| matches!(s, Step::Set { .. }));
    let reset = count(|s| matches!(s, Step::Reset { .. }));
    format!(
        "this pass added {added}, removed {removed}, updated {set} and reset {reset} monitor(s) \
         across {} sentinel(s)",
        plan.pods.len()
    )
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("; ")
}

/// A Kubernetes Event about the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What the operator did.
    pub action: &'static str,
    /// For a person; never a password.
    pub text: String,
}

/// The Events of a pass: one per monitor that was added, removed or repointed somewhere, one
/// for quorum changes, one per reset, one per failed command. Only steps that ran count.
pub fn notes(plan: &Plan, outcomes: &BTreeMap<String, PodOutcome>) -> Vec<Note> {
    let mut added: BTreeMap<String, (Addr, Vec<String>)> = BTreeMap::new();
    let mut removed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut repointed: BTreeMap<String, (Addr, Vec<String>)> = BTreeMap::new();
    let mut quorum: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut notes = Vec::new();
    for pod_plan in &plan.pods {
        let done = outcomes.get(&pod_plan.pod).map_or(0, |o| o.done);
        let pod = &pod_plan.pod;
        let steps = &pod_plan.steps[..done.min(pod_plan.steps.len())];
        let repointing: BTreeMap<&str, &Addr> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Remove {
                    name,
                    why: RemoveWhy::Repoint { from },
                } => Some((name.as_str(), from)),
                _ => None,
            })
            .collect();
        for step in steps {
            match step {
                Step::Monitor { name, master, .. } if repointing.contains_key(name.as_str()) => {
                    repointed
                        .entry(format!(
                            "{name} from {} to {master}",
                            repointing[name.as_str()]
                        ))
                        .or_insert_with(|| (master.clone(), Vec::new()))
                        .1
                        .push(pod.clone());
                }
                Step::Monitor { name, master, .. } => added
                    .entry(name.clone())
                    .or_insert_with(|| (master.clone(), Vec::new()))
                    .1
                    .push(pod.clone()),
                Step::Remove {
                    name,
                    why: RemoveWhy::NoOwner,
                } => removed.entry(name.clone()).or_default().push(pod.clone()),
                Step::Set { name, changes } => {
                    if let Some(q) = changes.quorum {
                        quorum.entry(q).or_default().insert(name.clone());
                    }
                }
                Step::Reset { name, stale } => notes.push(Note {
                    type_: EventType::Normal,
                    reason: "SentinelReset",
                    action: "Reset",
                    text: format!(
                        "SENTINEL RESET {name} on {pod}: it counted gone sentinels {}",
                        list(stale.iter().map(ToString::to_string))
                    ),
                }),
                Step::Remove { .. } => {}
            }
        }
        if let Some(outcome) = outcomes.get(pod)
            && let Some(error) = &outcome.error
        {
            notes.push(Note {
                type_: EventType::Warning,
                reason: "SentinelCommandFailed",
                action: "Configure",
                text: format!("{pod}: {error}"),
            });
        }
    }
    for (name, (master, pods)) in added {
        notes.push(Note {
            type_: EventType::Normal,
            reason: "MonitorAdded",
            action: "Monitor",
            text: format!("{name} ({master}) added on {}", pods.join(", ")),
        });
    }
    for (what, (_, pods)) in repointed {
        notes.push(Note {
            type_: EventType::Normal,
            reason: "MonitorRepointed",
            action: "Monitor",
            text: format!(
                "{what} on {}: the old address is no pod of its owner any more",
                pods.join(", ")
            ),
        });
    }
    for (name, pods) in removed {
        notes.push(Note {
            type_: EventType::Normal,
            reason: "MonitorRemoved",
            action: "Remove",
            text: format!(
                "{name} removed from {}: its owner is gone or no longer uses this group",
                pods.join(", ")
            ),
        });
    }
    for (q, names) in quorum {
        notes.push(Note {
            type_: EventType::Normal,
            reason: "QuorumSet",
            action: "Configure",
            text: format!(
                "quorum {q} set on {}",
                names.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    notes
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
