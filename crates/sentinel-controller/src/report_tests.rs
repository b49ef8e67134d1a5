#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::model::{MonitorName, ObservedMonitor, OwnerKind};
use crate::plan::PodPlan;
use kvrocks_client::Password;

fn monitor(ip: &str) -> ObservedMonitor {
    ObservedMonitor::fresh(Addr::new(ip, 6379), 2)
}

fn pod(name: &str, ready: bool, monitors: &[(&str, &str)]) -> ObservedPod {
    ObservedPod {
        name: name.into(),
        uid: format!("u-{name}"),
        ip: Some(format!("10.1.0.{}", name.len())),
        pod_ready: ready,
        terminating: false,
        reach: Reach::Monitors(
            monitors
                .iter()
                .map(|(n, ip)| ((*n).to_owned(), monitor(ip)))
                .collect(),
        ),
        auth_applied: BTreeMap::new(),
    }
}

fn desired(name: MonitorName, ip: &str) -> DesiredMonitor {
    DesiredMonitor::new(name, Addr::new(ip, 6379), Password::new("pw"))
}

fn inputs<'a>(
    pods: &'a [ObservedPod],
    desired: &'a [DesiredMonitor],
    plan: &'a Plan,
    outcomes: &'a BTreeMap<String, PodOutcome>,
    previous: &'a KvrocksSentinelStatus,
) -> Inputs<'a> {
    Inputs {
        replicas: 3,
        generation: Some(4),
        selector: "sel",
        pods,
        desired,
        pending: &[],
        quorum: 2,
        plan,
        outcomes,
        previous,
        in_use_by: None,
        password: &NO_ROTATION,
    }
}

static NO_ROTATION: PasswordReport = PasswordReport {
    rotating: None,
    problem: None,
};

fn condition<'a>(status: &'a KvrocksSentinelStatus, type_: &str) -> &'a Condition {
    conditions::find(&status.conditions, type_).unwrap()
}

#[test]
fn a_steady_group_is_ready_and_lists_its_monitors() {
    let d = [desired(MonitorName::standard("a"), "10.0.0.1")];
    let pods: Vec<_> = ["s-0", "s-1", "s-2"]
        .iter()
        .map(|n| {
            pod(
                n,
                true,
                &[("standard_a", "10.0.0.1"), ("mymaster", "10.9.9.9")],
            )
        })
        .collect();
    let plan = Plan::default();
    let outcomes = BTreeMap::new();
    let previous = KvrocksSentinelStatus::default();
    let (status, steady) = status(&inputs(&pods, &d, &plan, &outcomes, &previous));
    assert!(steady);
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.quorum, Some(2));
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.selector.as_deref(), Some("sel"));
    assert_eq!(
        status.monitors,
        [SentinelMonitor {
            name: "standard_a".into(),
            kind: "KvrocksStandard".into(),
            instance: "a".into(),
            ip: "10.0.0.1".into(),
            port: 6379,
        }]
    );
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(condition(&status, "Progressing").reason, REASON_STEADY);
    assert_eq!(condition(&status, "Degraded").status, "False");
}

#[test]
fn a_pod_without_a_monitor_is_not_ready_and_says_why() {
    let d = [desired(MonitorName::cluster("c", 0), "10.0.0.1")];
    let mut unreachable = pod("s-2", true, &[]);
    unreachable.reach = Reach::Unreachable("connection refused".into());
    let pods = vec![
        pod("s-0", true, &[("cluster_c_0", "10.0.0.1")]),
        pod("s-1", true, &[]),
        unreachable,
    ];
    let plan = Plan::default();
    let outcomes = BTreeMap::new();
    let previous = KvrocksSentinelStatus::default();
    let (status, steady) = status(&inputs(&pods, &d, &plan, &outcomes, &previous));
    assert!(!steady);
    assert_eq!(status.ready_replicas, Some(1));
    let ready = condition(&status, "Ready");
    assert_eq!(ready.reason, REASON_NOT_READY);
    assert!(
        ready.message.contains("s-1: lacks monitor cluster_c_0"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("connection refused"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&status, "Degraded").reason, REASON_UNREACHABLE);
    assert_eq!(status.monitors.len(), 1, "listed from the one ready pod");
    assert_eq!(status.monitors[0].kind, "KvrocksCluster");
    assert_eq!(status.monitors[0].instance, "c");
}

#[test]
fn without_an_answer_the_previous_monitors_stand() {
    let mut silent = pod("s-0", true, &[]);
    silent.reach = Reach::Unreachable("timeout".into());
    let previous = KvrocksSentinelStatus {
        monitors: vec![SentinelMonitor {
            name: "standard_a".into(),
            kind: "KvrocksStandard".into(),
            instance: "a".into(),
            ip: "10.0.0.1".into(),
            port: 6379,
        }],
        ..Default::default()
    };
    let plan = Plan::default();
    let outcomes = BTreeMap::new();
    let pods = [silent];
    let (status, _) = status(&inputs(&pods, &[], &plan, &outcomes, &previous));
    assert_eq!(status.monitors, previous.monitors);
}

#[test]
fn deletion_in_use_names_the_owners() {
    let owners = [Owner {
        kind: OwnerKind::Standard,
        name: "db".into(),
    }];
    let plan = Plan::default();
    let outcomes = BTreeMap::new();
    let previous = KvrocksSentinelStatus::default();
    let pods = [pod("s-0", true, &[])];
    let mut i = inputs(&pods, &[], &plan, &outcomes, &previous);
    i.in_use_by = Some(&owners);
    let (status, _) = status(&i);
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InUse")
    );
    assert!(
        ready.message.contains("KvrocksStandard db"),
        "{}",
        ready.message
    );
}

#[test]
fn notes_count_only_the_steps_that_ran() {
    let plan = Plan {
        pods: vec![
            PodPlan {
                pod: "s-0".into(),
                steps: vec![
                    Step::Remove {
                        name: "standard_gone".into(),
                        why: RemoveWhy::NoOwner,
                    },
                    Step::Monitor {
                        name: "standard_a".into(),
                        master: Addr::new("10.0.0.1", 6379),
                        quorum: 2,
                    },
                ],
            },
            PodPlan {
                pod: "s-1".into(),
                steps: vec![Step::Monitor {
                    name: "standard_a".into(),
                    master: Addr::new("10.0.0.1", 6379),
                    quorum: 2,
                }],
            },
        ],
        notes: vec![],
        stale: vec![],
    };
    let outcomes: BTreeMap<String, PodOutcome> = [
        (
            "s-0".to_owned(),
            PodOutcome {
                done: 2,
                error: None,
            },
        ),
        (
            "s-1".to_owned(),
            PodOutcome {
                done: 0,
                error: Some("SENTINEL MONITOR: refused".into()),
            },
        ),
    ]
    .into();
    let notes = notes(&plan, &outcomes);
    let reasons: Vec<_> = notes.iter().map(|n| n.reason).collect();
    assert_eq!(
        reasons,
        ["SentinelCommandFailed", "MonitorAdded", "MonitorRemoved"]
    );
    assert_eq!(notes[1].text, "standard_a (10.0.0.1:6379) added on s-0");
}
