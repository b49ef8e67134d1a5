//! The pure heart of the controller: given the monitors the group should have and what every
//! sentinel pod holds, which `SENTINEL MONITOR`, `REMOVE`, `SET` and `RESET` to send where.
//!
//! Rules:
//! - A monitor missing on a pod is added (`MONITOR`, then one `SET` with auth-pass,
//!   down-after-milliseconds, failover-timeout and parallel-syncs).
//! - A monitor of ours (`standard_*`, `cluster_*_*`) whose owner no longer exists, no longer
//!   names the group, or is being deleted is removed. Monitors that are not ours are never touched.
//! - A monitor whose owner is known but cannot be set up yet (no master, no Secret) is kept.
//! - A monitor at another address than the owner's status says is **left alone when that
//!   address is the IP of a current pod of the owner**: after a failover sentinel is right and
//!   the owner's controller follows; pointing it back would undo the failover. Otherwise (the
//!   address is gone) it is removed and added again. The address used for a new monitor is the
//!   one most sentinels hold when that is a current pod of the owner, else the owner's status.
//! - A monitor in the middle of a failover on a pod is not touched on that pod.
//! - Options that drifted (quorum after a resize, the spec's timings, a new password) are set.
//! - A sentinel that still counts peers which are no longer sentinel pods (scaled away,
//!   replaced) gets `SENTINEL RESET` for that master, at most one pod per pass, so the others
//!   keep their view while it rediscovers its peers; otherwise stale peers inflate the majority
//!   a failover needs, and after a few pod replacements no failover can be authorized.

use std::collections::{BTreeMap, BTreeSet};

use kvrocks_api::labels::SENTINEL_PORT;

use crate::model::{
    Addr, DesiredMonitor, MonitorName, ObservedMonitor, ObservedPod, Owner, PendingMonitor, Reach,
    Settings,
};

/// The quorum of a group of `replicas` sentinels of which `serving` answer with a Ready pod.
///
/// `replicas/2 + 1` ([`kvrocks_api::sentinel::quorum`]) of the smaller of the two sizes (but
/// of at least 3): while a scale-up is under way the quorum does not rise before the new
/// sentinels serve, so the old ones are not asked to agree unanimously meanwhile. One missing
/// sentinel never changes the quorum of an odd group (`(n-1)/2 + 1 == n/2 + 1` for odd `n`).
pub fn effective_quorum(replicas: i32, serving: usize) -> u32 {
    let serving = i32::try_from(serving).unwrap_or(i32::MAX).max(3);
    let size = replicas.min(serving).max(1);
    u32::try_from(kvrocks_api::sentinel::quorum(size)).unwrap_or(2)
}

/// Why a monitor is removed from a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoveWhy {
    /// No owner exists, references the group and is not being deleted.
    NoOwner,
    /// It points at `from`, which is no pod of its owner: it is added again at the right address.
    Repoint {
        /// The address it held.
        from: Addr,
    },
}

/// Options to set on a monitor; `None` / `false` leaves an option as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `quorum`.
    pub quorum: Option<u32>,
    /// `down-after-milliseconds`.
    pub down_after_ms: Option<u64>,
    /// `failover-timeout`.
    pub failover_timeout_ms: Option<u64>,
    /// `parallel-syncs`.
    pub parallel_syncs: Option<u32>,
    /// Set `auth-pass` to the owner's current password.
    pub auth_pass: bool,
}

impl Changes {
    /// Whether nothing is to be set.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// Every option of a freshly added monitor (its quorum came with `MONITOR`).
    fn all(settings: &Settings) -> Self {
        Self {
            quorum: None,
            down_after_ms: Some(settings.down_after_ms),
            failover_timeout_ms: Some(settings.failover_timeout_ms),
            parallel_syncs: Some(settings.parallel_syncs),
            auth_pass: true,
        }
    }

