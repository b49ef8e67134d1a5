#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::model::{OwnerKind, fingerprint};
use kvrocks_client::Password;
use proptest::prelude::*;

const SETTINGS: Settings = Settings {
    quorum: 2,
    down_after_ms: 5000,
    failover_timeout_ms: 10000,
    parallel_syncs: 1,
};

fn addr(ip: &str) -> Addr {
    Addr::new(ip, 6379)
}

fn want(name: MonitorName, ip: &str, password: &str) -> DesiredMonitor {
    DesiredMonitor::new(name, addr(ip), Password::new(password))
}

/// A monitor exactly as the group wants it.
fn held(ip: &str) -> ObservedMonitor {
    ObservedMonitor {
        master: addr(ip),
        quorum: Some(SETTINGS.quorum),
        down_after_ms: Some(SETTINGS.down_after_ms),
        failover_timeout_ms: Some(SETTINGS.failover_timeout_ms),
        parallel_syncs: Some(SETTINGS.parallel_syncs),
        failover_in_progress: false,
        known_sentinels: None,
        peers: None,
    }
}

fn pod(name: &str, ip: &str, monitors: &[(&str, ObservedMonitor)]) -> ObservedPod {
    ObservedPod {
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        ip: Some(ip.to_owned()),
        pod_ready: true,
        terminating: false,
        reach: Reach::Monitors(
            monitors
                .iter()
                .map(|(n, m)| ((*n).to_owned(), m.clone()))
                .collect(),
        ),
        auth_applied: BTreeMap::new(),
    }
}

/// A pod whose auth-pass for every monitor it holds is known to be `password`.
fn authed(mut p: ObservedPod, password: &str) -> ObservedPod {
    let names: Vec<String> = p.monitors().unwrap().keys().cloned().collect();
    for n in names {
        p.auth_applied.insert(n, fingerprint(password));
    }
    p
}

fn std_owner(name: &str) -> Owner {
    MonitorName::standard(name).owner
}

fn run(
    desired: &[DesiredMonitor],
    pending: &[PendingMonitor],
    pods: &[ObservedPod],
    owner_ips: &BTreeMap<Owner, BTreeSet<String>>,
) -> Plan {
    plan(PlanInput {
        desired,
        pending,
        settings: SETTINGS,
        pods,
        owner_ips,
    })
}

#[test]
fn the_quorum_follows_the_serving_size() {
    assert_eq!(effective_quorum(3, 0), 2);
    assert_eq!(effective_quorum(3, 3), 2);
    assert_eq!(
        effective_quorum(5, 3),
        2,
        "scale-up: not before the new ones serve"
    );
    assert_eq!(effective_quorum(5, 4), 3);
    assert_eq!(effective_quorum(5, 5), 3);
    assert_eq!(effective_quorum(3, 5), 2, "scale-down: at once");
    assert_eq!(effective_quorum(7, 7), 4);
    assert_eq!(effective_quorum(7, 6), 4, "one missing changes nothing");
}

#[test]
fn a_new_pod_gets_every_monitor_with_every_option() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let pods = [pod("s-0", "10.1.0.1", &[])];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert_eq!(
        plan.steps_for("s-0"),
        [
            Step::Monitor {
                name: "standard_a".into(),
                master: addr("10.0.0.1"),
                quorum: 2
            },
            Step::Set {
                name: "standard_a".into(),
                changes: Changes {
                    quorum: None,
                    down_after_ms: Some(5000),
                    failover_timeout_ms: Some(10000),
                    parallel_syncs: Some(1),
                    auth_pass: true,
                }
            },
        ]
    );
}

#[test]
fn a_steady_group_needs_nothing() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let pods = [
        authed(
            pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.1"))]),
            "pw",
        ),
        authed(
            pod("s-1", "10.1.0.2", &[("standard_a", held("10.0.0.1"))]),
            "pw",
        ),
    ];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert!(plan.is_empty(), "{plan:?}");
    assert!(plan.notes.is_empty());
}

