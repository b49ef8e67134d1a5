//! The pure heart of the KvrocksStandard controller: from what was observed (pods, what each
//! kvrocks process says about its replication, what sentinel says about the master, which
//! password and kvrocks.conf are in effect) to the next actions. No I/O here; every rule is
//! unit-tested (`plan_tests.rs`) and the safety rules are property-tested (`plan_props.rs`).

use std::time::{Duration, Instant};

use kvrocks_api::labels::Role;

pub use crate::model::{Action, NodeView, Observed, PasswordState, Plan, PodView, Wait};

/// How far a replica may trail the master and still count as caught up, in kvrocks' units:
/// replication offsets are RocksDB sequence numbers, about one per key written, so this is a
/// number of writes (not bytes).
pub const CAUGHT_UP_SEQUENCES: i64 = 1000;

/// How long sentinel's choice may report itself a replica of another pod before the operator
/// makes sentinel's choice true.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// The one reachable pod (other than `except`) that reports itself master, when there is
/// exactly one: while sentinel fails over a lost master, the replica it promoted says so seconds
/// before sentinel's own view switches (kvrocks takes a moment to confirm the promotion).
fn promoted_by_sentinel<'a>(pods: &'a [PodView], except: Option<&str>) -> Option<&'a PodView> {
    let mut masters = pods
        .iter()
        .filter(|p| Some(p.name.as_str()) != except && reachable(p).is_some_and(|(n, _)| n.master));
    let first = masters.next()?;
    masters.next().is_none().then_some(first)
}

/// A replica of itself: what every pod is right after it starts.
pub fn restarted(node: &NodeView) -> bool {
    !node.master
        && matches!(
            node.master_host.as_deref(),
            None | Some("127.0.0.1" | "localhost")
        )
}

/// The pod's answer and IP, when it is not being deleted and answered.
pub fn reachable(pod: &PodView) -> Option<(&NodeView, &str)> {
    if pod.deleting {
        return None;
    }
    Some((pod.node.as_ref()?, pod.ip.as_deref()?))
}

/// Whether sentinel's choice answers as a replica of another pod right now (not as a pod that
/// just started): a sentinel with an older view may have turned it back. The caller keeps the
/// time this began ([`Observed::sentinel_stuck_since`]).
pub fn sentinel_choice_stuck(observed: &Observed) -> bool {
    observed.sentinel_master.as_deref().is_some_and(|ip| {
        observed.pods.iter().any(|p| {
            p.ip.as_deref() == Some(ip)
                && p.node.as_ref().is_some_and(|n| !n.master && !restarted(n))
        })
    })
}

/// While sentinel may be choosing a new master (the master does not answer, or sentinel
/// reports it down, or a failover is under way), only the most advanced replica may be chosen:
/// every reachable replica behind another one gets `slave-priority 0`. With the master gone the
/// replicas' offsets no longer move, so the comparison is exact; sentinel's own comparison
/// reads replica offsets that may be seconds old. It lowers priorities; it raises one only when
/// every most advanced replica is at 0 (lowered on an earlier pass, when another one read ahead
/// of it while the last writes were still arriving), since a group with no promotable replica
/// never fails over. Other raises are for a settled master ([`converge`]).
///
/// Candidates are the replicas sentinel knows as such: not the pod at sentinel's master address,
/// and not a pod that just started (a replica of itself, which sentinel cannot choose).
fn exclude_laggards(observed: &Observed, plan: &mut Plan) -> Vec<String> {
    let replicas: Vec<(&PodView, &NodeView)> = observed
        .pods
        .iter()
        .filter_map(|p| reachable(p).map(|(n, ip)| (p, n, ip)))
        .filter(|(_, n, ip)| {
            !n.master && !restarted(n) && observed.sentinel_master.as_deref() != Some(*ip)
        })
        .map(|(p, n, _)| (p, n))
        .collect();
    let Some(best) = replicas.iter().map(|(_, n)| n.offset).max() else {
        return Vec::new();
    };
    let bests: Vec<&(&PodView, &NodeView)> =
        replicas.iter().filter(|(_, n)| n.offset == best).collect();
    if bests
        .iter()
        .all(|(_, n)| n.priority.as_deref() == Some("0"))
    {
        // Staying pods first: promoting one that is about to leave means a switchover later.
        let staying = bests.iter().any(|(p, _)| p.ordinal < observed.desired);
        for (pod, _) in bests
            .iter()
            .filter(|(p, _)| !staying || p.ordinal < observed.desired)
        {
            plan.actions.push(Action::SetPriority {
                pod: pod.name.clone(),
                value: observed.priority.clone(),
            });
        }
    }
    let mut laggards = Vec::new();
    for (pod, node) in replicas.into_iter().filter(|(_, n)| n.offset < best) {
        if node.priority.as_deref() != Some("0") {
            plan.actions.push(Action::SetPriority {
                pod: pod.name.clone(),
                value: "0".to_owned(),
            });
        }
        laggards.push(pod.name.clone());
    }
    laggards
}

