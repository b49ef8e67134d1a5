//! The layout (shards, their slots and nodes) this pass starts from and how pods change it: the
//! first split once every pod runs (or the layout the volumes hold, see [`crate::previous`]), a newer layout a node already runs, pods that moved, joined
//! or left, new shards joining empty, drained shards leaving.

use kvrocks_api::cluster::ShardStatus;
use kvrocks_api::labels::KVROCKS_PORT;

use super::migration::Slots;
use super::{Input, Wait};
use crate::topo::{self, PlacedPod};

/// Where a pass starts.
#[derive(Clone, Debug)]
pub struct Start {
    /// The layout.
    pub shards: Vec<ShardStatus>,
    /// The version of a newer layout a node ran, taken over.
    pub adopted: Option<u64>,
    /// The version of the topology the volumes held, the first layout's masters and slots.
    pub from_volumes: Option<u64>,
    /// Why there is no layout yet.
    pub wait: Option<Wait>,
}

fn port() -> u16 {
    u16::try_from(KVROCKS_PORT).unwrap_or(6379)
}

/// The pods as the layout functions place them.
pub fn placed(input: &Input<'_>) -> Vec<PlacedPod> {
    input
        .observed
        .pods
        .iter()
        .map(|p| PlacedPod {
            shard: p.shard,
            ordinal: p.ordinal,
            pod: p.pod.clone(),
            ip: p.ip.clone(),
        })
        .collect()
}

/// The layout of status, a newer one a node runs taken over; or the first split when status has
/// none and every pod runs and answers.
pub fn current(input: &Input<'_>) -> Start {
    let mut shards = input.status.shards.clone();
    if shards.is_empty() {
        return first(input, &placed(input));
    }
    let mut adopted = None;
    if let Some((topology, seen)) = &input.observed.ahead
        && *seen > input.status_version()
        && topo::adopt(&mut shards, topology)
    {
        adopted = Some(*seen);
    }
    Start {
        shards,
        adopted,
        from_volumes: None,
        wait: None,
    }
}

/// Follows pods that got a new IP, adds pods that joined as replicas, drops replicas beyond the
/// spec's size (after failover chose among all of them, so a replica with more data that is
/// about to leave is not passed over).
pub fn follow(input: &Input<'_>, layout: &mut [ShardStatus]) {
    topo::refresh(
        layout,
        &input.observed.uid,
        &placed(input),
        input.per_shard(),
        port(),
    );
}

fn first(input: &Input<'_>, placed: &[PlacedPod]) -> Start {
    let (shards, per_shard) = (input.shards(), input.per_shard());
    let by_shard: Vec<Vec<PlacedPod>> = (0..shards)
        .map(|s| {
            placed
                .iter()
                .filter(|p| p.shard == s && p.ordinal < per_shard)
                .cloned()
                .collect()
        })
        .collect();
    let complete = by_shard.iter().all(|s| s.len() == per_shard as usize)
        && placed.iter().all(|p| input.observed.reachable(&p.pod));
    let waiting = |wait: Wait| Start {
        shards: Vec::new(),
        adopted: None,
        from_volumes: None,
        wait: Some(wait),
    };
    if !complete {
        return waiting(Wait::Pods { shards, per_shard });
    }
    if let Some(why) = &input.observed.previous_unread {
        return waiting(Wait::VolumesNotAdopted(why.clone()));
    }
    let first = match crate::previous::seeds(&by_shard, &input.observed.previous) {
        Err(why) => return waiting(Wait::VolumesNotAdopted(why)),
        Ok(Some(seeds)) => topo::seeded(&input.observed.uid, &by_shard, port(), &seeds).map(|s| {
            let version = input.observed.previous.values().map(|p| p.version).max();
            (s, version)
        }),
        Ok(None) => topo::initial(&input.observed.uid, &by_shard, port()).map(|s| (s, None)),
    };
    match first {
        Some((shards, from_volumes)) => Start {
            shards,
            adopted: None,
            from_volumes,
            wait: None,
        },
        None => waiting(Wait::Pods { shards, per_shard }),
    }
}

/// Shards the spec added join the layout, empty, once all their pods run and answer.
pub fn grow(input: &Input<'_>, layout: &mut Vec<ShardStatus>) -> Option<Wait> {
    let placed = placed(input);
    let per_shard = input.per_shard();
    while (layout.len() as u32) < input.shards() {
        let index = layout.len() as u32;
        let pods: Vec<PlacedPod> = placed
            .iter()
            .filter(|p| p.shard == index && p.ordinal < per_shard)
            .cloned()
            .collect();
        let ready = pods.len() == per_shard as usize
            && pods.iter().all(|p| input.observed.reachable(&p.pod));
        let joined = topo::initial(&input.observed.uid, &[pods], port())
            .filter(|_| ready)
            .and_then(|mut j| j.pop());
        let Some(mut shard) = joined else {
            return Some(Wait::NewShard(index));
        };
        shard.index = index as i32;
        shard.slots.clear();
        layout.push(shard);
    }
    None
}

/// The shard count a rebalance aims at: the spec's, whenever the layout or an earlier target
/// differs from it.
pub fn rebalance_target(
    input: &Input<'_>,
    layout: &[ShardStatus],
    current: Option<i32>,
) -> Option<i32> {
    let wanted = input.shards() as i32;
    if input.status.shards.len() as u32 != input.shards()
        || layout.len() as u32 != input.shards()
        || current.is_some_and(|t| t != wanted)
    {
        Some(wanted)
    } else {
        current
    }
}

/// Shards beyond the spec's count leave the layout once they own no slot and no migration or
/// rebalance remains.
pub fn drop_drained(input: &Input<'_>, layout: &mut Vec<ShardStatus>, slots: &Slots) {
    if slots.migration.is_none() && slots.rebalance.is_some() {
        let wanted = input.shards() as i32;
        layout.retain(|s| s.index < wanted || !s.slots.is_empty());
    }
}

/// Whether two layouts are the same topology (the unreachable-since bookkeeping aside).
pub fn same(a: &[ShardStatus], b: &[ShardStatus]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.index == y.index && x.slots == y.slots && x.nodes == y.nodes)
}
