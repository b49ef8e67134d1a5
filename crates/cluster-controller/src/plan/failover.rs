//! Failover: a shard's master that has not answered for `spec.failover.timeout` is replaced by
//! the replica with the most data among those that completed a sync, unless one of its replicas
//! still hears from it (the operator alone lost it: a failover would leave a live master taking
//! writes). The old master's pod is stopped first (`Action::Stop`, its kubelet stops it even when
//! the operator cannot reach it), and the replica promoted once it is gone, so two masters never
//! serve the same slots to clients that still reach the old one (a pod whose node is gone is
//! waited for [`STOP_CONFIRM`] past its grace period).
//!
//! kvrocks refuses SLAVEOF in cluster mode, so the operator promotes by pushing a topology in
//! which the chosen replica is the shard's master. The time a master has been unreachable counts
//! from its last answer to the prober (or, if it never answered, the first unanswered probe), or
//! from what status recorded, whichever is earlier, so a restarted operator continues the count.

use std::cmp::{Ordering, Reverse};
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kvrocks_api::cluster::{FailoverRecord, ShardStatus};
use kvrocks_api::labels::{Role, ordinal};

use super::{Input, NodeObs, Note, Wait};
use crate::topo;

/// The timeout when the spec's cannot be read (validation reports it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A replica of a shard as observed, a candidate to become its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Pod name (`<cr>-<shard>-<ordinal>`).
    pub pod: String,
    /// The operator could talk to it in this pass.
    pub reachable: bool,
    /// It completed a sync with its master (see `NodeObs::synced`), so it holds the shard's data
    /// and not an empty database.
    pub synced: bool,
    /// Its replication offset (`slave_repl_offset`); higher is more data.
    pub offset: i64,
}

/// The replica to promote: among the reachable ones that completed a sync, the one with the
/// highest offset; on a tie the lowest ordinal (as a number), the pod that stays longest when the
/// shard shrinks. None when no replica qualifies: never an empty or unreachable one.
pub fn choose_promotion(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates
        .iter()
        .filter(|c| c.reachable && c.synced)
        .max_by(|a, b| preference(a, b))
}

/// Orders candidates from least to most preferred: offset, then lower ordinal, then name.
fn preference(a: &Candidate, b: &Candidate) -> Ordering {
    let key = |c: &Candidate| (c.offset, Reverse(ordinal(&c.pod).unwrap_or(u32::MAX)));
    key(a).cmp(&key(b)).then_with(|| b.pod.cmp(&a.pod))
}

/// A replica (of `replicas`, as observed) that heard from its master less than `timeout - 1 s`
/// ago (at least 1 s): kvrocks masters send their replicas a heartbeat every few seconds, so a
/// replica that heard one that recently shows the master is alive on the data path.
pub fn hears_master<'a>(
    replicas: impl IntoIterator<Item = (&'a str, &'a NodeObs)>,
    timeout: Duration,
) -> Option<&'a str> {
    let recent = timeout
        .saturating_sub(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    replicas
        .into_iter()
        .find(|(_, o)| {
            o.reachable
                && o.link_up
                && o.last_io_secs
                    .is_some_and(|s| s >= 0 && Duration::from_secs(s.unsigned_abs()) < recent)
        })
        .map(|(pod, _)| pod)
}

/// The candidates of a shard: its replicas as observed.
pub fn candidates(input: &Input<'_>, shard: &ShardStatus) -> Vec<Candidate> {
    shard
        .nodes
        .iter()
        .filter(|n| n.role == Role::Replica)
        .map(|n| {
            let obs = input
                .observed
                .nodes
                .get(&n.pod)
                .cloned()
                .unwrap_or_default();
            Candidate {
                pod: n.pod.clone(),
                reachable: obs.reachable,
                synced: obs.reachable && obs.synced,
                offset: obs.offset,
            }
        })
        .collect()
}

