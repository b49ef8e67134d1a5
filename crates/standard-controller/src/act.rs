//! Running the plan's actions in order, and saying how each went: password rotation, kvrocks.conf
//! set live (and the pod marked current), `SLAVEOF`, `CONFIG SET slave-priority`, role labels,
//! `SENTINEL FAILOVER` switchovers and pod restarts. A failed action does not stop the next: its
//! error is in its [`Outcome`], which the report puts in the status and the error metric.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksStandard;
use kvrocks_api::labels::{self, ROLE, names};
use kvrocks_client::{NodeAddr, NodeClient, Password, SentinelClient};
use kvrocks_operator_core::node::{self, LiveConfig};
use kvrocks_operator_core::{Context, pods};

use crate::objects;
use crate::observe::{sentinel_endpoint, sentinel_ips};
use crate::plan::{Action, Plan};

/// Where an action failed, for the error metric's `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// A kvrocks pod refused or did not answer.
    Kvrocks,
    /// A sentinel refused or did not answer.
    Sentinel,
    /// The Kubernetes API refused.
    Kube,
}

impl Failed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failed::Kvrocks => "kvrocks",
            Failed::Sentinel => "sentinel",
            Failed::Kube => "kube",
        }
    }
}

/// A failure: where, and what (never a password: the clients redact what they sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where.
    pub kind: Failed,
    /// What, for a person.
    pub message: String,
}

impl Failure {
    fn kvrocks(message: impl Into<String>) -> Self {
        Failure {
            kind: Failed::Kvrocks,
            message: message.into(),
        }
    }

    fn kube(what: &str, e: impl std::fmt::Display) -> Self {
        Failure {
            kind: Failed::Kube,
            message: format!("{what}: {e}"),
        }
    }
}

/// How one action went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Result {
    /// It was done.
    Done,
    /// kvrocks.conf could not be set live: the pod restarts instead (not an error).
    NeedsRestart(String),
    /// It failed.
    Failed(Failure),
}

/// One action and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action.
    pub action: Action,
    /// How it went.
    pub result: Result,
    /// What failed on the side although the action was done (a sentinel that did not take the
    /// new auth-pass).
    pub warnings: Vec<Failure>,
}

impl Outcome {
    /// Whether the action was done.
    pub fn done(&self) -> bool {
        matches!(self.result, Result::Done)
    }

    /// Every failure of the action.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        let failed = match &self.result {
            Result::Failed(f) => Some(f),
            _ => None,
        };
        failed.into_iter().chain(&self.warnings)
    }
}

/// What the actions work with.
#[derive(Clone)]
pub struct Env<'a> {
    /// The controller context.
    pub ctx: &'a Context,
    /// The resource.
    pub cr: &'a KvrocksStandard,
    /// The data pods.
    pub pods: &'a [Pod],
    /// The Secret's password (every command uses it; rotation runs first).
    pub password: &'a Password,
    /// The password in effect before this pass (rotation replaces it).
    pub applied: &'a Password,
    /// `spec.config` as set live (without unsupported keys).
    pub live_config: &'a BTreeMap<String, String>,
    /// Hash of the current kvrocks.conf.
    pub config_hash: &'a str,
    /// The StatefulSet's update revision.
    pub revision: Option<&'a str>,
}

/// Runs the plan's actions in order; one outcome per action.
pub async fn run(plan: &Plan, env: &Env<'_>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(plan.actions.len());
    for action in &plan.actions {
        let mut warnings = Vec::new();
        let result = match one(action, env, &mut warnings).await {
            Ok(result) => result,
            Err(failure) => Result::Failed(failure),
        };
        match &result {
            Result::Failed(f) => {
                tracing::warn!(?action, error = %f.message, "action failed");
            }
            Result::NeedsRestart(why) => {
                tracing::info!(?action, %why, "not changeable live: the pod will be restarted");
            }
            Result::Done => tracing::info!(?action, "done"),
        }
        outcomes.push(Outcome {
            action: action.clone(),
            result,
            warnings,
        });
    }
    outcomes
}

fn ip_of(pods: &[Pod], name: &str) -> std::result::Result<String, Failure> {
    pods.iter()
        .find(|p| p.name_any() == name)
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| Failure::kvrocks(format!("pod {name} has no IP")))
}

async fn one(
    action: &Action,
    env: &Env<'_>,
    warnings: &mut Vec<Failure>,
) -> std::result::Result<Result, Failure> {
    let node = |name: &str| -> std::result::Result<NodeClient, Failure> {
        Ok(NodeClient::new(node::endpoint(
            &ip_of(env.pods, name)?,
            env.password,
        )))
    };
    let kv = |e: kvrocks_client::Error| Failure::kvrocks(e.to_string());
    let pods_api: Api<Pod> = env.ctx.api_for(env.cr);
    match action {
        Action::RecordPassword => record(env, env.password).await,
        Action::RotatePassword => rotate(env, warnings).await,
        Action::ApplyConfig { pod } => apply_config(env, &pods_api, pod).await,
        Action::Promote { pod } => node(pod)?.slaveof_no_one().await.map_err(kv),
        Action::Follow { pod, master_ip } => node(pod)?
            .slaveof(&NodeAddr::new(master_ip, labels::KVROCKS_PORT as u16))
            .await
            .map_err(kv),
        Action::SetPriority { pod, value } => node(pod)?
            .config_set("slave-priority", value)
            .await
            .map_err(kv),
        Action::Label { pod, role } => {
            let patch = serde_json::json!({"metadata": {"labels": {ROLE: role.as_str()}}});
            pods_api
                .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
                .map_err(|e| Failure::kube(&format!("label pod {pod}"), e))
        }
        Action::Restart { pod } => pods_api
            .delete(pod, &Default::default())
            .await
            .map(drop)
            .map_err(|e| Failure::kube(&format!("delete pod {pod}"), e)),
        Action::Switchover { from } => switchover(env, from).await,
    }
    .map(|()| Result::Done)
    .or_else(|f| match (action, f) {
        (
            Action::ApplyConfig { .. },
            Failure {
                kind: Failed::Kvrocks,
                message,
            },
        ) => Ok(Result::NeedsRestart(message)),
        (_, f) => Err(f),
    })
}

