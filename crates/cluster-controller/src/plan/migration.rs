//! Driving slot migrations one at a time, `spec.slotMigrations` first, then the rebalance toward
//! the wanted shard count.
//!
//! A migration is recorded in status before anything starts it: the pass that picks the next
//! move only records it (state `none`); a later pass, reading it back from status, sends
//! `CLUSTERX MIGRATE` (and sends it again when the source forgot it after a restart or a
//! failover); a pass that finds it succeeded records the new owner, which goes out with the next
//! topology version. An operator stopped at any point resumes from status; a migration a source
//! reports that status does not record (`Observed::adopt`) is taken over the same way. A
//! migration the source reports failed is counted in status (an Event each time) and sent again
//! after a backoff ([`retry_after`]); the `Degraded` condition says so from the
//! [`FAILURES_DEGRADED`]th failure on.

use kvrocks_api::cluster::{
    KvrocksClusterSpec, KvrocksClusterStatus, MigrationStatus, ShardStatus,
};
use std::time::{Duration, SystemTime};

use kvrocks_client::MigrationState;

use super::slots::{Assignment, Move, manual_moves, next_moves, rebalance_moves};
use super::{Action, Input, Wait};
use crate::topo;

/// The slot bookkeeping a pass carries from status to status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slots {
    /// The migration recorded (in flight, or about to start).
    pub migration: Option<MigrationStatus>,
    /// Entries of `spec.slotMigrations` done.
    pub done: usize,
    /// The shard count a rebalance aims at.
    pub rebalance: Option<i32>,
    /// `CLUSTERX MIGRATE` to send.
    pub action: Option<Action>,
}

impl Slots {
    /// The bookkeeping as status holds it.
    pub fn from_status(status: &KvrocksClusterStatus, spec: &KvrocksClusterSpec) -> Self {
        Self {
            migration: status.migration.clone(),
            done: status
                .slot_migrations_done
                .unwrap_or(0)
                .max(0)
                .unsigned_abs() as usize,
            rebalance: status.rebalance_target,
            action: None,
        }
        .clamped(spec)
    }

    fn clamped(mut self, spec: &KvrocksClusterSpec) -> Self {
        self.done = self.done.min(spec.slot_migrations.len());
        self
    }
}

/// From this many failures of one migration on, the cluster is `Degraded`.
pub const FAILURES_DEGRADED: i32 = 3;

/// How long after its `failures`th failure a migration is sent again: 2 s, doubling, at most a
/// minute.
pub fn retry_after(failures: i32) -> Duration {
    let doublings = failures.saturating_sub(1).clamp(0, 5).unsigned_abs();
    Duration::from_secs(2u64 << doublings).min(Duration::from_secs(60))
}

/// What driving did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Driven {
    /// A migration finished: its slots now belong to the destination in the layout.
    pub moved: Option<Move>,
    /// The source reported the migration failed (again): the move and its failure count.
    pub failed: Option<(Move, i32)>,
    /// A failed migration is sent again after this.
    pub retry_in: Option<Duration>,
    /// Why slots cannot move.
    pub wait: Option<Wait>,
    /// A migration is in flight (or about to be sent): look again soon.
    pub polling: bool,
}

fn master_ip<'a>(input: &Input<'_>, layout: &'a [ShardStatus], shard: u32) -> Option<&'a str> {
    layout
        .iter()
        .find(|s| s.index == shard as i32)
        .and_then(topo::master_of)
        .filter(|m| input.observed.reachable(&m.pod))
        .map(|m| m.ip.as_str())
}

fn master_id(layout: &[ShardStatus], shard: u32) -> Option<String> {
    layout
        .iter()
        .find(|s| s.index == shard as i32)
        .and_then(topo::master_of)
        .map(|m| m.node_id.clone())
}

fn blocked(message: String) -> Driven {
    Driven {
        wait: Some(Wait::SlotMigrationBlocked(message)),
        ..Driven::default()
    }
}

/// One step of slot movement on an in-sync layout that did not change in this pass.
pub fn drive(input: &Input<'_>, layout: &mut [ShardStatus], slots: &mut Slots) -> Driven {
    let assignment = match Assignment::from_status(layout) {
        Ok(a) => a,
        Err(e) => return blocked(e.to_string()),
    };
    if let Some(recorded) = slots.migration.clone() {
        return resume(input, layout, slots, &assignment, &recorded);
    }
    if let Some(mv) = input.observed.adopt {
        // A source master runs (or finished) a migration status lost: take it over.
        let recorded = mv.to_status(state_text(input.observed.migration.as_ref()));
        slots.migration = Some(recorded.clone());
        return resume(input, layout, slots, &assignment, &recorded);
    }
    let next = match next_move(input, slots, &assignment) {
        Ok(next) => next,
        Err(message) => return blocked(message),
    };
    let Some(mv) = next else {
        return Driven::default();
    };
    if master_ip(input, layout, mv.from).is_none() {
        return blocked(format!("the master of shard {} does not answer", mv.from));
    }
    if master_id(layout, mv.to).is_none() {
        return blocked(format!("shard {} has no master", mv.to));
    }
    // Recorded now, started by the pass that reads it back from status.
    slots.migration = Some(mv.to_status(state_text(None)));
    Driven {
        polling: true,
        ..Driven::default()
    }
}