    /// What differs between `observed` and `settings`.
    ///
    /// `auth` is `(wanted, applied)` password fingerprints for a desired monitor. A pending
    /// monitor (`None`: its owner's password or master is not known) only follows the group's
    /// quorum; everything else about it waits until it can be set up properly.
    fn drift(
        observed: &ObservedMonitor,
        settings: &Settings,
        auth: Option<(u64, Option<u64>)>,
    ) -> Self {
        fn differs<T: PartialEq + Copy>(have: Option<T>, want: T) -> Option<T> {
            (have != Some(want)).then_some(want)
        }
        let quorum = differs(observed.quorum, settings.quorum);
        let Some((wanted, applied)) = auth else {
            return Self {
                quorum,
                ..Self::default()
            };
        };
        Self {
            quorum,
            down_after_ms: differs(observed.down_after_ms, settings.down_after_ms),
            failover_timeout_ms: differs(
                observed.failover_timeout_ms,
                settings.failover_timeout_ms,
            ),
            parallel_syncs: differs(observed.parallel_syncs, settings.parallel_syncs),
            auth_pass: applied != Some(wanted),
        }
    }
}

/// One command to one sentinel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `SENTINEL REMOVE <name>`.
    Remove {
        /// Monitor name.
        name: String,
        /// Why.
        why: RemoveWhy,
    },
    /// `SENTINEL MONITOR <name> <ip> <port> <quorum>`.
    Monitor {
        /// Monitor name.
        name: String,
        /// Master address.
        master: Addr,
        /// Quorum.
        quorum: u32,
    },
    /// `SENTINEL SET <name> ...`.
    Set {
        /// Monitor name.
        name: String,
        /// What to set.
        changes: Changes,
    },
    /// `SENTINEL RESET <name>`: forget the peers (and replicas) and rediscover them.
    Reset {
        /// Monitor name.
        name: String,
        /// The peers it knows that are no sentinel pod of the group.
        stale: Vec<Addr>,
    },
}

impl Step {
    /// The monitor the step is about.
    pub fn name(&self) -> &str {
        match self {
            Step::Remove { name, .. }
            | Step::Monitor { name, .. }
            | Step::Set { name, .. }
            | Step::Reset { name, .. } => name,
        }
    }
}

/// The steps for one pod, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPlan {
    /// Pod name.
    pub pod: String,
    /// Commands, run in order; a failure skips the rest for this pod.
    pub steps: Vec<Step>,
}

/// Everything one pass does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per pod, only pods with something to do.
    pub pods: Vec<PodPlan>,
    /// Decisions a person may want to know about (a monitor left at a failed-over address).
    pub notes: Vec<String>,
    /// Every sentinel that counts peers which are no sentinel pod of the group, by pod and
    /// monitor (at most one of them is reset per pass).
    pub stale: Vec<StalePeers>,
}

/// A sentinel that counts gone peers for a monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalePeers {
    /// Pod name.
    pub pod: String,
    /// Monitor name.
    pub monitor: String,
    /// The peers that are no sentinel pod of the group.
    pub peers: Vec<Addr>,
}

impl Plan {
    /// Whether nothing is to be sent.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The steps planned for `pod`.
    pub fn steps_for(&self, pod: &str) -> &[Step] {
        self.pods
            .iter()
            .find(|p| p.pod == pod)
            .map(|p| p.steps.as_slice())
            .unwrap_or_default()
    }
}

/// What the planner looks at.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The monitors the group should have.
    pub desired: &'a [DesiredMonitor],
    /// Monitors to keep as they are (owner known, not ready to set up).
    pub pending: &'a [PendingMonitor],
    /// Options of every monitor.
    pub settings: Settings,
    /// Every sentinel pod.
    pub pods: &'a [ObservedPod],
    /// IPs of the current pods of owners (see [`owners_to_check`]); an owner that is absent
    /// was not listed, and a monitor of it at another address is left alone.
    pub owner_ips: &'a BTreeMap<Owner, BTreeSet<String>>,
}