async fn record(env: &Env<'_>, password: &Password) -> std::result::Result<(), Failure> {
    objects::record_password(env.ctx, env.cr, password)
        .await
        .map_err(|e| Failure::kube("record the password in effect", e))
}

/// `CONFIG SET` of `spec.config` on the pod; when kvrocks took every change, the pod is marked
/// as running the current kvrocks.conf (a kvrocks failure means a restart, see [`one`]).
async fn apply_config(
    env: &Env<'_>,
    pods_api: &Api<Pod>,
    pod: &str,
) -> std::result::Result<(), Failure> {
    let ip = ip_of(env.pods, pod)?;
    match node::apply_config_live(&ip, env.live_config, env.password).await {
        LiveConfig::Applied => pods::mark_current(pods_api, pod, env.config_hash, env.revision)
            .await
            .map_err(|e| Failure::kube(&format!("mark pod {pod} current"), e)),
        LiveConfig::NeedsRestart(why) => Err(Failure::kvrocks(why)),
    }
}

/// The password rotation: `masterauth` on every pod, then `requirepass` on every pod (so
/// replication never breaks), then sentinel's auth-pass (best effort: the sentinel controller
/// sets it again whenever it (re)creates the monitor; a failure is a warning), then the record.
async fn rotate(env: &Env<'_>, warnings: &mut Vec<Failure>) -> std::result::Result<(), Failure> {
    let (old, new) = (env.applied, env.password);
    let mut clients = Vec::new();
    for pod in env
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        match NodeClient::connect(node::endpoint(&ip, old)).await {
            Ok(c) => clients.push(c),
            // Already on the new password (started after the change), or down.
            Err(_) => {
                if let Err(e) = NodeClient::connect(node::endpoint(&ip, new)).await {
                    return Err(Failure::kvrocks(format!(
                        "password rotation waits for {}: {e}",
                        pod.name_any()
                    )));
                }
            }
        }
    }
    let result = set_on_all(&clients, "masterauth", new).await;
    let result = match result {
        Ok(()) => set_on_all(&clients, "requirepass", new).await,
        Err(e) => Err(e),
    };
    for client in &clients {
        client.close().await;
    }
    result.map_err(|e| Failure::kvrocks(format!("password rotation: {e}")))?;
    warnings.extend(set_sentinel_auth_pass(env).await);
    record(env, new).await
}

async fn set_on_all(
    clients: &[NodeClient],
    key: &str,
    password: &Password,
) -> kvrocks_client::Result<()> {
    for client in clients {
        client.config_set(key, password.expose()).await?;
    }
    Ok(())
}

/// `SENTINEL SET <monitor> auth-pass` on every pod of the group; the failures.
async fn set_sentinel_auth_pass(env: &Env<'_>) -> Vec<Failure> {
    let ns = env.cr.namespace().unwrap_or_default();
    let monitor = names::standard_monitor(&env.cr.name_any());
    let mut failures = Vec::new();
    for ip in sentinel_ips(env.ctx, &ns, &env.cr.spec.sentinel.name).await {
        let client = SentinelClient::new(sentinel_endpoint(&ip));
        if let Err(e) = client.set_auth_pass(&monitor, env.password).await {
            failures.push(Failure {
                kind: Failed::Sentinel,
                message: format!("auth-pass not set on sentinel {ip}: {e}"),
            });
        }
        client.close().await;
    }
    failures
}

/// `SENTINEL FAILOVER` on the first sentinel that answers. The next sentinel is asked only when
/// one does not answer: a second forced failover next to one under way would promote a second
/// replica.
async fn switchover(env: &Env<'_>, from: &str) -> std::result::Result<(), Failure> {
    let ns = env.cr.namespace().unwrap_or_default();
    let monitor = names::standard_monitor(&env.cr.name_any());
    let failed = |message: String| Failure {
        kind: Failed::Sentinel,
        message: format!("switchover off {from}: {message}"),
    };
    let mut last = String::from("no sentinel pod answers");
    for ip in sentinel_ips(env.ctx, &ns, &env.cr.spec.sentinel.name).await {
        let client = SentinelClient::new(sentinel_endpoint(&ip));
        let result = client.failover(&monitor).await;
        client.close().await;
        match result {
            Ok(()) => {
                tracing::info!(%from, "SENTINEL FAILOVER (planned switchover)");
                return Ok(());
            }
            Err(e) if e.is_failover_in_progress() => {
                tracing::info!(%from, sentinel = %ip, "a failover is under way already");
                return Ok(());
            }
            Err(e) if e.is_unreachable() => last = e.to_string(),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Err(failed(last))
}
