//! The cluster's safety rules as properties of [`plan`] over random observed states: random
//! layouts (ordinals up to 12, so `x-10` meets `x-2`), random node answers, prober verdicts,
//! spec changes, migrations in flight and kvrocks' reports of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use kvrocks_api::cluster::{
    ClusterNodeStatus, KvrocksClusterSpec, KvrocksClusterStatus, ShardStatus,
};
use kvrocks_api::labels::{Role, ordinal};
use kvrocks_client::{MigrationState, SlotRange};
use proptest::prelude::*;

use super::*;
use crate::topo;

const UID: &str = "0b9f3c1e-uid";
const ORDINALS: [u32; 7] = [0, 1, 2, 3, 10, 11, 12];

/// One random case.
#[derive(Clone, Debug)]
struct Case {
    spec: KvrocksClusterSpec,
    status: KvrocksClusterStatus,
    observed: Observed,
    now: SystemTime,
}

impl Case {
    fn input(&self) -> Input<'_> {
        Input {
            spec: &self.spec,
            status: &self.status,
            observed: &self.observed,
            now: self.now,
        }
    }
}

fn pod(shard: u32, ordinal: u32) -> String {
    format!("c-{shard}-{ordinal}")
}

/// A shard with the given ordinals, `master` its master, owning `slots`.
fn shard(index: u32, ordinals: &[u32], master: u32, slots: Vec<SlotRange>) -> ShardStatus {
    let master_id = topo::node_id(UID, &pod(index, master));
    ShardStatus {
        index: index as i32,
        slots: topo::render_slots(&slots),
        nodes: ordinals
            .iter()
            .map(|&o| ClusterNodeStatus {
                pod: pod(index, o),
                ip: format!("10.0.{index}.{o}"),
                port: 6379,
                node_id: topo::node_id(UID, &pod(index, o)).as_str().to_owned(),
                role: if o == master {
                    Role::Master
                } else {
                    Role::Replica
                },
                master_id: (o != master).then(|| master_id.as_str().to_owned()),
            })
            .collect(),
        master_unreachable_since: None,
        last_failover: None,
    }
}

#[derive(Clone, Debug)]
struct NodeDraw {
    reachable: bool,
    current: bool,
    offset: i64,
    link_up: bool,
    /// Seen linked earlier, since it started (its link may be down now).
    seen_linked: bool,
    /// Its pod was created just now (a process that stopped answering before is gone).
    recreated: bool,
    template_ok: bool,
    config_ok: bool,
    live_refused: bool,
    probed_down_ms: Option<u64>,
}

fn arb_node() -> impl Strategy<Value = NodeDraw> {
    (
        proptest::bool::weighted(0.8),
        proptest::bool::weighted(0.8),
        0i64..4,
        (any::<bool>(), any::<bool>(), proptest::bool::weighted(0.3)),
        proptest::bool::weighted(0.8),
        proptest::bool::weighted(0.8),
        any::<bool>(),
        proptest::option::weighted(0.3, 0u64..6000),
    )
        .prop_map(
            |(
                reachable,
                current,
                offset,
                (link_up, seen_linked, recreated),
                template_ok,
                config_ok,
                live_refused,
                down,
            )| {
                NodeDraw {
                    reachable,
                    current,
                    offset,
                    link_up,
                    seen_linked,
                    recreated,
                    template_ok,
                    config_ok,
                    live_refused,
                    probed_down_ms: down,
                }
            },
        )
}

/// Per shard: its ordinals (a non-empty subset), which is master, the nodes' draws.
fn arb_shard_draw() -> impl Strategy<Value = (Vec<u32>, usize, Vec<NodeDraw>)> {
    proptest::sample::subsequence(ORDINALS.to_vec(), 1..=4).prop_flat_map(|ordinals| {
        let n = ordinals.len();
        (
            Just(ordinals),
            0..n,
            proptest::collection::vec(arb_node(), n),
        )
    })
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(arb_shard_draw(), 1..=4),
        1i32..=5,
        0i32..=3,
        proptest::option::weighted(0.4, (0u32..4, 0u32..4, 1usize..200)),
        0u8..4,
        any::<bool>(),
        0u64..8000,
        any::<bool>(),
    )
        .prop_map(
            |(mut draws, shards, replicas, migration, reported, drained, recorded_ms, healthy)| {
                if healthy {
                    // Half the cases: every node answers at the current version, so the slot,
                    // drain and rollout steps run too.
                    for node in draws.iter_mut().flat_map(|(_, _, nodes)| nodes.iter_mut()) {
                        node.reachable = true;
                        node.current = true;
                        node.probed_down_ms = None;
                    }
                }
                build(
                    draws,
                    shards,
                    replicas,
                    migration,
                    reported,
                    drained,
                    recorded_ms,
                )
            },
        )
}

