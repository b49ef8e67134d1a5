//! Running a plan's actions: first the fences of its planned switchovers ([`fence`]: the old
//! master refuses clients and the new one catches up with it, or the plan is held), then the
//! topology pushes to every node at once (the shorter nodes disagree about a slot's owner, the
//! fewer MOVED ping-pongs clients see), the fences lifted, then live settings, a restart, a
//! failed-over master stopped and a migration. Every action gets an outcome; none is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kvrocks_api::labels::Component;
use kvrocks_client::{NodeClient, NodeId, Password, Topology};
use kvrocks_operator_core::fence::{self, Fenced};
use kvrocks_operator_core::node::{self, LiveConfig};
use kvrocks_operator_core::{auth, pods};

use crate::plan::{Action, Plan};

/// What one action came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action.
    pub action: Action,
    /// Done, or why not.
    pub result: Result<(), String>,
}

impl Outcome {
    /// Whether the action failed.
    pub fn failed(&self) -> bool {
        self.result.is_err()
    }
}

/// What the actions need besides the plan.
pub struct Tools<'a> {
    /// The cluster's pods.
    pub pods: &'a Api<Pod>,
    /// The instance's password.
    pub password: &'a Password,
    /// `spec.config` as kvrocks may take it live.
    pub live_config: &'a BTreeMap<String, String>,
    /// The kvrocks.conf hash a pod is marked current with.
    pub config_hash: &'a str,
}

/// The password the nodes take after this step, and why a rotation waits (for the status).
/// Nothing recorded yet: the Secret's is recorded. The Secret's differs from the one recorded:
/// it is rolled out to every running node (`masterauth`, then `requirepass`; no node restarts,
/// so no failover) and recorded; until that succeeds the recorded one stays in effect.
pub async fn settle_password(
    ctx: &kvrocks_operator_core::Context,
    cr: &kvrocks_api::KvrocksCluster,
    pods: &[Pod],
    applied: Option<Password>,
    secret: &Password,
) -> (Password, Option<String>) {
    let record = async |password: &Password| {
        auth::record_password(&ctx.client, cr, Component::Cluster, password)
            .await
            .map_err(|e| format!("record the password in effect: {e}"))
    };
    match applied {
        None => match record(secret).await {
            Ok(()) => (secret.clone(), None),
            Err(e) => (secret.clone(), Some(e)),
        },
        Some(applied) if applied.expose() == secret.expose() => (applied, None),
        Some(applied) => {
            let ips: Vec<String> = pods.iter().filter_map(pods::running_ip).collect();
            let rotated = match auth::rotate(&ips, &applied, secret).await {
                Ok(()) => record(secret).await,
                Err(e) => Err(e),
            };
            match rotated {
                Ok(()) => {
                    tracing::info!("the new password is in effect on every node");
                    (secret.clone(), None)
                }
                Err(why) => {
                    tracing::warn!(%why, "password rotation waits");
                    (applied, Some(why))
                }
            }
        }
    }
}

/// Fences the masters of the plan's switchovers and waits until each new master caught up with
/// its old one (at most `fence::CATCH_UP_WITHIN`). On any failure every fence is lifted again
/// and the reason returned: the caller holds the plan (`plan::hold`). On success the fences stay
/// until the plan's `Unfence` actions, after the pushes.
pub async fn fence(plan: &Plan, password: &Password) -> Result<(), String> {
    let mut fenced: Vec<Fenced> = Vec::new();
    let mut failure = None;
    for f in &plan.fences {
        let started = Instant::now();
        let caught_up = match Fenced::fence(&f.from_ip, password).await {
            Ok(one) => {
                let result = one
                    .caught_up(&f.to_ip, password, fence::CATCH_UP_WITHIN)
                    .await;
                fenced.push(one);
                result
            }
            Err(e) => Err(e),
        };
        match caught_up {
            Ok(offset) => tracing::info!(
                shard = f.shard, from = %f.from, to = %f.to, offset, took = ?started.elapsed(),
                "switchover: old master fenced, new master caught up"
            ),
            Err(why) => {
                failure = Some(format!(
                    "shard {}: the switchover from {} to {} is postponed: {why}",
                    f.shard, f.from, f.to
                ));
                break;
            }
        }
    }
    let Some(why) = failure else {
        return Ok(());
    };
    let mut why = why;
    for one in fenced {
        if let Err(e) = one.lift(password).await {
            why.push_str(&format!("; {e}"));
        }
    }
    tracing::warn!(%why, "switchover given up; fences lifted");
    Err(why)
}

