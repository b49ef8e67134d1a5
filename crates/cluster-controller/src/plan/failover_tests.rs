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

#[test]
fn a_master_a_replica_still_hears_is_not_failed_over() {
    use super::NodeObs;
    use std::time::Duration;
    let heard = |last_io: i64, link_up: bool| NodeObs {
        reachable: true,
        link_up,
        last_io_secs: Some(last_io),
        ..Default::default()
    };
    let timeout = Duration::from_secs(3);
    let (fresh, stale, down) = (heard(1, true), heard(2, true), heard(0, false));
    assert_eq!(hears_master([("c-0-1", &fresh)], timeout), Some("c-0-1"));
    // Two seconds of silence with a 3 s timeout, a link that is down, nobody answering: gone.
    assert_eq!(hears_master([("c-0-1", &stale)], timeout), None);
    assert_eq!(hears_master([("c-0-1", &down)], timeout), None);
    assert_eq!(hears_master([], timeout), None);
    let unreachable = NodeObs {
        reachable: false,
        ..fresh.clone()
    };
    assert_eq!(hears_master([("c-0-1", &unreachable)], timeout), None);
    // A longer timeout waits for a longer silence.
    assert_eq!(
        hears_master([("c-0-1", &stale)], Duration::from_secs(10)),
        Some("c-0-1")
    );
}
