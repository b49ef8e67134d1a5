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
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
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
    let seed_ip = testbed.pod_ip(&PodRef::new(NS, "kc-0-0")).await.unwrap();
    let kv = cluster_client(&seed_ip, &password).await;
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
    let kv2 = cluster_client(&seed_ip, &password).await;
    assert_eq!(count_readable(&kv2).await, KEYS, "every key after the kill");
}
