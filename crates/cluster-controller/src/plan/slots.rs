//! Which shard owns which slots, and the migrations that change it.
//!
//! Slots belong to shards, not to nodes: a failover changes a shard's master, never its slots.
//! Every function here is pure; the reconciler runs the moves (`CLUSTERX MIGRATE`, then SETNODES
//! with the new owner) one at a time and records each one it finishes with [`apply_move`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kvrocks_api::cluster::{MigrationStatus, ShardStatus, SlotMigration};
use kvrocks_api::slots::parse_slot_string;
use kvrocks_client::{SLOT_COUNT, SlotRange, format_ranges};

/// Why slots cannot be planned from what the spec or the status says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A slot string is not `N` or `A-B`.
    #[error(
        "{context}: slot {slot:?} is invalid ({reason}); write N or A-B with 0 <= A < B <= 16383"
    )]
    InvalidSlot {
        /// Where the string was read (`spec.slotMigrations`, `status.shards[2]`, ...).
        context: String,
        /// The string as written.
        slot: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A shard index the cluster does not have (or a negative one).
    #[error("{context}: shard {shard} does not exist; the cluster has shards {}", describe_shards(.known))]
    UnknownShard {
        /// Where the index was read.
        context: String,
        /// The index as written.
        shard: i64,
        /// The shards the cluster has.
        known: Vec<u32>,
    },
    /// A shard index appears twice in `status.shards`.
    #[error(
        "status.shards lists shard {0} more than once; the operator rebuilds the status from the nodes' CLUSTER NODES"
    )]
    DuplicateShard(u32),
    /// Two shards claim the same slot.
    #[error(
        "slot {slot} is owned by both shard {first} and shard {second}; the operator rebuilds the status from the nodes' CLUSTER NODES"
    )]
    SlotOwnedTwice {
        /// The first slot claimed twice.
        slot: u16,
        /// One claimant.
        first: u32,
        /// The other.
        second: u32,
    },
    /// A manual move names slots no shard owns, so there is no data to migrate.
    #[error(
        "{context}: slots {slots} are owned by no shard, so they cannot be migrated; remove them from the entry"
    )]
    UnownedSlots {
        /// Where the move was read.
        context: String,
        /// The unowned slots, as `N` / `A-B` separated by spaces.
        slots: String,
    },
    /// A move's slots are not all owned by its source shard (a stale status or migration record).
    #[error(
        "slots {range} are not all owned by shard {from}, so they cannot move from it to shard {to}"
    )]
    NotOwnedBySource {
        /// The slots.
        range: SlotRange,
        /// The claimed source.
        from: u32,
        /// The destination.
        to: u32,
    },
}