fn build(
    draws: Vec<(Vec<u32>, usize, Vec<NodeDraw>)>,
    shards: i32,
    replicas: i32,
    migration: Option<(u32, u32, usize)>,
    reported: u8,
    drained: bool,
    recorded_ms: u64,
) -> Case {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let count = draws.len() as u32;
    let mut split = slots::initial_assignment(count);
    if drained && count > 1 {
        // The last shard already gave its slots to the first.
        let last = split.pop().unwrap();
        split[0].extend(last);
        split.push(Vec::new());
    }
    let version = 7u64;
    let mut status = KvrocksClusterStatus {
        topology_version: Some(version as i64),
        ..KvrocksClusterStatus::default()
    };
    let mut observed = Observed {
        uid: UID.to_owned(),
        ..Observed::default()
    };
    for (index, (ordinals, master, nodes)) in draws.into_iter().enumerate() {
        let index = index as u32;
        let mut s = shard(
            index,
            &ordinals,
            ordinals[master],
            split[index as usize].clone(),
        );
        if recorded_ms.is_multiple_of(3) {
            let at = now - Duration::from_millis(recorded_ms);
            s.master_unreachable_since =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::try_from(at).unwrap(),
                ));
        }
        for (o, d) in ordinals.iter().zip(nodes) {
            let name = pod(index, *o);
            observed.pods.push(PodObs {
                shard: index,
                ordinal: *o,
                pod: name.clone(),
                ip: Some(format!("10.0.{index}.{o}")),
                template_ok: d.template_ok,
                config_ok: d.config_ok,
                live_refused: d.live_refused,
                unreachable_since: d.probed_down_ms.map(|ms| now - Duration::from_millis(ms)),
                created: Some(if d.recreated {
                    now
                } else {
                    now - Duration::from_secs(3600)
                }),
                stop_by: None,
            });
            let id = topo::node_id(UID, &name);
            observed.nodes.insert(
                name,
                NodeObs {
                    reachable: d.reachable && d.probed_down_ms.is_none(),
                    myid: Some(id),
                    version: Some(if d.current { version } else { version - 1 }),
                    offset: d.offset,
                    link_up: d.link_up,
                    synced: d.link_up || d.seen_linked,
                    ..Default::default()
                },
            );
        }
        status.shards.push(s);
    }
    if let Some((from, to, n)) = migration {
        let (from, to) = (from % count, to % count);
        if from != to
            && let Some(first) = split[from as usize].first()
        {
            let end = (first.start() as usize + n).min(first.end() as usize) as u16;
            let mv = Move {
                from,
                to,
                range: SlotRange::new(first.start(), end).unwrap(),
            };
            status.migration = Some(mv.to_status("start"));
            observed.migration = match reported {
                0 => None,
                1 => Some(MigrationState::Start),
                2 => Some(MigrationState::Success),
                _ => Some(MigrationState::Fail),
            };
        }
    }
    Case {
        spec: serde_json::from_value(serde_json::json!({
            "shards": shards, "replicasPerShard": replicas,
        }))
        .unwrap(),
        status,
        observed,
        now,
    }
}

fn assigned(layout: &[ShardStatus]) -> BTreeSet<u16> {
    layout
        .iter()
        .flat_map(|s| topo::parse_slots(&s.slots))
        .flat_map(|r| r.start()..=r.end())
        .collect()
}