/// The migration status records: finished (its slots change owner), running (wait), or not
/// running on the source (sent, again).
fn resume(
    input: &Input<'_>,
    layout: &mut [ShardStatus],
    slots: &mut Slots,
    assignment: &Assignment,
    recorded: &MigrationStatus,
) -> Driven {
    let mv = match Move::from_status(recorded) {
        Ok(mv) => mv,
        Err(e) => return blocked(e.to_string()),
    };
    if !assignment
        .slots(mv.from)
        .iter()
        .any(|r| r.overlaps(&mv.range))
    {
        // Already applied (the operator stopped after recording the new owner).
        slots.migration = None;
        return Driven::default();
    }
    let Some(source_ip) = master_ip(input, layout, mv.from) else {
        return blocked(format!("the master of shard {} does not answer", mv.from));
    };
    let state = input.observed.migration.clone();
    match state {
        Some(MigrationState::Success) => {
            let mut next = assignment.clone();
            next.apply(&mv);
            for shard in layout.iter_mut() {
                shard.slots = next.status_slots(shard.index.max(0).unsigned_abs());
            }
            slots.migration = None;
            Driven {
                moved: Some(mv),
                ..Driven::default()
            }
        }
        Some(MigrationState::Start) => {
            slots.migration = Some(MigrationStatus {
                state: state_text(state.as_ref()),
                ..recorded.clone()
            });
            Driven {
                polling: true,
                ..Driven::default()
            }
        }
        _ => {
            let Some(target) = master_id(layout, mv.to) else {
                return blocked(format!("shard {} has no master", mv.to));
            };
            if state == Some(MigrationState::Fail)
                && let Some(waiting) = failed(input.now, slots, recorded, &mv)
            {
                return waiting;
            }
            // Sent (again): a `fail` read after this is a new failure.
            slots.migration = Some(MigrationStatus {
                state: state_text(None),
                ..recorded.clone()
            });
            slots.action = Some(Action::Migrate {
                mv,
                source_ip: source_ip.to_owned(),
                target,
            });
            Driven {
                polling: true,
                ..Driven::default()
            }
        }
    }
}

/// A migration the source reports failed: a failure not counted yet is counted (and waited
/// out), a counted one is waited out until [`retry_after`] passed; None when it is time to send
/// it again.
fn failed(
    now: SystemTime,
    slots: &mut Slots,
    recorded: &MigrationStatus,
    mv: &Move,
) -> Option<Driven> {
    let failures = recorded.failures.unwrap_or(0);
    if recorded.state != state_text(Some(&MigrationState::Fail)) {
        let failures = failures.saturating_add(1);
        slots.migration = Some(MigrationStatus {
            state: state_text(Some(&MigrationState::Fail)),
            failures: Some(failures),
            last_failure_time: super::failover::status_time(now),
            ..recorded.clone()
        });
        return Some(Driven {
            failed: Some((*mv, failures)),
            retry_in: Some(retry_after(failures)),
            ..Driven::default()
        });
    }
    let since = recorded
        .last_failure_time
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or(now);
    let waited = now.duration_since(since).unwrap_or_default();
    let left = retry_after(failures).checked_sub(waited)?;
    (!left.is_zero()).then(|| Driven {
        retry_in: Some(left),
        ..Driven::default()
    })
}

/// The next move: the first entry of `spec.slotMigrations` not done (entries with nothing left
/// to move are counted done), then the rebalance.
fn next_move(
    input: &Input<'_>,
    slots: &mut Slots,
    assignment: &Assignment,
) -> Result<Option<Move>, String> {
    let wanted = &input.spec.slot_migrations;
    while slots.done < wanted.len() {
        let moves = manual_moves(assignment, &wanted[slots.done])
            .map_err(|e| format!("spec.slotMigrations[{}]: {e}", slots.done))?;
        match moves.into_iter().next() {
            Some(mv) => return Ok(Some(mv)),
            None => slots.done += 1,
        }
    }
    let Some(target) = slots.rebalance else {
        return Ok(None);
    };
    let moves = rebalance_moves(assignment, target.max(1).unsigned_abs());
    let next = next_moves(&moves, &Default::default()).into_iter().next();
    if next.is_none() && assignment.shards().count() as u32 == input.shards() {
        slots.rebalance = None;
    }
    Ok(next)
}

/// The state word status records (`none` until kvrocks reports one).
pub fn state_text(state: Option<&MigrationState>) -> String {
    match state {
        Some(MigrationState::Start) => "start".to_owned(),
        Some(MigrationState::Success) => "success".to_owned(),
        Some(MigrationState::Fail) => "fail".to_owned(),
        _ => "none".to_owned(),
    }
}