fn describe_shards(known: &[u32]) -> String {
    match (known.first(), known.last()) {
        (None, _) | (_, None) => "none".to_owned(),
        (Some(first), Some(last))
            if u64::from(*last) - u64::from(*first) + 1 == known.len() as u64 =>
        {
            if first == last {
                first.to_string()
            } else {
                format!("{first} to {last}")
            }
        }
        _ => known
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The even split of slots 0..=16383 over `shards` shards: one contiguous range each, the first
/// `16384 % shards` shards one slot more. Shards past the 16384th get no slots.
pub fn initial_assignment(shards: u32) -> Vec<Vec<SlotRange>> {
    let owning = u16::try_from(shards.min(u32::from(SLOT_COUNT))).unwrap_or(SLOT_COUNT);
    let mut out: Vec<Vec<SlotRange>> = SlotRange::split_evenly(owning)
        .into_iter()
        .map(|r| vec![r])
        .collect();
    out.resize_with(shards as usize, Vec::new);
    out
}

/// The slots each shard owns, by shard index: ranges sorted and merged, no slot owned twice.
///
/// It lists every shard the cluster has, including shards that own nothing (a new shard before
/// a rebalance, a drained one before it is removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    shards: BTreeMap<u32, Vec<SlotRange>>,
}

impl Assignment {
    /// The even first split over `shards` shards (see [`initial_assignment`]).
    pub fn initial(shards: u32) -> Self {
        Self {
            shards: (0..shards).zip(initial_assignment(shards)).collect(),
        }
    }

    /// Builds an assignment from ranges per shard; refuses a shard listed twice or a slot owned twice.
    pub fn from_ranges(
        shards: impl IntoIterator<Item = (u32, Vec<SlotRange>)>,
    ) -> Result<Self, PlanError> {
        let mut map = BTreeMap::new();
        for (shard, ranges) in shards {
            if map.insert(shard, SlotRange::normalize(ranges)).is_some() {
                return Err(PlanError::DuplicateShard(shard));
            }
        }
        let mut owned: Vec<(SlotRange, u32)> = map
            .iter()
            .flat_map(|(shard, ranges)| ranges.iter().map(move |r| (*r, *shard)))
            .collect();
        owned.sort_unstable();
        // Sorted by start, any overlap shows up between neighbours.
        for pair in owned.windows(2) {
            if let [(a, first), (b, second)] = pair
                && a.overlaps(b)
            {
                return Err(PlanError::SlotOwnedTwice {
                    slot: b.start(),
                    first: *first,
                    second: *second,
                });
            }
        }
        Ok(Self { shards: map })
    }

    /// Reads `status.shards` (slot strings `N` or `A-B`; `5-5` is read as `5`).
    pub fn from_status(shards: &[ShardStatus]) -> Result<Self, PlanError> {
        let known: Vec<u32> = shards
            .iter()
            .filter_map(|s| u32::try_from(s.index).ok())
            .collect();
        let parsed = shards
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                let index = u32::try_from(shard.index).map_err(|_| PlanError::UnknownShard {
                    context: format!("status.shards[{i}].index"),
                    shard: i64::from(shard.index),
                    known: known.clone(),
                })?;
                let ranges = shard
                    .slots
                    .iter()
                    .map(|text| {
                        text.parse::<SlotRange>()
                            .map_err(|e| PlanError::InvalidSlot {
                                context: format!("status.shards[{i}] (shard {index})"),
                                slot: text.clone(),
                                reason: e.to_string(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((index, ranges))
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        Self::from_ranges(parsed)
    }

    /// The same assignment with an empty entry for every shard of `0..shards` it lacks.
    pub fn with_shards(mut self, shards: u32) -> Self {
        for shard in 0..shards {
            self.shards.entry(shard).or_default();
        }
        self
    }

    /// Shard indices, ascending.
    pub fn shards(&self) -> impl Iterator<Item = u32> + '_ {
        self.shards.keys().copied()
    }

    /// Each shard with its ranges, by index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[SlotRange])> {
        self.shards.iter().map(|(s, r)| (*s, r.as_slice()))
    }

    /// True when the cluster has shard `shard` (owning slots or not).
    pub fn has_shard(&self, shard: u32) -> bool {
        self.shards.contains_key(&shard)
    }

    /// The ranges `shard` owns (empty for an unknown shard).
    pub fn slots(&self, shard: u32) -> &[SlotRange] {
        self.shards.get(&shard).map_or(&[], Vec::as_slice)
    }

    /// Number of slots `shard` owns.
    pub fn count(&self, shard: u32) -> usize {
        self.slots(shard).iter().map(SlotRange::len).sum()
    }

    /// The shard owning `slot`, if any.
    pub fn owner_of(&self, slot: u16) -> Option<u32> {
        self.iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(slot)))
            .map(|(shard, _)| shard)
    }

    /// Number of slots with an owner.
    pub fn assigned(&self) -> usize {
        self.shards.keys().map(|s| self.count(*s)).sum()
    }

    /// The slots no shard owns, as ranges.
    pub fn unassigned(&self) -> Vec<SlotRange> {
        let owned = SlotRange::normalize(self.shards.values().flatten().copied());
        let mut gaps = Vec::new();
        let mut next = 0u32;
        for range in owned {
            if u32::from(range.start()) > next {
                gaps.extend(slot_range(next, u32::from(range.start()) - 1));
            }
            next = u32::from(range.end()) + 1;
        }
        gaps.extend(slot_range(next, u32::from(SLOT_COUNT) - 1));
        gaps
    }

    /// True when every slot has exactly one owner.
    pub fn is_complete(&self) -> bool {
        self.assigned() == usize::from(SLOT_COUNT)
    }

    /// True when the assignment is complete, every shard of `0..shards` owns 16384 / `shards`
    /// slots rounded down or up, and no other shard owns any.
    pub fn is_even(&self, shards: u32) -> bool {
        if shards == 0 || !self.is_complete() {
            return false;
        }
        let floor = usize::from(SLOT_COUNT) / shards as usize;
        let ceil = floor + usize::from(usize::from(SLOT_COUNT) % shards as usize != 0);
        (0..shards).all(|shard| (floor..=ceil).contains(&self.count(shard)))
            && self
                .shards()
                .all(|shard| shard < shards || self.count(shard) == 0)
    }

    /// The status strings of `shard`'s slots (`"5"`, never `"5-5"`).
    pub fn status_slots(&self, shard: u32) -> Vec<String> {
        self.slots(shard).iter().map(SlotRange::to_string).collect()
    }

    /// Status strings for every shard, by index.
    pub fn to_status(&self) -> BTreeMap<u32, Vec<String>> {
        self.shards()
            .map(|shard| (shard, self.status_slots(shard)))
            .collect()
    }

    /// Checks that `mv` can run now: its slots all belong to its source.
    pub fn check_move(&self, mv: &Move) -> Result<(), PlanError> {
        let owned = self
            .slots(mv.from)
            .iter()
            .any(|r| r.start() <= mv.range.start() && mv.range.end() <= r.end());
        if owned {
            Ok(())
        } else {
            Err(PlanError::NotOwnedBySource {
                range: mv.range,
                from: mv.from,
                to: mv.to,
            })
        }
    }

    /// Gives `mv.range` to `mv.to`, taking it from whichever shard held it (normally `mv.from`).
    pub fn apply(&mut self, mv: &Move) {
        for ranges in self.shards.values_mut() {
            if ranges.iter().any(|r| r.overlaps(&mv.range)) {
                *ranges = subtract(ranges, mv.range);
            }
        }
        let target = self.shards.entry(mv.to).or_default();
        target.push(mv.range);
        *target = SlotRange::normalize(target.drain(..));
    }
}

impl fmt::Display for Assignment {
    /// `0: 0-5460; 1: 5461-10922; 2: -` (for logs and event messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (shard, ranges)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if ranges.is_empty() {
                write!(f, "{shard}: -")?;
            } else {
                write!(f, "{shard}: {}", format_ranges(ranges))?;
            }
        }
        Ok(())
    }
}

