//! Unit tests of the promotion choice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::failover::*;

fn candidate(ordinal: u32, reachable: bool, synced: bool, offset: i64) -> Candidate {
    Candidate {
        pod: format!("c-0-{ordinal}"),
        reachable,
        synced,
        offset,
    }
}

#[test]
fn promotes_the_reachable_synced_replica_with_the_most_data() {
    let candidates = [
        candidate(1, true, true, 10),
        candidate(2, false, true, 99),
        candidate(3, true, true, 12),
        candidate(4, true, false, 50),
    ];
    assert_eq!(choose_promotion(&candidates).unwrap().pod, "c-0-3");
}

#[test]
fn never_promotes_a_replica_that_never_synced() {
    let candidates = [candidate(1, true, false, 0), candidate(2, false, true, 5)];
    assert_eq!(choose_promotion(&candidates), None);
}

#[test]
fn ties_go_to_the_lowest_ordinal_as_a_number() {
    let candidates = [candidate(10, true, true, 7), candidate(2, true, true, 7)];
    assert_eq!(choose_promotion(&candidates).unwrap().pod, "c-0-2");
}