/// The owners whose pods must be listed before planning: those for which some sentinel holds
/// a monitor at another address than the owner's status says.
pub fn owners_to_check(desired: &[DesiredMonitor], pods: &[ObservedPod]) -> BTreeSet<Owner> {
    desired
        .iter()
        .filter(|d| {
            let name = d.name.render();
            pods.iter()
                .filter_map(ObservedPod::monitors)
                .filter_map(|m| m.get(&name))
                .any(|o| o.master != d.master)
        })
        .map(|d| d.name.owner.clone())
        .collect()
}

/// Whether the planner sends commands to this pod at all.
fn plannable(pod: &ObservedPod) -> Option<&BTreeMap<String, ObservedMonitor>> {
    if pod.terminating || pod.ip.is_none() {
        return None;
    }
    pod.monitors()
}

/// The plan for one pass (see the module documentation for the rules).
pub fn plan(input: PlanInput<'_>) -> Plan {
    let PlanInput {
        desired,
        pending,
        settings,
        pods,
        owner_ips,
    } = input;
    let desired_names: BTreeSet<String> = desired.iter().map(|d| d.name.render()).collect();
    let pending_names: BTreeSet<String> = pending.iter().map(|p| p.name.render()).collect();
    let targets: BTreeMap<String, Addr> = desired
        .iter()
        .map(|d| (d.name.render(), target_address(d, pods, owner_ips)))
        .collect();
    let mut out = Plan::default();
    let mut notes = BTreeSet::new();

    for pod in pods {
        let Some(monitors) = plannable(pod) else {
            continue;
        };
        let mut steps = Vec::new();
        for name in monitors.keys() {
            if MonitorName::parse(name).is_some()
                && !desired_names.contains(name)
                && !pending_names.contains(name)
            {
                steps.push(Step::Remove {
                    name: name.clone(),
                    why: RemoveWhy::NoOwner,
                });
            }
        }
        for d in desired {
            let name = d.name.render();
            let target = targets.get(&name).unwrap_or(&d.master);
            let auth = Some((d.auth_fingerprint, pod.auth_applied.get(&name).copied()));
            let add = |steps: &mut Vec<Step>| {
                steps.push(Step::Monitor {
                    name: name.clone(),
                    master: target.clone(),
                    quorum: settings.quorum,
                });
                steps.push(Step::Set {
                    name: name.clone(),
                    changes: Changes::all(&settings),
                });
            };
            let Some(observed) = monitors.get(&name) else {
                add(&mut steps);
                continue;
            };
            if observed.failover_in_progress {
                notes.insert(format!(
                    "{name} is failing over on {}; left alone there until it ends",
                    pod.name
                ));
                continue;
            }
            if observed.master != d.master {
                match owner_ips.get(&d.name.owner) {
                    None => {
                        notes.insert(format!(
                            "{name} on {} points at {} while {} says {}; not changed because the \
                             pods of {} were not listed",
                            pod.name, observed.master, d.name.owner, d.master, d.name.owner
                        ));
                    }
                    Some(ips) if ips.contains(&observed.master.ip) => {
                        notes.insert(format!(
                            "{name}: sentinel holds {} (a pod of {}) where its status says {}; \
                             sentinel failed over, the owner's controller follows",
                            observed.master, d.name.owner, d.master
                        ));
                    }
                    Some(_) => {
                        steps.push(Step::Remove {
                            name: name.clone(),
                            why: RemoveWhy::Repoint {
                                from: observed.master.clone(),
                            },
                        });
                        add(&mut steps);
                        continue;
                    }
                }
            }
            let changes = Changes::drift(observed, &settings, auth);
            if !changes.is_empty() {
                steps.push(Step::Set { name, changes });
            }
        }
        for p in pending {
            let name = p.name.render();
            if let Some(observed) = monitors.get(&name)
                && !observed.failover_in_progress
            {
                let changes = Changes::drift(observed, &settings, None);
                if !changes.is_empty() {
                    steps.push(Step::Set { name, changes });
                }
            }
        }
        if !steps.is_empty() {
            out.pods.push(PodPlan {
                pod: pod.name.clone(),
                steps,
            });
        }
    }

    let (stale, candidate) = stale_and_reset(desired, pods, &out);
    out.stale = stale;
    if let Some(StalePeers {
        pod,
        monitor,
        peers,
    }) = candidate
    {
        let reset = Step::Reset {
            name: monitor,
            stale: peers,
        };
        match out.pods.iter_mut().find(|p| p.pod == pod) {
            Some(p) => p.steps.push(reset),
            None => out.pods.push(PodPlan {
                pod,
                steps: vec![reset],
            }),
        }
    }
    out.notes = notes.into_iter().collect();
    out
}