/// One migration: a contiguous range of slots from one shard to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Move {
    /// The shard owning the slots now.
    pub from: u32,
    /// The shard receiving them.
    pub to: u32,
    /// The slots (`CLUSTERX MIGRATE <range> <node id of to's master>` on from's master).
    pub range: SlotRange,
}

impl Move {
    /// Number of slots moved.
    pub fn slot_count(&self) -> usize {
        self.range.len()
    }

    /// The `status.migration` record of this move in `state` (`start`, `success`, `fail`, `none`).
    pub fn to_status(&self, state: impl Into<String>) -> MigrationStatus {
        MigrationStatus {
            slots: self.range.to_string(),
            from_shard: i32::try_from(self.from).unwrap_or(i32::MAX),
            to_shard: i32::try_from(self.to).unwrap_or(i32::MAX),
            state: state.into(),
            failures: None,
            last_failure_time: None,
        }
    }

    /// Reads a `status.migration` record back (to resume it after a restart).
    pub fn from_status(status: &MigrationStatus) -> Result<Self, PlanError> {
        let shard = |value: i32, field: &str| {
            u32::try_from(value).map_err(|_| PlanError::UnknownShard {
                context: format!("status.migration.{field}"),
                shard: i64::from(value),
                known: Vec::new(),
            })
        };
        let range = status
            .slots
            .parse::<SlotRange>()
            .map_err(|e| PlanError::InvalidSlot {
                context: "status.migration.slots".to_owned(),
                slot: status.slots.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            from: shard(status.from_shard, "fromShard")?,
            to: shard(status.to_shard, "toShard")?,
            range,
        })
    }
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slots {} from shard {} to shard {}",
            self.range, self.from, self.to
        )
    }
}

/// The assignment after `mv` finished (see [`Assignment::apply`]).
pub fn apply_move(assignment: &Assignment, mv: &Move) -> Assignment {
    let mut next = assignment.clone();
    next.apply(mv);
    next
}

/// True only when `shard` owns no slot, so its pods can go without losing data.
pub fn shard_removable(assignment: &Assignment, shard: u32) -> bool {
    assignment.count(shard) == 0
}

