//! Planned handovers: a master whose pod is going away (its shard shrinks) or is due for a
//! restart (a rolling update) gives its shard to a replica that is linked to it and has caught up
//! with its offset, so no acknowledged write is left behind.

use kvrocks_api::cluster::ShardStatus;
use kvrocks_api::labels::{Role, ordinal};

use super::failover::{Candidate, choose_promotion};
use super::{Input, Note};
use crate::topo;

/// The replica of `shard` that may take over from its master now: linked, caught up with the
/// master's offset, and accepted by `stays` (its ordinal survives). The most data wins, then the
/// lowest ordinal.
pub fn target(
    input: &Input<'_>,
    shard: &ShardStatus,
    stays: impl Fn(u32) -> bool,
) -> Option<String> {
    let master = topo::master_of(shard)?;
    let master_offset = input.observed.nodes.get(&master.pod)?.offset;
    let candidates: Vec<Candidate> = shard
        .nodes
        .iter()
        .filter(|n| n.role == Role::Replica && ordinal(&n.pod).is_some_and(&stays))
        .filter_map(|n| {
            let obs = input.observed.nodes.get(&n.pod)?;
            Some(Candidate {
                pod: n.pod.clone(),
                reachable: obs.reachable,
                synced: obs.reachable && obs.link_up && obs.offset >= master_offset,
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
            topo::promote(shard, &to);
            notes.push(Note::Switchover {
                shard: shard.index,
                from: master,
                to,
                why: "before the shard shrinks",
            });
        }
    }
    notes
}