/// Chooses the master and the actions that make every other pod follow it; `now` is the time
/// of the observation (for how long sentinel's choice has been stuck).
pub fn plan(observed: &Observed, now: Instant) -> Plan {
    let mut plan = Plan {
        statefulset_replicas: observed.desired,
        ..Default::default()
    };
    let master = choose_master(observed, now, &mut plan);
    let Some(master) = master else {
        exclude_laggards(observed, &mut plan);
        plan.statefulset_replicas = observed
            .statefulset_replicas
            .unwrap_or(observed.desired)
            .max(observed.desired);
        return with_upkeep(observed, lift_fences(observed, plan));
    };
    // Sentinel thinks the master is down while this operator still reaches it: sentinel may be
    // choosing a replica right now, so only the most advanced may be chosen.
    let excluded = if observed.sentinel_master_down {
        exclude_laggards(observed, &mut plan)
    } else {
        Vec::new()
    };
    plan.master = Some(master.name.clone());
    converge(observed, master, &excluded, &mut plan);
    scale(observed, master, &mut plan);
    evacuate(observed, master, &mut plan);
    roll(observed, master, &mut plan);
    with_upkeep(observed, lift_fences(observed, plan))
}

/// A pod a switchover left fenced (the operator stopped half-way, or sentinel gave the failover
/// up) takes no command but [`Action::Unfence`]: once a master is known it follows it and its
/// fence is lifted. It is lifted as the master itself only when every sentinel names it and none
/// is failing over (the failover was given up: a replica sentinel promoted meanwhile was never
/// announced to clients, and follows it again, see [`converge`]); otherwise it stays fenced.
fn lift_fences(observed: &Observed, mut plan: Plan) -> Plan {
    for pod in observed.pods.iter().filter(|p| p.fenced && !p.deleting) {
        plan.actions.retain(|a| match a {
            Action::Follow { pod: p, .. } | Action::SetPriority { pod: p, .. } => *p != pod.name,
            _ => true,
        });
        let Some(master) = plan.master.as_deref() else {
            continue;
        };
        let follow = if master == pod.name {
            let named = pod.ip.is_some() && observed.sentinel_master == pod.ip;
            if observed.sentinel_failing_over || !observed.sentinels_agree || !named {
                continue;
            }
            None
        } else {
            let ip = observed
                .pods
                .iter()
                .find(|p| p.name == master)
                .and_then(|p| p.ip.clone());
            let Some(ip) = ip else { continue };
            Some(ip)
        };
        plan.actions.push(Action::Unfence {
            pod: pod.name.clone(),
            follow,
        });
    }
    plan
}

