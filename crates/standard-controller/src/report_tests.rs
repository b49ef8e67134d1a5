#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::act::{Failed, Result as ActResult};
use crate::plan::{NodeView, Wait};
use kvrocks_api::labels::Role;

fn pod(ordinal: u32, master: bool) -> PodView {
    PodView {
        name: format!("s-{ordinal}"),
        ordinal,
        ip: Some(format!("10.0.0.{}", ordinal + 10)),
        deleting: false,
        role_label: Some(if master { Role::Master } else { Role::Replica }),
        node: Some(NodeView {
            master,
            master_host: (!master).then(|| "10.0.0.10".to_owned()),
            link_up: !master,
            syncing: false,
            offset: 100,
            priority: Some("100".into()),
        }),
        outdated: false,
        config_stale: false,
        ready: true,
        fenced: false,
    }
}

fn steady() -> (Observed, Plan) {
    let observed = Observed {
        desired: 2,
        statefulset_replicas: Some(2),
        pods: vec![pod(0, true), pod(1, false)],
        sentinel_master: Some("10.0.0.10".into()),
        monitored: true,
        priority: "100".into(),
        ..Default::default()
    };
    let plan = Plan {
        master: Some("s-0".into()),
        statefulset_replicas: 2,
        synced: [("s-1".to_owned(), true)].into(),
        ..Default::default()
    };
    (observed, plan)
}

fn inputs<'a>(
    observed: &'a Observed,
    plan: &'a Plan,
    outcomes: &'a [Outcome],
    previous: &'a KvrocksStandardStatus,
    verdict: &'a ConfigVerdict,
) -> Inputs<'a> {
    Inputs {
        name: "s",
        generation: Some(1),
        sentinel_group: "g",
        observed,
        verdict,
        plan,
        outcomes,
        previous,
        refused: None,
    }
}

fn condition<'a>(
    r: &'a Report,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::find(&r.status.conditions, type_).unwrap()
}

#[test]
fn a_steady_instance_is_ready_and_healthy() {
    let (o, p) = steady();
    let previous = KvrocksStandardStatus::default();
    let verdict = ConfigVerdict::default();
    let r = report(&inputs(&o, &p, &[], &previous, &verdict));
    assert!(r.ready);
    assert_eq!(condition(&r, "Ready").reason, "AllReplicasSynced");
    assert_eq!(condition(&r, "Degraded").status, "False");
    assert_eq!(r.status.master.unwrap().pod, "s-0");
    assert!(r.notes.is_empty() && r.failures.is_empty());
}

#[test]
fn a_failed_promotion_names_no_master_and_reaches_degraded() {
    let (mut o, mut p) = steady();
    o.pods[0].node.as_mut().unwrap().master = false;
    p.operator_promotes = true;
    p.actions = vec![Action::Promote { pod: "s-0".into() }];
    let outcomes = [Outcome {
        action: Action::Promote { pod: "s-0".into() },
        result: ActResult::Failed(Failure {
            kind: Failed::Kvrocks,
            message: "SLAVEOF on 10.0.0.10:6379: connection lost".into(),
        }),
        warnings: Vec::new(),
    }];
    let previous = KvrocksStandardStatus::default();
    let verdict = ConfigVerdict::default();
    let r = report(&inputs(&o, &p, &outcomes, &previous, &verdict));
    assert!(!r.ready);
    assert!(!r.master_up);
    assert_eq!(r.status.master, None);
    assert_eq!(condition(&r, "Ready").reason, "NoMaster");
    let degraded = condition(&r, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, REASON_ACTIONS_FAILED);
    assert!(degraded.message.contains("connection lost"));
    assert_eq!(r.failures.len(), 1);
    assert!(r.notes.iter().all(|n| n.reason != "MasterPromoted"));
    assert!(r.notes.iter().any(|n| n.reason == "ActionFailed"));
}

