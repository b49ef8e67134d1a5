//! What the controller remembers between passes, per cluster, passed to every reconcile and
//! dropped when the cluster goes: the prober of its pods, the pods that refused the current
//! kvrocks.conf live, the nodes seen holding their shard's data since they last started, and how
//! long it has been waiting (for the requeue backoff).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use kvrocks_api::KvrocksCluster;
use kvrocks_api::labels::Component;
use kvrocks_operator_core::WakeTarget;
use kvrocks_operator_core::prober::Probers;

use crate::plan::Next;

/// Requeue of a steady cluster (the prober and watches wake it sooner).
pub const STEADY: Duration = Duration::from_secs(60);
/// First requeue while a migration runs; doubles up to [`MIGRATION_MAX`].
const MIGRATION_FIRST: Duration = Duration::from_millis(50);
const MIGRATION_MAX: Duration = Duration::from_secs(2);
/// First requeue while waiting on pods; doubles up to [`PODS_MAX`].
const PODS_FIRST: Duration = Duration::from_secs(1);
const PODS_MAX: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Memory {
    /// `(pod, config hash)` pairs kvrocks refused live.
    live_refused: BTreeSet<(String, String)>,
    /// `(pod, ip)` of the nodes seen linked to their master (or serving as one) since their
    /// process last started.
    synced: BTreeSet<(String, String)>,
    /// Passes in a row that waited the same way.
    waits: u32,
    last: Option<Next>,
}

/// The controller's state.
pub struct State {
    /// One prober per cluster.
    pub probers: Probers,
    memory: Mutex<HashMap<WakeTarget, Memory>>,
}

impl State {
    /// Empty; the probers wake clusters through `wake`.
    pub fn new(wake: kvrocks_operator_core::WakeBus) -> Self {
        Self {
            probers: Probers::new(wake),
            memory: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, key: &WakeTarget, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        f(memory.entry(key.clone()).or_default())
    }

    /// Whether kvrocks refused kvrocks.conf `hash` live on `pod`.
    pub fn live_refused(&self, key: &WakeTarget, pod: &str, hash: &str) -> bool {
        self.with(key, |m| {
            m.live_refused.contains(&(pod.to_owned(), hash.to_owned()))
        })
    }

    /// Records that kvrocks refused kvrocks.conf `hash` live on `pod` (only a restart helps).
    pub fn refuse_live(&self, key: &WakeTarget, pod: &str, hash: &str) {
        self.with(key, |m| {
            m.live_refused.retain(|(_, h)| h == hash);
            m.live_refused.insert((pod.to_owned(), hash.to_owned()));
        });
    }

    /// Records what this pass saw of `pod` at `ip`: linked to its master (or a master) under
    /// the current topology, it holds the shard's data; a stranger (no node id: every kvrocks
    /// process starts as one, see `builders::kvrocks::start_script`) may hold nothing, until it
    /// is seen linked again. Returns whether it is known to hold the shard's data.
    pub fn note_synced(
        &self,
        key: &WakeTarget,
        pod: &str,
        ip: &str,
        linked: bool,
        stranger: bool,
    ) -> bool {
        self.with(key, |m| {
            let entry = (pod.to_owned(), ip.to_owned());
            if stranger {
                m.synced.retain(|(p, _)| p != pod);
            } else if linked {
                m.synced.retain(|(p, _)| p != pod);
                m.synced.insert(entry.clone());
            }
            m.synced.contains(&entry)
        })
    }

    /// When to look again after a pass that planned `next`: waits back off while they repeat.
    pub fn requeue(&self, key: &WakeTarget, next: Next) -> Duration {
        self.with(key, |m| {
            m.waits = if m.last == Some(next) {
                m.waits.saturating_add(1)
            } else {
                0
            };
            m.last = Some(next);
            let backoff = |first: Duration, max: Duration| {
                first.saturating_mul(1u32 << m.waits.min(16)).min(max)
            };
            match next {
                Next::Steady => STEADY,
                Next::In(due) => due.max(Duration::from_millis(50)),
                Next::Migration => backoff(MIGRATION_FIRST, MIGRATION_MAX),
                Next::Pods => backoff(PODS_FIRST, PODS_MAX),
            }
        })
    }

    /// Forgets the cluster (it is being deleted): its prober stops.
    pub fn forget(&self, key: &WakeTarget) {
        self.probers.forget(key);
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The key of a cluster in the state and on the wake bus.
pub fn key(cr: &KvrocksCluster) -> WakeTarget {
    WakeTarget {
        component: Component::Cluster,
        namespace: cr.namespace().unwrap_or_default(),
        name: cr.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WakeTarget {
        WakeTarget {
            component: Component::Cluster,
            namespace: "ns".into(),
            name: "c".into(),
        }
    }

    #[tokio::test]
    async fn waits_back_off_and_reset() {
        let state = State::new(kvrocks_operator_core::WakeBus::new());
        let k = key();
        let first = state.requeue(&k, Next::Migration);
        let second = state.requeue(&k, Next::Migration);
        assert!(second > first);
        for _ in 0..20 {
            state.requeue(&k, Next::Migration);
        }
        assert_eq!(state.requeue(&k, Next::Migration), MIGRATION_MAX);
        assert_eq!(state.requeue(&k, Next::Steady), STEADY);
        assert_eq!(state.requeue(&k, Next::Migration), first);
    }

    #[tokio::test]
    async fn a_forgotten_cluster_leaves_nothing() {
        let state = State::new(kvrocks_operator_core::WakeBus::new());
        state.refuse_live(&key(), "c-0-0", "h");
        assert!(state.live_refused(&key(), "c-0-0", "h"));
        state.forget(&key());
        assert!(!state.live_refused(&key(), "c-0-0", "h"));
        assert!(state.probers.is_empty());
    }

    #[tokio::test]
    async fn a_node_holds_its_shards_data_from_its_first_link_until_it_restarts() {
        let state = State::new(kvrocks_operator_core::WakeBus::new());
        let k = key();
        let seen = |ip: &str, linked: bool, stranger: bool| {
            state.note_synced(&k, "c-0-1", ip, linked, stranger)
        };
        assert!(!seen("10.0.0.2", false, false), "never linked");
        assert!(seen("10.0.0.2", true, false));
        assert!(
            seen("10.0.0.2", false, false),
            "its master went: still holds the data"
        );
        assert!(
            !seen("10.0.0.3", false, false),
            "a new pod at another address"
        );
        assert!(seen("10.0.0.2", false, false));
        assert!(!seen("10.0.0.2", false, true), "restarted: a stranger");
        assert!(!seen("10.0.0.2", false, false), "until it links again");
    }
}
