//! The planner's safety rules over random observed states.

use super::*;
use proptest::prelude::*;

/// The IP of the pod with `ordinal` (as in [`pod`]).
fn ip(ordinal: u32) -> String {
    format!("10.0.0.{}", ordinal + 10)
}

/// What a pod may say: nothing (unreachable), master, or replica of nobody (just started), of
/// another pod, or of an address that is no pod.
fn node(n: u32) -> impl Strategy<Value = Option<NodeView>> {
    let answer = (
        any::<bool>(),
        0..n + 3,
        any::<bool>(),
        any::<bool>(),
        0i64..4,
        any::<bool>(),
    )
        .prop_map(move |(is_master, host, link_up, syncing, offset, fenced)| {
            let priority = Some(if fenced { "0" } else { "100" }.to_owned());
            if is_master {
                return master_at(offset, priority);
            }
            let master_host = match host {
                0 => None,
                1 => Some("127.0.0.1".to_owned()),
                h if h < n + 2 => Some(ip(h - 2)),
                _ => Some("10.0.0.99".to_owned()),
            };
            NodeView {
                master: false,
                link_up: link_up && !matches!(master_host.as_deref(), None | Some("127.0.0.1")),
                master_host,
                syncing,
                offset,
                priority,
            }
        });
    prop_oneof![1 => Just(None), 4 => answer.prop_map(Some)]
}

fn master_at(offset: i64, priority: Option<String>) -> NodeView {
    NodeView {
        master: true,
        master_host: None,
        link_up: false,
        syncing: false,
        offset,
        priority,
    }
}

/// A StatefulSet of 1 to 4 pods in any order, and anything sentinel and the status may say.
fn state() -> impl Strategy<Value = Observed> {
    (1u32..=4).prop_flat_map(|n| {
        let pods = proptest::collection::vec(
            (node(n), prop::bool::weighted(0.1), 0u8..3, any::<bool>()),
            n as usize,
        );
        (
            pods,
            1..=n + 1,
            any::<bool>(),
            0..n + 2,
            any::<bool>(),
            prop::bool::weighted(0.2),
            0..=n,
            0u8..3,
            0u8..3,
        )
            .prop_flat_map(
                move |(pods, desired, created, sentinel, down, failing, status, stuck, pw)| {
                    let pods: Vec<PodView> = pods
                        .into_iter()
                        .enumerate()
                        .map(|(i, (node, deleting, role, outdated))| {
                            let mut p = pod(i as u32, node, None);
                            p.deleting = deleting;
                            p.role_label =
                                [None, Some(Role::Master), Some(Role::Replica)][role as usize];
                            p.outdated = outdated;
                            p
                        })
                        .collect();
                    let sentinel_master = match sentinel {
                        0 => None,
                        s if s <= n => Some(ip(s - 1)),
                        _ => Some("10.0.0.99".to_owned()),
                    };
                    let observed = Observed {
                        desired,
                        statefulset_replicas: created.then_some(n),
                        monitored: sentinel_master.is_some(),
                        sentinel_master,
                        sentinel_master_down: down,
                        sentinel_master_odown: down,
                        sentinel_failing_over: failing,
                        sentinels_agree: true,
                        sentinel_group: 3,
                        sentinels_answering: 3,
                        status_master: (status > 0).then(|| format!("s-{}", status - 1)),
                        priority: "100".into(),
                        sentinel_stuck_since: [None, Some(at(NOW - 1)), Some(long_ago())]
                            [stuck as usize],
                        password: [
                            PasswordState::InEffect,
                            PasswordState::Unrecorded,
                            PasswordState::Changed,
                        ][pw as usize],
                        pods: Vec::new(),
                    };
                    (Just(observed), Just(pods).prop_shuffle())
                },
            )
            .prop_map(|(mut observed, pods)| {
                observed.pods = pods;
                observed
            })
    })
}

fn promotions(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Promote { pod } => Some(pod.as_str()),
            _ => None,
        })
        .collect()
}

fn find<'a>(o: &'a Observed, name: &str) -> &'a PodView {
    o.pods.iter().find(|p| p.name == name).unwrap()
}

