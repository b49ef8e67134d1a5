//! Reading what is: the pods, every pod's `INFO replication`, the sentinel group's view of the
//! master and the password in effect. Reads only: nothing here writes to the API server, kvrocks
//! or sentinel.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksStandard;
use kvrocks_api::labels::{self, Component, ROLE, Role, names};
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, SentinelClient, Timeouts};
use kvrocks_operator_core::builders::kvrocks as kb;
use kvrocks_operator_core::node::{self, CONNECT_TIMEOUT, REPLY_TIMEOUT};
use kvrocks_operator_core::{Context, server};
use kvrocks_operator_core::{fence, pods};

use crate::Error;
use crate::plan::{NodeView, Observed, PasswordState, PodView};

/// The data pods of the Standard `name`, by ordinal (pods of other names are left out).
pub async fn pods(ctx: &Context, ns: &str, name: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut pods = api
        .list(&ListParams::default().labels(&labels::selector(name, Component::Standard)))
        .await
        .map_err(Error::kube(format!("list pods of {ns}/{name}")))?
        .items;
    pods.retain(|p| ordinal(p, name).is_some());
    pods.sort_by_key(|p| ordinal(p, name));
    Ok(pods)
}

/// The ordinal of a pod of the StatefulSet `set` (None for a pod of another name).
fn ordinal(pod: &Pod, set: &str) -> Option<u32> {
    let name = pod.name_any();
    labels::ordinal(&name).filter(|o| name == names::pod(set, *o))
}

/// What the running kvrocks knows decides which spec.config keys are rendered and set live.
pub async fn config_verdict(
    cr: &KvrocksStandard,
    pods: &[Pod],
    password: &Password,
) -> server::ConfigVerdict {
    let old = cr.status.clone().unwrap_or_default();
    server::judge(
        pods,
        labels::KVROCKS_PORT as u16,
        password,
        &cr.spec.pod.config,
        &old.unsupported_config,
        old.kvrocks_version.as_deref(),
    )
    .await
}

/// The password in effect on the pods (the operator's record `<cr>-auth-applied`); None before
/// anything was recorded.
pub async fn applied_password(
    ctx: &Context,
    cr: &KvrocksStandard,
) -> Result<Option<Password>, Error> {
    Ok(kvrocks_operator_core::auth::applied_password(&ctx.client, cr).await?)
}

/// Which pod template and kvrocks.conf are current.
#[derive(Clone, Debug)]
pub struct Revisions<'a> {
    /// Hash of the pod template without kvrocks.conf.
    pub template_hash: &'a str,
    /// Hash of kvrocks.conf.
    pub config_hash: &'a str,
    /// Pods that refused this kvrocks.conf live (they restart).
    pub refused: &'a BTreeSet<String>,
}

/// Everything [`observe`] reads besides the pods.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The resource.
    pub cr: &'a KvrocksStandard,
    /// Its namespace.
    pub ns: &'a str,
    /// The Secret's password.
    pub password: &'a Password,
    /// The password recorded in effect, if any.
    pub applied: Option<&'a Password>,
    /// The current revisions.
    pub revisions: Revisions<'a>,
    /// The live StatefulSet's `spec.replicas`.
    pub statefulset_replicas: Option<u32>,
}

/// What the plan needs, read from the pods and the sentinel group (the stuck clock is the
/// caller's: [`Observed::sentinel_stuck_since`] is None here).
pub async fn observe(ctx: &Context, pods: &[Pod], inputs: &Inputs<'_>) -> Observed {
    let cr = inputs.cr;
    let name = cr.name_any();
    let fallback = inputs.applied.unwrap_or(inputs.password);
    let mut views = pod_views(pods, &name, inputs.password, fallback).await;
    mark_revisions(&mut views, pods, &inputs.revisions);
    let monitor = names::standard_monitor(&name);
    let sentinel = sentinel_view(ctx, inputs.ns, &cr.spec.sentinel.name, &monitor).await;
    let old = cr.status.clone().unwrap_or_default();
    Observed {
        desired: cr.spec.replicas.max(1) as u32,
        statefulset_replicas: inputs.statefulset_replicas,
        pods: views,
        monitored: sentinel.master.is_some(),
        sentinel_master: sentinel.master,
        sentinel_failing_over: sentinel.failing_over,
        sentinels_agree: sentinel.agree,
        sentinel_group: sentinel.group,
        sentinels_answering: sentinel.answered,
        sentinel_master_down: sentinel.master_down,
        sentinel_master_odown: sentinel.master_odown,
        status_master: old.master.as_ref().map(|m| m.pod.clone()),
        priority: cr
            .spec
            .pod
            .config
            .get("slave-priority")
            .cloned()
            .unwrap_or_else(|| "100".to_owned()),
        sentinel_stuck_since: None,
        password: match inputs.applied {
            None => PasswordState::Unrecorded,
            Some(applied) if applied.expose() == inputs.password.expose() => {
                PasswordState::InEffect
            }
            Some(_) => PasswordState::Changed,
        },
    }
}

