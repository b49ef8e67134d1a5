//! Reading a KvrocksCluster's world, and nothing else: its pods, what each kvrocks node says
//! (id, topology version, replication, whether it was seen holding its shard's data since it
//! started), the prober's verdicts, a newer layout a node runs, and
//! the source's state of the migration status records.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksCluster;
use kvrocks_api::labels::{self, Component, SHARD, ordinal};
use kvrocks_client::{
    LinkStatus, MigrationState, NodeClient, Password, ReplicationRole, Timeouts, Topology,
};
use kvrocks_operator_core::builders::kvrocks as kb;
use kvrocks_operator_core::prober::Target;
use kvrocks_operator_core::{Context, WakeTarget, fence, node, pods};

use crate::objects::Hashes;
use crate::plan::{Move, NodeObs, Observed, PodObs};
use crate::state::State;
use crate::{Error, topo};

/// The cluster's data pods.
pub async fn pods(ctx: &Context, cr: &KvrocksCluster) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = ctx.api_for(cr);
    let name = cr.name_any();
    Ok(api
        .list(&ListParams::default().labels(&labels::selector(&name, Component::Cluster)))
        .await
        .map_err(Error::kube(format!("list pods of cluster {name}")))?
        .items)
}

/// The listed pods the prober does not count unreachable, but for those being deleted (the
/// prober does not watch them, and one cut off would cost a connect timeout).
pub fn answering(listed: &[Pod], state: &State, key: &WakeTarget) -> Vec<Pod> {
    let verdicts = state.probers.verdicts(key);
    listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| verdicts.get(&p.name_any()).is_none_or(|v| v.reachable))
        .cloned()
        .collect()
}

/// How long connecting to a pod the prober counts unreachable may take.
const PROBER_DOWN_CONNECT: std::time::Duration = std::time::Duration::from_millis(250);

/// Everything the planner reads besides spec and status. The prober is pointed at the pods
/// that run; a pod it counts unreachable is asked with a short connect timeout.
pub async fn observe(
    api: &Api<Pod>,
    cr: &KvrocksCluster,
    listed: &[Pod],
    hashes: &Hashes,
    password: &Password,
    state: &State,
    key: &WakeTarget,
) -> Observed {
    let mut pods: Vec<PodObs> = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| pod_obs(p, hashes, state, key))
        .collect();
    pods.sort_by_key(|p| (p.shard, p.ordinal));
    let stopping: Vec<PodObs> = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| pod_obs(p, hashes, state, key))
        .filter(|p| p.ip.is_some())
        .collect();
    let targets = pods
        .iter()
        .filter_map(|p| {
            Some(Target {
                pod: p.pod.clone(),
                ip: p.ip.clone()?,
            })
        })
        .collect();
    state.probers.sync(key, targets, password);
    let verdicts = state.probers.verdicts(key);
    for pod in &mut pods {
        pod.unreachable_since = verdicts
            .get(&pod.pod)
            .filter(|v| !v.reachable)
            .map(|v| v.since);
    }
    let nodes: BTreeMap<String, NodeObs> =
        futures::future::join_all(pods.iter().chain(&stopping).map(|p| async {
            // Counted down by the prober: asked again, briefly (fresh evidence beats a verdict that
            // may be a slow second; a pod really gone costs this, not a connect timeout). A pod
            // being deleted is not probed: asked briefly too (a failover waits for it to stop).
            let connect = match (p.unreachable_since, p.stop_by) {
                (None, None) => node::CONNECT_TIMEOUT,
                _ => PROBER_DOWN_CONNECT,
            };
            let obs = match &p.ip {
                Some(ip) => read_node(ip, password, connect).await,
                None => NodeObs::default(),
            };
            (p.pod.clone(), obs)
        }))
        .await
        .into_iter()
        .collect();
    let mut nodes = nodes;
    for p in pods.iter().chain(&stopping) {
        if let (Some(obs), Some(ip)) = (nodes.get_mut(&p.pod), &p.ip) {
            let stranger = obs.reachable && obs.myid.is_none();
            let linked = obs.link_up && obs.myid.is_some();
            obs.synced = state.note_synced(key, &p.pod, ip, linked, stranger);
        }
    }
    let status = cr.status.clone().unwrap_or_default();
    let (previous, previous_unread) = if status.shards.is_empty() {
        read_previous(api, &pods).await
    } else {
        (BTreeMap::new(), None)
    };
    let mut observed = Observed {
        uid: cr.uid().unwrap_or_default(),
        pods,
        stopping,
        nodes,
        ahead: None,
        migration: None,
        adopt: None,
        previous,
        previous_unread,
    };
    let version = status.topology_version.unwrap_or(0).max(0).unsigned_abs();
    observed.ahead = ahead(&status.shards, &observed, version, password).await;
    if let Some(recorded) = &status.migration {
        observed.migration = migration_state(&status.shards, recorded, &observed, password).await;
    } else if let Some((mv, state)) = stray_migration(&status.shards, &observed, password).await {
        tracing::warn!(slots = %mv.range, from = mv.from, to = mv.to, ?state,
            "a source master reports a migration status does not record: adopting it");
        observed.adopt = Some(mv);
        observed.migration = Some(state);
    }
    observed
}