fn offset(p: &PodView) -> Option<i64> {
    reachable(p).map(|(n, _)| n.offset)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (a) The operator's own choice is reachable and has the most data: no other reachable
    /// pod the set keeps is ahead of it. (Sentinel's choice made true after STUCK_AFTER is
    /// sentinel's choice, not the operator's.)
    #[test]
    fn the_operator_never_promotes_less_data(o in state()) {
        let p = run(&o);
        for name in promotions(&p) {
            let promoted = find(&o, name);
            prop_assert!(offset(promoted).is_some(), "{name} is not reachable: {p:?}");
            if p.overrides_stuck_sentinel {
                continue;
            }
            let best = offset(promoted).unwrap_or_default();
            for other in o.pods.iter().filter(|q| q.name != name && q.ordinal < o.desired) {
                let ahead = offset(other).is_some_and(|x| x > best);
                prop_assert!(!ahead, "{name} at {best} promoted, {} is ahead: {p:?}", other.name);
            }
        }
    }

    /// (b) Never two promotions, and none while a reachable master stands, except sentinel's
    /// choice made true after STUCK_AFTER and a split brain nobody recorded; then every other
    /// reachable master follows the promoted pod in the same plan.
    #[test]
    fn one_promotion_at_most_and_never_next_to_a_master(o in state()) {
        let p = run(&o);
        let promoted = promotions(&p);
        prop_assert!(promoted.len() <= 1, "{p:?}");
        let Some(name) = promoted.first() else { return Ok(()) };
        let masters: Vec<&PodView> = o
            .pods
            .iter()
            .filter(|q| q.name != *name && reachable(q).is_some_and(|(n, _)| n.master))
            .collect();
        let unrecorded_split = masters.len() > 1
            && !masters.iter().any(|m| o.status_master.as_deref() == Some(m.name.as_str()));
        if !masters.is_empty() {
            prop_assert!(p.overrides_stuck_sentinel || unrecorded_split,
                "{name} promoted next to master {}: {p:?}", masters[0].name);
        }
        for m in masters {
            let follows = p.actions.iter().any(|a| matches!(a, Action::Follow { pod, .. } if *pod == m.name));
            prop_assert!(follows, "{} stays master next to {name}: {p:?}", m.name);
        }
    }

    /// (c) The StatefulSet never shrinks under the master; without a master it never shrinks.
    #[test]
    fn scaling_in_never_removes_the_master(o in state()) {
        let p = run(&o);
        match &p.master {
            Some(m) => prop_assert!(p.statefulset_replicas > find(&o, m).ordinal, "{p:?}"),
            None => prop_assert!(
                p.statefulset_replicas >= o.statefulset_replicas.unwrap_or(o.desired),
                "{p:?}"
            ),
        }
    }

    /// (d) Between pods with as much data, the lowest ordinal wins, as a number (`s-2` before
    /// `s-10`), whatever order the pods come in.
    #[test]
    fn ties_go_to_the_lowest_ordinal_as_a_number(
        offsets in proptest::collection::vec(0i64..3, 2..=12),
        order in any::<proptest::sample::Index>(),
    ) {
        let n = offsets.len();
        let mut pods: Vec<PodView> = offsets
            .iter()
            .enumerate()
            .map(|(i, o)| pod(i as u32, Some(replica("127.0.0.1", *o, "100")), None))
            .collect();
        pods.rotate_left(order.index(n));
        let o = observed(pods);
        let p = run(&o);
        let best = *offsets.iter().max().unwrap();
        let want = offsets.iter().position(|o| *o == best).unwrap();
        prop_assert_eq!(p.master, Some(format!("s-{want}")));
    }

    /// Whatever the replicas' offsets and priorities, with the master gone the plan leaves no
    /// replica promotable that is behind another reachable replica, leaves at least one of the
    /// most advanced promotable (a group with none never fails over), and raises a priority only
    /// for that.
    #[test]
    fn no_laggard_stays_promotable_while_the_master_is_gone(
        offsets in proptest::collection::vec(0i64..20, 2..5),
        fenced in proptest::collection::vec(any::<bool>(), 5),
    ) {
        let mut pods = vec![pod(0, None, Some("master"))];
        for (i, offset) in offsets.iter().enumerate() {
            let priority = if fenced[i] { "0" } else { "100" };
            pods.push(pod(i as u32 + 1, Some(replica("10.0.0.10", *offset, priority)), Some("replica")));
        }
        let mut o = observed(pods);
        o.sentinel_master = Some("10.0.0.10".into());
        o.monitored = true;
        o.status_master = Some("s-0".into());
        let p = run(&o);
        let best = *offsets.iter().max().unwrap();
        let mut promotable_best = false;
        for (i, offset) in offsets.iter().enumerate() {
            let name = format!("s-{}", i + 1);
            let set = p.actions.iter().find_map(|a| match a {
                Action::SetPriority { pod, value } if *pod == name => Some(value.clone()),
                _ => None,
            });
            let raised = set.is_some() && set.as_deref() != Some("0");
            let now = set.unwrap_or_else(|| if fenced[i] { "0".into() } else { "100".into() });
            if *offset < best {
                prop_assert_eq!(now.as_str(), "0", "{} at {} of {}", name, offset, best);
                prop_assert!(!raised, "a laggard was raised: {:?}", p.actions);
            } else {
                promotable_best |= now != "0";
            }
        }
        prop_assert!(promotable_best, "no most advanced replica is promotable: {:?}", p.actions);
    }
}
