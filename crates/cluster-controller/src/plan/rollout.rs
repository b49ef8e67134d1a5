//! Rolling updates: a pod on the current template whose kvrocks.conf changed gets the new
//! settings live; a pod on an old template, or whose kvrocks.conf kvrocks refused live, is
//! restarted, one at a time from a quiet, in-sync cluster, replicas first, then each master
//! after its shard handed over to a caught-up replica (a shard without replicas restarts its
//! master in place).

use kvrocks_api::cluster::ShardStatus;

use super::{Action, Input, Note, PodObs, handover, masters};
use crate::topo;

/// What the rollout wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Live settings and at most one restart.
    pub actions: Vec<Action>,
    /// Pods that still need a restart.
    pub rolling: usize,
    /// Handovers made.
    pub notes: Vec<Note>,
}

fn in_layout(layout: &[ShardStatus], pod: &str) -> bool {
    layout.iter().flat_map(|s| &s.nodes).any(|n| n.pod == pod)
}

/// Needs a restart (not only a live setting).
fn needs_restart(pod: &PodObs) -> bool {
    !pod.template_ok || (!pod.config_ok && pod.live_refused)
}

/// Plans live settings and restarts; `quiet` says the cluster is in sync with nothing else in
/// motion, the only time a pod may go down for a restart or a master hand over.
pub fn plan(input: &Input<'_>, layout: &mut [ShardStatus], quiet: bool) -> Rollout {
    let mut out = Rollout::default();
    let masters: Vec<String> = masters(layout).into_iter().map(str::to_owned).collect();
    let mut restart: Option<String> = None;
    for pod in &input.observed.pods {
        if (pod.template_ok && pod.config_ok) || !in_layout(layout, &pod.pod) {
            continue;
        }
        if !needs_restart(pod) {
            if let Some(ip) = &pod.ip
                && input.observed.reachable(&pod.pod)
            {
                out.actions.push(Action::SetConfigLive {
                    pod: pod.pod.clone(),
                    ip: ip.clone(),
                });
            }
            continue;
        }
        out.rolling += 1;
        if quiet && restart.is_none() && !masters.contains(&pod.pod) {
            restart = Some(pod.pod.clone());
        }
    }
    if quiet && restart.is_none() && out.rolling > 0 {
        restart = hand_over_a_master(input, layout, &mut out.notes);
    }
    out.actions
        .extend(restart.map(|pod| Action::Restart { pod }));
    out
}

/// Only masters are left to restart: the first outdated one hands its shard over (the restart
/// follows in a later pass, as a replica), or restarts in place when its shard has no replica.
fn hand_over_a_master(
    input: &Input<'_>,
    layout: &mut [ShardStatus],
    notes: &mut Vec<Note>,
) -> Option<String> {
    for shard in layout.iter_mut() {
        let Some(master) = topo::master_of(shard).map(|m| m.pod.clone()) else {
            continue;
        };
        let outdated = input
            .observed
            .pods
            .iter()
            .find(|p| p.pod == master)
            .is_some_and(needs_restart);
        if !outdated {
            continue;
        }
        match handover::target(input, shard, |_| true) {
            Some(to) => {
                notes.push(handover::hand_over(shard, master, to, "before its restart"));
                return None;
            }
            None if shard.nodes.len() == 1 => return Some(master),
            None => return None,
        }
    }
    None
}