/// Step 1: who is the master? Sentinel's choice when it holds, else the operator's.
fn choose_master<'a>(observed: &'a Observed, now: Instant, plan: &mut Plan) -> Option<&'a PodView> {
    let mut master = None;
    let quorum = observed.sentinel_group / 2 + 1;
    if observed.sentinel_group > 0 && observed.sentinels_answering < quorum {
        // Without a quorum the answering sentinels may be a minority with an old view, and a
        // master the operator picked could undo a promotion the majority made.
        plan.wait(Wait::NoSentinelQuorum {
            answering: observed.sentinels_answering,
            group: observed.sentinel_group,
        });
    } else if observed.sentinel_failing_over {
        // Sentinel is between promoting a replica and announcing it: pods report a mix of the
        // old and the new master. Acting on that mix would turn the promoted replica back (or
        // make the old master, maybe restarted empty, the source of a full sync).
        plan.wait(Wait::SentinelFailingOver);
    } else if let Some(ip) = observed.sentinel_master.as_deref() {
        master = follow_sentinel(observed, ip, now, plan);
    }
    if master.is_none() && plan.wait.is_none() {
        master = own_choice(observed, plan);
    }
    master
}

/// The master sentinel names (at `ip`), when it holds.
fn follow_sentinel<'a>(
    observed: &'a Observed,
    ip: &str,
    now: Instant,
    plan: &mut Plan,
) -> Option<&'a PodView> {
    let pods = &observed.pods;
    let Some(pod) = pods.iter().find(|p| p.ip.as_deref() == Some(ip)) else {
        // The master sentinel knows is no pod any more (its pod was recreated with a new IP).
        // While replicas still follow that address, sentinel will promote one of them;
        // otherwise nobody will, and the operator picks.
        let followers = pods.iter().any(|p| {
            reachable(p).is_some_and(|(n, _)| !n.master && n.master_host.as_deref() == Some(ip))
        });
        if let Some(promoted) = promoted_by_sentinel(pods, None) {
            // Sentinel's failover is under way and has already promoted this one.
            return Some(promoted);
        }
        if followers {
            plan.wait(Wait::MasterGone { ip: ip.to_owned() });
        }
        return None;
    };
    if pod.deleting && pod.node.as_ref().is_some_and(|n| n.master) {
        // Its pod is being deleted and its preStop hook holds the process: still the master,
        // until [`evacuate`] hands over.
        return Some(pod);
    }
    let stuck = observed
        .sentinel_stuck_since
        .is_some_and(|since| now.saturating_duration_since(since) >= STUCK_AFTER);
    let other_promoted = promoted_by_sentinel(pods, Some(&pod.name));
    match reachable(pod) {
        Some((node, _)) if node.master => Some(pod),
        // Restarted, and a failover has already promoted another pod (sentinel's view lags by
        // a moment): that one is the master, the restarted one follows.
        Some((node, _)) if restarted(node) && other_promoted.is_some() => other_promoted,
        Some((node, pod_ip)) if restarted(node) => {
            // The master's process restarted (as a replica of itself, as every pod starts)
            // faster than sentinel's down-after: sentinel would wait another down-after + 20 s
            // before acting. While replicas still follow it, ask sentinel to fail over now.
            // With nobody following it (a single pod, or every pod restarted), the general rule
            // applies: the pod with the most data becomes master, never the restarted one just
            // for being it.
            let followers = pods.iter().any(|p| {
                p.name != pod.name
                    && reachable(p)
                        .is_some_and(|(n, _)| !n.master && n.master_host.as_deref() == Some(pod_ip))
            });
            if followers {
                plan.actions.push(Action::Switchover {
                    from: pod.name.clone(),
                });
                plan.wait(Wait::MasterRestarted {
                    pod: pod.name.clone(),
                });
            }
            None
        }
        Some(_) if stuck => {
            // Sentinel's choice has reported itself a replica for STUCK_AFTER (a sentinel with
            // an older view turned it back): make sentinel's choice true.
            plan.operator_promotes = true;
            plan.overrides_stuck_sentinel = true;
            plan.actions.push(Action::Promote {
                pod: pod.name.clone(),
            });
            Some(pod)
        }
        Some(_) => {
            plan.wait(Wait::SentinelChoiceIsReplica {
                pod: pod.name.clone(),
            });
            None
        }
        None if other_promoted.is_some() => other_promoted,
        None => {
            // Gone for the operator and for a quorum of sentinels, yet no sentinel fails it
            // over (the lockout after a recent failover): ask for the failover, when a replica
            // that followed it can be promoted.
            let candidate = pods.iter().any(|p| {
                p.name != pod.name
                    && reachable(p).is_some_and(|(n, _)| {
                        !n.master && !restarted(n) && n.master_host.as_deref() == Some(ip)
                    })
            });
            if observed.sentinel_master_odown && candidate {
                plan.actions.push(Action::ForceFailover {
                    from: pod.name.clone(),
                });
            }
            plan.wait(Wait::MasterUnreachable {
                pod: pod.name.clone(),
                ip: ip.to_owned(),
            });
            None
        }
    }
}