/// Runs every action of `plan` (after [`fence`]). A fenced node that is a master in the plan's
/// layout (a restarted node the plan keeps as master) is unfenced before the pushes, so its
/// replicas can sync as soon as they have the topology; every other fence (an old master, a node
/// that came back emptier than its replica) goes only after the push made it a replica.
pub async fn run(plan: &Plan, tools: &Tools<'_>) -> Vec<Outcome> {
    let masters = crate::plan::masters(&plan.layout);
    let (early, actions): (Vec<&Action>, Vec<&Action>) = plan.actions.iter().partition(|a| {
        matches!(a, Action::Unfence { pod, .. } if masters.contains(pod.as_str()))
            && !plan
                .fences
                .iter()
                .any(|f| matches!(a, Action::Unfence { pod, .. } if *pod == f.from))
    });
    let mut outcomes = Vec::new();
    for action in early {
        if let Action::Unfence { ip, .. } = action {
            outcomes.push(Outcome {
                action: action.clone(),
                result: fence::lift(ip, tools.password).await,
            });
        }
    }
    let (pushes, others): (Vec<&Action>, Vec<&Action>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Push { .. }));
    let fenced: BTreeSet<&str> = others
        .iter()
        .filter_map(|a| match a {
            Action::Unfence { pod, .. } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    let fence_password = fence::password(tools.password);
    outcomes.extend(match &plan.topology {
        Some(topology) => {
            futures::future::join_all(pushes.into_iter().map(|a| {
                let fenced = matches!(a, Action::Push { pod, .. } if fenced.contains(pod.as_str()));
                let password = if fenced {
                    &fence_password
                } else {
                    tools.password
                };
                push(a, topology, plan.version, password)
            }))
            .await
        }
        None => Vec::new(),
    });
    let push_failed: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.failed())
        .filter_map(|o| match &o.action {
            Action::Push { pod, .. } => Some(pod.clone()),
            _ => None,
        })
        .collect();
    for action in others {
        let result = match action {
            Action::Unfence { pod, .. } if push_failed.contains(pod) => Err(format!(
                "{pod} stays fenced: the topology push to it failed"
            )),
            Action::Unfence { ip, .. } => fence::lift(ip, tools.password).await,
            Action::Stop { pod } => {
                tracing::warn!(%pod, "stopping the failed-over master's pod");
                tools
                    .pods
                    .delete(pod, &DeleteParams::default().grace_period(1))
                    .await
                    .map(drop)
                    .map_err(|e| format!("delete pod {pod}: {e}"))
            }
            Action::SetConfigLive { pod, ip } => set_live(pod, ip, tools).await,
            Action::Restart { pod } => {
                tracing::info!(%pod, "restarting the pod for a rolling update");
                tools
                    .pods
                    .delete(pod, &Default::default())
                    .await
                    .map(drop)
                    .map_err(|e| format!("delete pod {pod}: {e}"))
            }
            Action::Migrate {
                mv,
                source_ip,
                target,
            } => migrate(mv, source_ip, target, tools.password).await,
            Action::Push { .. } => Ok(()),
        };
        outcomes.push(Outcome {
            action: action.clone(),
            result,
        });
    }
    outcomes
}

async fn push(action: &Action, topology: &Topology, version: u64, password: &Password) -> Outcome {
    let result = match action {
        Action::Push {
            pod,
            ip,
            node_id,
            set_id,
            force,
        } => {
            let client = NodeClient::new(node::endpoint(ip, password));
            let result = push_to(&client, node_id, *set_id, *force, topology, version).await;
            client.close().await;
            match &result {
                Ok(()) => tracing::info!(%pod, version, "topology pushed"),
                Err(e) => tracing::warn!(%pod, error = %e, "topology push failed"),
            }
            result
        }
        _ => Ok(()),
    };
    Outcome {
        action: action.clone(),
        result,
    }
}

async fn push_to(
    client: &NodeClient,
    node_id: &str,
    set_id: bool,
    force: bool,
    topology: &Topology,
    version: u64,
) -> Result<(), String> {
    if set_id {
        let id = NodeId::new(node_id.to_owned()).map_err(|e| e.to_string())?;
        client
            .clusterx_setnodeid(&id)
            .await
            .map_err(|e| format!("CLUSTERX SETNODEID: {e}"))?;
    }
    let pushed = if force {
        client.clusterx_setnodes_force(topology, version).await
    } else {
        client.clusterx_setnodes(topology, version).await
    };
    pushed.map_err(|e| format!("CLUSTERX SETNODES {version}: {e}"))
}

async fn set_live(pod: &str, ip: &str, tools: &Tools<'_>) -> Result<(), String> {
    match node::apply_config_live(ip, tools.live_config, tools.password).await {
        LiveConfig::Applied => pods::mark_current(tools.pods, pod, tools.config_hash, None)
            .await
            .map_err(|e| e.to_string()),
        LiveConfig::NeedsRestart(why) => Err(format!("not changeable live ({why})")),
    }
}

async fn migrate(
    mv: &crate::plan::Move,
    source_ip: &str,
    target: &str,
    password: &Password,
) -> Result<(), String> {
    let id = NodeId::new(target.to_owned()).map_err(|e| e.to_string())?;
    let client = NodeClient::new(node::endpoint(source_ip, password));
    let result = client.clusterx_migrate(mv.range, &id).await;
    client.close().await;
    match result {
        Ok(()) => {
            tracing::info!(slots = %mv.range, from = mv.from, to = mv.to, "migration started");
            Ok(())
        }
        Err(e) => Err(format!(
            "CLUSTERX MIGRATE {} to shard {}: {e}",
            mv.range, mv.to
        )),
    }
}
