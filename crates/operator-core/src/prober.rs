//! Probing data pods by time, outside the reconcile.
//!
//! One task per custom resource sends `PING` to each of its data pods every [`PROBE_EVERY`]
//! (each probe bounded by [`PROBE_TIMEOUT`]) and keeps, per pod, whether it answers and, for
//! one that does not, since when (its last answer). When a pod's verdict flips, the task wakes the resource's reconcile through the
//! [`WakeBus`], so a master that stops answering is seen within one probe, and a failover delay
//! is measured in seconds rather than in reconcile passes (which also run on status writes and
//! watch events).
//!
//! [`Probers`] holds the tasks of one controller; the controller keeps it in its own state and
//! calls [`Probers::sync`] with the pods it sees on every pass and [`Probers::forget`] when the
//! resource goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kvrocks_client::{NodeClient, Password};
use tokio::task::JoinHandle;

use crate::node;
use crate::wake::{WakeBus, WakeTarget};

/// How often each pod is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long one probe (connect, AUTH, PING) may take before it counts as failed. A round of
/// probes waits for its slowest, so the next round starts late while a pod does not answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a pod must have gone without an answer before it counts as unreachable: one slow
/// reply on a loaded machine is not an outage (a failover counts from the last answer anyway).
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(1);

/// One pod to probe.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Pod name.
    pub pod: String,
    /// Pod IP.
    pub ip: String,
}

/// What the probes say about one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The last probe was answered.
    pub reachable: bool,
    /// For a reachable pod, its last answer; for an unreachable one, since when it has not
    /// answered: its last answer, or, when it never answered, when the first unanswered probe
    /// was sent.
    pub since: SystemTime,
}

type Verdicts = Arc<Mutex<BTreeMap<String, Verdict>>>;

/// One probe: the pod, whether it answered, and when (the answer's arrival, or the send of a
/// probe that got none).
type Probe = (String, bool, SystemTime);

struct Task {
    targets: Vec<Target>,
    password: String,
    verdicts: Verdicts,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The probe tasks of one controller, one per custom resource.
pub struct Probers {
    wake: WakeBus,
    tasks: Mutex<HashMap<WakeTarget, Task>>,
}

impl Probers {
    /// No task yet; verdict changes wake resources through `wake`.
    pub fn new(wake: WakeBus) -> Self {
        Self {
            wake,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Probes exactly `targets` for the resource `key` from now on (a task is started, or
    /// restarted when the targets or the password changed). Verdicts of pods that stay are kept.
    pub fn sync(&self, key: &WakeTarget, mut targets: Vec<Target>, password: &Password) {
        targets.sort();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.get(key)
            && task.targets == targets
            && task.password == password.expose()
        {
            return;
        }
        let verdicts: Verdicts = match tasks.remove(key) {
            Some(old) => {
                let mut kept = old
                    .verdicts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                kept.retain(|pod, _| targets.iter().any(|t| &t.pod == pod));
                Arc::new(Mutex::new(kept))
            }
            None => Arc::default(),
        };
        let handle = tokio::spawn(probe_loop(
            key.clone(),
            targets.clone(),
            password.clone(),
            verdicts.clone(),
            self.wake.clone(),
        ));
        tasks.insert(
            key.clone(),
            Task {
                targets,
                password: password.expose().to_owned(),
                verdicts,
                handle,
            },
        );
    }

    /// The verdicts of the resource's pods so far (empty before the first probe finished).
    pub fn verdicts(&self, key: &WakeTarget) -> BTreeMap<String, Verdict> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.get(key).map_or_else(BTreeMap::new, |t| {
            t.verdicts.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// Stops probing for the resource `key` (it is gone).
    pub fn forget(&self, key: &WakeTarget) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many resources are probed (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no resource is probed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn probe_loop(
    key: WakeTarget,
    targets: Vec<Target>,
    password: Password,
    verdicts: Verdicts,
    wake: WakeBus,
) {
    let clients: Vec<(String, NodeClient)> = targets
        .iter()
        .map(|t| {
            let endpoint = node::endpoint(&t.ip, &password);
            (t.pod.clone(), NodeClient::new(endpoint))
        })
        .collect();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = futures::future::join_all(clients.iter().map(|(pod, client)| async move {
            let sent = SystemTime::now();
            let ok = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, client.ping()).await,
                Ok(Ok(()))
            );
            if !ok {
                // A fresh connection next time: a half-open one may never answer again (and
                // would hold a QUIT for seconds, delaying the next round).
                client.abandon().await;
            }
            (pod.clone(), ok, if ok { SystemTime::now() } else { sent })
        }))
        .await;
        if record(&verdicts, &results) {
            wake.wake(key.clone());
        }
    }
}

/// Records one round of results; true when some pod's verdict changed (a pod probed for the first
/// time counts as a change only when it does not answer). A pod that stops answering counts as
/// unreachable once it has not answered for [`UNREACHABLE_AFTER`], since its last answer.
fn record(verdicts: &Verdicts, results: &[Probe]) -> bool {
    let mut verdicts = verdicts.lock().unwrap_or_else(|p| p.into_inner());
    let mut changed = false;
    for (pod, answered, at) in results {
        let previous = verdicts.get(pod).copied();
        let next = match previous {
            // Answering: since is its last answer, kept fresh for when it stops.
            _ if *answered => Verdict {
                reachable: true,
                since: *at,
            },
            // Silent for less than UNREACHABLE_AFTER since its last answer: still reachable.
            Some(v)
                if v.reachable
                    && at.duration_since(v.since).unwrap_or_default() < UNREACHABLE_AFTER =>
            {
                v
            }
            Some(v) => Verdict {
                reachable: false,
                since: v.since,
            },
            None => Verdict {
                reachable: false,
                since: *at,
            },
        };
        changed |= match previous {
            Some(v) => v.reachable != next.reachable,
            None => !next.reachable,
        };
        verdicts.insert(pod.clone(), next);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_pod_counts_from_its_last_answer() {
        let verdicts: Verdicts = Arc::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!record(&verdicts, &[("a".into(), true, at(0))]));
        assert!(!record(&verdicts, &[("a".into(), true, at(500))]));
        // One slow probe is not an outage.
        assert!(!record(&verdicts, &[("a".into(), false, at(1000))]));
        assert!(verdicts.lock().unwrap()["a"].reachable);
        // Silent for a second since its last answer: unreachable since that answer.
        assert!(record(&verdicts, &[("a".into(), false, at(2000))]));
        assert!(!record(&verdicts, &[("a".into(), false, at(3000))]));
        let v = verdicts.lock().unwrap()["a"];
        assert_eq!((v.reachable, v.since), (false, at(500)));
        assert!(record(&verdicts, &[("a".into(), true, at(3500))]));
    }

    #[test]
    fn a_pod_never_answering_counts_from_its_first_probe_and_wakes() {
        let verdicts: Verdicts = Arc::default();
        let t0 = SystemTime::UNIX_EPOCH;
        assert!(record(
            &verdicts,
            &[("a".into(), true, t0), ("b".into(), false, t0)]
        ));
        assert!(!record(&verdicts, &[("b".into(), false, t0 + PROBE_EVERY)]));
        assert_eq!(verdicts.lock().unwrap()["b"].since, t0);
    }
}