fn master_pod(layout: &[ShardStatus], index: i32) -> Option<String> {
    layout
        .iter()
        .find(|s| s.index == index)
        .and_then(topo::master_of)
        .map(|m| m.pod.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A failover promotes a reachable replica that completed a sync, with the most data of
    /// those, the lowest ordinal (as a number) on a tie; and only after the timeout.
    #[test]
    fn failover_promotes_the_freshest_synced_replica(case in arb_case()) {
        let plan = plan(&case.input());
        for note in &plan.notes {
            let Note::Failover { shard, from, to, down_for } = note else { continue };
            prop_assert!(*down_for >= failover::DEFAULT_TIMEOUT);
            prop_assert!(!case.observed.reachable(from));
            // Never while the old master's process may still serve clients.
            let since = case.now - *down_for;
            prop_assert!(
                case.observed.pods.iter().find(|p| p.pod == *from).is_none_or(|p| p.created > Some(since)),
                "{from} promoted away while its pod may still run"
            );
            let old = case.status.shards.iter().find(|s| s.index == *shard).unwrap();
            let eligible: Vec<(&String, &NodeObs)> = old
                .nodes
                .iter()
                .filter(|n| n.role == Role::Replica)
                .filter_map(|n| Some((&n.pod, case.observed.nodes.get(&n.pod)?)))
                .filter(|(_, o)| o.reachable && o.synced)
                .collect();
            let chosen = case.observed.nodes.get(to).unwrap();
            prop_assert!(eligible.iter().any(|(p, _)| *p == to), "{to} was not eligible");
            for (pod, obs) in &eligible {
                prop_assert!(obs.offset <= chosen.offset, "{pod} has more data than {to}");
                if obs.offset == chosen.offset {
                    prop_assert!(ordinal(to) <= ordinal(pod), "tie: {to} chosen over {pod}");
                }
            }
        }
    }

    /// Every shard keeps exactly one master, the layout is a valid topology, and no slot is
    /// owned twice.
    #[test]
    fn never_two_masters_and_never_a_slot_twice(case in arb_case()) {
        let plan = plan(&case.input());
        for shard in &plan.layout {
            let masters = shard.nodes.iter().filter(|n| n.role == Role::Master).count();
            prop_assert_eq!(masters, 1, "shard {}", shard.index);
        }
        prop_assert!(slots::Assignment::from_status(&plan.layout).is_ok());
        if !plan.layout.is_empty() {
            prop_assert!(plan.topology.is_some() || plan.wait.is_some());
        }
    }

    /// Every slot owned before is owned after: no shard leaves while it owns slots, and no
    /// migration loses slots.
    #[test]
    fn never_a_slot_owned_by_no_shard(case in arb_case()) {
        let plan = plan(&case.input());
        let before = assigned(&case.status.shards);
        let after = assigned(&plan.layout);
        prop_assert!(before.is_subset(&after), "{} slots lost", before.difference(&after).count());
        for gone in case.status.shards.iter().filter(|s| !plan.layout.iter().any(|l| l.index == s.index)) {
            let owned_after_moves = plan.layout.iter().any(|l| l.index == gone.index);
            prop_assert!(!owned_after_moves);
            prop_assert!(gone.index >= case.spec.shards, "shard {} of the spec left", gone.index);
        }
    }

    /// `CLUSTERX MIGRATE` is only ever sent for the migration status already records.
    #[test]
    fn a_migration_is_in_status_before_it_starts(case in arb_case()) {
        let plan = plan(&case.input());
        for action in &plan.actions {
            if let Action::Migrate { mv, .. } = action {
                prop_assert!(case.status.migration.is_some(), "MIGRATE sent for {mv} without a record");
                let recorded = Move::from_status(case.status.migration.as_ref().unwrap()).unwrap();
                prop_assert_eq!(&recorded, mv);
                prop_assert_eq!(plan.migration.as_ref().map(|m| Move::from_status(m).unwrap()), Some(*mv));
            }
        }
    }

    /// No master leaves the layout: a shard's master that answers is still in it (a shrinking
    /// shard drops replicas only), and a pod that stops being master while it answers hands over
    /// to a replica linked to it and close behind, through a fence: the plan fences it until the
    /// new master caught up (`act::fence`) and lifts the fence only after the push.
    #[test]
    fn a_scale_down_never_removes_a_master(case in arb_case()) {
        let plan = plan(&case.input());
        for old in &case.status.shards {
            let Some(master) = topo::master_of(old) else { continue };
            let Some(now) = plan.layout.iter().find(|s| s.index == old.index) else { continue };
            // A master that came back with less data than a replica lost its shard to it.
            let behind = plan.notes.iter().any(|n| matches!(n, Note::MasterBehind { from, .. } if *from == master.pod));
            if case.observed.reachable(&master.pod) && !behind {
                prop_assert!(now.nodes.iter().any(|n| n.pod == master.pod), "master {} dropped", master.pod);
            }
            let new_master = master_pod(&plan.layout, old.index);
            prop_assert!(new_master.is_some(), "shard {} lost its master", old.index);
            let new_master = new_master.unwrap();
            if new_master != master.pod && case.observed.reachable(&master.pod) && !behind {
                let from = case.observed.nodes.get(&master.pod).unwrap();
                let to = case.observed.nodes.get(&new_master).unwrap();
                prop_assert!(to.reachable && to.link_up
                    && from.offset.saturating_sub(to.offset) <= handover::NEAR_SEQUENCES,
                    "{} took over from {} without being close behind it", new_master, master.pod);
                prop_assert!(plan.fences.iter().any(|f| f.from == master.pod && f.to == new_master),
                    "{} took over from {} without a fence: {:?}", new_master, master.pod, plan.fences);
                prop_assert!(plan.actions.iter().any(|a| matches!(a, Action::Unfence { pod, .. } if *pod == master.pod)),
                    "the fence of {} is never lifted", master.pod);
            }
        }
    }

    /// At most one pod restarts per pass, never a master of a shard that has replicas, and only
    /// when nothing else is in motion.
    #[test]
    fn restarts_are_one_at_a_time_and_never_a_serving_master(case in arb_case()) {
        let plan = plan(&case.input());
        let restarts: Vec<&String> = plan.actions.iter().filter_map(|a| match a {
            Action::Restart { pod } => Some(pod),
            _ => None,
        }).collect();
        prop_assert!(restarts.len() <= 1);
        for pod in restarts {
            let shard = plan.layout.iter().find(|s| s.nodes.iter().any(|n| &n.pod == pod)).unwrap();
            let is_master = topo::master_of(shard).is_some_and(|m| &m.pod == pod);
            prop_assert!(!is_master || shard.nodes.len() == 1);
            prop_assert!(plan.migration.is_none());
        }
    }
}

#[test]
fn a_replica_with_data_of_its_own_but_never_seen_linked_is_not_promoted() {
    // A node started on an empty volume counts a few sequences of its own: its offset is no
    // proof that it holds the shard's data.
    let mut case = one_shard_of_two();
    case.observed.nodes.get_mut("c-0-0").unwrap().reachable = false;
    let replica = case.observed.nodes.get_mut("c-0-1").unwrap();
    (replica.link_up, replica.synced, replica.offset) = (false, false, 1);
    case.observed.pods[0].unreachable_since = Some(case.now - Duration::from_secs(10));
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-0"));
    assert_eq!(plan.wait.unwrap().reason(), "NoFailoverCandidate");
    // Seen linked since it started (its link dropped with the master): promoted, once the old
    // master's pod is gone.
    case.observed.nodes.get_mut("c-0-1").unwrap().synced = true;
    recreated(&mut case, "c-0-0");
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
}

#[test]
fn a_master_down_for_less_than_the_timeout_keeps_its_shard() {
    let mut case = build(
        vec![(vec![0, 1], 0, vec![node(true), node(true)])],
        1,
        1,
        None,
        0,
        false,
        1,
    );
    case.observed.nodes.get_mut("c-0-0").unwrap().reachable = false;
    case.observed.pods[0].unreachable_since = Some(case.now - Duration::from_millis(2900));
    let plan = plan(&case.input());
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-0"));
    assert!(matches!(plan.next, Next::In(d) if d <= Duration::from_millis(100)));
    assert!(plan.layout[0].master_unreachable_since.is_some());
    case.observed.pods[0].unreachable_since = Some(case.now - Duration::from_millis(3000));
    recreated(&mut case, "c-0-0");
    let plan = super::plan(&case.input());
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
    assert!(plan.layout[0].master_unreachable_since.is_none());
}

#[test]
fn a_restarted_operator_continues_the_count_from_status() {
    let mut case = build(
        vec![(vec![0, 1], 0, vec![node(true), node(true)])],
        1,
        1,
        None,
        0,
        false,
        1,
    );
    case.observed.nodes.get_mut("c-0-0").unwrap().reachable = false;
    // Status says since 5 s ago; the new prober has only just seen it fail.
    case.status.shards[0].master_unreachable_since =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::try_from(case.now - Duration::from_secs(5)).unwrap(),
        ));
    case.observed.pods[0].unreachable_since = Some(case.now);
    recreated(&mut case, "c-0-0");
    let plan = plan(&case.input());
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
}