#[test]
fn orphans_go_foreign_and_pending_monitors_stay() {
    let pending = [PendingMonitor {
        name: MonitorName::standard("b"),
        reason: "no Secret".into(),
    }];
    let mut stale_quorum = held("10.0.0.2");
    stale_quorum.quorum = Some(3);
    let pods = [pod(
        "s-0",
        "10.1.0.1",
        &[
            ("standard_gone", held("10.0.0.9")),
            ("cluster_c_1", held("10.0.0.8")),
            ("mymaster", held("10.0.0.7")),
            ("standard_b", stale_quorum),
        ],
    )];
    let plan = run(&[], &pending, &pods, &BTreeMap::new());
    assert_eq!(
        plan.steps_for("s-0"),
        [
            Step::Remove {
                name: "cluster_c_1".into(),
                why: RemoveWhy::NoOwner
            },
            Step::Remove {
                name: "standard_gone".into(),
                why: RemoveWhy::NoOwner
            },
            Step::Set {
                name: "standard_b".into(),
                changes: Changes {
                    quorum: Some(2),
                    ..Changes::default()
                }
            },
        ]
    );
}

#[test]
fn a_failed_over_master_is_never_pointed_back() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    // Sentinel promoted 10.0.0.2, a pod of `a`; the status still says 10.0.0.1.
    let pods = [authed(
        pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.2"))]),
        "pw",
    )];
    let ips = [(
        std_owner("a"),
        ["10.0.0.1".to_owned(), "10.0.0.2".to_owned()].into(),
    )]
    .into();
    let plan = run(&desired, &[], &pods, &ips);
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.notes.len(), 1);
    assert!(
        plan.notes[0].contains("sentinel failed over"),
        "{:?}",
        plan.notes
    );
    assert_eq!(owners_to_check(&desired, &pods), [std_owner("a")].into());
}

#[test]
fn a_monitor_at_a_vanished_address_is_repointed() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let pods = [authed(
        pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.66"))]),
        "pw",
    )];
    let ips = [(std_owner("a"), ["10.0.0.1".to_owned()].into())].into();
    let plan = run(&desired, &[], &pods, &ips);
    let steps = plan.steps_for("s-0");
    assert_eq!(
        steps[0],
        Step::Remove {
            name: "standard_a".into(),
            why: RemoveWhy::Repoint {
                from: addr("10.0.0.66")
            }
        }
    );
    assert_eq!(
        steps[1],
        Step::Monitor {
            name: "standard_a".into(),
            master: addr("10.0.0.1"),
            quorum: 2
        }
    );
    assert!(matches!(&steps[2], Step::Set { changes, .. } if changes.auth_pass));
}