/// How much of a pod's log is read for the topology its start script printed first.
const PREVIOUS_LOG_BYTES: i64 = 256 * 1024;

/// Before the first layout: the topology each running pod's volume persisted, as its start
/// script printed it (see [`crate::previous`]), and why one could not be read.
async fn read_previous(
    api: &Api<Pod>,
    pods: &[PodObs],
) -> (BTreeMap<String, crate::previous::Previous>, Option<String>) {
    let params = kube::api::LogParams {
        container: Some(kb::CONTAINER.to_owned()),
        limit_bytes: Some(PREVIOUS_LOG_BYTES),
        ..Default::default()
    };
    let reads = futures::future::join_all(pods.iter().filter(|p| p.ip.is_some()).map(|p| {
        let params = &params;
        async move { (p.pod.clone(), api.logs(&p.pod, params).await) }
    }))
    .await;
    let (mut previous, mut unread) = (BTreeMap::new(), None);
    for (pod, read) in reads {
        match read.map(|log| crate::previous::parse_log(&log)) {
            Ok(None) => {}
            Ok(Some(Ok(p))) => {
                previous.insert(pod, p);
            }
            Ok(Some(Err(e))) => unread = Some(format!("{pod}: {e}")),
            Err(e) => unread = Some(format!("cannot read the log of {pod}: {e}")),
        }
    }
    (previous, unread)
}

/// A migration of slots status still gives to a source master, to a node status knows as another
/// shard's master, that status does not record (it lost the record): one the source reports
/// running (`CLUSTER INFO`, state `start`), or one it reports finished and whose slots it
/// already sends to the destination (`MOVED` for the range's first slot). kvrocks keeps
/// reporting a source's last migration: a `success` whose new owner was pushed long ago (and
/// that the slots may have left since) is told apart by the source serving the slots again.
async fn stray_migration(
    shards: &[kvrocks_api::cluster::ShardStatus],
    observed: &Observed,
    password: &Password,
) -> Option<(Move, MigrationState)> {
    let assignment = crate::plan::Assignment::from_status(shards).ok()?;
    for shard in shards {
        let Some(master) = topo::master_of(shard).filter(|m| observed.reachable(&m.pod)) else {
            continue;
        };
        let client = NodeClient::new(node::endpoint(&master.ip, password));
        let found = stray_on(&client, shard, shards, &assignment).await;
        client.close().await;
        if found.is_some() {
            return found;
        }
    }
    None
}