#[test]
fn a_new_migration_is_recorded_first_and_sent_on_the_next_pass() {
    let mut case = build(
        vec![
            (vec![0], 0, vec![node(true)]),
            (vec![0], 0, vec![node(true)]),
        ],
        2,
        0,
        None,
        0,
        false,
        1,
    );
    case.spec.slot_migrations = serde_json::from_value(serde_json::json!([
        {"slots": ["0-9"], "toShard": 1}
    ]))
    .unwrap();
    let first = plan(&case.input());
    assert!(
        first
            .actions
            .iter()
            .all(|a| !matches!(a, Action::Migrate { .. }))
    );
    let recorded = first.migration.clone().expect("recorded");
    case.status.migration = Some(recorded);
    let second = plan(&case.input());
    assert!(
        second
            .actions
            .iter()
            .any(|a| matches!(a, Action::Migrate { .. }))
    );
}

fn node(reachable: bool) -> NodeDraw {
    NodeDraw {
        reachable,
        current: true,
        offset: 1,
        link_up: true,
        seen_linked: false,
        recreated: false,
        template_ok: true,
        config_ok: true,
        live_refused: false,
        probed_down_ms: None,
    }
}

fn one_shard_of_two() -> Case {
    build(
        vec![(vec![0, 1], 0, vec![node(true), node(true)])],
        1,
        1,
        None,
        0,
        false,
        1,
    )
}

