//! Reading the world: the Standards and Clusters of the namespace, their Secrets and pods, the
//! group's pods, and what every sentinel holds.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kvrocks_api::labels::ordinal;
use kvrocks_api::labels::{COMPONENT, INSTANCE, SENTINEL_PORT, selector};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard, labels::Component};
use kvrocks_client::{Endpoint, NodeAddr, Password, SentinelClient, Timeouts};
use kvrocks_operator_core::Context;

use crate::Error;
use crate::auth::PodAuth;
use crate::desired::PasswordLookup;
use crate::model::{Addr, MonitorName, ObservedMonitor, ObservedPod, Owner, Reach};
use crate::state::{GroupKey, PodKey, Shared, WatchedPod};

/// How long a sentinel may take to answer; a reconcile never waits on a dead one for longer.
fn timeouts() -> Timeouts {
    Timeouts::new(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(3),
    )
}

fn sentinel_port() -> u16 {
    u16::try_from(SENTINEL_PORT).unwrap_or(26379)
}

/// Every KvrocksStandard and KvrocksCluster of the namespace.
pub async fn owners(
    ctx: &Context,
    namespace: &str,
) -> Result<(Vec<KvrocksStandard>, Vec<KvrocksCluster>), Error> {
    let standards: Api<KvrocksStandard> = Api::namespaced(ctx.client.clone(), namespace);
    let clusters: Api<KvrocksCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let params = ListParams::default();
    let (standards, clusters) = futures::join!(standards.list(&params), clusters.list(&params));
    let standards = standards.map_err(Error::kube(format!(
        "listing KvrocksStandards in {namespace}"
    )))?;
    let clusters = clusters.map_err(Error::kube(format!(
        "listing KvrocksClusters in {namespace}"
    )))?;
    Ok((standards.items, clusters.items))
}

/// The password in each of `secrets`, or why there is none. Never logged.
pub async fn passwords(
    ctx: &Context,
    namespace: &str,
    secrets: &BTreeSet<String>,
) -> Result<BTreeMap<String, PasswordLookup>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut out = BTreeMap::new();
    for name in secrets {
        let secret = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))?;
        out.insert(name.clone(), password_in(namespace, name, secret.as_ref()));
    }
    Ok(out)
}

/// The password of a Secret (key `password`), or a message for a person saying what is wrong.
pub fn password_in(namespace: &str, name: &str, secret: Option<&Secret>) -> PasswordLookup {
    let Some(secret) = secret else {
        return Err(format!("Secret {namespace}/{name} does not exist yet"));
    };
    kvrocks_operator_core::auth::password_from(namespace, name, secret).map(Password::new)
}

/// The group's pods, in ordinal order.
pub async fn sentinel_pods(ctx: &Context, group: &GroupKey) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &group.namespace);
    let params = ListParams::default().labels(&selector(&group.name, Component::Sentinel));
    let mut pods = api
        .list(&params)
        .await
        .map_err(Error::kube(format!(
            "listing the pods of KvrocksSentinel {}/{}",
            group.namespace, group.name
        )))?
        .items;
    pods.sort_by_key(|p| ordinal_key(&p.name_any()));
    Ok(pods)
}

/// Sorts `s-10` after `s-9` (the ordinal as a number; names without one last, by name).
fn ordinal_key(name: &str) -> (u32, String) {
    (ordinal(name).unwrap_or(u32::MAX), name.to_owned())
}

/// The IP of a pod that has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// The pods worth an event subscription: with an IP and not being deleted.
pub fn watched(pods: &[Pod], password: &Password) -> Vec<WatchedPod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            Some(WatchedPod {
                name: p.name_any(),
                key: PodKey {
                    uid: p.uid()?,
                    ip: pod_ip(p)?,
                    password: crate::model::fingerprint(password.expose()),
                },
                password: password.clone(),
            })
        })
        .collect()
}

/// Whether a pod of the group is going away: being deleted, or scaled away (StatefulSet
/// scale-in removes the ordinals from `replicas` up, so the controller stops configuring
/// them as soon as the spec shrinks).
pub fn leaving(pod: &Pod, group: &str, replicas: i32) -> bool {
    let ordinal = pod
        .name_any()
        .strip_prefix(group)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse::<i64>().ok());
    pod.metadata.deletion_timestamp.is_some() || ordinal.is_some_and(|n| n >= i64::from(replicas))
}

