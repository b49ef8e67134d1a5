//! Which replica takes over a shard, and which pods a shard may lose when it shrinks.
//!
//! kvrocks refuses SLAVEOF in cluster mode, so the operator is the one that promotes: it pushes a
//! topology in which the chosen replica is the shard's master. These functions only choose.

use std::cmp::{Ordering, Reverse};

use kvrocks_client::NodeId;

/// A replica of a shard as observed, a candidate to become its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Pod name (`<cr>-<shard>-<ordinal>`).
    pub pod: String,
    /// The node's cluster id.
    pub node_id: NodeId,
    /// The operator could talk to it in this pass.
    pub reachable: bool,
    /// It completed a sync with the current master at least once (link up, or an offset > 0),
    /// so it holds the shard's data and not an empty database.
    pub synced: bool,
    /// Its replication offset (`slave_repl_offset`); higher is more data.
    pub offset: i64,
}

/// The ordinal at the end of a StatefulSet pod name (`c-2-10` is 10), None when there is none.
pub fn pod_ordinal(pod: &str) -> Option<u32> {
    let (_, tail) = pod.rsplit_once('-')?;
    if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// The replica to promote when a shard's master is gone: the reachable one with the highest
/// offset. A replica that never synced is chosen only when no reachable one ever did (the caller
/// should warn: the shard's data is lost). On a tie the lowest ordinal wins, the pod that stays
/// longest when the shard shrinks. None when no candidate is reachable: report Degraded and wait.
///
/// `candidates` are the shard's replicas, not the master being replaced.
pub fn choose_promotion(candidates: &[Candidate]) -> Option<&Candidate> {
    let any_synced = candidates.iter().any(|c| c.reachable && c.synced);
    candidates
        .iter()
        .filter(|c| c.reachable && (c.synced || !any_synced))
        .max_by(|a, b| preference(a, b))
}

/// Orders candidates from least to most preferred: offset, then lower ordinal, then name.
fn preference(a: &Candidate, b: &Candidate) -> Ordering {
    let key = |c: &Candidate| (c.offset, Reverse(pod_ordinal(&c.pod).unwrap_or(u32::MAX)));
    key(a).cmp(&key(b)).then_with(|| b.pod.cmp(&a.pod))
}

/// What shrinking a shard to `keep` pods allows now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleDown {
    /// These pods (ordinal `>= keep`, highest first, never the master) may leave the topology
    /// and then the StatefulSet. Empty when there is nothing to remove.
    Remove(Vec<String>),
    /// The master sits on an ordinal that is going away: promote `to_pod` (a synced replica that
    /// stays) first, once its offset has caught up with the master's, then plan again.
    SwitchMasterFirst {
        /// The master's pod.
        from_pod: String,
        /// The replica to promote.
        to_pod: String,
    },
    /// Nothing may be removed yet; the reason says what is awaited.
    Wait(String),
}

/// Which pods of a shard may go when it shrinks to `keep` pods (`replicasPerShard + 1`; at least
/// 1). A StatefulSet removes its highest ordinals, so those are the ones that go; the master is
/// never among them: when it sits on one, it is switched to a synced, reachable replica that
/// stays first, and when it is unknown nothing is removed.
///
/// `pods` are the shard's pod names, `master_pod` its current master, `replicas` what was
/// observed of the other nodes (for the switchover). Pods without an ordinal are never removed.
pub fn removable_pods(
    pods: &[String],
    master_pod: Option<&str>,
    replicas: &[Candidate],
    keep: u32,
) -> ScaleDown {
    let keep = keep.max(1);
    let mut leaving: Vec<(u32, &String)> = pods
        .iter()
        .filter_map(|pod| pod_ordinal(pod).map(|ordinal| (ordinal, pod)))
        .filter(|(ordinal, _)| *ordinal >= keep)
        .collect();
    if leaving.is_empty() {
        return ScaleDown::Remove(Vec::new());
    }
    let Some(master) = master_pod else {
        return ScaleDown::Wait(
            "the shard's master is not known, so no pod is removed until it is".to_owned(),
        );
    };
    if leaving.iter().any(|(_, pod)| pod.as_str() == master) {
        let staying: Vec<Candidate> = replicas
            .iter()
            .filter(|c| c.pod != master && c.reachable && c.synced)
            .filter(|c| pod_ordinal(&c.pod).is_some_and(|ordinal| ordinal < keep))
            .cloned()
            .collect();
        return match choose_promotion(&staying) {
            Some(target) => ScaleDown::SwitchMasterFirst {
                from_pod: master.to_owned(),
                to_pod: target.pod.clone(),
            },
            None => ScaleDown::Wait(format!(
                "master {master} is on an ordinal that goes away and no reachable, synced replica \
                 below ordinal {keep} can take over yet"
            )),
        };
    }
    leaving.sort_by_key(|(ordinal, _)| Reverse(*ordinal));
    ScaleDown::Remove(leaving.into_iter().map(|(_, pod)| pod.clone()).collect())
}