/// Where a new (or re-added) monitor should point: the address most sentinels hold when it is
/// a current pod of the owner (sentinel's view wins after a failover), else the owner's status.
fn target_address(
    d: &DesiredMonitor,
    pods: &[ObservedPod],
    owner_ips: &BTreeMap<Owner, BTreeSet<String>>,
) -> Addr {
    let Some(ips) = owner_ips.get(&d.name.owner) else {
        return d.master.clone();
    };
    let name = d.name.render();
    let mut votes: BTreeMap<&Addr, usize> = BTreeMap::new();
    for observed in pods
        .iter()
        .filter(|p| !p.terminating)
        .filter_map(ObservedPod::monitors)
        .filter_map(|m| m.get(&name))
    {
        *votes.entry(&observed.master).or_default() += 1;
    }
    let mut ranked: Vec<(&Addr, usize)> = votes.into_iter().collect();
    // Most votes first; among equals the lower address, so the choice is deterministic.
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .map(|(addr, _)| addr)
        .find(|addr| ips.contains(&addr.ip))
        .cloned()
        .unwrap_or_else(|| d.master.clone())
}

/// The peers of `observed` that are no sentinel pod of the group.
fn stale_peers(observed: &ObservedMonitor, sentinel_ips: &BTreeSet<&str>) -> Vec<Addr> {
    let port = u16::try_from(SENTINEL_PORT).unwrap_or(26379);
    observed
        .peers
        .iter()
        .flatten()
        .filter(|p| p.port != port || !sentinel_ips.contains(p.ip.as_str()))
        .cloned()
        .collect()
}

/// Every (pod, monitor) counting stale peers, and the one that gets `SENTINEL RESET` in this
/// pass, if any: a desired monitor that is left as it is on its pod and not failing over.
///
/// A reset sentinel forgets its peers for a few seconds (until their next hello), so resets are
/// spaced: none while monitors are being added or removed, and none while any other sentinel
/// has not (re)discovered all the others for that monitor, which is what a sentinel reset in an
/// earlier pass looks like until it has recovered.
fn stale_and_reset(
    desired: &[DesiredMonitor],
    pods: &[ObservedPod],
    planned: &Plan,
) -> (Vec<StalePeers>, Option<StalePeers>) {
    let reshaping = planned
        .pods
        .iter()
        .flat_map(|p| &p.steps)
        .any(|s| matches!(s, Step::Monitor { .. } | Step::Remove { .. }));
    let sentinel_ips: BTreeSet<&str> = pods.iter().filter_map(|p| p.ip.as_deref()).collect();
    let serving: Vec<(&ObservedPod, &BTreeMap<String, ObservedMonitor>)> = pods
        .iter()
        .filter_map(|p| Some((p, plannable(p)?)))
        .collect();
    let others = u32::try_from(serving.len().saturating_sub(1)).unwrap_or(u32::MAX);
    let mut all = Vec::new();
    let mut candidate = None;
    for &(pod, monitors) in &serving {
        let touched: BTreeSet<&str> = planned
            .steps_for(&pod.name)
            .iter()
            .map(Step::name)
            .collect();
        for d in desired {
            let name = d.name.render();
            let Some(observed) = monitors.get(&name) else {
                continue;
            };
            if observed.failover_in_progress || touched.contains(name.as_str()) {
                continue;
            }
            let stale = stale_peers(observed, &sentinel_ips);
            if stale.is_empty() {
                continue;
            }
            let settled = serving
                .iter()
                .filter(|(q, _)| q.name != pod.name)
                .all(|(_, m)| {
                    m.get(&name)
                        .and_then(|m| m.known_sentinels)
                        .is_some_and(|known| known >= others)
                });
            if candidate.is_none() && settled && !reshaping {
                candidate = Some(StalePeers {
                    pod: pod.name.clone(),
                    monitor: name.clone(),
                    peers: stale.clone(),
                });
            }
            all.push(StalePeers {
                pod: pod.name.clone(),
                monitor: name,
                peers: stale,
            });
        }
    }
    (all, candidate)
}