#[test]
fn a_master_whose_pod_is_being_deleted_hands_over_through_a_fence() {
    let mut case = one_shard_of_two();
    let stopping = case.observed.pods.remove(0);
    case.observed.stopping.push(stopping);
    let plan = plan(&case.input());
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
    assert_eq!(
        plan.fences,
        vec![Fence {
            shard: 0,
            from: "c-0-0".into(),
            from_ip: "10.0.0.0".into(),
            to: "c-0-1".into(),
            to_ip: "10.0.0.1".into(),
        }]
    );
    assert!(plan.actions.contains(&Action::Unfence {
        pod: "c-0-0".into(),
        ip: "10.0.0.0".into()
    }));
    // A replica that is itself going away is no target.
    let mut case = one_shard_of_two();
    let stopping = case.observed.pods.remove(1);
    case.observed.stopping.push(stopping);
    assert!(plan_of(&case).fences.is_empty());
}

fn plan_of(case: &Case) -> Plan {
    plan(&case.input())
}

/// The pod of `pod` was recreated now: the process that stopped answering is gone.
fn recreated(case: &mut Case, pod: &str) {
    let now = case.now;
    let p = case
        .observed
        .pods
        .iter_mut()
        .find(|p| p.pod == pod)
        .unwrap();
    p.created = Some(now);
}

#[test]
fn a_master_due_for_failover_is_stopped_first_and_a_fence_left_behind_is_lifted() {
    let mut case = one_shard_of_two();
    case.observed.nodes.get_mut("c-0-0").unwrap().reachable = false;
    case.observed.pods[0].unreachable_since = Some(case.now - Duration::from_secs(3));
    // Its pod is deleted; the replica waits.
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-0"));
    assert_eq!(plan.wait.as_ref().unwrap().reason(), "StoppingOldMaster");
    assert!(plan.actions.contains(&Action::Stop {
        pod: "c-0-0".into()
    }));
    assert!(matches!(plan.next, Next::In(d) if d <= Duration::from_millis(250)));
    // Being deleted, within its grace period and the kubelet's report: still waiting, not
    // deleted again.
    let mut deleting = case.clone();
    // (status recorded since when it does not answer: the prober no longer probes it)
    deleting.status.shards[0].master_unreachable_since =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::try_from(deleting.now - Duration::from_secs(10)).unwrap(),
        ));
    let mut pod = deleting.observed.pods.remove(0);
    pod.stop_by = Some(deleting.now - Duration::from_millis(500));
    deleting.observed.stopping.push(pod);
    let plan = plan_of(&deleting);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-0"));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Stop { .. }))
    );
    // Its kubelet never reported (its node is gone): the failover goes on.
    deleting.observed.stopping[0].stop_by =
        Some(deleting.now - failover::STOP_CONFIRM - Duration::from_millis(1));
    assert_eq!(
        master_pod(&plan_of(&deleting).layout, 0).as_deref(),
        Some("c-0-1")
    );
    // Gone: promoted.
    let mut gone = deleting.clone();
    gone.observed.stopping.clear();
    assert_eq!(
        master_pod(&plan_of(&gone).layout, 0).as_deref(),
        Some("c-0-1")
    );
    // Recreated since it stopped answering: promoted.
    recreated(&mut case, "c-0-0");
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Stop { .. }))
    );
    // Not while a replica still hears it.
    let replica = case.observed.nodes.get_mut("c-0-1").unwrap();
    replica.last_io_secs = Some(0);
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-0"));
    assert_eq!(plan.wait.unwrap().reason(), "MasterUnreachableFromOperator");
    // A node a pass left fenced, at the current version: its fence goes.
    let mut case = one_shard_of_two();
    case.observed.nodes.get_mut("c-0-1").unwrap().fenced = true;
    assert!(plan_of(&case).actions.contains(&Action::Unfence {
        pod: "c-0-1".into(),
        ip: "10.0.0.1".into()
    }));
}

