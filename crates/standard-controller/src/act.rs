//! Running the plan's actions in order, and saying how each went: password rotation, kvrocks.conf
//! set live (and the pod marked current), `SLAVEOF`, `CONFIG SET slave-priority`, role labels,
//! `SENTINEL FAILOVER` switchovers and pod restarts. A failed action does not stop the next: its
//! error is in its [`Outcome`], which the report puts in the status and the error metric.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksStandard;
use kvrocks_api::labels::{self, ROLE, names};
use kvrocks_client::{NodeAddr, NodeClient, Password, ReplicationRole, SentinelClient};
use kvrocks_operator_core::auth;
use kvrocks_operator_core::fence::{self, Fenced};
use kvrocks_operator_core::node::{self, LiveConfig};
use kvrocks_operator_core::{Context, pods};

use crate::objects;
use crate::observe::sentinels;
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
    /// Not done now, on purpose (a switchover whose replicas or sentinels are not ready): it
    /// becomes [`Result::Postponed`], not a failure.
    Postponed,
}

impl Failed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failed::Kvrocks => "kvrocks",
            Failed::Sentinel => "sentinel",
            Failed::Kube => "kube",
            Failed::Postponed => "postponed",
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
    /// Not done now (a switchover waits for its replicas or sentinels; not an error).
    Postponed(String),
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
        let result = match one(action, env, &plan.synced, &mut warnings).await {
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
            Result::Postponed(why) => tracing::info!(?action, %why, "postponed"),
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
    synced: &BTreeMap<String, bool>,
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
            .map_err(|e| Failure {
                // The pod still feeds the new master (a moment after a failover): next pass.
                kind: if is_own_replica(&e) {
                    Failed::Postponed
                } else {
                    Failed::Kvrocks
                },
                message: e.to_string(),
            }),
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
        Action::Switchover { from } => {
            let replicas: Vec<&str> = synced
                .iter()
                .filter(|(pod, synced)| **synced && *pod != from)
                .map(|(pod, _)| pod.as_str())
                .collect();
            switchover(env, from, &replicas).await
        }
        Action::Unfence { pod, follow } => unfence(env, pod, follow.as_deref()).await,
        Action::ForceFailover { from } => sentinel_failover(env, from).await,
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
        (
            _,
            Failure {
                kind: Failed::Postponed,
                message,
            },
        ) => Ok(Result::Postponed(message)),
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

/// The password rotation (`kvrocks_operator_core::auth::rotate`: `masterauth` on every pod,
/// then `requirepass`, so replication never breaks), then sentinel's auth-pass (best effort: the
/// sentinel controller sets it again whenever it (re)creates the monitor; a failure is a
/// warning), then the record.
async fn rotate(env: &Env<'_>, warnings: &mut Vec<Failure>) -> std::result::Result<(), Failure> {
    let ips: Vec<String> = env
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    auth::rotate(&ips, env.applied, env.password)
        .await
        .map_err(Failure::kvrocks)?;
    warnings.extend(set_sentinel_auth_pass(env).await);
    record(env, env.password).await
}

/// `SENTINEL SET <monitor> auth-pass` on every pod of the group; the failures.
async fn set_sentinel_auth_pass(env: &Env<'_>) -> Vec<Failure> {
    let ns = env.cr.namespace().unwrap_or_default();
    let monitor = names::standard_monitor(&env.cr.name_any());
    let mut failures = Vec::new();
    for endpoint in sentinels(env.ctx, &ns, &env.cr.spec.sentinel.name).await {
        let ip = endpoint.addr.host.clone();
        let client = SentinelClient::new(endpoint);
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

/// How long a switchover waits for sentinel to promote a replica once the old master is fenced;
/// past it the old master stays fenced (a later pass lifts the fence when the outcome is known).
const PROMOTION_WITHIN: Duration = Duration::from_secs(10);

/// A planned switchover that leaves no acknowledged write behind: the master is fenced (no
/// client can write to it, see `kvrocks_operator_core::fence`), every synced replica (sentinel
/// may choose any of them) catches up with it, `SENTINEL FAILOVER`, then the old master follows
/// the promoted replica and its fence is lifted. When a replica does not catch up within
/// `fence::CATCH_UP_WITHIN` or no sentinel takes the failover, the fence is lifted and the
/// switchover fails (the plan asks again). A master that restarted (a replica of itself) takes
/// no writes: it is not fenced.
async fn switchover(
    env: &Env<'_>,
    from: &str,
    replicas: &[&str],
) -> std::result::Result<(), Failure> {
    let from_ip = ip_of(env.pods, from)?;
    let failed = |m: String| Failure::kvrocks(format!("switchover off {from}: {m}"));
    let client = NodeClient::connect(node::endpoint(&from_ip, env.password))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let role = client.info_replication().await.map(|i| i.role);
    client.close().await;
    if role.map_err(|e| failed(e.to_string()))? != ReplicationRole::Master {
        return sentinel_failover(env, from).await;
    }
    let mut ips = Vec::new();
    for replica in replicas {
        ips.push((*replica, ip_of(env.pods, replica)?));
    }
    let postponed = |why: String| Failure {
        kind: Failed::Postponed,
        message: format!("switchover off {from} postponed: {why}"),
    };
    sentinels_see_replicas(env, &from_ip, &ips)
        .await
        .map_err(postponed)?;
    let fenced = Fenced::fence(&from_ip, env.password)
        .await
        .map_err(failed)?;
    let started = Instant::now();
    for (_, ip) in &ips {
        let caught_up = fenced
            .caught_up(
                ip,
                env.password,
                fence::CATCH_UP_WITHIN.saturating_sub(started.elapsed()),
            )
            .await;
        if let Err(why) = caught_up {
            let lifted = fenced.lift(env.password).await;
            return Err(postponed(format!(
                "{why}{}",
                lifted.err().map(|l| format!("; {l}")).unwrap_or_default()
            )));
        }
    }
    tracing::info!(%from, caught_up = ?replicas, took = ?started.elapsed(), "fenced master: every synced replica caught up");
    if let Err(f) = sentinel_failover(env, from).await {
        let lifted = fenced.lift(env.password).await;
        return Err(Failure {
            message: format!(
                "{}{}",
                f.message,
                lifted.err().map(|l| format!("; {l}")).unwrap_or_default()
            ),
            ..f
        });
    }
    let Some((to, to_ip)) = promoted(&ips, env.password).await else {
        return Err(failed(format!(
            "sentinel promoted no replica within {} s; {from} stays fenced until it does or gives up",
            PROMOTION_WITHIN.as_secs()
        )));
    };
    match follow_promoted(fenced.client(), &to_ip).await {
        Ok(()) => {}
        Err(e) if is_own_replica(&e) => {
            // kvrocks drops its replication link to the promoted pod only at its next liveness
            // ping (every few seconds): the old master stays fenced (it serves no client) and a
            // later pass makes it follow (`Action::Unfence`).
            tracing::info!(%from, %to, outage = ?started.elapsed(),
                "switchover done; the old master stays fenced until it can follow the new one");
            return Ok(());
        }
        Err(e) => {
            return Err(failed(format!(
                "{to} promoted, but {from} did not follow it ({e}); it stays fenced until it does"
            )));
        }
    }
    tracing::info!(%from, %to, outage = ?started.elapsed(), "switchover done: the old master follows the new one");
    fenced.lift(env.password).await.map_err(failed)
}

/// How long the old master retries following the promoted replica within the switchover.
const FOLLOW_WITHIN: Duration = Duration::from_secs(1);

/// kvrocks refuses to follow one of its own replicas ("can't replicate your own replicas") until
/// its replication link to it has closed, which it notices only at its next liveness ping.
fn is_own_replica(e: &kvrocks_client::Error) -> bool {
    e.server_message()
        .is_some_and(|m| m.contains("own replica"))
}

/// `SLAVEOF <to_ip>` on the old master, retried for [`FOLLOW_WITHIN`] while kvrocks still counts
/// `to_ip` its replica.
async fn follow_promoted(old: &NodeClient, to_ip: &str) -> kvrocks_client::Result<()> {
    let deadline = Instant::now() + FOLLOW_WITHIN;
    let to = NodeAddr::new(to_ip, labels::KVROCKS_PORT as u16);
    loop {
        match old.slaveof(&to).await {
            Err(e) if Instant::now() < deadline && is_own_replica(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// How recent a sentinel's last good PING reply from a replica must be for a switchover.
const SENTINEL_PING_FRESH_MS: u64 = 2000;

/// Every sentinel that answers must know each replica as a healthy replica of `master_ip` (a
/// sentinel that has not heard from it lately cannot confirm its promotion): a sentinel
/// whose last look at a pod is older than the previous failover (sentinel reads a replica's INFO
/// every 10 s) sees the promoted pod as "a replica that turned master" and turns it back at once
/// (`+convert-to-slave`), which aborts the switchover.
async fn sentinels_see_replicas(
    env: &Env<'_>,
    master_ip: &str,
    replicas: &[(&str, String)],
) -> std::result::Result<(), String> {
    let ns = env.cr.namespace().unwrap_or_default();
    let monitor = names::standard_monitor(&env.cr.name_any());
    // In a fixed order, so the reason in status is the same from pass to pass.
    let mut endpoints = sentinels(env.ctx, &ns, &env.cr.spec.sentinel.name).await;
    endpoints.sort_by(|a, b| a.addr.host.cmp(&b.addr.host));
    for endpoint in endpoints {
        let ip = endpoint.addr.host.clone();
        let client = SentinelClient::new(endpoint);
        let seen = client.replicas(&monitor).await;
        client.close().await;
        let Ok(seen) = seen else { continue };
        for (pod, pod_ip) in replicas {
            let known = seen.iter().find(|r| r.addr.host == *pod_ip);
            let fresh = known.is_some_and(|r| {
                r.fields.get("role-reported").map(String::as_str) == Some("slave")
                    && r.master_addr.as_ref().is_some_and(|m| m.host == master_ip)
            });
            if !fresh {
                return Err(format!(
                    "sentinel {ip} has not seen {pod} as a replica of the master yet"
                ));
            }
            let healthy = known.is_some_and(|r| {
                !r.flags
                    .iter()
                    .any(|f| matches!(f.as_str(), "s_down" | "o_down" | "disconnected"))
                    && r.fields
                        .get("last-ok-ping-reply")
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|ms| ms < SENTINEL_PING_FRESH_MS)
            });
            if !healthy {
                return Err(format!(
                    "sentinel {ip} has no recent answer from {pod}; it could not promote it"
                ));
            }
        }
    }
    Ok(())
}

/// The first of `replicas` that reports itself master, polled until [`PROMOTION_WITHIN`].
async fn promoted<'a>(
    replicas: &[(&'a str, String)],
    password: &Password,
) -> Option<(&'a str, String)> {
    let deadline = Instant::now() + PROMOTION_WITHIN;
    let clients: Vec<(&str, &String, NodeClient)> = replicas
        .iter()
        .map(|(pod, ip)| (*pod, ip, NodeClient::new(node::endpoint(ip, password))))
        .collect();
    let found = loop {
        let mut found = None;
        for (pod, ip, client) in &clients {
            let role = client.info_replication().await.map(|i| i.role);
            if role.is_ok_and(|r| r == ReplicationRole::Master) {
                found = Some((*pod, (*ip).clone()));
                break;
            }
        }
        if found.is_some() || clients.is_empty() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (_, _, client) in &clients {
        client.close().await;
    }
    found
}

/// Lifts the fence of `pod` (see [`Action::Unfence`]).
async fn unfence(
    env: &Env<'_>,
    pod: &str,
    follow: Option<&str>,
) -> std::result::Result<(), Failure> {
    let ip = ip_of(env.pods, pod)?;
    if let Some(master) = follow {
        let Some(client) = fence::connect_fenced(&ip, env.password).await else {
            return Err(Failure::kvrocks(format!(
                "{pod} does not answer to the fence password"
            )));
        };
        let followed = client
            .slaveof(&NodeAddr::new(master, labels::KVROCKS_PORT as u16))
            .await;
        client.close().await;
        followed.map_err(|e| Failure {
            kind: if is_own_replica(&e) {
                Failed::Postponed
            } else {
                Failed::Kvrocks
            },
            message: format!("fenced {pod} follows {master}: {e}"),
        })?;
    }
    fence::lift(&ip, env.password)
        .await
        .map_err(Failure::kvrocks)
}

/// `SENTINEL FAILOVER` on the first sentinel that answers. The next sentinel is asked only when
/// one does not answer: a second forced failover next to one under way would promote a second
/// replica.
async fn sentinel_failover(env: &Env<'_>, from: &str) -> std::result::Result<(), Failure> {
    let ns = env.cr.namespace().unwrap_or_default();
    let monitor = names::standard_monitor(&env.cr.name_any());
    let failed = |message: String| Failure {
        kind: Failed::Sentinel,
        message: format!("switchover off {from}: {message}"),
    };
    let mut last = String::from("no sentinel pod answers");
    for endpoint in sentinels(env.ctx, &ns, &env.cr.spec.sentinel.name).await {
        let ip = endpoint.addr.host.clone();
        let client = SentinelClient::new(endpoint);
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