#[test]
fn a_wait_is_the_ready_reason_and_upkeep_keeps_ready() {
    let (o, mut p) = steady();
    p.actions = vec![Action::ApplyConfig { pod: "s-1".into() }];
    let outcomes = [Outcome {
        action: p.actions[0].clone(),
        result: ActResult::Done,
        warnings: Vec::new(),
    }];
    let previous = KvrocksStandardStatus::default();
    let verdict = ConfigVerdict::default();
    let r = report(&inputs(&o, &p, &outcomes, &previous, &verdict));
    assert!(
        r.ready,
        "kvrocks.conf set live does not make the instance un-Ready"
    );
    assert_eq!(r.notes[0].reason, "ConfigApplied");
    p.wait = Some(Wait::SentinelFailingOver);
    let r = report(&inputs(&o, &p, &outcomes, &previous, &verdict));
    assert_eq!(condition(&r, "Ready").reason, "WaitingForSentinel");
}

#[test]
fn a_moved_master_is_a_failover_and_unsupported_keys_stay_the_degraded_reason() {
    let (o, p) = steady();
    let previous = KvrocksStandardStatus {
        master: Some(MasterStatus {
            pod: "s-1".into(),
            ip: "10.0.0.11".into(),
        }),
        ..Default::default()
    };
    let verdict = ConfigVerdict {
        unsupported: vec!["no-such-key".into()],
        version: Some("2.10.1".into()),
        changed: true,
    };
    let outcomes = [Outcome {
        action: Action::SetPriority {
            pod: "s-1".into(),
            value: "100".into(),
        },
        result: ActResult::Failed(Failure {
            kind: Failed::Kvrocks,
            message: "CONFIG SET refused".into(),
        }),
        warnings: Vec::new(),
    }];
    let r = report(&inputs(&o, &p, &outcomes, &previous, &verdict));
    assert_eq!(r.failovers, 1);
    assert!(r.notes.iter().any(|n| n.reason == "Failover"));
    assert!(r.notes.iter().any(|n| n.reason == "UnsupportedConfig"));
    let degraded = condition(&r, "Degraded");
    assert_eq!(degraded.reason, "UnsupportedConfig");
    assert!(degraded.message.contains("no-such-key"));
    assert!(degraded.message.contains("CONFIG SET refused"));
}

#[test]
fn a_postponed_switchover_says_why_without_a_failure() {
    let (o, mut p) = steady();
    p.actions = vec![Action::Switchover { from: "s-0".into() }];
    let why = "switchover off s-0 postponed: replica 10.0.0.11 at offset 5, the fenced master at 9 after 2.0 s";
    let outcomes = [Outcome {
        action: Action::Switchover { from: "s-0".into() },
        result: ActResult::Postponed(why.into()),
        warnings: Vec::new(),
    }];
    let previous = KvrocksStandardStatus::default();
    let verdict = ConfigVerdict::default();
    let r = report(&inputs(&o, &p, &outcomes, &previous, &verdict));
    assert!(!r.ready);
    let ready = condition(&r, "Ready");
    assert_eq!(ready.reason, "SwitchoverPostponed");
    assert_eq!(ready.message, why);
    assert_eq!(condition(&r, "Degraded").status, "False");
    assert!(r.failures.is_empty() && r.notes.is_empty());
}

#[test]
fn a_spec_the_statefulset_refuses_is_not_ready_and_says_why() {
    let (o, p) = steady();
    let previous = KvrocksStandardStatus::default();
    let verdict = ConfigVerdict::default();
    let mut i = inputs(&o, &p, &[], &previous, &verdict);
    i.refused = Some("storage.size cannot shrink (2Gi -> 1Gi): volumes only grow");
    let r = report(&i);
    assert!(!r.ready);
    let ready = condition(&r, "Ready");
    assert_eq!(ready.reason, REASON_SPEC_NOT_APPLIED);
    assert!(ready.message.contains("cannot shrink"), "{}", ready.message);
    // The master is still reported: the data plane goes on.
    assert_eq!(r.status.master.unwrap().pod, "s-0");
}