/// The slot count each shard of `0..target_shards` should end with: 16384 / `target_shards`,
/// and one more for the `16384 % target_shards` shards owning the most now (lower index on a
/// tie), which is what keeps the number of moved slots minimal.
pub fn target_quotas(current: &Assignment, target_shards: u32) -> BTreeMap<u32, usize> {
    if target_shards == 0 {
        return BTreeMap::new();
    }
    let total = usize::from(SLOT_COUNT);
    let base = total / target_shards as usize;
    let extra = total % target_shards as usize;
    let mut order: Vec<u32> = (0..target_shards).collect();
    order.sort_by_key(|shard| (Reverse(current.count(*shard)), *shard));
    order
        .into_iter()
        .enumerate()
        .map(|(rank, shard)| (shard, base + usize::from(rank < extra)))
        .collect()
}

/// The moves that make `current` even over shards `0..target_shards`, moving as few slots as
/// possible.
///
/// Only slots above a shard's quota move (all of them for shards `>= target_shards`, which are
/// drained), only into shards below their quota, the least loaded first. A source gives up its
/// largest ranges first, cut from their high end, so most moves are one contiguous range and a
/// source splits into as few moves as it can. Slots no shard owns are not touched (they have no
/// data to migrate). Moves are independent: any order, any subset may run. Run one, record it
/// with [`apply_move`], and plan again: the remaining plan moves exactly the slots still to go.
///
/// This always aims at an even layout, so it undoes earlier manual moves: call it when the shard
/// count changes (or a rebalance was asked for), not on every pass. `target_shards == 0` plans
/// nothing.
pub fn rebalance_moves(current: &Assignment, target_shards: u32) -> Vec<Move> {
    let quotas = target_quotas(current, target_shards);
    if quotas.is_empty() {
        return Vec::new();
    }
    let mut pieces: Vec<(u32, SlotRange)> = Vec::new();
    for (shard, ranges) in current.iter() {
        let quota = quotas.get(&shard).copied().unwrap_or(0);
        let count: usize = ranges.iter().map(SlotRange::len).sum();
        if count > quota {
            pieces.extend(
                excess_ranges(ranges, count - quota)
                    .into_iter()
                    .map(|r| (shard, r)),
            );
        }
    }
    let mut receivers: Vec<(u32, usize)> = quotas
        .iter()
        .filter_map(|(shard, quota)| {
            let count = current.count(*shard);
            (count < *quota).then(|| (*shard, quota - count))
        })
        .collect();
    receivers.sort_by_key(|(shard, _)| (current.count(*shard), *shard));

    // Pour the pieces, in order, into the receivers, in order: at most one cut per receiver.
    // Excess minus room is the number of owned slots minus 16384, never positive, so the
    // receivers do not run out before the pieces.
    let mut moves = Vec::new();
    let mut receivers = receivers.into_iter();
    let mut receiver = receivers.next();
    for (from, piece) in pieces {
        let mut rest = Some(piece);
        while let Some(range) = rest {
            let Some((to, room)) = receiver.as_mut() else {
                return moves;
            };
            let (taken, left) = split_front(range, *room);
            moves.push(Move {
                from,
                to: *to,
                range: taken,
            });
            *room -= taken.len();
            if *room == 0 {
                receiver = receivers.next();
            }
            rest = left;
        }
    }
    moves
}

/// The moves to start now: in plan order, at most one per shard, none touching a `busy` shard.
///
/// A shard takes part in one migration at a time, as source or destination: kvrocks migrates one
/// range per source (`CLUSTERX MIGRATE` refuses a second) and tracks one import per node.
pub fn next_moves(moves: &[Move], busy: &BTreeSet<u32>) -> Vec<Move> {
    let mut taken = busy.clone();
    let mut out = Vec::new();
    for mv in moves {
        if mv.from != mv.to && !taken.contains(&mv.from) && !taken.contains(&mv.to) {
            taken.insert(mv.from);
            taken.insert(mv.to);
            out.push(*mv);
        }
    }
    out
}