#[test]
fn a_running_migration_status_lost_is_adopted_not_started_again() {
    let mut case = build(
        vec![
            (vec![0], 0, vec![node(true)]),
            (vec![0], 0, vec![node(true)]),
        ],
        2,
        0,
        None,
        0,
        false,
        1,
    );
    let mv = Move {
        from: 0,
        to: 1,
        range: SlotRange::new(0, 9).unwrap(),
    };
    case.observed.adopt = Some(mv);
    case.observed.migration = Some(MigrationState::Start);
    let running = plan(&case.input());
    assert_eq!(running.migration, Some(mv.to_status("start")));
    assert!(
        !running
            .actions
            .iter()
            .any(|a| matches!(a, Action::Migrate { .. })),
        "kvrocks refuses a second MIGRATE of slots it is migrating"
    );
    // Once it succeeded, the new owner goes out.
    case.status.migration = running.migration.clone();
    case.observed.adopt = None;
    case.observed.migration = Some(MigrationState::Success);
    let done = plan(&case.input());
    assert_eq!(done.migration, None);
    assert!(
        done.layout[1].slots.iter().any(|r| r.starts_with("0-9")),
        "{:?}",
        done.layout
    );
    assert!(done.version > running.version);
}

#[test]
fn a_finished_migration_status_lost_is_adopted_and_its_new_owner_pushed() {
    // Observe adopts a `success` only when the source already sends the slots to the
    // destination (`MOVED`): the plan then applies it at once.
    let mut case = build(
        vec![
            (vec![0], 0, vec![node(true)]),
            (vec![0], 0, vec![node(true)]),
        ],
        2,
        0,
        None,
        0,
        false,
        1,
    );
    let mv = Move {
        from: 0,
        to: 1,
        range: SlotRange::new(0, 9).unwrap(),
    };
    case.observed.adopt = Some(mv);
    case.observed.migration = Some(MigrationState::Success);
    let done = plan(&case.input());
    assert_eq!(done.migration, None);
    assert!(done.layout[1].slots.iter().any(|r| r.starts_with("0-9")));
    assert!(done.version > case.status.topology_version.unwrap() as u64);
    assert!(done.notes.contains(&Note::SlotsMigrated(mv)));
}

#[test]
fn a_failed_migration_is_counted_told_and_sent_again_after_a_backoff() {
    let mut case = build(
        vec![
            (vec![0], 0, vec![node(true)]),
            (vec![0], 0, vec![node(true)]),
        ],
        2,
        0,
        None,
        0,
        false,
        1,
    );
    let mv = Move {
        from: 0,
        to: 1,
        range: SlotRange::new(0, 9).unwrap(),
    };
    let sends = |plan: &Plan| {
        plan.actions
            .iter()
            .filter(|a| matches!(a, Action::Migrate { .. }))
            .count()
    };
    case.status.migration = Some(mv.to_status("start"));
    for failure in 1..=migration::FAILURES_DEGRADED {
        // The source reports it failed: counted, told, not sent at once.
        case.observed.migration = Some(MigrationState::Fail);
        let failed = plan(&case.input());
        let recorded = failed.migration.clone().unwrap();
        assert_eq!(
            (recorded.state.as_str(), recorded.failures),
            ("fail", Some(failure))
        );
        assert_eq!(sends(&failed), 0);
        assert!(failed.notes.contains(&Note::MigrationFailed {
            mv,
            failures: failure
        }));
        let backoff = migration::retry_after(failure);
        assert_eq!(failed.next, Next::In(backoff));
        // Read back, before the backoff passed: still waiting, nothing told again.
        case.status.migration = Some(recorded.clone());
        let early = plan(&case.input());
        assert_eq!(sends(&early), 0);
        assert!(early.notes.is_empty());
        assert_eq!(early.migration.as_ref(), Some(&recorded));
        // After it: sent again, and a `fail` read after that is a new failure.
        case.now += backoff;
        let again = plan(&case.input());
        assert_eq!(sends(&again), 1);
        let resent = again.migration.clone().unwrap();
        assert_eq!(
            (resent.state.as_str(), resent.failures),
            ("none", Some(failure))
        );
        case.status.migration = Some(resent);
    }
    assert!(migration::retry_after(2) > migration::retry_after(1));
    assert_eq!(migration::retry_after(100), Duration::from_secs(60));
}

