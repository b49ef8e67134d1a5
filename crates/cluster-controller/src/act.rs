//! Running a plan's actions: the topology pushes to every node at once (the shorter nodes
//! disagree about a slot's owner, the fewer MOVED ping-pongs clients see), then live settings,
//! a restart and a migration. Every action gets an outcome; none is dropped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kvrocks_client::{NodeClient, NodeId, Password, Topology};
use kvrocks_operator_core::node::{self, LiveConfig};
use kvrocks_operator_core::pods;

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

/// Runs every action of `plan`.
pub async fn run(plan: &Plan, tools: &Tools<'_>) -> Vec<Outcome> {
    let (pushes, others): (Vec<&Action>, Vec<&Action>) = plan
        .actions
        .iter()
        .partition(|a| matches!(a, Action::Push { .. }));
    let mut outcomes: Vec<Outcome> = match &plan.topology {
        Some(topology) => {
            futures::future::join_all(
                pushes
                    .into_iter()
                    .map(|a| push(a, topology, plan.version, tools.password)),
            )
            .await
        }
        None => Vec::new(),
    };
    for action in others {
        let result = match action {
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