/// What failover did to the layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failed {
    /// Failovers made.
    pub notes: Vec<Note>,
    /// A master is down and cannot be replaced (yet).
    pub wait: Option<Wait>,
    /// The earliest failover still to come, from now.
    pub due: Option<Duration>,
    /// Pods of masters due for failover to delete now (see [`old_master_stopped`]).
    pub stop: Vec<String>,
}

/// How long after the end of its grace period a deleted master's pod still counts as possibly
/// running: its kubelet reports the stop within about a second; one that does not (its node is
/// gone) cannot stop it either, and the failover goes on.
pub const STOP_CONFIRM: Duration = Duration::from_secs(2);

/// How often a failover waiting for the old master's pod to stop looks again.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Whether the process of `master`, unreachable since `since`, can no longer serve clients:
/// its pod is gone, or was created after that (the process that answered then is gone), or was
/// deleted and its grace period ended [`STOP_CONFIRM`] ago. `Err(delete)`: not yet, and whether
/// its pod is still to be deleted.
fn old_master_stopped(input: &Input<'_>, master: &str, since: SystemTime) -> Result<(), bool> {
    let observed = input.observed;
    if let Some(pod) = observed.pods.iter().find(|p| p.pod == master) {
        return match pod.created {
            Some(created) if created > since => Ok(()),
            _ => Err(true),
        };
    }
    match observed.stopping.iter().find(|p| p.pod == master) {
        None => Ok(()),
        Some(pod) => match pod.stop_by {
            Some(by) if input.now >= by + STOP_CONFIRM => Ok(()),
            _ => Err(false),
        },
    }
}

/// Since when the master of `shard` has been unreachable: the prober's verdict (its last answer), or
/// what status recorded (a restarted operator's prober starts afresh), whichever is earlier; now
/// when neither knows. Status holds whole seconds, rounded down, so its record counts from the
/// end of its second: never earlier than the failure.
fn down_since(input: &Input<'_>, shard: &ShardStatus, master: &str) -> SystemTime {
    let recorded = shard
        .master_unreachable_since
        .as_ref()
        .map(|t| SystemTime::from(t.0) + Duration::from_millis(999));
    let probed = input
        .observed
        .pods
        .iter()
        .find(|p| p.pod == master)
        .and_then(|p| p.unreachable_since);
    [recorded, probed]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(input.now)
        .min(input.now)
}

/// `at` as status records it: whole seconds.
pub(crate) fn status_time(at: SystemTime) -> Option<Time> {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).ok()?)
        .ok()
        .map(Time)
}

/// Replaces every master that has been unreachable for the timeout, and records since when the
/// others that do not answer have been.
pub fn apply(input: &Input<'_>, layout: &mut [ShardStatus]) -> Failed {
    let timeout = input.spec.failover.timeout().unwrap_or(DEFAULT_TIMEOUT);
    let mut failed = Failed::default();
    for shard in layout.iter_mut() {
        let Some(master) = topo::master_of(shard).map(|m| m.pod.clone()) else {
            continue;
        };
        if input.observed.reachable(&master) {
            shard.master_unreachable_since = None;
            if let Some(note) = behind_its_replica(input, shard, &master) {
                failed.notes.push(note);
            }
            continue;
        }
        let since = down_since(input, shard, &master);
        if shard.master_unreachable_since.is_none() {
            shard.master_unreachable_since = status_time(since);
        }
        let down_for = input.now.duration_since(since).unwrap_or_default();
        if down_for < timeout {
            let left = timeout - down_for;
            failed.due = Some(failed.due.map_or(left, |d| d.min(left)));
            failed.wait.get_or_insert(Wait::MasterUnreachable {
                shard: shard.index,
                master,
                left,
            });
            continue;
        }
        let replicas = shard
            .nodes
            .iter()
            .filter(|n| n.role == Role::Replica)
            .filter_map(|n| Some((n.pod.as_str(), input.observed.nodes.get(&n.pod)?)));
        if let Some(replica) = hears_master(replicas, timeout) {
            failed.due = Some(
                failed
                    .due
                    .map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1))),
            );
            failed.wait.get_or_insert(Wait::MasterHeardByReplica {
                shard: shard.index,
                master,
                replica: replica.to_owned(),
            });
            continue;
        }
        let chosen = choose_promotion(&candidates(input, shard)).map(|c| (c.pod.clone(), c.offset));
        if let (Some((to, _)), Err(delete)) = (&chosen, old_master_stopped(input, &master, since)) {
            if delete {
                failed.stop.push(master.clone());
            }
            failed.due = Some(failed.due.map_or(STOP_POLL, |d| d.min(STOP_POLL)));
            failed.wait.get_or_insert(Wait::StoppingOldMaster {
                shard: shard.index,
                master,
                to: to.clone(),
            });
            continue;
        }
        match chosen {
            Some((to, offset)) => {
                topo::promote(shard, &to);
                shard.master_unreachable_since = None;
                shard.last_failover = Some(FailoverRecord {
                    from: master.clone(),
                    to: to.clone(),
                    promoted_offset: offset,
                    discarded: None,
                });
                failed.notes.push(Note::Failover {
                    shard: shard.index,
                    from: master,
                    to,
                    down_for,
                });
            }
            None => {
                failed.wait = Some(Wait::NoFailoverCandidate {
                    shard: shard.index,
                    master,
                });
            }
        }
    }
    failed
}