#[test]
fn new_and_repointed_monitors_follow_the_sentinels_majority() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    // Two sentinels followed a failover to 10.0.0.2; one still holds a dead address; a new
    // pod holds nothing. Neither should be sent to the stale status address.
    let pods = [
        authed(
            pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.2"))]),
            "pw",
        ),
        authed(
            pod("s-1", "10.1.0.2", &[("standard_a", held("10.0.0.2"))]),
            "pw",
        ),
        authed(
            pod("s-2", "10.1.0.3", &[("standard_a", held("10.0.0.99"))]),
            "pw",
        ),
        pod("s-3", "10.1.0.4", &[]),
    ];
    let ips = [(
        std_owner("a"),
        ["10.0.0.1".to_owned(), "10.0.0.2".to_owned()].into(),
    )]
    .into();
    let plan = run(&desired, &[], &pods, &ips);
    assert!(plan.steps_for("s-0").is_empty());
    assert!(plan.steps_for("s-1").is_empty());
    for p in ["s-2", "s-3"] {
        let monitor = plan
            .steps_for(p)
            .iter()
            .find_map(|s| match s {
                Step::Monitor { master, .. } => Some(master.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(monitor, addr("10.0.0.2"), "{p}");
    }
}

#[test]
fn without_the_owners_pods_a_mismatch_is_left_alone() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let pods = [authed(
        pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.66"))]),
        "pw",
    )];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert!(plan.is_empty());
    assert!(plan.notes[0].contains("not listed"), "{:?}", plan.notes);
}

#[test]
fn a_failover_in_progress_is_not_disturbed() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let mut busy = held("10.0.0.66");
    busy.failover_in_progress = true;
    busy.quorum = Some(5);
    let pods = [pod("s-0", "10.1.0.1", &[("standard_a", busy)])];
    let ips = [(std_owner("a"), ["10.0.0.1".to_owned()].into())].into();
    let plan = run(&desired, &[], &pods, &ips);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn drifted_options_and_an_unknown_password_are_set() {
    let desired = [want(MonitorName::cluster("c", 0), "10.0.0.1", "pw")];
    let mut drifted = held("10.0.0.1");
    drifted.quorum = Some(3);
    drifted.down_after_ms = Some(30000);
    let pods = [pod("s-0", "10.1.0.1", &[("cluster_c_0", drifted)])];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert_eq!(
        plan.steps_for("s-0"),
        [Step::Set {
            name: "cluster_c_0".into(),
            changes: Changes {
                quorum: Some(2),
                down_after_ms: Some(5000),
                auth_pass: true,
                ..Changes::default()
            }
        }]
    );
    // A rotated password is set again.
    let pods = [authed(
        pod("s-0", "10.1.0.1", &[("cluster_c_0", held("10.0.0.1"))]),
        "old",
    )];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert_eq!(
        plan.steps_for("s-0"),
        [Step::Set {
            name: "cluster_c_0".into(),
            changes: Changes {
                auth_pass: true,
                ..Changes::default()
            }
        }]
    );
}

#[test]
fn stale_peers_are_reset_on_one_pod_per_pass() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let sentinel = |ip: &str| Addr::new(ip, 26379);
    let with_peers = |peers: Vec<Addr>| {
        let mut m = held("10.0.0.1");
        m.known_sentinels = Some(u32::try_from(peers.len()).unwrap());
        m.peers = Some(peers);
        m
    };
    let gone = sentinel("10.1.0.9");
    let pods = [
        authed(
            pod(
                "s-0",
                "10.1.0.1",
                &[(
                    "standard_a",
                    with_peers(vec![sentinel("10.1.0.2"), gone.clone()]),
                )],
            ),
            "pw",
        ),
        authed(
            pod(
                "s-1",
                "10.1.0.2",
                &[(
                    "standard_a",
                    with_peers(vec![sentinel("10.1.0.1"), gone.clone()]),
                )],
            ),
            "pw",
        ),
    ];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert_eq!(
        plan.pods,
        [PodPlan {
            pod: "s-0".into(),
            steps: vec![Step::Reset {
                name: "standard_a".into(),
                stale: vec![gone]
            }]
        }]
    );
    assert_eq!(plan.stale.len(), 2, "both are reported, one is reset");
}

#[test]
fn a_reset_waits_until_the_previous_one_recovered() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let gone = Addr::new("10.1.0.9", 26379);
    let mut stale = held("10.0.0.1");
    stale.known_sentinels = Some(2);
    stale.peers = Some(vec![Addr::new("10.1.0.2", 26379), gone]);
    let mut just_reset = held("10.0.0.1");
    just_reset.known_sentinels = Some(0);
    let pods = [
        authed(pod("s-0", "10.1.0.1", &[("standard_a", stale)]), "pw"),
        authed(pod("s-1", "10.1.0.2", &[("standard_a", just_reset)]), "pw"),
    ];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.stale.len(), 1, "still reported: {plan:?}");
    assert_eq!(plan.stale[0].pod, "s-0");
}

#[test]
fn pods_that_cannot_be_talked_to_get_nothing() {
    let desired = [want(MonitorName::standard("a"), "10.0.0.1", "pw")];
    let mut terminating = pod("s-0", "10.1.0.1", &[]);
    terminating.terminating = true;
    let mut unreachable = pod("s-1", "10.1.0.2", &[]);
    unreachable.reach = Reach::Unreachable("connection refused".into());
    let mut no_ip = pod("s-2", "10.1.0.3", &[]);
    no_ip.ip = None;
    let pods = [terminating, unreachable, no_ip];
    let plan = run(&desired, &[], &pods, &BTreeMap::new());
    assert!(plan.is_empty());
    assert_eq!(
        not_ready_reason(&pods[0], &desired, 2).as_deref(),
        Some("being deleted")
    );
    assert!(
        not_ready_reason(&pods[1], &desired, 2)
            .unwrap()
            .contains("connection refused")
    );
}