/// No master from sentinel: the one reachable master (the recorded one among several), or, once
/// every pod answers, the pod with the most data (ties: the lowest ordinal) is promoted.
fn own_choice<'a>(observed: &'a Observed, plan: &mut Plan) -> Option<&'a PodView> {
    let pods = &observed.pods;
    let masters: Vec<&PodView> = pods
        .iter()
        .filter(|p| reachable(p).is_some_and(|(n, _)| n.master))
        .collect();
    let recorded = observed
        .status_master
        .as_deref()
        .and_then(|name| masters.iter().find(|p| p.name == name).copied());
    match (recorded, masters.as_slice()) {
        (Some(pod), _) => return Some(pod),
        (None, [only]) => return Some(*only),
        _ => {}
    }
    let expected = observed
        .statefulset_replicas
        .unwrap_or(observed.desired)
        .max(1);
    let all_reachable = pods.len() as u32 >= expected.min(observed.desired)
        && pods
            .iter()
            .filter(|p| p.ordinal < observed.desired)
            .all(|p| reachable(p).is_some());
    if !all_reachable || pods.is_empty() {
        plan.wait(Wait::Pods {
            desired: observed.desired,
        });
        return None;
    }
    // First start, or every pod restarted as a replica of itself: the most advanced data wins;
    // a brand-new set (all offsets equal) takes ordinal 0.
    let master = pods
        .iter()
        .filter(|p| p.ordinal < observed.desired.max(1))
        .filter_map(|p| reachable(p).map(|(n, _)| (p, n.offset)))
        .max_by_key(|(p, offset)| (*offset, std::cmp::Reverse(p.ordinal)))
        .map(|(p, _)| p);
    if let Some(pod) = master
        && pod.node.as_ref().is_some_and(|n| !n.master)
    {
        plan.operator_promotes = true;
        plan.actions.push(Action::Promote {
            pod: pod.name.clone(),
        });
    }
    master
}

/// Step 2: everybody else follows the master; priorities and labels follow the facts.
fn converge(observed: &Observed, master: &PodView, excluded: &[String], plan: &mut Plan) {
    let master_ip = master.ip.clone().unwrap_or_default();
    let master_offset = master.node.as_ref().map_or(0, |n| n.offset);
    for pod in &observed.pods {
        let is_master = pod.name == master.name;
        let want_label = if is_master {
            Role::Master
        } else {
            Role::Replica
        };
        if pod.role_label != Some(want_label) && !pod.deleting {
            plan.actions.push(Action::Label {
                pod: pod.name.clone(),
                role: want_label,
            });
        }
        if is_master {
            continue;
        }
        let Some((node, _)) = reachable(pod) else {
            continue;
        };
        let follows = !node.master && node.master_host.as_deref() == Some(master_ip.as_str());
        if !follows {
            plan.actions.push(Action::Follow {
                pod: pod.name.clone(),
                master_ip: master_ip.clone(),
            });
        }
        let synced = follows
            && node.link_up
            && !node.syncing
            && master_offset.saturating_sub(node.offset) <= CAUGHT_UP_SEQUENCES;
        plan.synced.insert(pod.name.clone(), synced);
        let leaving = pod.ordinal >= observed.desired;
        if excluded.contains(&pod.name) {
            continue;
        }
        let want_priority = if synced && !leaving {
            observed.priority.clone()
        } else {
            "0".to_owned()
        };
        if node.priority.as_deref() != Some(want_priority.as_str()) {
            plan.actions.push(Action::SetPriority {
                pod: pod.name.clone(),
                value: want_priority,
            });
        }
    }
}

