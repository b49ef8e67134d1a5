//! What the status says and which Events tell people what the pass did, computed from what was
//! observed, the plan and how its actions went (pure; `lib.rs` publishes them).
//!
//! A master the plan meant to promote is only named once its promotion was done; every failed
//! action is in the `Degraded` condition.

use kvrocks_api::labels::{self, Component};
use kvrocks_api::standard::{KvrocksStandardStatus, MasterStatus, ReplicaStatus};
use kvrocks_operator_core::conditions;
use kvrocks_operator_core::events::EventType;
use kvrocks_operator_core::server::ConfigVerdict;

use crate::act::{Failure, Outcome};
use crate::plan::{Action, Observed, Plan, PodView, STUCK_AFTER};

/// `Degraded=True`: an action failed.
pub const REASON_ACTIONS_FAILED: &str = "ActionsFailed";
/// Ready's reason while a spec change cannot be applied to the StatefulSet.
pub const REASON_SPEC_NOT_APPLIED: &str = "SpecNotApplied";

/// Everything the report is made from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The resource's name.
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.sentinel.name`.
    pub sentinel_group: &'a str,
    /// What was observed.
    pub observed: &'a Observed,
    /// What the running kvrocks says about `spec.config`.
    pub verdict: &'a ConfigVerdict,
    /// What was planned.
    pub plan: &'a Plan,
    /// How the actions went.
    pub outcomes: &'a [Outcome],
    /// The status before the pass.
    pub previous: &'a KvrocksStandardStatus,
    /// Why the StatefulSet was not applied, when it was not.
    pub refused: Option<&'a str>,
}

/// A Kubernetes Event about the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: String,
    /// What the operator did.
    pub action: &'static str,
    /// For a person; never a password.
    pub text: String,
}

/// The report of a pass.
#[derive(Clone, Debug)]
pub struct Report {
    /// The new status.
    pub status: KvrocksStandardStatus,
    /// Ready is True.
    pub ready: bool,
    /// A master is there.
    pub master_up: bool,
    /// Master changes this pass (followed or performed).
    pub failovers: u32,
    /// Every failure of the pass.
    pub failures: Vec<Failure>,
    /// The Events.
    pub notes: Vec<Note>,
}

/// The master after the pass: the plan's, unless its promotion failed.
pub fn master_after<'a>(inputs: &Inputs<'a>) -> Option<&'a PodView> {
    let plan = inputs.plan;
    let name = plan.master.as_deref()?;
    let promotion_failed = inputs
        .outcomes
        .iter()
        .any(|o| matches!(&o.action, Action::Promote { pod } if pod == name) && !o.done());
    if promotion_failed {
        return None;
    }
    inputs.observed.pods.iter().find(|p| p.name == name)
}

/// The report of a pass.
pub fn report(inputs: &Inputs<'_>) -> Report {
    let Inputs {
        name,
        generation,
        observed,
        verdict,
        plan,
        outcomes,
        previous,
        ..
    } = *inputs;
    let master = master_after(inputs);
    let failures: Vec<Failure> = outcomes
        .iter()
        .flat_map(Outcome::failures)
        .cloned()
        .collect();
    let (ready, reason, message) = readiness(inputs, master);
    let degraded = degraded(inputs, master.is_some(), &failures);
    let status = KvrocksStandardStatus {
        unsupported_config: verdict.unsupported.clone(),
        observed_generation: generation,
        current_replicas: Some(observed.pods.len() as i32),
        selector: Some(labels::selector(name, Component::Standard)),
        master: master
            .map(|m| MasterStatus {
                pod: m.name.clone(),
                ip: m.ip.clone().unwrap_or_default(),
            })
            .or_else(|| previous.master.clone().filter(|_| plan.master.is_none())),
        replicas: replicas(observed, plan, master),
        kvrocks_version: verdict.version.clone(),
        conditions: conditions::merge(
            &previous.conditions,
            conditions::health(
                ready,
                &reason,
                &message,
                (degraded.0, &degraded.1, &degraded.2),
                generation,
            ),
        ),
    };
    let (notes, failovers) = notes(inputs, master, &failures);
    Report {
        status,
        ready,
        master_up: master.is_some(),
        failovers,
        failures,
        notes,
    }
}

fn replicas(observed: &Observed, plan: &Plan, master: Option<&PodView>) -> Vec<ReplicaStatus> {
    let master_offset = master.and_then(|m| m.node.as_ref()).map_or(0, |n| n.offset);
    observed
        .pods
        .iter()
        .filter(|p| Some(&p.name) != master.map(|m| &m.name))
        .map(|p| ReplicaStatus {
            pod: p.name.clone(),
            ip: p.ip.clone().unwrap_or_default(),
            link_up: plan.synced.get(&p.name).copied().unwrap_or(false),
            lag_bytes: p
                .node
                .as_ref()
                .map_or(0, |n| master_offset.saturating_sub(n.offset).max(0)),
        })
        .collect()
}

/// Ready, its reason and message.
fn readiness(inputs: &Inputs<'_>, master: Option<&PodView>) -> (bool, String, String) {
    let Inputs { observed, plan, .. } = *inputs;
    let desired = observed.desired as usize;
    let synced = plan.synced.values().filter(|s| **s).count();
    let all_there = observed.pods.len() == desired && synced + 1 == desired && master.is_some();
    let settled = all_there && plan.steady();
    let master_name = master.map(|m| m.name.as_str()).unwrap_or_default();
    let postponed = inputs.outcomes.iter().find_map(|o| match &o.result {
        crate::act::Result::Postponed(why) => Some((
            if matches!(o.action, Action::Switchover { .. }) {
                "SwitchoverPostponed"
            } else {
                "ReplicationPending"
            },
            why.clone(),
        )),
        _ => None,
    });
    if let Some(wait) = &plan.wait {
        (false, wait.reason().to_owned(), wait.message())
    } else if let Some(why) = inputs.refused {
        (
            false,
            REASON_SPEC_NOT_APPLIED.to_owned(),
            format!("the StatefulSet keeps its previous spec: {why}"),
        )
    } else if let Some((reason, why)) = postponed {
        (false, reason.to_owned(), why)
    } else if let Some(pod) = master.filter(|p| settled && !p.ready) {
        (
            false,
            "MasterPodNotReady".to_owned(),
            format!(
                "master {} answers, but its pod is not Ready yet, so the master Service does not route to it",
                pod.name
            ),
        )
    } else if settled && !observed.monitored {
        (
            false,
            "NotMonitored".to_owned(),
            format!(
                "master {master_name} and {synced} synced replicas, but the sentinel group {} does not monitor this instance yet, so nothing would fail it over",
                inputs.sentinel_group
            ),
        )
    } else if settled {
        (
            true,
            "AllReplicasSynced".to_owned(),
            format!("master {master_name} and {synced} synced replicas"),
        )
    } else if master.is_none() {
        (false, "NoMaster".to_owned(), "no master yet".to_owned())
    } else {
        (
            false,
            "Syncing".to_owned(),
            format!(
                "{synced} of {} replicas synced; {} pods of {desired} answer",
                desired.saturating_sub(1),
                observed.pods.iter().filter(|v| v.node.is_some()).count()
            ),
        )
    }
}

/// Degraded: no master any more, else keys kvrocks does not know, else failed actions; failed
/// actions are named in any case.
fn degraded(inputs: &Inputs<'_>, master_up: bool, failures: &[Failure]) -> (bool, String, String) {
    let failed = (!failures.is_empty()).then(|| {
        failures
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    });
    let (is, reason, message) = if !master_up && inputs.previous.master.is_some() {
        (
            true,
            "NoMaster".to_owned(),
            "no writable master right now".to_owned(),
        )
    } else if let Some((reason, message)) = inputs.verdict.condition() {
        (true, reason, message)
    } else if let Some(failed) = &failed {
        return (
            true,
            REASON_ACTIONS_FAILED.to_owned(),
            format!("failed: {failed}"),
        );
    } else {
        (
            false,
            "Healthy".to_owned(),
            "a master is writable".to_owned(),
        )
    };
    match failed {
        Some(failed) => (true, reason, format!("{message}; failed: {failed}")),
        None => (is, reason, message),
    }
}

/// The Events of the pass, and how many master changes it saw.
fn notes(inputs: &Inputs<'_>, master: Option<&PodView>, failures: &[Failure]) -> (Vec<Note>, u32) {
    let Inputs {
        verdict,
        plan,
        outcomes,
        previous,
        ..
    } = *inputs;
    let mut notes = Vec::new();
    let mut failovers = 0;
    let mut note = |type_, reason: &str, action, text: String| {
        notes.push(Note {
            type_,
            reason: reason.to_owned(),
            action,
            text,
        });
    };
    if let Some((reason, message)) = verdict.condition().filter(|_| verdict.changed) {
        note(EventType::Warning, &reason, "Configure", message);
    }
    for outcome in outcomes.iter().filter(|o| o.done()) {
        match &outcome.action {
            Action::RotatePassword => note(
                EventType::Normal,
                "PasswordRotated",
                "Rotate",
                "the new password from the Secret is in effect on every pod and sentinel".into(),
            ),
            Action::ApplyConfig { pod } => note(
                EventType::Normal,
                "ConfigApplied",
                "Configure",
                format!("kvrocks.conf applied live on {pod}"),
            ),
            Action::Promote { pod } if plan.overrides_stuck_sentinel => note(
                EventType::Normal,
                "MasterPromoted",
                "Promote",
                format!(
                    "{pod} promoted to master: sentinel chose it, but it reported itself a replica for {}s",
                    STUCK_AFTER.as_secs()
                ),
            ),
            Action::Promote { pod } => note(
                EventType::Normal,
                "MasterPromoted",
                "Promote",
                format!(
                    "{pod} promoted to master (the pod with the most data; no master was running)"
                ),
            ),
            Action::Switchover { from } => {
                failovers += 1;
                note(
                    EventType::Normal,
                    "Switchover",
                    "Switchover",
                    format!(
                        "planned switchover off {from}: fenced, the replicas caught up, then sentinel promoted one"
                    ),
                );
            }
            Action::ForceFailover { from } => note(
                EventType::Warning,
                "ForcedFailover",
                "Failover",
                format!(
                    "{from} is down for a quorum of sentinels but none fails it over (a recent failover's lockout): SENTINEL FAILOVER asked"
                ),
            ),
            Action::Unfence { pod, follow } => note(
                EventType::Normal,
                "FenceLifted",
                "Unfence",
                match follow {
                    Some(ip) => format!(
                        "{pod}, left fenced by a switchover, follows {ip} and takes clients again"
                    ),
                    None => format!(
                        "{pod}, left fenced by a switchover that was given up, takes writes again"
                    ),
                },
            ),
            _ => {}
        }
    }
    if let (Some(new), Some(old)) = (master, previous.master.as_ref())
        && new.name != old.pod
    {
        failovers += 1;
        note(
            EventType::Warning,
            "Failover",
            "Failover",
            format!("the master moved from {} to {}", old.pod, new.name),
        );
    }
    for failure in failures {
        note(
            EventType::Warning,
            "ActionFailed",
            "Reconcile",
            failure.message.clone(),
        );
    }
    (notes, failovers)
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
