#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn replica(of: &str, offset: i64, priority: &str) -> NodeView {
    NodeView {
        master: false,
        master_host: Some(of.into()),
        link_up: of != "127.0.0.1",
        syncing: false,
        offset,
        priority: Some(priority.into()),
    }
}

fn master(offset: i64) -> NodeView {
    NodeView {
        master: true,
        master_host: None,
        link_up: false,
        syncing: false,
        offset,
        priority: Some("100".into()),
    }
}

fn pod(ordinal: u32, node: Option<NodeView>, label: Option<&str>) -> PodView {
    PodView {
        name: format!("s-{ordinal}"),
        ordinal,
        ip: Some(format!("10.0.0.{}", ordinal + 10)),
        deleting: false,
        role_label: label.and_then(Role::parse),
        node,
        outdated: false,
        config_stale: false,
        ready: true,
        fenced: false,
    }
}

/// A fixed time to plan at, so a test's clock never depends on the machine's.
fn at(seconds: u64) -> Instant {
    static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    *BASE + Duration::from_secs(seconds)
}

const NOW: u64 = 3600;

fn run(o: &Observed) -> Plan {
    plan(o, at(NOW))
}

/// Stuck for exactly [`STUCK_AFTER`] at [`NOW`].
fn long_ago() -> Instant {
    at(NOW) - STUCK_AFTER
}

fn observed(pods: Vec<PodView>) -> Observed {
    Observed {
        desired: pods.len() as u32,
        statefulset_replicas: Some(pods.len() as u32),
        pods,
        priority: "100".into(),
        ..Default::default()
    }
}

#[test]
fn a_brand_new_set_promotes_ordinal_0_and_the_others_follow() {
    let o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), None),
        pod(1, Some(replica("127.0.0.1", 0, "100")), None),
        pod(2, Some(replica("127.0.0.1", 0, "100")), None),
    ]);
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-0"));
    assert!(p.operator_promotes);
    assert!(p.actions.contains(&Action::Promote { pod: "s-0".into() }));
    assert!(p.actions.contains(&Action::Follow {
        pod: "s-1".into(),
        master_ip: "10.0.0.10".into()
    }));
    // Not synced yet: never promotable by sentinel.
    assert!(p.actions.contains(&Action::SetPriority {
        pod: "s-2".into(),
        value: "0".into()
    }));
    assert!(p.actions.contains(&Action::Label {
        pod: "s-0".into(),
        role: Role::Master
    }));
}

#[test]
fn no_master_is_chosen_until_every_pod_answers() {
    let o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), None),
        pod(1, None, None),
    ]);
    let p = run(&o);
    assert_eq!(p.master, None);
    assert!(p.actions.is_empty());
    assert_eq!(p.wait.unwrap().reason(), "WaitingForPods");
}

#[test]
fn after_all_restarted_the_most_advanced_wins() {
    let o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 100, "100")), None),
        pod(1, Some(replica("127.0.0.1", 500, "100")), None),
    ]);
    assert_eq!(run(&o).master.as_deref(), Some("s-1"));
}