/// Marks pods on an old template as outdated, and pods that only run an older kvrocks.conf as
/// stale, or as outdated when they refused it live (a pod restarted since runs the current one).
pub fn mark_revisions(views: &mut [PodView], pods: &[Pod], revisions: &Revisions<'_>) {
    for (view, pod) in views.iter_mut().zip(pods) {
        let annotation = |key: &str| pod.annotations().get(key).map(String::as_str);
        let old_template =
            annotation(kb::TEMPLATE_HASH_ANNOTATION) != Some(revisions.template_hash);
        let old_config = annotation(kb::CONFIG_HASH_ANNOTATION) != Some(revisions.config_hash);
        if old_template || (old_config && revisions.refused.contains(&view.name)) {
            view.outdated = true;
        } else if old_config {
            view.config_stale = true;
        }
    }
}

/// Each pod's view of replication (unreachable pods: `node: None`); a pod that refuses the
/// Secret's password is asked with `fallback` (a rotation in progress).
async fn pod_views(
    pods: &[Pod],
    set: &str,
    password: &Password,
    fallback: &Password,
) -> Vec<PodView> {
    let queries = pods.iter().map(|pod| async move {
        let name = pod.name_any();
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty());
        let (node, fenced) = match pods::running_ip(pod) {
            Some(ip) => answer(&ip, password, fallback).await,
            None => (None, false),
        };
        PodView {
            ordinal: ordinal(pod, set).unwrap_or(u32::MAX),
            name,
            ip,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            role_label: pod.labels().get(ROLE).and_then(|r| Role::parse(r)),
            node,
            outdated: false,
            config_stale: false,
            ready: pods::is_ready(pod),
            fenced,
        }
    });
    futures::future::join_all(queries).await
}

/// The pod's answer with the Secret's password, the one in effect (a rotation in progress), or
/// the fence password of either (a switchover left it fenced: the flag is true).
async fn answer(ip: &str, password: &Password, fallback: &Password) -> (Option<NodeView>, bool) {
    let auth = |e: &kvrocks_client::Error| matches!(e, kvrocks_client::Error::Auth { .. });
    let refused = match node_view(ip, password).await {
        Ok(view) => return (Some(view), false),
        Err(e) => auth(&e),
    };
    if !refused {
        return (None, false);
    }
    match node_view(ip, fallback).await {
        Ok(view) => return (Some(view), false),
        Err(e) if !auth(&e) => return (None, false),
        Err(_) => {}
    }
    for candidate in [password, fallback] {
        if let Ok(view) = node_view(ip, &fence::password(candidate)).await {
            return (Some(view), true);
        }
    }
    (None, false)
}

async fn node_view(ip: &str, password: &Password) -> Result<NodeView, kvrocks_client::Error> {
    let client = NodeClient::connect(node::endpoint(ip, password)).await?;
    let info = client.info_replication().await;
    let priority = match &info {
        Ok(_) => client.config_get_one("slave-priority").await.ok().flatten(),
        Err(_) => None,
    };
    client.close().await;
    let info = info?;
    let master = matches!(info.role, kvrocks_client::ReplicationRole::Master);
    Ok(NodeView {
        master,
        master_host: info.master_host.clone(),
        link_up: matches!(
            info.master_link_status,
            Some(kvrocks_client::LinkStatus::Up)
        ),
        syncing: info.master_sync_in_progress.unwrap_or(false),
        offset: if master {
            info.master_repl_offset.unwrap_or(0)
        } else {
            info.slave_repl_offset.unwrap_or(0)
        },
        priority,
    })
}