#[test]
fn readiness_needs_every_monitor_at_the_quorum() {
    let desired = [
        want(MonitorName::standard("a"), "10.0.0.1", "pw"),
        want(MonitorName::standard("b"), "10.0.0.2", "pw"),
    ];
    let p = pod("s-0", "10.1.0.1", &[("standard_a", held("10.0.0.1"))]);
    assert_eq!(
        not_ready_reason(&p, &desired, 2).as_deref(),
        Some("lacks monitor standard_b")
    );
    let plan = run(&desired, &[], std::slice::from_ref(&p), &BTreeMap::new());
    let after = pod_after(&p, &plan, usize::MAX, &desired);
    assert_eq!(not_ready_reason(&after, &desired, 2), None);
    assert_eq!(
        not_ready_reason(&after, &desired, 3).as_deref(),
        Some("lacks monitor standard_a, standard_b")
    );
    // Only the steps that ran count: the MONITOR of standard_b did not.
    let partial = pod_after(&p, &plan, 0, &desired);
    assert!(not_ready_reason(&partial, &desired, 2).is_some());
    let mut not_ready = after;
    not_ready.pod_ready = false;
    assert_eq!(
        not_ready_reason(&not_ready, &desired, 2).as_deref(),
        Some("pod not Ready")
    );
}

// ---- properties ----

const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"];

fn universe() -> Vec<MonitorName> {
    vec![
        MonitorName::standard("a"),
        MonitorName::standard("b"),
        MonitorName::cluster("c", 0),
        MonitorName::cluster("c", 1),
    ]
}

fn arb_observed() -> impl Strategy<Value = ObservedMonitor> {
    (
        0..IPS.len(),
        prop::option::of(1u32..5),
        prop::option::of(prop::sample::select(vec![1000u64, 5000])),
        any::<bool>(),
        prop::option::of(prop::collection::vec(0u8..8, 0..4)),
    )
        .prop_map(
            |(ip, quorum, down_after, failover, peers)| ObservedMonitor {
                master: addr(IPS[ip]),
                quorum,
                down_after_ms: down_after,
                failover_timeout_ms: Some(10000),
                parallel_syncs: Some(1),
                // Rare, so most cases exercise the other rules.
                failover_in_progress: failover && quorum == Some(4),
                known_sentinels: peers.as_ref().map(|ps| u32::try_from(ps.len()).unwrap()),
                peers: peers.map(|ps| {
                    ps.into_iter()
                        .map(|i| Addr::new(format!("10.1.0.{i}"), 26379))
                        .collect()
                }),
            },
        )
}

fn arb_pod(index: usize) -> impl Strategy<Value = ObservedPod> {
    let names: Vec<String> = universe()
        .iter()
        .map(MonitorName::render)
        .chain(["mymaster".to_owned()])
        .collect();
    (
        prop::collection::btree_map(prop::sample::select(names), arb_observed(), 0..5),
        0u8..10,
        prop::collection::btree_map(
            prop::sample::select(
                universe()
                    .iter()
                    .map(MonitorName::render)
                    .collect::<Vec<_>>(),
            ),
            prop::sample::select(vec![fingerprint("pw"), fingerprint("old")]),
            0..3,
        ),
    )
        .prop_map(move |(monitors, state, auth_applied)| ObservedPod {
            name: format!("s-{index}"),
            uid: format!("u-{index}"),
            ip: (state != 0).then(|| format!("10.1.0.{index}")),
            pod_ready: state != 1,
            terminating: state == 2,
            reach: if state == 3 {
                Reach::Unreachable("refused".into())
            } else {
                Reach::Monitors(monitors)
            },
            auth_applied,
        })
}

fn arb_pods() -> impl Strategy<Value = Vec<ObservedPod>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(arb_pod).collect::<Vec<_>>())
}

/// Desired, pending, and the owners' pod IPs (absent for some owners).
type World = (
    Vec<DesiredMonitor>,
    Vec<PendingMonitor>,
    BTreeMap<Owner, BTreeSet<String>>,
);

