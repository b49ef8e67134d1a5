//! Unit and property tests of slot planning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use kvrocks_api::cluster::{MigrationStatus, ShardStatus, SlotMigration};
use kvrocks_client::{SLOT_COUNT, SlotRange};
use proptest::prelude::*;

use super::slots::*;

fn r(a: u16, b: u16) -> SlotRange {
    SlotRange::new(a, b).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn shard_status(index: i32, slots: &[&str]) -> ShardStatus {
    ShardStatus {
        index,
        slots: strings(slots),
        nodes: Vec::new(),
        master_unreachable_since: None,
        last_failover: None,
    }
}

fn migration(to_shard: i32, slots: &[&str]) -> SlotMigration {
    SlotMigration {
        to_shard,
        slots: strings(slots),
    }
}

/// Checks, without the code under test, that the ranges of all shards tile 0..=16383 once.
fn assert_partition(a: &Assignment) {
    let mut all: Vec<SlotRange> = a.iter().flat_map(|(_, r)| r.to_vec()).collect();
    all.sort();
    let mut next = 0u32;
    for range in &all {
        assert_eq!(
            u32::from(range.start()),
            next,
            "gap or overlap at {range} in {a}"
        );
        next = u32::from(range.end()) + 1;
    }
    assert_eq!(
        next,
        u32::from(SLOT_COUNT),
        "slots missing at the end of {a}"
    );
}

/// The fewest slots any plan must move: everything on shards `>= target`, and what the kept
/// shards hold above their quota when the larger quotas go to the fullest shards.
fn minimal_slots_moved(a: &Assignment, target: u32) -> usize {
    let total = usize::from(SLOT_COUNT);
    let (base, extra) = (total / target as usize, total % target as usize);
    let mut kept: Vec<usize> = (0..target).map(|s| a.count(s)).collect();
    kept.sort_unstable_by(|x, y| y.cmp(x));
    let kept_excess: usize = kept
        .iter()
        .enumerate()
        .map(|(i, c)| c.saturating_sub(base + usize::from(i < extra)))
        .sum();
    let drained: usize = a
        .iter()
        .filter(|(s, _)| *s >= target)
        .map(|(s, _)| a.count(s))
        .sum();
    kept_excess + drained
}

fn assert_no_dash_a(texts: &[String]) {
    for t in texts {
        if let Some((x, y)) = t.split_once('-') {
            assert_ne!(x, y, "rendered {t}");
        }
    }
}

#[test]
fn initial_split_is_even_and_contiguous() {
    let three = initial_assignment(3);
    let texts: Vec<Vec<String>> = three
        .iter()
        .map(|rs| rs.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(texts, [["0-5461"], ["5462-10922"], ["10923-16383"]]);
    assert_eq!(initial_assignment(1), vec![vec![SlotRange::all()]]);
    assert!(initial_assignment(0).is_empty());
    for shards in [1, 2, 3, 7, 64, 1024] {
        let a = Assignment::initial(shards);
        assert_partition(&a);
        assert!(a.is_even(shards), "{shards}");
        assert!(a.iter().all(|(_, r)| r.len() == 1));
    }
}

#[test]
fn status_round_trips_and_never_writes_a_dash_a() {
    let a = Assignment::from_status(&[
        shard_status(0, &["0-5460", "5-5"]),
        shard_status(1, &["16383", "5461-16382"]),
        shard_status(2, &[]),
    ])
    .unwrap();
    assert_eq!(a.status_slots(0), ["0-5460"]);
    assert_eq!(a.status_slots(1), ["5461-16383"]);
    assert!(a.status_slots(2).is_empty());
    assert!(a.has_shard(2) && shard_removable(&a, 2) && !shard_removable(&a, 0));
    assert_eq!(a.to_status().len(), 3);
    assert_eq!(a.to_string(), "0: 0-5460; 1: 5461-16383; 2: -");

    let b = Assignment::from_status(&[shard_status(0, &["5", "7-16383", "0-3"])]).unwrap();
    assert_eq!(b.status_slots(0), ["0-3", "5", "7-16383"]);
    assert_eq!(b.unassigned(), [r(4, 4), r(6, 6)]);
    assert!(!b.is_complete());
}

#[test]
fn status_errors_say_what_to_fix() {
    let overlap =
        Assignment::from_status(&[shard_status(0, &["0-10"]), shard_status(1, &["10-20"])])
            .unwrap_err();
    assert_eq!(
        overlap,
        PlanError::SlotOwnedTwice {
            slot: 10,
            first: 0,
            second: 1
        }
    );
    assert!(
        overlap
            .to_string()
            .contains("slot 10 is owned by both shard 0 and shard 1")
    );

    let bad = Assignment::from_status(&[shard_status(0, &["0-x"])]).unwrap_err();
    assert!(bad.to_string().contains("status.shards[0]"), "{bad}");
    assert!(bad.to_string().contains("\"0-x\""), "{bad}");

    let dup = Assignment::from_status(&[shard_status(1, &[]), shard_status(1, &[])]);
    assert_eq!(dup, Err(PlanError::DuplicateShard(1)));
    let negative = Assignment::from_status(&[shard_status(-1, &[])]).unwrap_err();
    assert!(matches!(
        negative,
        PlanError::UnknownShard { shard: -1, .. }
    ));
}

#[test]
fn scale_out_takes_the_tail_of_each_full_shard() {
    let a = Assignment::initial(3);
    let moves = rebalance_moves(&a, 4);
    assert_eq!(
        moves,
        [
            Move {
                from: 0,
                to: 3,
                range: r(4096, 5461)
            },
            Move {
                from: 1,
                to: 3,
                range: r(9558, 10922)
            },
            Move {
                from: 2,
                to: 3,
                range: r(15019, 16383)
            },
        ]
    );
    let end = moves.iter().fold(a, |acc, m| apply_move(&acc, m));
    assert!(end.is_even(4));
    assert_eq!(
        end.status_slots(3),
        ["4096-5461", "9558-10922", "15019-16383"]
    );
}

#[test]
fn scale_in_drains_only_the_removed_shards() {
    let a = Assignment::initial(4);
    let moves = rebalance_moves(&a, 2);
    assert_eq!(
        moves,
        [
            Move {
                from: 2,
                to: 0,
                range: r(8192, 12287)
            },
            Move {
                from: 3,
                to: 1,
                range: r(12288, 16383)
            },
        ]
    );
    let end = moves.iter().fold(a, |acc, m| apply_move(&acc, m));
    assert!(end.is_even(2));
    assert!(shard_removable(&end, 2) && shard_removable(&end, 3));

    assert!(rebalance_moves(&Assignment::initial(5), 5).is_empty());
    assert!(rebalance_moves(&Assignment::initial(5), 0).is_empty());
}

#[test]
fn next_moves_runs_one_migration_per_shard() {
    let m = |from, to, a| Move {
        from,
        to,
        range: r(a, a),
    };
    let plan = [m(0, 3, 1), m(0, 4, 2), m(1, 3, 3), m(2, 4, 4), m(5, 6, 5)];
    assert_eq!(
        next_moves(&plan, &BTreeSet::new()),
        [m(0, 3, 1), m(2, 4, 4), m(5, 6, 5)]
    );
    assert_eq!(
        next_moves(&plan, &BTreeSet::from([0, 6])),
        [m(1, 3, 3), m(2, 4, 4)]
    );
}

#[test]
fn manual_moves_take_each_slot_from_its_owner() {
    let a = Assignment::initial(3);
    let moves = manual_moves(&a, &migration(1, &["5460-5463", "300", "16383", "301"])).unwrap();
    assert_eq!(
        moves,
        [
            Move {
                from: 0,
                to: 1,
                range: r(300, 301)
            },
            Move {
                from: 0,
                to: 1,
                range: r(5460, 5461)
            },
            Move {
                from: 2,
                to: 1,
                range: r(16383, 16383)
            },
        ]
    );
    let end = moves.iter().fold(a.clone(), |acc, m| apply_move(&acc, m));
    assert_eq!(end.status_slots(1), ["300-301", "5460-10922", "16383"]);
    assert!(
        manual_moves(&end, &migration(1, &["300-301"]))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn manual_move_errors_say_what_to_fix() {
    let a = Assignment::initial(3);
    let unknown = manual_moves(&a, &migration(3, &["1"])).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "slotMigrations entry to shard 3: shard 3 does not exist; the cluster has shards 0 to 2"
    );
    let negative = manual_moves(&a, &migration(-1, &["1"])).unwrap_err();
    assert!(matches!(
        negative,
        PlanError::UnknownShard { shard: -1, .. }
    ));
    for bad in ["5-5", "7-3", "16384", "a", ""] {
        let e = manual_moves(&a, &migration(1, &["1", bad])).unwrap_err();
        assert!(
            matches!(&e, PlanError::InvalidSlot { slot, .. } if slot == bad),
            "{bad}: {e}"
        );
    }
    let partial =
        Assignment::from_status(&[shard_status(0, &["0-99"]), shard_status(1, &[])]).unwrap();
    let unowned = manual_moves(&partial, &migration(1, &["50-120", "200"])).unwrap_err();
    assert!(
        unowned
            .to_string()
            .contains("slots 100-120 200 are owned by no shard"),
        "{unowned}"
    );
}

#[test]
fn moves_round_trip_through_status() {
    let mv = Move {
        from: 2,
        to: 0,
        range: r(7, 7),
    };
    let status = mv.to_status("start");
    assert_eq!(
        status,
        MigrationStatus {
            slots: "7".into(),
            from_shard: 2,
            to_shard: 0,
            state: "start".into(),
            ..MigrationStatus::default()
        }
    );
    assert_eq!(Move::from_status(&status), Ok(mv));
    assert_eq!(mv.to_string(), "slots 7 from shard 2 to shard 0");
    let bad = MigrationStatus {
        slots: "9-1".into(),
        ..status
    };
    assert!(Move::from_status(&bad).is_err());
}

#[test]
fn check_move_refuses_slots_the_source_does_not_own() {
    let a = Assignment::initial(2);
    let ok = Move {
        from: 0,
        to: 1,
        range: r(0, 10),
    };
    let stale = Move {
        from: 1,
        to: 0,
        range: r(0, 10),
    };
    assert!(a.check_move(&ok).is_ok());
    assert!(a.check_move(&stale).is_err());
}

/// An assignment reached from an even split over `shards` by a few manual moves (uneven and
/// fragmented, still complete).
fn arb_assignment() -> impl Strategy<Value = (u32, Assignment)> {
    (1u32..=64).prop_flat_map(|shards| {
        proptest::collection::vec((0..shards, 0u16..SLOT_COUNT, 0u16..3000), 0..12).prop_map(
            move |manual| {
                let mut a = Assignment::initial(shards);
                for (to, start, len) in manual {
                    let end = start.saturating_add(len).min(SLOT_COUNT - 1);
                    let text = SlotRange::new(start, end).unwrap().to_string();
                    let moves = manual_moves(
                        &a,
                        &SlotMigration {
                            to_shard: i32::try_from(to).unwrap(),
                            slots: vec![text],
                        },
                    )
                    .unwrap();
                    for mv in &moves {
                        a.apply(mv);
                    }
                }
                (shards, a)
            },
        )
    })
}

/// Runs a rebalance plan and checks every invariant along the way; returns the end state.
fn run_plan(start: &Assignment, target: u32) -> (Vec<Move>, Assignment) {
    let moves = rebalance_moves(start, target);
    let mut state = start.clone();
    for mv in &moves {
        assert!(state.check_move(mv).is_ok(), "{mv} in {state}");
        assert_ne!(mv.from, mv.to);
        let before_from = state.count(mv.from);
        state.apply(mv);
        assert_eq!(state.count(mv.from), before_from - mv.slot_count());
        assert_partition(&state);
        for (shard, _) in state.iter() {
            assert_eq!(shard_removable(&state, shard), state.count(shard) == 0);
            assert_no_dash_a(&state.status_slots(shard));
        }
    }
    (moves, state)
}

proptest! {
    #[test]
    fn rebalance_between_even_layouts_is_minimal(a in 1u32..=64, b in 1u32..=64) {
        let start = Assignment::initial(a);
        assert_partition(&start);
        let (moves, end) = run_plan(&start, b);
        let moved: usize = moves.iter().map(Move::slot_count).sum();
        prop_assert_eq!(moved, minimal_slots_moved(&start, b));
        prop_assert!(end.is_even(b), "{} -> {}: {}", a, b, end);
        assert_partition(&end);
        if b < a {
            // Scale-in: exactly the drained shards' slots move, into the shards that stay.
            let drained: usize = (b..a).map(|s| start.count(s)).sum();
            prop_assert_eq!(moved, drained);
            prop_assert!(moves.iter().all(|m| m.from >= b && m.to < b));
            prop_assert!((b..a).all(|s| shard_removable(&end, s)));
        } else {
            // Scale-out (or the same count): only from old shards into new ones.
            prop_assert!(moves.iter().all(|m| m.from < a && m.to >= a));
        }
        prop_assert!((0..b).all(|s| !shard_removable(&end, s)));
        // Each source range is one piece, so pouring needs at most sources + receivers - 1 moves.
        let sources: BTreeSet<u32> = moves.iter().map(|m| m.from).collect();
        let receivers: BTreeSet<u32> = moves.iter().map(|m| m.to).collect();
        prop_assert!(moves.len() < sources.len() + receivers.len() || moves.is_empty());
    }

    #[test]
    fn rebalance_from_any_layout_is_minimal_and_replans_consistently(
        (a, start) in arb_assignment(),
        b in 1u32..=64,
    ) {
        assert_partition(&start);
        let (moves, end) = run_plan(&start, b);
        let moved: usize = moves.iter().map(Move::slot_count).sum();
        prop_assert_eq!(moved, minimal_slots_moved(&start, b));
        prop_assert!(end.is_even(b), "{} -> {}: {}", a, b, end);
        prop_assert!(rebalance_moves(&end, b).is_empty());
        // Only slots above a shard's quota leave it; a receiver never gives.
        let sources: BTreeSet<u32> = moves.iter().map(|m| m.from).collect();
        prop_assert!(moves.iter().all(|m| !sources.contains(&m.to)));

        // The controller runs one move (whichever next_moves picks), records it, plans again:
        // the remaining plan always moves exactly the slots still to go.
        let mut state = start.clone();
        let mut left = moved;
        let mut rounds = 0;
        loop {
            let plan = rebalance_moves(&state, b);
            prop_assert_eq!(plan.iter().map(Move::slot_count).sum::<usize>(), left);
            let Some(mv) = next_moves(&plan, &BTreeSet::new()).first().copied() else { break };
            state.apply(&mv);
            left -= mv.slot_count();
            rounds += 1;
            prop_assert!(rounds <= moves.len() + 64, "replanning does not converge");
        }
        prop_assert_eq!(left, 0);
        prop_assert!(state.is_even(b));
    }

    #[test]
    fn next_moves_never_puts_a_shard_in_two_migrations(
        (_a, start) in arb_assignment(),
        b in 1u32..=64,
        busy in proptest::collection::btree_set(0u32..64, 0..4),
    ) {
        let plan = rebalance_moves(&start, b);
        let now = next_moves(&plan, &busy);
        let mut seen = BTreeSet::new();
        for mv in &now {
            prop_assert!(plan.contains(mv));
            prop_assert!(!busy.contains(&mv.from) && !busy.contains(&mv.to));
            prop_assert!(seen.insert(mv.from) && seen.insert(mv.to));
        }
        if busy.is_empty() && !plan.is_empty() {
            prop_assert_eq!(now.first(), plan.first());
        }
    }

    #[test]
    fn manual_moves_touch_only_the_listed_slots(
        (a, start) in arb_assignment(),
        to in 0u32..64,
        listed in proptest::collection::vec((0u16..SLOT_COUNT, 0u16..500), 1..6),
    ) {
        let to = to % a;
        let texts: Vec<String> = listed
            .iter()
            .map(|(s, len)| SlotRange::new(*s, s.saturating_add(*len).min(SLOT_COUNT - 1)).unwrap().to_string())
            .collect();
        let wanted: BTreeSet<u16> = texts
            .iter()
            .flat_map(|t| t.parse::<SlotRange>().unwrap().slots())
            .collect();
        let moves = manual_moves(&start, &SlotMigration { to_shard: i32::try_from(to).unwrap(), slots: texts }).unwrap();
        let mut end = start.clone();
        for mv in &moves {
            prop_assert_eq!(mv.to, to);
            prop_assert!(mv.range.slots().all(|s| wanted.contains(&s)));
            prop_assert!(end.check_move(mv).is_ok());
            end.apply(mv);
        }
        assert_partition(&end);
        for slot in (0..SLOT_COUNT).step_by(7).chain(wanted.iter().copied()) {
            let expected = if wanted.contains(&slot) { Some(to) } else { start.owner_of(slot) };
            prop_assert_eq!(end.owner_of(slot), expected, "slot {}", slot);
        }
        let moved: usize = moves.iter().map(Move::slot_count).sum();
        let already: usize = wanted.iter().filter(|s| start.owner_of(**s) == Some(to)).count();
        prop_assert_eq!(moved + already, wanted.len());
    }

    #[test]
    fn status_rendering_round_trips((_a, start) in arb_assignment()) {
        let status: Vec<ShardStatus> = start
            .to_status()
            .into_iter()
            .map(|(index, slots)| ShardStatus { index: i32::try_from(index).unwrap(), slots, nodes: Vec::new(), master_unreachable_since: None, last_failover: None })
            .collect();
        for shard in &status {
            assert_no_dash_a(&shard.slots);
        }
        prop_assert_eq!(Assignment::from_status(&status).unwrap(), start);
    }
}