/// `monitors` after `steps` ran (the model of what the sentinel then holds), and the
/// auth-pass fingerprints it then has.
pub fn simulate(
    monitors: &BTreeMap<String, ObservedMonitor>,
    auth_applied: &BTreeMap<String, u64>,
    steps: &[Step],
    desired: &[DesiredMonitor],
) -> (BTreeMap<String, ObservedMonitor>, BTreeMap<String, u64>) {
    let mut monitors = monitors.clone();
    let mut auth = auth_applied.clone();
    for step in steps {
        match step {
            Step::Remove { name, .. } => {
                monitors.remove(name);
                auth.remove(name);
            }
            Step::Monitor {
                name,
                master,
                quorum,
            } => {
                monitors.insert(
                    name.clone(),
                    ObservedMonitor::fresh(master.clone(), *quorum),
                );
                auth.remove(name);
            }
            Step::Set { name, changes } => {
                if let Some(m) = monitors.get_mut(name) {
                    m.quorum = changes.quorum.or(m.quorum);
                    m.down_after_ms = changes.down_after_ms.or(m.down_after_ms);
                    m.failover_timeout_ms = changes.failover_timeout_ms.or(m.failover_timeout_ms);
                    m.parallel_syncs = changes.parallel_syncs.or(m.parallel_syncs);
                }
                if changes.auth_pass
                    && let Some(d) = desired.iter().find(|d| d.name.render() == *name)
                {
                    auth.insert(name.clone(), d.auth_fingerprint);
                }
            }
            Step::Reset { name, .. } => {
                if let Some(m) = monitors.get_mut(name) {
                    m.peers = None;
                    m.known_sentinels = Some(0);
                }
            }
        }
    }
    (monitors, auth)
}

/// The pod as it is after the first `done` of its planned steps ran.
pub fn pod_after(
    pod: &ObservedPod,
    plan: &Plan,
    done: usize,
    desired: &[DesiredMonitor],
) -> ObservedPod {
    let steps = plan.steps_for(&pod.name);
    let steps = &steps[..done.min(steps.len())];
    let mut after = pod.clone();
    if let Reach::Monitors(monitors) = &pod.reach {
        let (monitors, auth) = simulate(monitors, &pod.auth_applied, steps, desired);
        after.reach = Reach::Monitors(monitors);
        after.auth_applied = auth;
    }
    after
}

/// Why `pod` does not count as ready: not Ready, not answering, or missing a desired monitor
/// (or its quorum); `None` when it counts.
pub fn not_ready_reason(
    pod: &ObservedPod,
    desired: &[DesiredMonitor],
    quorum: u32,
) -> Option<String> {
    if pod.terminating {
        return Some("being deleted".to_owned());
    }
    if !pod.pod_ready {
        return Some("pod not Ready".to_owned());
    }
    let monitors = match &pod.reach {
        Reach::Monitors(m) => m,
        Reach::NotAsked => return Some("not asked (no IP)".to_owned()),
        Reach::Unreachable(e) => return Some(format!("sentinel does not answer: {e}")),
    };
    let missing: Vec<String> = desired
        .iter()
        .map(|d| d.name.render())
        .filter(|name| monitors.get(name).is_none_or(|m| m.quorum != Some(quorum)))
        .collect();
    (!missing.is_empty()).then(|| format!("lacks monitor {}", missing.join(", ")))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
