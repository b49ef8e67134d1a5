//! Planned handovers: a master whose pod is going away (its shard shrinks) or is due for a
//! restart (a rolling update) gives its shard to a replica that is linked to it and close behind
//! it. No acknowledged write is left behind: before the topology is pushed the master is fenced
//! and the replica catches up with it exactly (`act::fence`), or the handover is given up.

use kvrocks_api::cluster::ShardStatus;
use kvrocks_api::labels::{Role, ordinal};

use super::failover::{Candidate, choose_promotion};
use super::{Input, Note};
use crate::topo;

/// How far behind its master a replica may be and still be handed a shard: it must catch up while
/// the master is fenced, within `fence::CATCH_UP_WITHIN`. Offsets are RocksDB sequence numbers
/// (about one per key written); the two offsets are read at slightly different times.
pub const NEAR_SEQUENCES: i64 = 10_000;

/// The replica of `shard` that may take over from its master now: the master answers, the
/// replica is linked to it, within [`NEAR_SEQUENCES`] of it, and accepted by `stays` (its ordinal
/// survives). The most data wins, then the lowest ordinal.
pub fn target(
    input: &Input<'_>,
    shard: &ShardStatus,
    stays: impl Fn(u32) -> bool,
) -> Option<String> {
    let master = topo::master_of(shard)?;
    let master_obs = input.observed.nodes.get(&master.pod)?;
    if !master_obs.reachable || master_obs.fenced {
        return None;
    }
    let master_offset = master_obs.offset;
    let candidates: Vec<Candidate> = shard
        .nodes
        .iter()
        .filter(|n| n.role == Role::Replica && ordinal(&n.pod).is_some_and(&stays))
        .filter(|n| !input.observed.stopping.iter().any(|p| p.pod == n.pod))
        .filter_map(|n| {
            let obs = input.observed.nodes.get(&n.pod)?;
            Some(Candidate {
                pod: n.pod.clone(),
                reachable: obs.reachable,
                synced: obs.reachable
                    && obs.link_up
                    && master_offset.saturating_sub(obs.offset) <= NEAR_SEQUENCES,
                offset: obs.offset,
            })
        })
        .collect();
    choose_promotion(&candidates).map(|c| c.pod.clone())
}

/// Masters on an ordinal the shard loses (`>= replicasPerShard + 1`) hand over to a replica that
/// stays; until one qualifies the shard keeps its size (see `objects`).
pub fn off_leaving_ordinals(input: &Input<'_>, layout: &mut [ShardStatus]) -> Vec<Note> {
    let per_shard = input.per_shard();
    let mut notes = Vec::new();
    for shard in layout.iter_mut() {
        let Some(master) = topo::master_of(shard).map(|m| m.pod.clone()) else {
            continue;
        };
        if ordinal(&master).is_none_or(|o| o < per_shard) {
            continue;
        }
        if let Some(to) = target(input, shard, |o| o < per_shard) {
            notes.push(hand_over(shard, master, to, "before the shard shrinks"));
        }
    }
    notes
}

/// Masters whose pod is being deleted (a drain, an eviction, `kubectl delete pod`) hand over to a
/// replica while their preStop hook holds the process, instead of dying as a crash and waiting
/// out the failover timeout.
pub fn off_stopping_pods(input: &Input<'_>, layout: &mut [ShardStatus]) -> Vec<Note> {
    let mut notes = Vec::new();
    for shard in layout.iter_mut() {
        let Some(master) = topo::master_of(shard).map(|m| m.pod.clone()) else {
            continue;
        };
        if !input.observed.stopping.iter().any(|p| p.pod == master) {
            continue;
        }
        if let Some(to) = target(input, shard, |_| true) {
            notes.push(hand_over(shard, master, to, "before its pod stops"));
        }
    }
    notes
}

/// Makes `to` the master of `shard` in the layout (the push is fenced, see `act::fence`) and
/// says so.
pub fn hand_over(shard: &mut ShardStatus, from: String, to: String, why: &'static str) -> Note {
    topo::promote(shard, &to);
    Note::Switchover {
        shard: shard.index,
        from,
        to,
        why,
    }
}