fn arb_world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((0u8..3, 0..IPS.len()), 4),
        prop::collection::vec(
            prop::option::of(prop::collection::btree_set(0..IPS.len(), 0..3)),
            2,
        ),
    )
        .prop_map(|(fates, owner_ips)| {
            let mut desired = Vec::new();
            let mut pending = Vec::new();
            for (name, (fate, ip)) in universe().into_iter().zip(fates) {
                match fate {
                    0 => desired.push(want(name, IPS[ip], "pw")),
                    1 => pending.push(PendingMonitor {
                        name,
                        reason: "waiting".into(),
                    }),
                    _ => {}
                }
            }
            let owners = [
                std_owner("a"),
                Owner {
                    kind: OwnerKind::Cluster,
                    name: "c".into(),
                },
            ];
            let ips = owners
                .into_iter()
                .zip(owner_ips)
                .filter_map(|(o, ips)| {
                    ips.map(|set| (o, set.into_iter().map(|i| IPS[i].to_owned()).collect()))
                })
                .collect();
            (desired, pending, ips)
        })
}

fn after_all(pods: &[ObservedPod], plan: &Plan, desired: &[DesiredMonitor]) -> Vec<ObservedPod> {
    pods.iter()
        .map(|p| pod_after(p, plan, usize::MAX, desired))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After one pass every pod that can be talked to carries every desired monitor at the
    /// group's quorum (unless that monitor is failing over there), holds no monitor of ours
    /// without an owner, and still holds every monitor that is not ours.
    #[test]
    fn one_pass_converges((desired, pending, ips) in arb_world(), pods in arb_pods()) {
        let plan = run(&desired, &pending, &pods, &ips);
        let resets = plan.pods.iter().flat_map(|p| &p.steps).filter(|s| matches!(s, Step::Reset { .. })).count();
        prop_assert!(resets <= 1);
        for (before, after) in pods.iter().zip(after_all(&pods, &plan, &desired)) {
            let Some(monitors) = plannable(&after) else {
                prop_assert!(plan.steps_for(&before.name).is_empty());
                continue;
            };
            let old = before.monitors().unwrap();
            for d in &desired {
                let name = d.name.render();
                if old.get(&name).is_some_and(|m| m.failover_in_progress) {
                    continue;
                }
                let m = monitors.get(&name);
                prop_assert!(m.is_some_and(|m| m.quorum == Some(SETTINGS.quorum)), "{} on {}: {:?}", name, before.name, plan);
                prop_assert_eq!(after.auth_applied.get(&name), Some(&d.auth_fingerprint));
            }
            for name in monitors.keys() {
                if let Some(parsed) = MonitorName::parse(name) {
                    prop_assert!(
                        desired.iter().any(|d| d.name == parsed) || pending.iter().any(|p| p.name == parsed),
                        "orphan {} left on {}", name, before.name
                    );
                }
            }
            prop_assert_eq!(old.get("mymaster"), monitors.get("mymaster"));
        }
    }

    /// A monitor that points at a current pod of its owner is never removed or re-added: after a
    /// sentinel failover the operator follows sentinel, never the other way round.
    #[test]
    fn a_failover_is_never_undone((desired, pending, ips) in arb_world(), pods in arb_pods()) {
        let plan = run(&desired, &pending, &pods, &ips);
        for pod in &pods {
            let Some(monitors) = pod.monitors() else { continue };
            for d in &desired {
                let name = d.name.render();
                let Some(observed) = monitors.get(&name) else { continue };
                let at_owner_pod = ips.get(&d.name.owner).is_some_and(|s| s.contains(&observed.master.ip));
                if at_owner_pod || !ips.contains_key(&d.name.owner) || observed.master == d.master {
                    let undone = plan.steps_for(&pod.name).iter().any(|s| s.name() == name
                        && matches!(s, Step::Remove { .. } | Step::Monitor { .. }));
                    prop_assert!(!undone, "{} on {}: {:?}", name, pod.name, plan);
                }
            }
        }
    }

    /// A second pass over the outcome of the first adds, removes and sets nothing.
    #[test]
    fn a_second_pass_is_quiet((desired, pending, ips) in arb_world(), pods in arb_pods()) {
        let first = run(&desired, &pending, &pods, &ips);
        let after = after_all(&pods, &first, &desired);
        let second = run(&desired, &pending, &after, &ips);
        let loud: Vec<&Step> = second.pods.iter().flat_map(|p| &p.steps)
            .filter(|s| !matches!(s, Step::Reset { .. }))
            .collect();
        prop_assert!(loud.is_empty(), "first {:?}\nsecond {:?}", first, loud);
    }
}