/// Asks every sentinel pod that is not [`leaving`] (in parallel) for its monitors of ours and
/// its passwords, authenticating with the first of `passwords` it accepts (then with none: a
/// sentinel started before it had a password); returns the observations, a client per pod that
/// answered, and what each pod showed about its password.
pub async fn ask_sentinels(
    pods: &[Pod],
    replicas: i32,
    shared: &Shared,
    group: &GroupKey,
    passwords: &GroupPasswords,
) -> (
    Vec<ObservedPod>,
    BTreeMap<String, SentinelClient>,
    BTreeMap<String, PodAuth>,
) {
    let with_ip = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ip(p).is_some())
        .count();
    let asks = pods.iter().map(|pod| async move {
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let ip = pod_ip(pod);
        let terminating = leaving(pod, &group.name, replicas);
        let (client, reach, auth) = match (&ip, terminating) {
            (Some(ip), false) => ask(ip, with_ip.saturating_sub(1), passwords).await,
            _ => (None, Reach::NotAsked, PodAuth::Unknown),
        };
        let auth_applied = match &reach {
            Reach::Monitors(m) => m
                .keys()
                .filter_map(|n| Some((n.clone(), shared.auth_applied(group, &uid, n)?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let observed = ObservedPod {
            name: name.clone(),
            uid,
            ip,
            pod_ready: kvrocks_operator_core::pods::is_ready(pod),
            terminating,
            reach,
            auth_applied,
        };
        (observed, client, auth)
    });
    let answers = join_all(asks).await;
    let mut observed = Vec::with_capacity(answers.len());
    let mut clients = BTreeMap::new();
    let mut auths = BTreeMap::new();
    for (pod, client, auth) in answers {
        if !pod.terminating {
            auths.insert(pod.name.clone(), auth);
        }
        if matches!(pod.reach, Reach::Monitors(_))
            && let Some(c) = client
        {
            clients.insert(pod.name.clone(), c);
        }
        observed.push(pod);
    }
    (observed, clients, auths)
}

/// The group's passwords: `wanted` (from its Secret) and the one in effect (the operator's
/// record, written with the wanted one the first time).
pub async fn group_passwords(
    ctx: &Context,
    cr: &KvrocksSentinel,
    wanted: Password,
) -> Result<GroupPasswords, Error> {
    use kvrocks_operator_core::auth;
    let applied = match auth::applied_password(&ctx.client, cr).await? {
        Some(p) => p,
        None => {
            auth::record_password(&ctx.client, cr, Component::Sentinel, &wanted).await?;
            wanted.clone()
        }
    };
    Ok(GroupPasswords { applied, wanted })
}

/// The group's two passwords (see [`crate::auth`]).
#[derive(Clone, Debug)]
pub struct GroupPasswords {
    /// The one in effect.
    pub applied: Password,
    /// The one the Secret holds.
    pub wanted: Password,
}

/// One sentinel: its monitors and its password state, through the first password it accepts.
async fn ask(
    ip: &str,
    other_pods: usize,
    passwords: &GroupPasswords,
) -> (Option<SentinelClient>, Reach, PodAuth) {
    let endpoint =
        Endpoint::new(NodeAddr::new(ip.to_owned(), sentinel_port())).with_timeouts(timeouts());
    let candidates = [
        Some(passwords.applied.clone()),
        Some(passwords.wanted.clone()),
        None,
    ];
    let mut last = String::new();
    for password in candidates {
        let c = SentinelClient::new(endpoint.clone().with_optional_password(password));
        match monitors_of(&c, other_pods).await {
            Ok(monitors) => {
                let auth = password_state(&c, passwords).await;
                return (Some(c), Reach::Monitors(monitors), auth);
            }
            Err(e @ kvrocks_client::Error::Auth { .. }) => {
                last = e.to_string();
                c.close().await;
            }
            Err(e) => return (Some(c), Reach::Unreachable(e.to_string()), PodAuth::Unknown),
        }
    }
    (None, Reach::Unreachable(last), PodAuth::Refused)
}

/// Which passwords a sentinel accepts and which it sends its peers.
async fn password_state(client: &SentinelClient, passwords: &GroupPasswords) -> PodAuth {
    let (accepts, sent) = futures::join!(client.accepted_password_hashes(), client.sentinel_pass());
    match (accepts, sent) {
        (Ok(accepts), Ok(sent)) => PodAuth::Known {
            accepts: accepts.into_iter().collect(),
            peer_pass: crate::auth::peer_pass_of(
                sent.as_ref(),
                &passwords.applied,
                &passwords.wanted,
            ),
        },
        _ => PodAuth::Unknown,
    }
}

/// `SENTINEL MASTERS`, keeping ours; the peers of a monitor are read only when the count of
/// other sentinels it knows differs from the number of other sentinel pods (the only case
/// in which some of them can be stale).
async fn monitors_of(
    client: &SentinelClient,
    other_pods: usize,
) -> kvrocks_client::Result<BTreeMap<String, ObservedMonitor>> {
    let masters = client.masters().await?;
    let mut out = BTreeMap::new();
    for m in masters {
        if MonitorName::parse(&m.name).is_none() {
            continue;
        }
        let knows = m.num_other_sentinels.and_then(|n| usize::try_from(n).ok());
        let peers = if knows.is_some_and(|n| n > other_pods) {
            Some(
                client
                    .sentinels(&m.name)
                    .await?
                    .into_iter()
                    .map(|p| Addr::new(p.addr.host, p.addr.port))
                    .collect(),
            )
        } else {
            None
        };
        out.insert(
            m.name.clone(),
            ObservedMonitor {
                master: Addr::new(m.addr.host.clone(), m.addr.port),
                quorum: m.quorum,
                down_after_ms: m.down_after_ms,
                failover_timeout_ms: m.failover_timeout_ms,
                parallel_syncs: m.parallel_syncs,
                failover_in_progress: m.is_failover_in_progress(),
                known_sentinels: m.num_other_sentinels,
                peers,
            },
        );
    }
    Ok(out)
}

/// The IPs of the current pods of each owner (label `app.kubernetes.io/instance=<owner>` and
/// the owner's component), pods being deleted included: a pod that is shutting down may still
/// be the master sentinel just elected.
pub async fn owner_ips(
    ctx: &Context,
    namespace: &str,
    owners: &BTreeSet<Owner>,
) -> Result<BTreeMap<Owner, BTreeSet<String>>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut out = BTreeMap::new();
    for owner in owners {
        let labels = format!(
            "{INSTANCE}={},{COMPONENT}={}",
            owner.name,
            owner.kind.component().as_str()
        );
        let pods = api
            .list(&ListParams::default().labels(&labels))
            .await
            .map_err(Error::kube(format!(
                "listing the pods of {owner} in {namespace}"
            )))?;
        out.insert(
            owner.clone(),
            pods.items.iter().filter_map(pod_ip).collect(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn passwords_come_from_the_password_key() {
        assert!(
            password_in("ns", "a-auth", None)
                .unwrap_err()
                .contains("does not exist")
        );
        let mut secret = Secret::default();
        // Neither made by the operator nor labelled: not used (the rules are `auth::password_from`'s).
        assert!(
            password_in("ns", "a-auth", Some(&secret))
                .unwrap_err()
                .contains("kvrocks.io/auth=true")
        );
        secret.metadata.labels = Some([("kvrocks.io/auth".to_owned(), "true".to_owned())].into());
        assert!(
            password_in("ns", "a-auth", Some(&secret))
                .unwrap_err()
                .contains("no key")
        );
        secret.data = Some([("password".to_owned(), ByteString(b"s3cret-Pass".to_vec()))].into());
        assert_eq!(
            password_in("ns", "a-auth", Some(&secret)).unwrap().expose(),
            "s3cret-Pass"
        );
        secret.data = Some([("password".to_owned(), ByteString(vec![0xff]))].into());
        let err = password_in("ns", "a-auth", Some(&secret)).unwrap_err();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn pods_beyond_the_replicas_are_leaving() {
        let pod = |name: &str| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
        };
        assert!(!leaving(&pod("g-2"), "g", 3));
        assert!(leaving(&pod("g-3"), "g", 3));
        assert!(leaving(&pod("g-10"), "g", 3));
        assert!(!leaving(&pod("other-7"), "g", 3));
        let mut deleted = pod("g-0");
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(leaving(&deleted, "g", 3));
    }

    #[test]
    fn pods_sort_by_ordinal() {
        let mut names = vec!["s-10", "s-2", "s-1"];
        names.sort_by_key(|n| ordinal_key(n));
        assert_eq!(names, ["s-1", "s-2", "s-10"]);
    }
}
