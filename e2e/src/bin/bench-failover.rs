//! `make bench` (failover part): how long a KvrocksCluster takes from a master cut off the
//! network to a writable new master, measured, printed, never asserted.
//!
//! One 3x1 cluster (default `spec.failover.timeout`, 3 s), then `BENCH_FAILOVERS` runs (default
//! 10), each on the next shard: right after the cut, `SET` of a key of the shard's slots is sent
//! every 10 ms straight to the shard's replica; the figure is the cut until the replica takes it
//! (it is then the shard's writable master), and the cut until status names the new master. The
//! network comes back and the cluster is Ready again before the next run.
//!
//! Needs a kvrocks binary (`KVROCKS_BIN`) and the debug operator build.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kvrocks_api::KvrocksCluster;
use kvrocks_e2e::operator::start_operator;

use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;

const NS: &str = "bench-failover";
const KC: &str = "kc";
const READY: Duration = Duration::from_secs(300);

fn ready(c: &KvrocksCluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.shards.len() == 3
            && s.shards.iter().all(|sh| sh.nodes.len() == 2)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn master_of(c: &KvrocksCluster, shard: usize) -> Option<String> {
    let s = c.status.as_ref()?.shards.get(shard)?;
    s.nodes
        .iter()
        .find(|n| n.role == "master")
        .map(|n| n.pod.clone())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A key whose slot the shard owns.
fn key_in(c: &KvrocksCluster, shard: usize) -> Option<String> {
    let ranges: Vec<(u16, u16)> = c
        .status
        .as_ref()?
        .shards
        .get(shard)?
        .slots
        .iter()
        .filter_map(|r| kvrocks_api::slots::parse_slot_string(r).ok())
        .collect();
    (0..100_000).map(|n| format!("failover:{n}")).find(|k| {
        let slot = fred::util::redis_keyslot(k.as_bytes());
        ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    })
}

/// Polls `SET key` on each of `ips` every 10 ms until one of them takes it (it is the shard's
/// master and writable); returns when.
async fn first_write(ips: &[String], key: &str, password: &str) -> Instant {
    use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Timeouts};
    let clients: Vec<NodeClient> = ips
        .iter()
        .map(|ip| {
            NodeClient::new(
                Endpoint::new(NodeAddr::new(ip, 6379))
                    .with_password(password.to_owned())
                    .with_timeouts(Timeouts::new(
                        Duration::from_millis(200),
                        Duration::from_millis(200),
                    )),
            )
        })
        .collect();
    loop {
        for client in &clients {
            if client.raw("SET", &[key, "x"]).await.is_ok() {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn setup(testbed: &'static Testbed) -> Result<(Api<KvrocksCluster>, String)> {
    let client = testbed.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await;
    let clusters: Api<KvrocksCluster> = Api::namespaced(client.clone(), NS);
    clusters
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                "metadata": {"name": KC},
                "spec": {"shards": 3, "replicasPerShard": 1, "storage": {"size": "256Mi"},
                         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
            }))?,
        )
        .await?;
    wait::for_object(&clusters, KC, READY, "Ready, 3 x 2", ready).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = secrets.get("kc-auth").await?;
    let password = secret
        .data
        .and_then(|d| d.get("password").map(|p| p.0.clone()))
        .context("no password in kc-auth")?;
    let password = String::from_utf8(password)?;
    Ok((clusters, password))
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let testbed = Testbed::shared().await?;
    if !testbed.data_plane().is_real() {
        bail!("no kvrocks binary (set KVROCKS_BIN): the testbed has no apache/kvrocks image");
    }
    testbed.install_crds().await?;
    let Some(_operator) = start_operator(testbed, &["--namespaces", NS]).await? else {
        bail!("no operator binary: cargo build -p kvrocks-operator");
    };
    let (clusters, password) = setup(testbed).await?;
    println!("failover bench on {}", testbed.data_plane().describe());
    let mut writable_all = Vec::new();
    let mut in_status = Vec::new();
    for run in 0..runs {
        let shard = run % 3;
        let before = clusters.get(KC).await?;
        let old = master_of(&before, shard).context("no master")?;
        let key = key_in(&before, shard).context("no key in the shard's slots")?;
        let replicas: Vec<String> = before.status.as_ref().map_or(Vec::new(), |s| {
            s.shards[shard]
                .nodes
                .iter()
                .filter(|n| n.pod != old)
                .map(|n| n.ip.clone())
                .collect()
        });
        let pods: Api<Pod> = Api::namespaced(testbed.client().await?, NS);
        let old_uid = pods.get(&old).await?.uid();
        testbed.cut_network(&PodRef::new(NS, &old)).await?;
        let cut = Instant::now();
        let secret = password.clone();
        let direct = tokio::spawn(async move { first_write(&replicas, &key, &secret).await });
        wait::for_object(&clusters, KC, Duration::from_secs(60), "failed over", |c| {
            master_of(c, shard).is_some_and(|m| m != old)
        })
        .await?;
        let status_took = cut.elapsed();
        let writable = tokio::time::timeout(Duration::from_secs(30), direct).await?? - cut;
        // The operator stops the old master's pod before it promotes: the network comes back
        // with a new pod, unless that one still runs.
        let still = pods
            .get_opt(&old)
            .await?
            .filter(|p| p.uid() == old_uid && p.metadata.deletion_timestamp.is_none());
        if still.is_some() {
            testbed.restore_network(&PodRef::new(NS, &old)).await?;
        }
        println!(
            "  run {:>2}: shard {shard} master {old} cut -> new master in status {:.2} s, -> writable {:.2} s",
            run + 1,
            status_took.as_secs_f64(),
            writable.as_secs_f64(),
        );
        writable_all.push(writable.as_secs_f64());
        in_status.push(status_took.as_secs_f64());
        wait::for_object(&clusters, KC, READY, "Ready again", ready).await?;
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "\ncluster failover (cut master, spec.failover.timeout 3 s, {runs} runs):\n  cut -> writable new master: median {:.2} s, max {:.2} s\n  cut -> new master in status: median {:.2} s, max {:.2} s",
        median(&mut writable_all),
        max(&writable_all),
        median(&mut in_status),
        max(&in_status),
    );
    Ok(())
}
