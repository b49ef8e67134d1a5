//! What the controller keeps between reconciles, in memory only: one event task per sentinel
//! pod, and which auth-pass it set on which pod (sentinel never reveals it).
//!
//! Losing this (an operator restart) costs one `SENTINEL SET auth-pass` per monitor and pod, and
//! new subscriptions: nothing is decided from it that the next observation cannot correct.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvrocks_api::labels::{Component, SENTINEL_PORT};
use kvrocks_client::{
    EventOptions, InstanceKind, NodeAddr, Password, SentinelClient, SentinelEvent,
    SentinelEventKind,
};
use kvrocks_operator_core::{Context, WakeTarget};
use tokio::task::JoinHandle;

use crate::model::MonitorName;

/// The sentinel events the controller listens to.
pub const EVENT_CHANNELS: [&str; 4] = ["+switch-master", "+odown", "-odown", "+sdown"];

/// An event task that cannot subscribe for this long ends; the next reconcile starts a new one
/// if the pod still exists, so a task never outlives its pod by much.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// A sentinel group: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Namespace.
    pub namespace: String,
    /// Name of the KvrocksSentinel.
    pub name: String,
}

/// A sentinel pod incarnation: a pod that gets a new IP, or a group whose password in effect
/// changed, gets a new subscription.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// Pod UID.
    pub uid: String,
    /// Pod IP.
    pub ip: String,
    /// Fingerprint of the password the subscription authenticates with.
    pub password: u64,
}

/// One sentinel pod to subscribe to.
#[derive(Clone, Debug)]
pub struct WatchedPod {
    /// Pod name (for logs).
    pub name: String,
    /// Which incarnation.
    pub key: PodKey,
    /// The group's password in effect.
    pub password: Password,
}

/// Auth-pass fingerprints set on a group's pods, by (pod UID, monitor name).
type AuthRecords = HashMap<(String, String), u64>;

/// The controller's memory, shared by every reconcile.
#[derive(Debug, Default)]
pub struct Shared {
    watchers: Mutex<HashMap<GroupKey, HashMap<PodKey, JoinHandle<()>>>>,
    auth: Mutex<HashMap<GroupKey, AuthRecords>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Starts an event task for every pod in `pods` that has none (or whose task ended) and
    /// stops those of the group's pods that are gone.
    pub fn sync_watchers(&self, ctx: &Arc<Context>, group: &GroupKey, pods: &[WatchedPod]) {
        let wanted: BTreeSet<&PodKey> = pods.iter().map(|p| &p.key).collect();
        let mut all = lock(&self.watchers);
        let tasks = all.entry(group.clone()).or_default();
        tasks.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for pod in pods {
            if !tasks.contains_key(&pod.key) {
                tracing::debug!(namespace = %group.namespace, sentinel = %group.name, pod = %pod.name, ip = %pod.key.ip, "subscribing to sentinel events");
                let task = tokio::spawn(watch(ctx.clone(), group.clone(), pod.clone()));
                tasks.insert(pod.key.clone(), task);
            }
        }
    }

    /// Stops every event task of the group and forgets what was recorded about it (it is
    /// being deleted).
    pub fn forget_group(&self, group: &GroupKey) {
        if let Some(tasks) = lock(&self.watchers).remove(group) {
            for task in tasks.into_values() {
                task.abort();
            }
        }
        lock(&self.auth).remove(group);
    }

    /// How many event tasks run for the group.
    pub fn watcher_count(&self, group: &GroupKey) -> usize {
        lock(&self.watchers).get(group).map_or(0, HashMap::len)
    }

    /// The fingerprint of the auth-pass set on pod `uid` for `monitor`, if this process set one.
    pub fn auth_applied(&self, group: &GroupKey, uid: &str, monitor: &str) -> Option<u64> {
        lock(&self.auth)
            .get(group)?
            .get(&(uid.to_owned(), monitor.to_owned()))
            .copied()
    }

    /// Records that pod `uid` got the auth-pass with this fingerprint for `monitor`.
    pub fn record_auth(&self, group: &GroupKey, uid: &str, monitor: &str, fingerprint: u64) {
        lock(&self.auth)
            .entry(group.clone())
            .or_default()
            .insert((uid.to_owned(), monitor.to_owned()), fingerprint);
    }

    /// Forgets the auth-pass of `monitor` on pod `uid` (the monitor was removed or re-added).
    pub fn forget_auth(&self, group: &GroupKey, uid: &str, monitor: &str) {
        if let Some(records) = lock(&self.auth).get_mut(group) {
            records.remove(&(uid.to_owned(), monitor.to_owned()));
        }
    }

