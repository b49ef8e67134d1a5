//! KvrocksCluster end to end on the testbed. Cluster mode is never faked: without a real kvrocks
//! (`KVROCKS_BIN`) these scenarios print that they were skipped, and why.
//!
//! Create 3 shards x 1 replica; a cluster-aware client (fred) writes 20,000 keys; kill a master's
//! process -> its replica is promoted by the operator and every key stays readable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::RespVersion;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::PostParams;
use kvrocks_api::KvrocksCluster;
use kvrocks_e2e::{DataPlane, PodRef, Testbed, wait};
use serde_json::json;

const NS: &str = "cluster-e2e";
const KEYS: usize = 20_000;
const READY_TIMEOUT: Duration = Duration::from_secs(180);

fn ready(c: &KvrocksCluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn master_of_shard(c: &KvrocksCluster, shard: usize) -> Option<String> {
    let s = c.status.as_ref()?.shards.get(shard)?;
    s.nodes
        .iter()
        .find(|n| n.role == "master")
        .map(|n| n.pod.clone())
}

async fn cluster_client(ip: &str, password: &str) -> Client {
    let config = Config {
        server: ServerConfig::new_clustered(vec![(ip.to_owned(), 6379)]),
        password: Some(password.to_owned()),
        version: RespVersion::RESP2,
        ..Default::default()
    };
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .set_policy(ReconnectPolicy::new_constant(0, 200))
        // fred follows MOVED and ASK itself, and each redirect is a write attempt; while the
        // nodes take the new topology a slot can bounce a few times, so allow more than the
        // default three. What still reaches the writer is a server error, counted by kind.
        .with_connection_config(|c| {
            c.max_command_attempts = 20;
            c.max_redirections = 20;
        })
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// A node to seed a cluster client with: the current IP of shard 0's master (pods move).
async fn seed(testbed: &Testbed, clusters: &Api<KvrocksCluster>) -> String {
    let c = clusters.get("kc").await.unwrap();
    let pod = master_of_shard(&c, 0).unwrap();
    testbed.pod_ip(&PodRef::new(NS, &pod)).await.unwrap()
}

async fn count_readable(client: &Client) -> usize {
    let mut found = 0;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let gets = chunk.iter().map(|i| {
            let client = client.clone();
            async move {
                let v: Option<String> = client.get(format!("key:{i}")).await.ok().flatten();
                v == Some(format!("value-{i}"))
            }
        });
        found += futures::future::join_all(gets)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
    }
    found
}

fn shards_ready(c: &KvrocksCluster, shards: usize, nodes_per_shard: usize) -> bool {
    ready(c)
        && c.status.as_ref().is_some_and(|s| {
            s.shards.len() == shards && s.shards.iter().all(|sh| sh.nodes.len() == nodes_per_shard)
        })
}

async fn patch_spec(clusters: &Api<KvrocksCluster>, spec: serde_json::Value) {
    clusters
        .patch(
            "kc",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// Writes `w:<n>` keys until stopped; returns the acknowledged ones and the errors seen (each
/// failed write is retried until acknowledged).
fn start_writer(
    kv: Client,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<usize>, std::collections::BTreeMap<String, usize>)> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut errors = std::collections::BTreeMap::new();
        let mut n = 0usize;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let result = kv
                .set::<(), _, _>(format!("w:{n}"), format!("v{n}"), None, None, false)
                .await;
            match result {
                Ok(()) => {
                    acked.push(n);
                    n += 1;
                }
                Err(e) => {
                    // fred reports a slot bouncing between its old and new owner while the
                    // new topology reaches the nodes as "Too many redirections" (of MOVED).
                    let details = e.details().to_owned();
                    // fred counts each write of a command, redirected ones included, and gives
                    // up with "Too many failed write attempts" when MOVED keeps bouncing.
                    let kind = if details.contains("redirections")
                        || details.contains("Too many failed write attempts")
                    {
                        "MOVED (too many redirections)".to_owned()
                    } else {
                        details
                            .split_whitespace()
                            .take(6)
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    *errors.entry(kind).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (acked, errors)
    })
}

async fn check_acked(kv: &Client, acked: &[usize]) -> usize {
    let mut missing = 0;
    for chunk in acked.chunks(500) {
        let gets = chunk.iter().map(|n| {
            let kv = kv.clone();
            async move {
                let v: Option<String> = kv.get(format!("w:{n}")).await.ok().flatten();
                v == Some(format!("v{n}"))
            }
        });
        missing += futures::future::join_all(gets)
            .await
            .into_iter()
            .filter(|ok| !ok)
            .count();
    }
    missing
}

#[tokio::test]
async fn a_cluster_is_created_written_and_fails_over() {
    let testbed = Testbed::shared().await.unwrap();
    if !testbed.agent_or_skip("KvrocksCluster end to end") {
        return;
    }
    if !matches!(testbed.data_plane(), DataPlane::KvrocksBin { .. }) {
        kvrocks_e2e::say!(
            "\nSKIPPED KvrocksCluster end to end: cluster mode needs a real kvrocks binary; set KVROCKS_BIN (the redis-server stand-in cannot run cluster mode)"
        );
        return;
    }
    kvrocks_e2e::say!("cluster e2e: {}", testbed.data_plane().describe());
    testbed.install_crds().await.unwrap();
    let Some(_operator) = kvrocks_e2e::operator::start_operator(testbed, &[])
        .await
        .unwrap()
    else {
        return;
    };
    let client = testbed.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await;
    let clusters: Api<KvrocksCluster> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    clusters
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                "metadata": {"name": "kc"},
                "spec": {"shards": 3, "replicasPerShard": 1, "storage": {"size": "256Mi"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let created = wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready", ready)
        .await
        .unwrap();
    kvrocks_e2e::say!(
        "cluster e2e: 3 shards x 2 nodes Ready after {:.1} s (topology version {:?})",
        started.elapsed().as_secs_f64(),
        created.status.as_ref().and_then(|s| s.topology_version)
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let password = String::from_utf8(
        secrets.get("kc-auth").await.unwrap().data.unwrap()["password"]
            .0
            .clone(),
    )
    .unwrap();
    let kv = cluster_client(&seed(testbed, &clusters).await, &password).await;
    let write_started = Instant::now();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let sets = chunk.iter().map(|i| {
            let kv = kv.clone();
            async move {
                kv.set::<(), _, _>(format!("key:{i}"), format!("value-{i}"), None, None, false)
                    .await
            }
        });
        for result in futures::future::join_all(sets).await {
            result.unwrap();
        }
    }
    kvrocks_e2e::say!(
        "cluster e2e: {KEYS} keys written in {:.1} s",
        write_started.elapsed().as_secs_f64()
    );
    assert_eq!(count_readable(&kv).await, KEYS);

    // Steady: no writes to the API server.
    let rv = kube::ResourceExt::resource_version(&clusters.get("kc").await.unwrap());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        kube::ResourceExt::resource_version(&clusters.get("kc").await.unwrap()),
        rv,
        "a steady cluster writes nothing"
    );

    // Kill shard 0's master process: it restarts (persisted node table) and no key is lost.
    let master0 = master_of_shard(&created, 0).unwrap();
    testbed
        .kill_container(&PodRef::new(NS, &master0), "kvrocks")
        .await
        .unwrap();
    wait::for_object(
        &clusters,
        "kc",
        READY_TIMEOUT,
        "Ready after the kill",
        ready,
    )
    .await
    .unwrap();
    assert_eq!(
        count_readable(&kv).await,
        KEYS,
        "every key after a killed master process"
    );

    // Cut shard 1's master off: after three failed probes the operator promotes its replica.
    let old = master_of_shard(&created, 1).unwrap();
    let cut = Instant::now();
    testbed.cut_network(&PodRef::new(NS, &old)).await.unwrap();
    let after = wait::for_object(
        &clusters,
        "kc",
        Duration::from_secs(30),
        "shard 1 failed over",
        |c| master_of_shard(c, 1).is_some_and(|m| m != old),
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster e2e: shard 1 failed over from {old} to {} in {:.1} s",
        master_of_shard(&after, 1).unwrap_or_default(),
        cut.elapsed().as_secs_f64()
    );
    testbed
        .restore_network(&PodRef::new(NS, &old))
        .await
        .unwrap();
    wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready", ready)
        .await
        .unwrap();
    let kv2 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(count_readable(&kv2).await, KEYS, "every key after the kill");

    wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready, 3 x 2", |c| {
        shards_ready(c, 3, 2)
    })
    .await
    .unwrap();

    // 3 -> 4 shards under a continuous writer: no acknowledged write lost.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = start_writer(
        cluster_client(&seed(testbed, &clusters).await, &password).await,
        stop.clone(),
    );
    let scale_started = Instant::now();
    patch_spec(&clusters, json!({"shards": 4})).await;
    let scaled = wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready, 4 x 2", |c| {
        shards_ready(c, 4, 2)
    })
    .await
    .unwrap();
    let scale_took = scale_started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, errors) = writer.await.unwrap();
    let moved: usize = scaled.status.as_ref().unwrap().shards[3]
        .slots
        .iter()
        .map(|r| {
            let (a, b) = kvrocks_api::slots::parse_slot_string(r).unwrap();
            usize::from(b - a) + 1
        })
        .sum();
    assert!(moved >= 4096, "shard 3 got its share of the slots: {moved}");
    kvrocks_e2e::say!(
        "cluster e2e: 3 -> 4 shards in {:.1} s ({moved} slots to shard 3, ~{:.0} keys/s of the {KEYS} + writer keys); writer: {} acked, errors {errors:?}",
        scale_took.as_secs_f64(),
        (KEYS as f64 * moved as f64 / 16384.0) / scale_took.as_secs_f64(),
        acked.len()
    );
    let kv3 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(
        check_acked(&kv3, &acked).await,
        0,
        "every acknowledged write after 3 -> 4"
    );
    assert_eq!(count_readable(&kv3).await, KEYS, "every key after 3 -> 4");
    for kind in errors.keys() {
        assert!(
            ["MOVED", "ASK", "TRYAGAIN"]
                .iter()
                .any(|k| kind.contains(k)),
            "unexpected error kind during the migration: {kind} ({errors:?})"
        );
    }

    // 4 -> 2: the highest shards drained, then their StatefulSets deleted.
    patch_spec(&clusters, json!({"shards": 2})).await;
    wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready, 2 x 2", |c| {
        shards_ready(c, 2, 2)
    })
    .await
    .unwrap();
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), NS);
    wait::for_deletion(&sets, "kc-3", READY_TIMEOUT)
        .await
        .unwrap();
    wait::for_deletion(&sets, "kc-2", READY_TIMEOUT)
        .await
        .unwrap();
    let kv4 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(count_readable(&kv4).await, KEYS, "every key after 4 -> 2");
    assert_eq!(
        check_acked(&kv4, &acked).await,
        0,
        "every acknowledged write after 4 -> 2"
    );

    // Manual slot moves, done once.
    patch_spec(
        &clusters,
        json!({"slotMigrations": [{"toShard": 1, "slots": ["0-99", "200"]}]}),
    )
    .await;
    let moved = wait::for_object(&clusters, "kc", READY_TIMEOUT, "slotMigrations done", |c| {
        ready(c)
            && c.status
                .as_ref()
                .is_some_and(|s| s.slot_migrations_done == Some(1))
    })
    .await
    .unwrap();
    let shard1 = &moved.status.as_ref().unwrap().shards[1].slots;
    assert!(shard1.iter().any(|r| r == "0-99"), "{shard1:?}");
    assert!(shard1.iter().any(|r| r == "200"), "{shard1:?}");
    let kv5 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(
        count_readable(&kv5).await,
        KEYS,
        "every key after the manual moves"
    );

    // Replicas 1 -> 2 -> 0.
    patch_spec(&clusters, json!({"replicasPerShard": 2})).await;
    wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready, 2 x 3", |c| {
        shards_ready(c, 2, 3)
    })
    .await
    .unwrap();
    // A config change kvrocks cannot take live rolls every pod, masters after a switchover.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let before: std::collections::BTreeMap<String, String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            (
                kube::ResourceExt::name_any(p),
                kube::ResourceExt::uid(p).unwrap_or_default(),
            )
        })
        .collect();
    let rolled = Instant::now();
    patch_spec(&clusters, json!({"config": {"rocksdb.block_size": "8192"}})).await;
    wait::until(
        "every pod restarted once and the cluster Ready",
        READY_TIMEOUT,
        async || {
            let list = pods
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let same = list
                .items
                .iter()
                .filter(|p| {
                    before.get(&kube::ResourceExt::name_any(*p))
                        == kube::ResourceExt::uid(*p).as_ref()
                })
                .count();
            let c = clusters.get("kc").await.map_err(|e| e.to_string())?;
            if same == 0 && shards_ready(&c, 2, 3) {
                Ok(())
            } else {
                Err(format!("{same} pods not restarted yet"))
            }
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster e2e: config roll of 6 pods in {:.1} s",
        rolled.elapsed().as_secs_f64()
    );
    let kv_roll = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(
        count_readable(&kv_roll).await,
        KEYS,
        "every key after the roll"
    );

    patch_spec(&clusters, json!({"replicasPerShard": 0})).await;
    wait::for_object(&clusters, "kc", READY_TIMEOUT, "Ready, 2 x 1", |c| {
        shards_ready(c, 2, 1)
    })
    .await
    .unwrap();
    let kv6 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(
        count_readable(&kv6).await,
        KEYS,
        "every key after replicas 1 -> 2 -> 0"
    );

    // The operator killed in the middle of a migration resumes it.
    let mut operator = _operator;
    patch_spec(&clusters, json!({"shards": 3})).await;
    wait::for_object(
        &clusters,
        "kc",
        READY_TIMEOUT,
        "a migration in flight",
        |c| c.status.as_ref().is_some_and(|s| s.migration.is_some()),
    )
    .await
    .unwrap();
    operator.kill();
    let restarted = kvrocks_e2e::operator::start_operator(testbed, &[])
        .await
        .unwrap()
        .unwrap();
    wait::for_object(
        &clusters,
        "kc",
        READY_TIMEOUT,
        "Ready, 3 x 1 after the restart",
        |c| shards_ready(c, 3, 1),
    )
    .await
    .unwrap();
    let kv7 = cluster_client(&seed(testbed, &clusters).await, &password).await;
    assert_eq!(
        count_readable(&kv7).await,
        KEYS,
        "every key after a resumed migration"
    );
    drop(restarted);
}