/// A failed-over master that answers again, before it runs the current topology (and resyncs
/// from its successor), is read once: the sequences it holds beyond the offset its successor had
/// when it was promoted were acknowledged by it and are about to be discarded. They are recorded
/// in the shard's `lastFailover` and told in an Event, as CloudNativePG tells a lost timeline.
pub fn discarded(input: &Input<'_>, layout: &mut [ShardStatus]) -> Vec<Note> {
    let mut notes = Vec::new();
    for shard in layout.iter_mut() {
        let Some(record) = shard
            .last_failover
            .as_mut()
            .filter(|r| r.discarded.is_none())
        else {
            continue;
        };
        let Some(obs) = input.observed.nodes.get(&record.from) else {
            continue;
        };
        // Back (it restarted fenced, or its network returned) and not yet on the current topology.
        if !obs.reachable || obs.version == Some(input.status_version()) {
            continue;
        }
        if obs.offset > record.promoted_offset {
            let sequences = format!("{}-{}", record.promoted_offset + 1, obs.offset);
            notes.push(Note::WritesDiscarded {
                shard: shard.index,
                pod: record.from.clone(),
                to: record.to.clone(),
                sequences: sequences.clone(),
                count: obs.offset - record.promoted_offset,
            });
            record.discarded = Some(sequences);
        } else {
            record.discarded = Some("none".to_owned());
        }
    }
    notes
}

/// A master that came back (it restarted and runs no topology yet, so it serves nothing and its
/// offset is not moving) with less data than one of its replicas that completed a sync (its
/// volume was emptied, or it lost its last writes) does not get its shard back: pushed as master
/// it would make that replica resync from it and lose what only the replica holds. The replica
/// with the most data takes the shard instead. (A master that runs a topology takes writes: its
/// offset read a moment before a replica's may be lower without meaning anything.)
fn behind_its_replica(input: &Input<'_>, shard: &mut ShardStatus, master: &str) -> Option<Note> {
    let obs = input.observed.nodes.get(master)?;
    // A restarted node starts fenced (see `builders::kvrocks::start_script`): that is no reason
    // to keep it.
    if obs.version.is_some() {
        return None;
    }
    let candidates = candidates(input, shard);
    let best = choose_promotion(&candidates)?;
    if best.offset <= obs.offset {
        return None;
    }
    let (to, offset) = (best.pod.clone(), best.offset);
    topo::promote(shard, &to);
    Some(Note::MasterBehind {
        shard: shard.index,
        from: master.to_owned(),
        to,
        master_offset: obs.offset,
        replica_offset: offset,
    })
}