#[test]
fn sentinel_is_followed_after_a_failover() {
    // s-1 was promoted by sentinel; s-0 (old master) came back as a master of its own.
    let mut o = observed(vec![
        pod(0, Some(master(900)), Some("master")),
        pod(1, Some(master(1000)), Some("replica")),
        pod(2, Some(replica("10.0.0.11", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.11".into());
    o.monitored = true;
    o.status_master = Some("s-0".into());
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(!p.operator_promotes);
    assert!(p.actions.contains(&Action::Follow {
        pod: "s-0".into(),
        master_ip: "10.0.0.11".into()
    }));
    assert!(p.actions.contains(&Action::Label {
        pod: "s-1".into(),
        role: Role::Master
    }));
    assert!(p.actions.contains(&Action::Label {
        pod: "s-0".into(),
        role: Role::Replica
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Follow { pod, .. } if pod == "s-2"))
    );
}

#[test]
fn a_lost_master_with_followers_is_left_to_sentinel() {
    let mut o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), Some("master")),
        pod(1, Some(replica("10.0.0.99", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.99".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master, None);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.wait.unwrap().reason(), "WaitingForSentinel");
}

#[test]
fn a_steady_set_needs_nothing() {
    let mut o = observed(vec![
        pod(0, Some(master(1000)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.status_master = Some("s-0".into());
    let p = run(&o);
    assert!(p.steady(), "{p:?}");
    assert!(p.synced["s-1"]);
}

#[test]
fn scale_in_moves_the_master_first_and_never_shrinks_under_it() {
    let mut o = observed(vec![
        pod(0, Some(replica("10.0.0.12", 1000, "100")), Some("replica")),
        pod(1, Some(replica("10.0.0.12", 1000, "100")), Some("replica")),
        pod(2, Some(master(1000)), Some("master")),
    ]);
    o.desired = 2;
    o.sentinel_master = Some("10.0.0.12".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.statefulset_replicas, 3);
    assert!(
        p.actions
            .contains(&Action::Switchover { from: "s-2".into() })
    );
    // Once sentinel moved it to s-0 the set shrinks, and s-2 may not be promoted again.
    o.pods[0].node = Some(master(1000));
    o.pods[2].node = Some(replica("10.0.0.10", 1000, "100"));
    o.sentinel_master = Some("10.0.0.10".into());
    let p = run(&o);
    assert_eq!(p.statefulset_replicas, 2);
    assert!(p.actions.contains(&Action::SetPriority {
        pod: "s-2".into(),
        value: "0".into()
    }));
}

#[test]
fn a_replica_far_behind_is_not_promotable() {
    let mut o = observed(vec![
        pod(0, Some(master(100 * 1024 * 1024)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 0, "100")), Some("replica")),
    ]);
    o.status_master = Some("s-0".into());
    let p = run(&o);
    assert!(!p.synced["s-1"]);
    assert!(p.actions.contains(&Action::SetPriority {
        pod: "s-1".into(),
        value: "0".into()
    }));
}

#[test]
fn a_restarted_master_is_failed_over_by_sentinel_at_once() {
    let mut o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), Some("master")),
        pod(1, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master, None);
    assert_eq!(p.actions, vec![Action::Switchover { from: "s-0".into() }]);
    // Alone, it is made master again.
    let mut o = observed(vec![pod(
        0,
        Some(replica("127.0.0.1", 0, "100")),
        Some("master"),
    )]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-0"));
    assert!(p.actions.contains(&Action::Promote { pod: "s-0".into() }));
}

#[test]
fn nothing_is_touched_while_sentinel_fails_over() {
    // The CI failure this pins: s-0 restarted; sentinel promoted s-1 and already moved s-2
    // over, but still names s-0. The operator must neither make s-0 master again nor send
    // s-1 back to it.
    let mut o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), Some("master")),
        pod(1, Some(master(1000)), Some("replica")),
        pod(2, Some(replica("10.0.0.11", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.sentinel_failing_over = true;
    let p = run(&o);
    assert_eq!(p.master, None);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.wait.unwrap().reason(), "WaitingForSentinel");
    // The same pods a moment later, the failover flag gone before sentinel's address
    // changed: the promoted replica is the master and the restarted pod follows it.
    o.sentinel_failing_over = false;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(!p.operator_promotes);
    assert!(p.actions.contains(&Action::Follow {
        pod: "s-0".into(),
        master_ip: "10.0.0.11".into()
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Promote { .. }))
    );
}

#[test]
fn a_restarted_master_nobody_follows_is_not_preferred_over_more_data() {
    // Every pod restarted: the restarted master does not win for having been master.
    let mut o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 10, "100")), Some("master")),
        pod(1, Some(replica("127.0.0.1", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(p.actions.contains(&Action::Promote { pod: "s-1".into() }));
    assert!(!p.actions.contains(&Action::Promote { pod: "s-0".into() }));
}

#[test]
fn rolling_updates_go_replicas_first_then_the_master_after_a_switchover() {
    let mut o = observed(vec![
        pod(0, Some(master(1000)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
        pod(2, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    for p in &mut o.pods {
        p.outdated = true;
    }
    assert_eq!(run(&o).actions, vec![Action::Restart { pod: "s-2".into() }]);
    o.pods[2].outdated = false;
    o.pods[1].node = Some(replica("10.0.0.10", 0, "0"));
    assert!(
        !run(&o)
            .actions
            .iter()
            .any(|a| matches!(a, Action::Restart { .. })),
        "no restart while a replica is not synced"
    );
    o.pods[1].node = Some(replica("10.0.0.10", 1000, "100"));
    o.pods[1].outdated = false;
    assert_eq!(
        run(&o).actions,
        vec![Action::Switchover { from: "s-0".into() }]
    );
}

#[test]
fn a_replica_sentinel_already_promoted_is_adopted_before_sentinel_says_so() {
    let mut o = observed(vec![
        pod(0, Some(replica("127.0.0.1", 0, "100")), Some("replica")),
        pod(1, Some(master(1000)), Some("replica")),
        pod(2, Some(replica("10.0.0.99", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.99".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(!p.operator_promotes);
}

#[test]
fn sentinels_choice_is_made_true_when_it_stays_a_replica() {
    let mut o = observed(vec![
        pod(0, Some(master(1000)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.11".into());
    o.monitored = true;
    assert!(sentinel_choice_stuck(&o));
    let p = run(&o);
    assert_eq!(p.wait.unwrap().reason(), "WaitingForSentinel");
    // Stuck, but not for STUCK_AFTER yet.
    o.sentinel_stuck_since = Some(long_ago() + Duration::from_millis(1));
    let p = run(&o);
    assert_eq!(p.wait.unwrap().reason(), "WaitingForSentinel");
    assert!(!p.overrides_stuck_sentinel);
    o.sentinel_stuck_since = Some(long_ago());
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(p.overrides_stuck_sentinel);
    assert!(p.actions.contains(&Action::Promote { pod: "s-1".into() }));
    assert!(p.actions.contains(&Action::Follow {
        pod: "s-0".into(),
        master_ip: "10.0.0.11".into()
    }));
}

#[test]
fn a_restarted_or_master_choice_is_not_stuck() {
    let mut o = observed(vec![
        pod(0, Some(master(1000)), Some("master")),
        pod(1, Some(replica("127.0.0.1", 0, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    assert!(!sentinel_choice_stuck(&o), "sentinel's choice is master");
    o.sentinel_master = Some("10.0.0.11".into());
    assert!(!sentinel_choice_stuck(&o), "a pod that just started");
    o.sentinel_master = None;
    assert!(!sentinel_choice_stuck(&o));
}

#[test]
fn upkeep_goes_first_and_does_not_hold_readiness() {
    let mut o = observed(vec![
        pod(0, Some(master(1000)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 1000, "100")), Some("replica")),
        pod(2, None, Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.password = PasswordState::Changed;
    o.pods[1].config_stale = true;
    o.pods[2].config_stale = true;
    let p = run(&o);
    assert_eq!(
        p.actions,
        vec![
            Action::RotatePassword,
            Action::ApplyConfig { pod: "s-1".into() }
        ],
        "an unreachable pod is set live once it answers"
    );
    assert!(p.steady());
    assert!(!p.idle());
    o.password = PasswordState::Unrecorded;
    assert_eq!(run(&o).actions[0], Action::RecordPassword);
    // A pod whose kvrocks.conf was refused live is outdated: restarted, not set live again.
    o.pods[2].node = Some(replica("10.0.0.10", 1000, "100"));
    o.pods[2].config_stale = false;
    o.pods[1].outdated = true;
    o.password = PasswordState::InEffect;
    assert_eq!(run(&o).actions, vec![Action::Restart { pod: "s-1".into() }]);
}

/// The master cut off (it does not answer), its replicas frozen where the cut left them.
fn cut_off(offsets: [i64; 2], priorities: [&str; 2]) -> Observed {
    let mut o = observed(vec![
        pod(0, None, Some("master")),
        pod(
            1,
            Some(replica("10.0.0.10", offsets[0], priorities[0])),
            Some("replica"),
        ),
        pod(
            2,
            Some(replica("10.0.0.10", offsets[1], priorities[1])),
            Some("replica"),
        ),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.status_master = Some("s-0".into());
    o
}

fn priority_actions(p: &Plan) -> Vec<(String, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::SetPriority { pod, value } => Some((pod.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn with_the_master_gone_only_the_most_advanced_replica_stays_promotable() {
    // The measured loss: 3 writes more on one replica than on the other.
    let p = run(&cut_off([5003, 5000], ["100", "100"]));
    assert_eq!(p.master, None);
    assert_eq!(priority_actions(&p), [("s-2".to_owned(), "0".to_owned())]);
    let p = run(&cut_off([7000, 7001], ["100", "100"]));
    assert_eq!(priority_actions(&p), [("s-1".to_owned(), "0".to_owned())]);
    // Equal: both stay candidates; already fenced: nothing to do.
    assert!(priority_actions(&run(&cut_off([10, 10], ["100", "100"]))).is_empty());
    assert!(priority_actions(&run(&cut_off([10, 9], ["100", "0"]))).is_empty());
    // The most advanced was lowered on an earlier pass (the other read ahead while the last
    // writes arrived): it is raised again, or nobody could be promoted (seen in e2e).
    assert_eq!(
        priority_actions(&run(&cut_off([10, 9], ["0", "0"]))),
        [("s-1".to_owned(), "100".to_owned())]
    );
}

#[test]
fn sentinel_reporting_the_master_down_fences_laggards_even_when_the_operator_reaches_it() {
    let mut o = observed(vec![
        pod(0, Some(master(100)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 100, "100")), Some("replica")),
        pod(2, Some(replica("10.0.0.10", 98, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.status_master = Some("s-0".into());
    assert!(
        priority_actions(&run(&o)).is_empty(),
        "98 of 100 is caught up"
    );
    o.sentinel_master_down = true;
    assert_eq!(
        priority_actions(&run(&o)),
        [("s-2".to_owned(), "0".to_owned())]
    );
    // Already fenced: it stays at 0 (never raised again while sentinel may be choosing).
    o.pods[2].node = Some(replica("10.0.0.10", 98, "0"));
    assert!(priority_actions(&run(&o)).is_empty());
}

#[test]
fn a_restarted_pod_is_no_yardstick_for_the_fence() {
    // The old master restarted as a replica of itself with more data than the replicas:
    // sentinel cannot choose it, so the replicas are compared among themselves only.
    let mut o = cut_off([50, 50], ["100", "100"]);
    o.pods[0].node = Some(replica("127.0.0.1", 60, "100"));
    o.sentinel_failing_over = true;
    assert!(priority_actions(&run(&o)).is_empty());
}

#[test]
fn caught_up_is_counted_in_sequence_numbers() {
    let mut o = observed(vec![
        pod(0, Some(master(1_000_000)), Some("master")),
        pod(
            1,
            Some(replica("10.0.0.10", 1_000_000 - CAUGHT_UP_SEQUENCES, "0")),
            Some("replica"),
        ),
        pod(
            2,
            Some(replica(
                "10.0.0.10",
                1_000_000 - CAUGHT_UP_SEQUENCES - 1,
                "100",
            )),
            Some("replica"),
        ),
    ]);
    o.status_master = Some("s-0".into());
    let p = run(&o);
    assert!(p.synced["s-1"]);
    assert!(
        !p.synced["s-2"],
        "a replica 1001 writes behind is not caught up"
    );
    assert_eq!(
        priority_actions(&p),
        [
            ("s-1".to_owned(), "100".to_owned()),
            ("s-2".to_owned(), "0".to_owned())
        ]
    );
}

#[path = "plan_props.rs"]
mod properties;

fn fenced(mut pod: PodView) -> PodView {
    pod.fenced = true;
    pod
}

#[test]
fn a_fenced_old_master_follows_sentinels_new_master_before_its_fence_is_lifted() {
    // The operator stopped after sentinel promoted s-1: s-0 still answers only to the fence.
    let mut o = observed(vec![
        fenced(pod(0, Some(master(900)), Some("master"))),
        pod(1, Some(master(900)), Some("replica")),
        pod(2, Some(replica("10.0.0.11", 900, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.11".into());
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-1"));
    assert!(p.actions.contains(&Action::Unfence {
        pod: "s-0".into(),
        follow: Some("10.0.0.11".into())
    }));
    // No command the fence would refuse.
    assert!(!p.actions.iter().any(|a| matches!(a,
        Action::Follow { pod, .. } | Action::SetPriority { pod, .. } if pod == "s-0")));
}

#[test]
fn a_fence_is_lifted_on_the_master_only_when_nobody_else_was_promoted() {
    let base = |other: NodeView| {
        let mut o = observed(vec![
            fenced(pod(0, Some(master(900)), Some("master"))),
            pod(1, Some(other), Some("replica")),
        ]);
        o.sentinel_master = Some("10.0.0.10".into());
        o.sentinels_agree = true;
        o.monitored = true;
        o
    };
    // The switchover was given up: sentinel still names s-0, s-1 still follows it.
    let p = run(&base(replica("10.0.0.10", 900, "100")));
    assert!(p.actions.contains(&Action::Unfence {
        pod: "s-0".into(),
        follow: None
    }));
    // Sentinel promoted s-1 and gave the failover up (it never announced it): s-1 follows s-0
    // again before s-0 takes writes.
    let p = run(&base(master(900)));
    let follow = p.actions.iter().position(|a| {
        *a == Action::Follow {
            pod: "s-1".into(),
            master_ip: "10.0.0.10".into(),
        }
    });
    let unfence = p.actions.iter().position(|a| {
        *a == Action::Unfence {
            pod: "s-0".into(),
            follow: None,
        }
    });
    assert!(
        follow.is_some() && unfence.is_some() && follow < unfence,
        "{:?}",
        p.actions
    );
    // Sentinel names no master (the fenced pod is the operator's own choice): it stays fenced.
    let mut o = base(replica("10.0.0.10", 900, "100"));
    o.sentinel_master = None;
    o.monitored = false;
    let p = run(&o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Unfence { .. })),
        "{:?}",
        p.actions
    );
    // A sentinel names another master (the failover ended on one of them): nothing is lifted.
    let mut o = base(replica("10.0.0.10", 900, "100"));
    o.sentinels_agree = false;
    assert!(
        !run(&o)
            .actions
            .iter()
            .any(|a| matches!(a, Action::Unfence { .. }))
    );
    // Sentinel is failing over: nothing is lifted.
    let mut o = base(replica("10.0.0.10", 900, "100"));
    o.sentinel_failing_over = true;
    let p = run(&o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Unfence { .. }))
    );
}

#[test]
fn a_master_whose_pod_is_being_deleted_hands_over_while_its_hook_holds_it() {
    let mut o = observed(vec![
        pod(0, Some(master(900)), Some("master")),
        pod(1, Some(replica("10.0.0.10", 900, "100")), Some("replica")),
    ]);
    o.pods[0].deleting = true;
    o.sentinel_master = Some("10.0.0.10".into());
    o.sentinels_agree = true;
    o.monitored = true;
    let p = run(&o);
    assert_eq!(p.master.as_deref(), Some("s-0"));
    assert!(
        p.actions
            .contains(&Action::Switchover { from: "s-0".into() }),
        "{:?}",
        p.actions
    );
    // Nobody to hand over to: no switchover (the hook lets it go at once).
    let mut alone = o.clone();
    alone.pods.truncate(1);
    alone.desired = 1;
    alone.statefulset_replicas = Some(1);
    assert!(
        !run(&alone)
            .actions
            .iter()
            .any(|a| matches!(a, Action::Switchover { .. }))
    );
}

#[test]
fn without_a_sentinel_quorum_nothing_is_promoted_or_followed() {
    // The master is gone; one sentinel of three answers (with an old view).
    let mut o = observed(vec![
        pod(0, None, Some("master")),
        pod(1, Some(master(900)), Some("replica")),
        pod(2, Some(replica("10.0.0.10", 800, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.monitored = true;
    o.sentinel_group = 3;
    o.sentinels_answering = 1;
    let p = run(&o);
    assert_eq!(p.master, None);
    assert_eq!(p.wait.as_ref().unwrap().reason(), "NoSentinelQuorum");
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Promote { .. } | Action::Follow { .. })),
        "{:?}",
        p.actions
    );
    // Two of three: a quorum; the plan goes on.
    o.sentinels_answering = 2;
    assert_ne!(run(&o).wait.map(|w| w.reason()), Some("NoSentinelQuorum"));
}

#[test]
fn a_master_gone_during_sentinels_lockout_is_failed_over_on_request() {
    let mut o = observed(vec![
        pod(0, None, Some("master")),
        pod(1, Some(replica("10.0.0.10", 900, "100")), Some("replica")),
    ]);
    o.sentinel_master = Some("10.0.0.10".into());
    o.sentinels_agree = true;
    o.monitored = true;
    // Only subjectively down so far: sentinel has not agreed yet.
    o.sentinel_master_down = true;
    assert!(
        !run(&o)
            .actions
            .iter()
            .any(|a| matches!(a, Action::ForceFailover { .. }))
    );
    // A quorum calls it down and nobody fails it over.
    o.sentinel_master_odown = true;
    let p = run(&o);
    assert!(
        p.actions
            .contains(&Action::ForceFailover { from: "s-0".into() }),
        "{:?}",
        p.actions
    );
    assert_eq!(p.wait.unwrap().reason(), "MasterUnreachable");
    // A failover under way: nothing asked.
    o.sentinel_failing_over = true;
    assert!(
        !run(&o)
            .actions
            .iter()
            .any(|a| matches!(a, Action::ForceFailover { .. }))
    );
}
