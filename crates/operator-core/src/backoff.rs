//! Per-object exponential backoff for failed reconciles.
//!
//! Every failure of the same object doubles its requeue delay, up to a cap; a successful
//! reconcile forgets the object. Objects are keyed by controller, kind, namespace and name, so a
//! failing object slows down only itself.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::Resource;
use rand::Rng;

/// How the delay grows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Random spread of each delay, as a fraction (0.1 = up to ±10%), so objects that failed
    /// together do not all come back at the same instant. The cap still holds.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// 2s, 4s, 8s, ... capped at 5 minutes, with ±10% jitter.
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

/// The identity of a reconciled object within one controller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackoffKey {
    /// The controller reconciling the object.
    pub controller: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object, if namespaced.
    pub namespace: Option<String>,
    /// Name of the object.
    pub name: String,
}

impl BackoffKey {
    /// The key of `obj` in `controller`.
    pub fn new<K>(controller: &str, obj: &K) -> Self
    where
        K: Resource,
        K::DynamicType: Default,
    {
        BackoffKey {
            controller: controller.to_string(),
            kind: crate::error::kind_of::<K>(),
            namespace: obj.meta().namespace.clone(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
}

/// Failure counts per object, shared by all controllers through [`crate::Context`].
#[derive(Debug, Default)]
pub struct Backoff {
    config: BackoffConfig,
    entries: Mutex<HashMap<BackoffKey, Entry>>,
}

impl Backoff {
    /// A backoff growing as `config` says.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            entries: Mutex::default(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn next_delay(&self, key: &BackoffKey) -> Duration {
        let now = Instant::now();
        let mut entries = self.lock();
        // An object that has not failed for a long while was probably deleted or fixed without a
        // successful pass in between; dropping it keeps the map from growing without bound.
        let idle_limit = self.config.max.saturating_mul(4);
        entries.retain(|_, e| now.duration_since(e.last_failure) <= idle_limit);
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_failure: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let failures = entry.failures;
        drop(entries);
        self.delay_for(failures, rand::rng().random_range(-1.0..=1.0))
    }

    /// Forgets the failures of `key`, after a successful reconcile.
    pub fn reset(&self, key: &BackoffKey) {
        self.lock().remove(key);
    }

    /// How many consecutive failures of `key` are on record.
    pub fn failures(&self, key: &BackoffKey) -> u32 {
        self.lock().get(key).map_or(0, |e| e.failures)
    }

    /// The delay after `failures` consecutive failures; `spread` in [-1, 1] scales the jitter.
    fn delay_for(&self, failures: u32, spread: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(32);
        let base = self
            .config
            .initial
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.config.max);
        let jitter = if self.config.jitter.is_finite() {
            self.config.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let spread = if spread.is_finite() {
            spread.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let factor = 1.0 + jitter * spread;
        base.mul_f64(factor).min(self.config.max)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<BackoffKey, Entry>> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // statement), so a poisoned lock is still safe to use.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::api::ObjectMeta;

    fn no_jitter() -> Backoff {
        Backoff::new(BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        })
    }

    fn key(name: &str) -> BackoffKey {
        BackoffKey {
            controller: "standard".into(),
            kind: "KvrocksStandard".into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = no_jitter();
        let k = key("a");
        let delays: Vec<u64> = (0..12).map(|_| b.next_delay(&k).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
        assert_eq!(b.failures(&k), 12);
    }

    #[test]
    fn resets_on_success_and_is_per_object() {
        let b = no_jitter();
        let (a, other) = (key("a"), key("b"));
        b.next_delay(&a);
        b.next_delay(&a);
        assert_eq!(b.next_delay(&other), Duration::from_secs(2));
        assert_eq!(b.next_delay(&a), Duration::from_secs(8));
        b.reset(&a);
        assert_eq!(b.failures(&a), 0);
        assert_eq!(b.next_delay(&a), Duration::from_secs(2));
        assert_eq!(b.failures(&other), 1);
    }

    #[test]
    fn jitter_stays_within_bounds_and_cap() {
        let b = Backoff::default();
        let close = |d: Duration, secs: f64| (d.as_secs_f64() - secs).abs() < 1e-6;
        assert!(close(b.delay_for(1, -1.0), 1.8));
        assert!(close(b.delay_for(1, 1.0), 2.2));
        assert!(close(b.delay_for(1, f64::NAN), 2.0));
        assert_eq!(b.delay_for(20, 1.0), Duration::from_secs(300));
        assert_eq!(b.delay_for(u32::MAX, 0.0), Duration::from_secs(300));
        let k = key("j");
        for _ in 0..50 {
            let d = b.next_delay(&k);
            assert!(d <= Duration::from_secs(300), "{d:?}");
        }
        b.reset(&k);
        let first = b.next_delay(&k);
        assert!((1.8..=2.2).contains(&first.as_secs_f64()), "{first:?}");
    }

    #[test]
    fn key_names_the_object() {
        let sts = StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..StatefulSet::default()
        };
        let k = BackoffKey::new("standard", &sts);
        assert_eq!(k.kind, "StatefulSet");
        assert_eq!(k.namespace.as_deref(), Some("ns"));
        assert_eq!(k.name, "db");
    }
}