#[test]
fn a_failed_over_master_that_comes_back_has_its_discarded_writes_told() {
    // The failover records the promoted replica's offset.
    let mut case = one_shard_of_two();
    case.observed.nodes.get_mut("c-0-0").unwrap().reachable = false;
    case.observed.nodes.get_mut("c-0-1").unwrap().offset = 100;
    case.observed.pods[0].unreachable_since = Some(case.now - Duration::from_secs(3));
    recreated(&mut case, "c-0-0");
    let failed = plan_of(&case);
    let record = failed.layout[0].last_failover.clone().unwrap();
    assert_eq!(
        (record.from.as_str(), record.to.as_str()),
        ("c-0-0", "c-0-1")
    );
    assert_eq!(
        (record.promoted_offset, record.discarded.as_deref()),
        (100, None)
    );
    // The old master answers again, before it runs the current topology, 50 writes ahead.
    case.status.shards = failed.layout.clone();
    case.status.topology_version = Some(failed.version as i64);
    let old = case.observed.nodes.get_mut("c-0-0").unwrap();
    (old.reachable, old.offset, old.version) = (true, 150, None);
    case.observed.pods[0].unreachable_since = None;
    let back = plan_of(&case);
    assert!(
        back.notes.contains(&Note::WritesDiscarded {
            shard: 0,
            pod: "c-0-0".into(),
            to: "c-0-1".into(),
            sequences: "101-150".into(),
            count: 50,
        }),
        "{:?}",
        back.notes
    );
    assert_eq!(
        back.layout[0]
            .last_failover
            .as_ref()
            .unwrap()
            .discarded
            .as_deref(),
        Some("101-150")
    );
    // Told once.
    case.status.shards = back.layout.clone();
    assert!(
        !plan_of(&case)
            .notes
            .iter()
            .any(|n| matches!(n, Note::WritesDiscarded { .. }))
    );
    // Nothing beyond the promotion: nothing discarded.
    case.status.shards = failed.layout.clone();
    case.observed.nodes.get_mut("c-0-0").unwrap().offset = 100;
    let clean = plan_of(&case);
    assert!(
        !clean
            .notes
            .iter()
            .any(|n| matches!(n, Note::WritesDiscarded { .. }))
    );
    assert_eq!(
        clean.layout[0]
            .last_failover
            .as_ref()
            .unwrap()
            .discarded
            .as_deref(),
        Some("none")
    );
}

#[test]
fn a_master_that_comes_back_emptier_than_its_replica_loses_its_shard_to_it() {
    let mut case = one_shard_of_two();
    let master = case.observed.nodes.get_mut("c-0-0").unwrap();
    (master.version, master.offset) = (None, 0);
    case.observed.nodes.get_mut("c-0-1").unwrap().offset = 500;
    let plan = plan_of(&case);
    assert_eq!(master_pod(&plan.layout, 0).as_deref(), Some("c-0-1"));
    assert!(plan.notes.iter().any(|n| matches!(n,
        Note::MasterBehind { from, to, master_offset: 0, replica_offset: 500, .. }
            if from == "c-0-0" && to == "c-0-1")));
    // As much data as its replica: it keeps its shard and is pushed the topology.
    case.observed.nodes.get_mut("c-0-0").unwrap().offset = 500;
    assert_eq!(
        master_pod(&plan_of(&case).layout, 0).as_deref(),
        Some("c-0-0")
    );
    // Running a topology (it takes writes): offsets read apart mean nothing.
    let master = case.observed.nodes.get_mut("c-0-0").unwrap();
    (master.version, master.offset) = (Some(6), 400);
    assert_eq!(
        master_pod(&plan_of(&case).layout, 0).as_deref(),
        Some("c-0-0")
    );
}