/// Step 3: scale, never removing the master: it is moved off a leaving pod first.
fn scale(observed: &Observed, master: &PodView, plan: &mut Plan) {
    let current = observed.statefulset_replicas.unwrap_or(observed.desired);
    if master.ordinal < observed.desired {
        return;
    }
    plan.statefulset_replicas = current.max(master.ordinal + 1);
    let candidate = observed.pods.iter().any(|p| {
        p.ordinal < observed.desired && plan.synced.get(&p.name).copied().unwrap_or(false)
    });
    if candidate && observed.monitored {
        plan.actions.push(Action::Switchover {
            from: master.name.clone(),
        });
    } else if plan.wait.is_none() {
        plan.wait(Wait::Switchover {
            master: master.name.clone(),
            desired: observed.desired,
        });
    }
}

/// Step 3b: a master whose pod is being deleted (a drain, an eviction, `kubectl delete pod`)
/// hands over to a synced replica while its preStop hook holds the process (see
/// `kvrocks_operator_core::builders::kvrocks::pre_stop_script`), instead of dying as a crash.
fn evacuate(observed: &Observed, master: &PodView, plan: &mut Plan) {
    let switching = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Switchover { .. }));
    if !master.deleting || switching || !observed.monitored {
        return;
    }
    let candidate = observed
        .pods
        .iter()
        .any(|p| !p.deleting && plan.synced.get(&p.name).copied().unwrap_or(false));
    if candidate {
        plan.actions.push(Action::Switchover {
            from: master.name.clone(),
        });
    }
}

/// Step 4: rolling update, one pod at a time, only from a healthy, quiet state: replicas from
/// the highest ordinal down, the master last after a switchover.
fn roll(observed: &Observed, master: &PodView, plan: &mut Plan) {
    let pods = &observed.pods;
    let quiet = plan.actions.is_empty() && plan.wait.is_none();
    let all_synced = pods
        .iter()
        .filter(|p| p.name != master.name)
        .all(|p| plan.synced.get(&p.name).copied().unwrap_or(false));
    if !(quiet && all_synced && pods.len() as u32 == plan.statefulset_replicas) {
        return;
    }
    let replica = pods
        .iter()
        .filter(|p| p.outdated && p.name != master.name && !p.deleting)
        .max_by_key(|p| p.ordinal);
    if let Some(pod) = replica {
        plan.actions.push(Action::Restart {
            pod: pod.name.clone(),
        });
    } else if master.outdated {
        if pods.len() > 1 && observed.monitored {
            plan.actions.push(Action::Switchover {
                from: master.name.clone(),
            });
        } else {
            // A single pod has nobody to hand over to: restart it in place.
            plan.actions.push(Action::Restart {
                pod: master.name.clone(),
            });
        }
    }
}

/// Upkeep goes first: the password (every later command uses the Secret's), then kvrocks.conf
/// set live on every answering pod that runs an older one.
fn with_upkeep(observed: &Observed, mut plan: Plan) -> Plan {
    let mut upkeep = match observed.password {
        PasswordState::InEffect => Vec::new(),
        PasswordState::Unrecorded => vec![Action::RecordPassword],
        PasswordState::Changed => vec![Action::RotatePassword],
    };
    upkeep.extend(
        observed
            .pods
            .iter()
            .filter(|p| p.config_stale && !p.outdated && !p.fenced && p.node.is_some())
            .map(|p| Action::ApplyConfig {
                pod: p.name.clone(),
            }),
    );
    upkeep.append(&mut plan.actions);
    plan.actions = upkeep;
    plan
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