/// [`stray_migration`] on one source master.
async fn stray_on(
    client: &NodeClient,
    source: &kvrocks_api::cluster::ShardStatus,
    shards: &[kvrocks_api::cluster::ShardStatus],
    assignment: &crate::plan::Assignment,
) -> Option<(Move, MigrationState)> {
    let migration = client.cluster_info().await.ok()?.migration?;
    let range = migration.slots?;
    let to = shards.iter().find(|s| {
        s.index != source.index
            && topo::master_of(s).is_some_and(|m| m.node_id == migration.destination_node)
    })?;
    let mv = Move {
        from: u32::try_from(source.index).ok()?,
        to: u32::try_from(to.index).ok()?,
        range,
    };
    assignment.check_move(&mv).ok()?;
    match migration.state {
        MigrationState::Start => Some((mv, migration.state)),
        MigrationState::Success => {
            let redirect = client.redirect_for(range.start()).await.ok()??;
            let destination = topo::master_of(to)?;
            (redirect.host == destination.ip).then_some((mv, migration.state))
        }
        _ => None,
    }
}

fn pod_obs(pod: &Pod, hashes: &Hashes, state: &State, key: &WakeTarget) -> Option<PodObs> {
    let name = pod.name_any();
    let shard = pod.labels().get(SHARD)?.parse::<u32>().ok()?;
    let annotations = pod.annotations();
    let config_ok = annotations.get(kb::CONFIG_HASH_ANNOTATION) == Some(&hashes.config);
    Some(PodObs {
        shard,
        ordinal: ordinal(&name)?,
        ip: pods::running_ip(pod),
        template_ok: annotations.get(kb::TEMPLATE_HASH_ANNOTATION) == hashes.templates.get(&shard),
        config_ok,
        live_refused: !config_ok && state.live_refused(key, &name, &hashes.config),
        unreachable_since: None,
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
        stop_by: pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
        pod: name,
    })
}

/// `CLUSTERX MYID`, `CLUSTERX VERSION` and `INFO replication` of one node, with the instance's
/// password or, when it refuses that, the fence password (a switchover left it fenced).
async fn read_node(ip: &str, password: &Password, connect: std::time::Duration) -> NodeObs {
    let timeouts = Timeouts::new(connect, node::REPLY_TIMEOUT);
    let endpoint = |password: &Password| node::endpoint(ip, password).with_timeouts(timeouts);
    let (client, fenced) = match NodeClient::connect(endpoint(password)).await {
        Ok(client) => (client, false),
        Err(kvrocks_client::Error::Auth { .. }) => {
            match NodeClient::connect(endpoint(&fence::password(password))).await {
                Ok(client) => (client, true),
                Err(_) => return NodeObs::default(),
            }
        }
        Err(_) => return NodeObs::default(),
    };
    // A node that stops answering in the middle of the reads is unreachable, not a node without
    // a topology (a master read as "no version, offset 0" would look restarted on an empty
    // volume and lose its shard while it still serves it).
    let (myid, version, info) = (
        client.clusterx_myid().await,
        client.clusterx_version().await,
        client.info_replication().await,
    );
    client.close().await;
    let broke = |e: &kvrocks_client::Error| e.is_unreachable();
    if myid.as_ref().is_err_and(broke)
        || version.as_ref().is_err_and(broke)
        || info.as_ref().is_err_and(broke)
    {
        return NodeObs::default();
    }
    let myid = myid.ok().flatten();
    let version = version.ok().flatten();
    let info = info.ok();
    let (offset, link_up) = match &info {
        Some(i) if matches!(i.role, ReplicationRole::Master) => {
            (i.master_repl_offset.unwrap_or(0), true)
        }
        Some(i) => (
            i.slave_repl_offset.unwrap_or(0),
            matches!(i.master_link_status, Some(LinkStatus::Up)),
        ),
        None => (0, false),
    };
    NodeObs {
        // Connected and answering PING is reachable: a replica in the middle of a full sync
        // may refuse INFO for seconds, and is not down.
        reachable: true,
        myid,
        version,
        offset,
        link_up,
        last_io_secs: info.as_ref().and_then(|i| i.master_last_io_seconds_ago),
        fenced,
        synced: false,
    }
}