    /// Forgets the records of the group's pods that are not in `live` (pods that are gone).
    pub fn retain_pods(&self, group: &GroupKey, live: &BTreeSet<&str>) {
        if let Some(records) = lock(&self.auth).get_mut(group) {
            records.retain(|(uid, _), _| live.contains(uid.as_str()));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for tasks in lock(&self.watchers).values() {
            for task in tasks.values() {
                task.abort();
            }
        }
    }
}

/// Whom an event wakes: the owner of the monitor it is about (when the monitor is ours and
/// the event is about its master or one of its replicas), and the group itself when a
/// master moved or was declared down (its status lists the masters).
pub fn wake_targets(namespace: &str, group: &str, event: &SentinelEvent) -> Vec<WakeTarget> {
    let mut targets = Vec::new();
    let about_data = matches!(event.instance, InstanceKind::Master | InstanceKind::Replica);
    if let Some(name) = MonitorName::parse(&event.master_name)
        && about_data
    {
        targets.push(WakeTarget {
            component: name.owner.kind.component(),
            namespace: namespace.to_owned(),
            name: name.owner.name,
        });
        if matches!(
            event.kind,
            SentinelEventKind::SwitchMaster
                | SentinelEventKind::Odown
                | SentinelEventKind::OdownCleared
        ) {
            targets.push(WakeTarget {
                component: Component::Sentinel,
                namespace: namespace.to_owned(),
                name: group.to_owned(),
            });
        }
    }
    targets
}

/// The event task of one sentinel pod: forwards its events as wake-ups until aborted, or until
/// it could not subscribe for [`GIVE_UP_AFTER`].
async fn watch(ctx: Arc<Context>, group: GroupKey, pod: WatchedPod) {
    let port = u16::try_from(SENTINEL_PORT).unwrap_or(26379);
    let client = SentinelClient::new(
        kvrocks_client::Endpoint::new(NodeAddr::new(pod.key.ip.clone(), port))
            .with_password(pod.password.clone()),
    );
    let mut events = client.events(EventOptions::default().with_channels(EVENT_CHANNELS));
    let mut link = events.link();
    let mut down_since = Some(Instant::now());
    let mut subscriptions = 0;
    let mut check = tokio::time::interval(Duration::from_secs(10));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                ctx.metrics.sentinel_event(event.kind.channel());
                let targets = wake_targets(&group.namespace, &group.name, &event);
                if matches!(event.kind, SentinelEventKind::SwitchMaster | SentinelEventKind::Odown) {
                    tracing::info!(namespace = %group.namespace, sentinel = %group.name, pod = %pod.name,
                        event = event.kind.channel(), master = %event.master_name, addr = %event.addr,
                        old = ?event.old_addr, "sentinel event");
                } else {
                    tracing::debug!(namespace = %group.namespace, sentinel = %group.name, pod = %pod.name,
                        event = event.kind.channel(), master = %event.master_name, addr = %event.addr, "sentinel event");
                }
                for target in targets {
                    ctx.wake.wake(target);
                }
            }
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = link.borrow_and_update().clone();
                if state.connected {
                    down_since = None;
                    // Events published while disconnected are lost: have the group look again.
                    if subscriptions > 0 && state.subscriptions > subscriptions {
                        ctx.wake.wake(WakeTarget {
                            component: Component::Sentinel,
                            namespace: group.namespace.clone(),
                            name: group.name.clone(),
                        });
                    }
                    subscriptions = state.subscriptions;
                } else if down_since.is_none() {
                    down_since = Some(Instant::now());
                }
            }
            _ = check.tick() => {
                if down_since.is_some_and(|since| since.elapsed() > GIVE_UP_AFTER) {
                    tracing::debug!(namespace = %group.namespace, sentinel = %group.name, pod = %pod.name, "no sentinel to subscribe to; event task ends");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn event(channel: &str, payload: &str) -> SentinelEvent {
        SentinelEvent::parse(channel, payload).unwrap()
    }

    #[test]
    fn events_wake_the_owner_of_our_monitors_only() {
        let e = event("+switch-master", "standard_db 10.0.0.1 6379 10.0.0.2 6379");
        let targets = wake_targets("ns", "g", &e);
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].component, Component::Standard);
        assert_eq!(targets[0].name, "db");
        assert_eq!(targets[1].component, Component::Sentinel);
        assert_eq!(targets[1].name, "g");

        let e = event(
            "+sdown",
            "slave 10.0.0.3:6379 10.0.0.3 6379 @ cluster_c_2 10.0.0.1 6379",
        );
        let targets = wake_targets("ns", "g", &e);
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].component, Component::Cluster);
        assert_eq!(targets[0].name, "c");

        let e = event("+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2");
        assert!(wake_targets("ns", "g", &e).is_empty(), "not ours");
        let e = event(
            "+sdown",
            "sentinel abc 10.1.0.1 26379 @ standard_db 10.0.0.1 6379",
        );
        assert!(
            wake_targets("ns", "g", &e).is_empty(),
            "a sentinel peer going down is no news for the Standard"
        );
    }

    #[test]
    fn auth_records_are_per_group_pod_and_monitor() {
        let shared = Shared::default();
        let g = GroupKey {
            namespace: "ns".into(),
            name: "g".into(),
        };
        let other = GroupKey {
            namespace: "ns".into(),
            name: "h".into(),
        };
        shared.record_auth(&g, "u1", "standard_a", 7);
        assert_eq!(shared.auth_applied(&g, "u1", "standard_a"), Some(7));
        assert_eq!(shared.auth_applied(&g, "u2", "standard_a"), None);
        assert_eq!(shared.auth_applied(&other, "u1", "standard_a"), None);
        shared.forget_auth(&g, "u1", "standard_a");
        assert_eq!(shared.auth_applied(&g, "u1", "standard_a"), None);
        shared.record_auth(&g, "u1", "standard_a", 7);
        shared.record_auth(&g, "u2", "standard_a", 7);
        shared.retain_pods(&g, &["u2"].into());
        assert_eq!(shared.auth_applied(&g, "u1", "standard_a"), None);
        assert_eq!(shared.auth_applied(&g, "u2", "standard_a"), Some(7));
        shared.forget_group(&g);
        assert_eq!(shared.auth_applied(&g, "u2", "standard_a"), None);
        assert_eq!(shared.watcher_count(&g), 0);
    }
}
