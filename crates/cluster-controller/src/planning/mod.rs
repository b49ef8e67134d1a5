//! The pure part of planning a KvrocksCluster: which slots move where ([`slots`]), which replica
//! takes over a shard and which pods a shrinking shard may lose ([`failover`]).
//!
//! No I/O and no clock: the reconciler observes, asks these functions, and acts. That is where
//! the unit and property tests of the cluster's invariants live (every slot owned exactly once,
//! minimal migrations, no shard removed while it owns slots, no master pod removed).

#![warn(missing_docs)]

pub mod failover;
pub mod slots;

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod slots_tests;

pub use failover::{Candidate, ScaleDown, choose_promotion, pod_ordinal, removable_pods};
pub use slots::{
    Assignment, Move, PlanError, apply_move, initial_assignment, manual_moves, next_moves,
    rebalance_moves, shard_removable, target_quotas,
};