/// The layout the node with the highest version runs, when that is above status's: the
/// operator pushed it and stopped before recording it.
async fn ahead(
    shards: &[kvrocks_api::cluster::ShardStatus],
    observed: &Observed,
    status_version: u64,
    password: &Password,
) -> Option<(Topology, u64)> {
    if shards.is_empty() {
        return None;
    }
    let (pod, seen) = observed
        .nodes
        .iter()
        .filter_map(|(pod, o)| Some((pod, o.version?)))
        .filter(|(_, v)| *v > status_version)
        .max_by_key(|(_, v)| *v)?;
    let ip = observed.pods.iter().find(|p| &p.pod == pod)?.ip.clone()?;
    let client = NodeClient::new(node::endpoint(&ip, password));
    let nodes = client.cluster_nodes().await;
    client.close().await;
    let topology = Topology::from_cluster_nodes(&nodes.ok()?).ok()?;
    Some((topology, seen))
}

/// `CLUSTER INFO` on the source master of the recorded migration: its state for those slots
/// (None: no such migration there, or the source does not answer).
async fn migration_state(
    shards: &[kvrocks_api::cluster::ShardStatus],
    recorded: &kvrocks_api::cluster::MigrationStatus,
    observed: &Observed,
    password: &Password,
) -> Option<MigrationState> {
    let mv = Move::from_status(recorded).ok()?;
    let source = shards
        .iter()
        .find(|s| s.index == mv.from as i32)
        .and_then(topo::master_of)
        .filter(|m| observed.reachable(&m.pod))?;
    let client = NodeClient::new(node::endpoint(&source.ip, password));
    let info = client.cluster_info().await;
    client.close().await;
    info.ok()?
        .migration
        .filter(|m| m.slots == Some(mv.range))
        .map(|m| m.state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A server on `ip:6379` that answers every command (`PING` with `PONG`, `CLIENT` with an
    /// integer, `INFO` with a bulk string, the rest `OK`) until `stall_on` arrives, and from then
    /// on answers nothing: a node cut off between the operator's connect and its reads.
    async fn stalling_server(
        ip: &str,
        stall_on: &'static str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind((ip, 6379)).await.ok()?;
        Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(header)) = lines.next_line().await {
                        // `*<n>` then n times `$<len>` and the argument.
                        let n: usize = header.trim_start_matches('*').parse().unwrap_or(0);
                        let mut args = Vec::new();
                        for _ in 0..n {
                            let _len = lines.next_line().await;
                            args.push(lines.next_line().await.ok().flatten().unwrap_or_default());
                        }
                        let name = args
                            .first()
                            .map(|a| a.to_ascii_uppercase())
                            .unwrap_or_default();
                        if name == stall_on {
                            std::future::pending::<()>().await;
                        }
                        let info = "# Server\r\nredis_version:7.0.0\r\n";
                        let reply = match name.as_str() {
                            "PING" => "+PONG\r\n".to_owned(),
                            "CLIENT" => ":1\r\n".to_owned(),
                            "INFO" => format!("${}\r\n{info}\r\n", info.len()),
                            _ => "+OK\r\n".to_owned(),
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }))
    }

    #[tokio::test]
    async fn a_node_that_stops_answering_mid_read_is_unreachable_not_without_topology() {
        let ip = "127.0.0.77";
        let Some(server) = stalling_server(ip, "CLUSTERX").await else {
            eprintln!("SKIPPED: cannot listen on {ip}:6379 here");
            return;
        };
        let obs = read_node(ip, &Password::new("pw"), std::time::Duration::from_secs(1)).await;
        server.abort();
        assert!(
            !obs.reachable,
            "a node whose reads time out must not be read as a node without topology: {obs:?}"
        );
    }
}
