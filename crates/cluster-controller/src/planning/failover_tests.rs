//! Unit and property tests of promotion and shard scale-down choices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kvrocks_client::NodeId;
use proptest::prelude::*;

use super::failover::*;

fn candidate(ordinal: u32, reachable: bool, synced: bool, offset: i64) -> Candidate {
    Candidate {
        pod: format!("c-0-{ordinal}"),
        node_id: NodeId::new(format!("{:040x}", ordinal + 1)).unwrap(),
        reachable,
        synced,
        offset,
    }
}

fn pods(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("c-0-{i}")).collect()
}

#[test]
fn ordinals_come_from_the_end_of_the_name() {
    assert_eq!(pod_ordinal("c-2-10"), Some(10));
    assert_eq!(pod_ordinal("my-cluster-0-3"), Some(3));
    assert_eq!(pod_ordinal("c-2-"), None);
    assert_eq!(pod_ordinal("c-2-x"), None);
    assert_eq!(pod_ordinal("c"), None);
}

#[test]
fn promotes_the_reachable_replica_with_the_most_data() {
    let c = [
        candidate(1, true, true, 100),
        candidate(2, false, true, 500),
        candidate(3, true, true, 300),
        candidate(4, true, false, 900),
    ];
    assert_eq!(choose_promotion(&c).unwrap().pod, "c-0-3");
    // A tie goes to the lower ordinal.
    let tie = [candidate(5, true, true, 7), candidate(2, true, true, 7)];
    assert_eq!(choose_promotion(&tie).unwrap().pod, "c-0-2");
    // Only never-synced replicas reachable: the best of them (the caller warns).
    let fresh = [candidate(1, true, false, 0), candidate(2, false, true, 50)];
    assert_eq!(choose_promotion(&fresh).unwrap().pod, "c-0-1");
    assert!(choose_promotion(&[candidate(1, false, true, 9)]).is_none());
    assert!(choose_promotion(&[]).is_none());
}

#[test]
fn scale_down_removes_the_highest_ordinals() {
    let replicas = [candidate(1, true, true, 10), candidate(2, true, true, 10)];
    assert_eq!(
        removable_pods(&pods(3), Some("c-0-0"), &replicas, 1),
        ScaleDown::Remove(vec!["c-0-2".into(), "c-0-1".into()])
    );
    assert_eq!(
        removable_pods(&pods(3), Some("c-0-0"), &replicas, 3),
        ScaleDown::Remove(Vec::new())
    );
    // keep 0 still keeps one pod.
    assert_eq!(
        removable_pods(&pods(2), Some("c-0-0"), &replicas, 0),
        ScaleDown::Remove(vec!["c-0-1".into()])
    );
}

#[test]
fn scale_down_moves_the_master_off_a_leaving_pod_first() {
    let replicas = [
        candidate(0, true, true, 10),
        candidate(1, true, true, 20),
        candidate(3, true, true, 99),
    ];
    assert_eq!(
        removable_pods(&pods(4), Some("c-0-2"), &replicas, 2),
        ScaleDown::SwitchMasterFirst {
            from_pod: "c-0-2".into(),
            to_pod: "c-0-1".into()
        }
    );
    let unsynced = [candidate(0, true, false, 0), candidate(1, false, true, 20)];
    assert!(matches!(
        removable_pods(&pods(3), Some("c-0-2"), &unsynced, 2),
        ScaleDown::Wait(_)
    ));
    assert!(matches!(
        removable_pods(&pods(3), None, &replicas, 2),
        ScaleDown::Wait(_)
    ));
}

fn arb_shard() -> impl Strategy<Value = (u32, Option<u32>, Vec<Candidate>, u32)> {
    (1u32..8).prop_flat_map(|n| {
        (
            Just(n),
            proptest::option::weighted(0.9, 0..n),
            proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..5), n as usize),
            0u32..9,
        )
            .prop_map(|(n, master, flags, keep)| {
                let replicas = flags
                    .into_iter()
                    .enumerate()
                    .map(|(i, (reachable, synced, offset))| {
                        candidate(u32::try_from(i).unwrap(), reachable, synced, offset)
                    })
                    .filter(|c| Some(pod_ordinal(&c.pod).unwrap()) != master)
                    .collect();
                (n, master, replicas, keep)
            })
    })
}

proptest! {
    #[test]
    fn promotion_is_reachable_synced_when_possible_and_the_freshest(
        (_n, _master, candidates, _keep) in arb_shard(),
    ) {
        let chosen = choose_promotion(&candidates);
        let reachable: Vec<&Candidate> = candidates.iter().filter(|c| c.reachable).collect();
        prop_assert_eq!(chosen.is_none(), reachable.is_empty());
        if let Some(c) = chosen {
            prop_assert!(c.reachable);
            let any_synced = reachable.iter().any(|c| c.synced);
            prop_assert!(c.synced || !any_synced);
            let best = reachable.iter().filter(|o| o.synced || !any_synced).map(|o| o.offset).max();
            prop_assert_eq!(Some(c.offset), best);
        }
    }

    #[test]
    fn scale_down_never_removes_the_master(
        (n, master, replicas, keep) in arb_shard(),
    ) {
        let pods = pods(n);
        let master_pod = master.map(|m| format!("c-0-{m}"));
        match removable_pods(&pods, master_pod.as_deref(), &replicas, keep) {
            ScaleDown::Remove(removed) => {
                prop_assert!(master_pod.is_some() || removed.is_empty());
                for pod in &removed {
                    prop_assert!(Some(pod) != master_pod.as_ref());
                    prop_assert!(pod_ordinal(pod).unwrap() >= keep.max(1));
                }
                let leaving = pods.iter().filter(|p| pod_ordinal(p).unwrap() >= keep.max(1)).count();
                prop_assert_eq!(removed.len(), leaving);
            }
            ScaleDown::SwitchMasterFirst { from_pod, to_pod } => {
                prop_assert_eq!(Some(&from_pod), master_pod.as_ref());
                prop_assert!(pod_ordinal(&from_pod).unwrap() >= keep.max(1));
                prop_assert!(pod_ordinal(&to_pod).unwrap() < keep.max(1));
                let target = replicas.iter().find(|c| c.pod == to_pod).unwrap();
                prop_assert!(target.reachable && target.synced);
            }
            ScaleDown::Wait(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert!(
                    master_pod.is_none()
                        || pod_ordinal(master_pod.as_deref().unwrap()).unwrap() >= keep.max(1)
                );
            }
        }
    }
}