/// The sentinel group's pods that are not being deleted, as endpoints that authenticate with
/// the group's password in effect (the sentinel controller's record; none before the group was
/// first reconciled).
pub async fn sentinels(ctx: &Context, ns: &str, group: &str) -> Vec<Endpoint> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&labels::selector(group, Component::Sentinel)))
        .await
    else {
        return Vec::new();
    };
    let password = kvrocks_operator_core::auth::applied_password_of(&ctx.client, ns, group)
        .await
        .ok()
        .flatten();
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .map(|ip| {
            Endpoint::new(NodeAddr::new(ip, labels::SENTINEL_PORT as u16))
                .with_optional_password(password.clone())
                .with_timeouts(Timeouts::new(CONNECT_TIMEOUT, REPLY_TIMEOUT))
        })
        .collect()
}

/// What the sentinel group says about one monitored instance.
#[derive(Debug, Default)]
pub struct SentinelView {
    /// The master IP most sentinels report (None: not monitored).
    pub master: Option<String>,
    /// Some sentinel is failing this master over right now.
    pub failing_over: bool,
    /// Some sentinel reports the master subjectively or objectively down.
    pub master_down: bool,
    /// Some sentinel reports the master objectively down.
    pub master_odown: bool,
    /// Every sentinel that answered names the same master.
    pub agree: bool,
    /// Sentinel pods of the group (not being deleted).
    pub group: usize,
    /// How many of them answered.
    pub answered: usize,
}

/// `SENTINEL MASTER <monitor>` on every sentinel of the group: the master IP most of them report
/// and whether one of them is in the middle of a failover.
pub async fn sentinel_view(ctx: &Context, ns: &str, group: &str, monitor: &str) -> SentinelView {
    let endpoints = sentinels(ctx, ns, group).await;
    let answers = futures::future::join_all(endpoints.iter().map(|e| async move {
        let client = SentinelClient::connect(e.clone()).await.ok()?;
        let master = client.master(monitor).await.ok();
        client.close().await;
        master
    }))
    .await;
    let mut view = SentinelView {
        group: endpoints.len(),
        answered: answers.iter().filter(|a| a.is_some()).count(),
        ..Default::default()
    };
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for master in answers.into_iter().flatten().flatten() {
        view.failing_over |= master.is_failover_in_progress();
        view.master_down |= master.is_sdown() || master.is_odown();
        view.master_odown |= master.is_odown();
        *votes.entry(master.addr.host).or_default() += 1;
    }
    view.agree = votes.len() == 1;
    view.master = votes.into_iter().max_by_key(|(_, n)| *n).map(|(ip, _)| ip);
    view
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pod(name: &str, template: &str, config: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        pod.metadata.annotations = Some(
            [
                (kb::TEMPLATE_HASH_ANNOTATION.to_owned(), template.to_owned()),
                (kb::CONFIG_HASH_ANNOTATION.to_owned(), config.to_owned()),
            ]
            .into(),
        );
        pod
    }

    fn view(name: &str) -> PodView {
        PodView {
            name: name.to_owned(),
            ordinal: labels::ordinal(name).unwrap(),
            ip: None,
            deleting: false,
            role_label: None,
            node: None,
            outdated: false,
            config_stale: false,
            ready: false,
            fenced: false,
        }
    }

    #[test]
    fn revisions_tell_a_restart_from_a_live_change() {
        let pods = [
            pod("s-0", "t1", "c1"),
            pod("s-1", "t0", "c1"),
            pod("s-2", "t1", "c0"),
            pod("s-3", "t1", "c0"),
            pod("s-10", "t1", "c1"),
        ];
        let mut views: Vec<PodView> = pods.iter().map(|p| view(&p.name_any())).collect();
        let refused: BTreeSet<String> = ["s-3".to_owned(), "s-10".to_owned()].into();
        let revisions = Revisions {
            template_hash: "t1",
            config_hash: "c1",
            refused: &refused,
        };
        mark_revisions(&mut views, &pods, &revisions);
        let flags: Vec<(bool, bool)> = views.iter().map(|v| (v.outdated, v.config_stale)).collect();
        assert_eq!(
            flags,
            [
                (false, false),
                (true, false),
                (false, true),
                (true, false),
                // Refused once, restarted since: current.
                (false, false),
            ]
        );
    }

    #[test]
    fn only_pods_of_the_set_count_and_ordinals_are_numbers() {
        let named = |n: &str| {
            let mut p = Pod::default();
            p.metadata.name = Some(n.to_owned());
            p
        };
        assert_eq!(ordinal(&named("s-10"), "s"), Some(10));
        assert_eq!(ordinal(&named("s-x-1"), "s"), None);
        assert_eq!(ordinal(&named("other-1"), "s"), None);
    }
}
