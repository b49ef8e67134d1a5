//! What the controller keeps between reconciles of one KvrocksStandard, in memory only: since
//! when sentinel's choice has reported itself a replica of another pod, and which pods refused
//! the current kvrocks.conf live (they restart instead).
//!
//! One [`State`] is created in [`crate::run`] and handed to every reconcile; a resource's entry
//! goes when the resource is deleted. Losing it (an operator restart) costs at most one more
//! [`crate::plan::STUCK_AFTER`] of waiting and one more live `CONFIG SET`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// A KvrocksStandard: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The memory of one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Memory {
    /// Since when sentinel's choice has been stuck as a replica, without a break.
    stuck_since: Option<Instant>,
    /// Pods that refused kvrocks.conf live, with the config hash they refused.
    refused: BTreeMap<String, String>,
}

/// The controller's memory, by resource.
#[derive(Debug, Default)]
pub struct State {
    memory: Mutex<HashMap<Key, Memory>>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Memory>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records whether sentinel's choice is stuck as a replica at `now` and returns since when
    /// it has been, without a break (None once it is not).
    pub fn stuck(&self, key: &Key, stuck_now: bool, now: Instant) -> Option<Instant> {
        let mut all = self.lock();
        let memory = all.entry(key.clone()).or_default();
        memory.stuck_since = if stuck_now {
            Some(memory.stuck_since.unwrap_or(now))
        } else {
            None
        };
        memory.stuck_since
    }

    /// The operator made sentinel's choice true: the stuck clock starts again.
    pub fn reset_stuck(&self, key: &Key) {
        if let Some(memory) = self.lock().get_mut(key) {
            memory.stuck_since = None;
        }
    }

    /// The pods that refused kvrocks.conf `config_hash` live.
    pub fn refused(&self, key: &Key, config_hash: &str) -> BTreeSet<String> {
        self.lock().get(key).map_or_else(BTreeSet::new, |m| {
            m.refused
                .iter()
                .filter(|(_, hash)| *hash == config_hash)
                .map(|(pod, _)| pod.clone())
                .collect()
        })
    }

    /// Records that `pod` refused kvrocks.conf `config_hash` live.
    pub fn record_refused(&self, key: &Key, pod: &str, config_hash: &str) {
        self.lock()
            .entry(key.clone())
            .or_default()
            .refused
            .insert(pod.to_owned(), config_hash.to_owned());
    }

    /// Forgets what was recorded about pods not in `live` (pods that are gone).
    pub fn retain_pods(&self, key: &Key, live: &BTreeSet<&str>) {
        if let Some(memory) = self.lock().get_mut(key) {
            memory.refused.retain(|pod, _| live.contains(pod.as_str()));
        }
    }

    /// Forgets the resource (it is deleted).
    pub fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }

    /// How many resources are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no resource is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> Key {
        Key {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn stuck_since_holds_while_stuck_and_goes_at_a_break() {
        let state = State::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(state.stuck(&key("a"), true, t0), Some(t0));
        assert_eq!(state.stuck(&key("a"), true, t1), Some(t0));
        assert_eq!(state.stuck(&key("b"), true, t1), Some(t1), "per resource");
        assert_eq!(state.stuck(&key("a"), false, t1), None);
        assert_eq!(state.stuck(&key("a"), true, t1), Some(t1));
        state.reset_stuck(&key("a"));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(state.stuck(&key("a"), true, t2), Some(t2));
    }

    #[test]
    fn refusals_are_per_config_and_pruned_with_pods_and_resources() {
        let state = State::default();
        state.record_refused(&key("a"), "a-0", "h1");
        state.record_refused(&key("a"), "a-1", "h1");
        assert_eq!(state.refused(&key("a"), "h1").len(), 2);
        assert!(state.refused(&key("a"), "h2").is_empty(), "a new config");
        state.retain_pods(&key("a"), &["a-1"].into());
        assert_eq!(state.refused(&key("a"), "h1"), ["a-1".to_owned()].into());
        state.stuck(&key("b"), true, Instant::now());
        assert_eq!(state.len(), 2);
        state.forget(&key("a"));
        state.forget(&key("b"));
        assert!(state.is_empty());
    }
}