/// The moves that carry out one `spec.slotMigrations` entry: each listed slot moves from the shard
/// owning it to `toShard`, one move per contiguous run with one owner; slots already there are
/// skipped, so an entry that is done plans nothing.
///
/// Refused: a `toShard` the assignment does not have, a malformed slot string, or listed slots
/// that no shard owns.
pub fn manual_moves(
    assignment: &Assignment,
    migration: &SlotMigration,
) -> Result<Vec<Move>, PlanError> {
    let context = format!("slotMigrations entry to shard {}", migration.to_shard);
    let to = u32::try_from(migration.to_shard)
        .ok()
        .filter(|s| assignment.has_shard(*s))
        .ok_or_else(|| PlanError::UnknownShard {
            context: context.clone(),
            shard: i64::from(migration.to_shard),
            known: assignment.shards().collect(),
        })?;
    let listed = migration
        .slots
        .iter()
        .map(|text| {
            parse_slot_string(text)
                .ok()
                .and_then(|(a, b)| SlotRange::new(a, b))
                .ok_or_else(|| PlanError::InvalidSlot {
                    context: context.clone(),
                    slot: text.clone(),
                    reason: "not N or A-B with A < B, or past 16383".to_owned(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let listed = SlotRange::normalize(listed);

    let mut moves = Vec::new();
    let mut owned_count = 0usize;
    for (from, ranges) in assignment.iter() {
        for owned in ranges {
            for wanted in &listed {
                if let Some(range) = intersect(*owned, *wanted) {
                    owned_count += range.len();
                    if from != to {
                        moves.push(Move { from, to, range });
                    }
                }
            }
        }
    }
    let listed_count: usize = listed.iter().map(SlotRange::len).sum();
    if owned_count < listed_count {
        let all_owned =
            SlotRange::normalize(assignment.iter().flat_map(|(_, r)| r.iter().copied()));
        let unowned: Vec<SlotRange> = listed
            .iter()
            .flat_map(|w| subtract_all(*w, &all_owned))
            .collect();
        return Err(PlanError::UnownedSlots {
            context,
            slots: format_ranges(&unowned),
        });
    }
    moves.sort_by_key(|m| (m.range.start(), m.from));
    Ok(moves)
}

/// The range `start..=end` from u32 bounds, None when empty or out of the slot space.
fn slot_range(start: u32, end: u32) -> Option<SlotRange> {
    SlotRange::new(u16::try_from(start).ok()?, u16::try_from(end).ok()?)
}

fn intersect(a: SlotRange, b: SlotRange) -> Option<SlotRange> {
    SlotRange::new(a.start().max(b.start()), a.end().min(b.end()))
}

/// `ranges` without the slots of `cut`.
fn subtract(ranges: &[SlotRange], cut: SlotRange) -> Vec<SlotRange> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for range in ranges {
        if !range.overlaps(&cut) {
            out.push(*range);
            continue;
        }
        if range.start() < cut.start() {
            out.extend(slot_range(
                u32::from(range.start()),
                u32::from(cut.start()) - 1,
            ));
        }
        if range.end() > cut.end() {
            out.extend(slot_range(u32::from(cut.end()) + 1, u32::from(range.end())));
        }
    }
    out
}

/// `range` without the slots of any of `cuts`.
fn subtract_all(range: SlotRange, cuts: &[SlotRange]) -> Vec<SlotRange> {
    cuts.iter()
        .fold(vec![range], |left, cut| subtract(&left, *cut))
}

/// The first `n` slots of `range` (all of it when `n` covers it) and what is left.
fn split_front(range: SlotRange, n: usize) -> (SlotRange, Option<SlotRange>) {
    if n >= range.len() || n == 0 {
        return (range, None);
    }
    let cut = u32::from(range.start()) + n as u32;
    match (
        slot_range(u32::from(range.start()), cut - 1),
        slot_range(cut, u32::from(range.end())),
    ) {
        (Some(front), rest @ Some(_)) => (front, rest),
        _ => (range, None),
    }
}

/// `n` slots of `ranges` (normalized, owning at least `n`) in as few pieces as possible: the
/// largest ranges whole, then the high end of the next largest. Sorted by start.
fn excess_ranges(ranges: &[SlotRange], n: usize) -> Vec<SlotRange> {
    let mut by_size = ranges.to_vec();
    by_size.sort_by_key(|r| (Reverse(r.len()), Reverse(r.start())));
    let mut left = n;
    let mut out = Vec::new();
    for range in by_size {
        if left == 0 {
            break;
        }
        if range.len() <= left {
            left -= range.len();
            out.push(range);
        } else {
            let start = u32::from(range.end()) + 1 - left as u32;
            out.extend(slot_range(start, u32::from(range.end())));
            left = 0;
        }
    }
    out.sort_unstable();
    out
}
