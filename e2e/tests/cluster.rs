//! KvrocksCluster end to end on the testbed, every data-plane change under a writer that uses a
//! cluster-aware client (fred, RESP2, seeded from the cluster's pods) and counts acknowledged
//! writes. Cluster mode is never faked: without a real kvrocks (`KVROCKS_BIN`) these scenarios
//! print that they were skipped, and why. Each scenario has its own namespace, cluster and
//! operator:
//! - a killed master process and a master cut off the network (unplanned: only the last second
//!   before the fault may be lost; the cut-off master's pod is stopped before its replica is
//!   promoted, unless the recreated pod answers first and keeps the shard);
//! - a master only the operator cannot reach (a firewall rule on the operator's cgroup): no
//!   failover; a master down with only a replica that never synced: no promotion; a master only
//!   its clients reach: stopped, and what it acknowledged and discarded reported;
//! - shards 3 -> 4 -> 2 and manual slot moves (planned: nothing lost), with the migration
//!   throughput at the default `migrate-speed`;
//! - replicas 1 -> 2, a config roll, replicas -> 0, and the operator killed in the middle of a
//!   migration (planned: nothing lost), with the throughput at `migrate-speed 0`;
//! - a finished migration whose record was lost, a master pod deleted gracefully, evictions as a
//!   drain, a refused and a grown storage size, a password rotation, a master back on an emptied
//!   volume, and the cluster created again over its kept claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{READY_TIMEOUT, Scenario};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use kvrocks_api::KvrocksCluster;
use kvrocks_e2e::wait;
use kvrocks_e2e::writer::{self, Log, Seeds, SharedPassword, Target, Writer};
use serde_json::json;

const KC: &str = "kc";
/// Keys loaded before a migration (100-byte values, as in the design's raw figures), to measure
/// its throughput.
const KEYS: usize = 100_000;
const VALUE_BYTES: usize = 100;
/// Acknowledged writes to see before and after each operation.
const ACKS: usize = 300;

fn ready(c: &KvrocksCluster) -> bool {
    c.status
        .as_ref()
        .is_some_and(|s| common::ready(&s.conditions))
}

fn master_of_shard(c: &KvrocksCluster, shard: usize) -> Option<String> {
    let s = c.status.as_ref()?.shards.get(shard)?;
    s.nodes
        .iter()
        .find(|n| n.role == "master")
        .map(|n| n.pod.clone())
}

fn replica_of_shard(c: &KvrocksCluster, shard: usize) -> Option<String> {
    let s = c.status.as_ref()?.shards.get(shard)?;
    s.nodes
        .iter()
        .find(|n| n.role != "master")
        .map(|n| n.pod.clone())
}

fn shape(c: &KvrocksCluster, shards: usize, nodes_per_shard: usize) -> bool {
    ready(c)
        && c.status.as_ref().is_some_and(|s| {
            s.shards.len() == shards && s.shards.iter().all(|sh| sh.nodes.len() == nodes_per_shard)
        })
}

fn slots_of_shard(c: &KvrocksCluster, shard: usize) -> usize {
    c.status.as_ref().unwrap().shards[shard]
        .slots
        .iter()
        .map(|r| {
            let (a, b) = kvrocks_api::slots::parse_slot_string(r).unwrap();
            usize::from(b - a) + 1
        })
        .sum()
}

/// A scenario with a Ready KvrocksCluster.
struct Kc {
    sc: Scenario,
    password: SharedPassword,
}

impl Kc {
    async fn start(
        what: &str,
        ns: &str,
        shards: usize,
        replicas: usize,
        config: serde_json::Value,
    ) -> Option<Self> {
        let sc = Scenario::start(what, ns).await?;
        let started = Instant::now();
        sc.api::<KvrocksCluster>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                    "metadata": {"name": KC},
                    "spec": {"shards": shards, "replicasPerShard": replicas,
                             "config": config, "storage": {"size": "256Mi"}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let kc = Self {
            sc,
            password: SharedPassword::default(),
        };
        let created = kc
            .wait_shape(
                shards,
                replicas + 1,
                &format!("Ready, {shards} x {}", replicas + 1),
            )
            .await;
        kvrocks_e2e::say!(
            "{ns}: {shards} shards x {} nodes Ready after {:.1} s (topology version {:?})",
            replicas + 1,
            started.elapsed().as_secs_f64(),
            created.status.as_ref().and_then(|s| s.topology_version)
        );
        kc.password.set(kc.sc.password("kc-auth").await);
        Some(kc)
    }

    fn clusters(&self) -> Api<KvrocksCluster> {
        self.sc.api()
    }

    async fn get(&self) -> KvrocksCluster {
        self.clusters().get(KC).await.unwrap()
    }

    async fn wait_shape(&self, shards: usize, nodes: usize, what: &str) -> KvrocksCluster {
        wait::for_object(&self.clusters(), KC, READY_TIMEOUT, what, |c| {
            shape(c, shards, nodes)
        })
        .await
        .unwrap()
    }

    /// The writer's way in: the cluster's pods, as its headless Service `kc` lists them.
    async fn target(&self) -> Target {
        Target::Cluster {
            seeds: Seeds::Pods {
                client: self.sc.client.clone(),
                namespace: self.sc.ns.clone(),
                selector: format!("app.kubernetes.io/instance={KC}"),
                port: 6379,
            },
            password: self.password.clone(),
        }
    }

    async fn writer(&self, name: &str) -> Writer {
        Writer::start_writing(name, self.target().await, ACKS)
            .await
            .unwrap()
    }

    /// Waits for `ACKS` more writes and stops the writer.
    async fn finish(&self, writer: Writer) -> Log {
        writer.finish(ACKS).await.unwrap()
    }

    /// Reads `log`'s keys back through a fresh cluster client: nothing may be lost.
    async fn none_lost(&self, log: &Log, what: &str) {
        log.verify(&self.target().await)
            .await
            .unwrap()
            .assert_none_lost(what);
    }

    /// Runs a planned operation under a writer: `change`, then waits for `done`.
    async fn planned(
        &self,
        what: &str,
        change: serde_json::Value,
        done: impl Fn(&KvrocksCluster) -> bool,
    ) -> (KvrocksCluster, Duration, Option<Duration>) {
        let writer = self.writer(what).await;
        let started = Instant::now();
        self.sc.patch_spec::<KvrocksCluster>(KC, change).await;
        // When a slot migration was first seen in status: the time from there to the end is
        // the migrations' own, without pods starting.
        let migrating_since = std::cell::Cell::new(None::<Instant>);
        let reached = wait::for_object(&self.clusters(), KC, READY_TIMEOUT, what, |c| {
            if migrating_since.get().is_none()
                && c.status.as_ref().is_some_and(|s| s.migration.is_some())
            {
                migrating_since.set(Some(Instant::now()));
            }
            ready(c) && done(c)
        })
        .await
        .unwrap();
        let took = started.elapsed();
        let migrating = migrating_since.get().map(|t| t.elapsed());
        let log = self.finish(writer).await;
        self.none_lost(&log, &format!("cluster: {what}")).await;
        (reached, took, migrating)
    }

    /// Waits until every pod of the cluster runs `key` at `value`.
    async fn set_live_everywhere(&self, key: &str, value: &str) {
        let password = self.password.get();
        wait::until(
            &format!("{key} {value} on every node"),
            READY_TIMEOUT,
            async || {
                let c = self.clusters().get(KC).await.map_err(|e| e.to_string())?;
                for shard in c.status.map(|s| s.shards).unwrap_or_default() {
                    for node in shard.nodes {
                        let got = self
                            .sc
                            .testbed
                            .redis_at(
                                &self.sc.pod(&node.pod),
                                6379,
                                Some(&password),
                                &["CONFIG", "GET", key],
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        if got.lines().nth(1).map(str::trim) != Some(value) {
                            return Err(format!("{}: {got:?}", node.pod));
                        }
                    }
                }
                Ok(())
            },
        )
        .await
        .unwrap();
    }

    /// After shard `shard`'s master `old` was cut off at `cut`: waits until the operator stopped
    /// its pod (the pod `old` is a new one), then until every one of the `shards` shards has a
    /// master that answers again (`Degraded=False`; Ready may stay False for another reason);
    /// whether its replica was promoted (else the recreated pod kept the shard).
    async fn cut_off_master_resolved(
        &self,
        shard: usize,
        old: &str,
        cut: Instant,
        shards: usize,
    ) -> bool {
        let old_uid = self.sc.pod_uids("kc-").await.get(old).cloned();
        let pods: Api<Pod> = self.sc.api();
        wait::until(
            "the cut-off master's pod stopped",
            READY_TIMEOUT,
            async || match pods.get_opt(old).await.map_err(|e| e.to_string())? {
                Some(p) if p.uid() == old_uid => Err(format!(
                    "still there (being deleted: {})",
                    p.metadata.deletion_timestamp.is_some()
                )),
                _ => Ok(()),
            },
        )
        .await
        .unwrap();
        let after = wait::for_object(
            &self.clusters(),
            KC,
            READY_TIMEOUT,
            "every shard's master answering after the cut-off master was stopped",
            |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.shards.len() == shards
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Degraded" && c.status == "False")
                })
            },
        )
        .await
        .unwrap();
        let master = master_of_shard(&after, shard).unwrap_or_default();
        kvrocks_e2e::say!(
            "cluster: {old} cut off; its pod stopped and shard {shard} served by {master} ({}) {:.1} s after the cut",
            if master == old {
                "the recreated pod"
            } else {
                "its promoted replica"
            },
            cut.elapsed().as_secs_f64()
        );
        master != old
    }

    /// Scales to `shards` and prints how fast the slots moved.
    async fn scale_measured(&self, from: usize, to: usize, speed: &str) {
        let (scaled, took, migrating) = self
            .planned(
                &format!("{from} -> {to} shards"),
                json!({"shards": to}),
                |c| shape(c, to, 2),
            )
            .await;
        let moved = slots_of_shard(&scaled, to - 1);
        assert!(
            moved >= 16384 / to - 1,
            "shard {} got its share of the slots: {moved}",
            to - 1
        );
        let keys = KEYS as f64 * moved as f64 / 16384.0;
        let migrating = migrating.unwrap_or(took);
        kvrocks_e2e::say!(
            "cluster: {from} -> {to} shards at {speed}: {moved} slots (~{keys:.0} of the {KEYS} loaded keys, plus the writer's) in {:.1} s, migrations {:.1} s: ~{:.0} loaded keys/s",
            took.as_secs_f64(),
            migrating.as_secs_f64(),
            keys / migrating.as_secs_f64()
        );
    }
}

#[tokio::test]
async fn a_killed_master_process_loses_only_the_last_second() {
    let Some(kc) = Kc::start("cluster: master process killed", "kc-kill", 3, 1, json!({})).await
    else {
        return;
    };
    // Steady: no writes to the API server.
    let rv = kc.get().await.resource_version();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        kc.get().await.resource_version(),
        rv,
        "a steady cluster writes nothing"
    );

    // Kill shard 0's master process: it restarts (persisted node table).
    let created = kc.get().await;
    let master0 = master_of_shard(&created, 0).unwrap();
    let writer = kc.writer("kill").await;
    let started = Instant::now();
    kc.sc
        .testbed
        .kill_container(&kc.sc.pod(&master0), "kvrocks")
        .await
        .unwrap();
    let done = Instant::now();
    wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "Ready after the kill",
        |c| shape(c, 3, 2),
    )
    .await
    .unwrap();
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_lost_only_before("cluster: master process killed", started, done);
}

#[tokio::test]
async fn a_cut_off_master_loses_only_the_last_second() {
    let Some(kc) = Kc::start("cluster: master cut off", "kc-cut", 3, 1, json!({})).await else {
        return;
    };
    // Cut shard 1's master off: the operator stops its pod first (its kubelet still reaches it),
    // so it cannot take writes from clients with the old slot map when its network returns, and
    // promotes its replica once it is gone, unless the recreated pod (on its own volume, with a
    // network of its own) answers first: then it keeps its shard. Either way nothing but the last
    // second before the cut may be lost.
    let old = master_of_shard(&kc.get().await, 1).unwrap();
    let writer = kc.writer("cut").await;
    let started = Instant::now();
    kc.sc.testbed.cut_network(&kc.sc.pod(&old)).await.unwrap();
    let done = Instant::now();
    let failed_over = kc.cut_off_master_resolved(1, &old, started, 3).await;
    if failed_over {
        // The old master, back, was read before it resynced: what it held beyond the promotion
        // is recorded (here nothing: it was stopped before any client could reach it again).
        let told = wait::for_object(
            &kc.clusters(),
            KC,
            READY_TIMEOUT,
            "the failover recorded",
            |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.shards[1]
                        .last_failover
                        .as_ref()
                        .is_some_and(|f| f.from == old && f.discarded.is_some())
                })
            },
        )
        .await
        .unwrap();
        kvrocks_e2e::say!(
            "cluster: shard 1's last failover: {:?}",
            told.status.as_ref().unwrap().shards[1].last_failover
        );
    }
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_lost_only_before("cluster: master cut off", started, done);
}

#[tokio::test]
async fn shards_scale_out_and_in_and_manual_slot_moves_lose_no_write() {
    let Some(kc) = Kc::start("cluster: shard scaling", "kc-shards", 3, 1, json!({})).await else {
        return;
    };
    let loaded = writer::load("bulk", &kc.target().await, KEYS, VALUE_BYTES)
        .await
        .unwrap();
    kvrocks_e2e::say!(
        "cluster: {KEYS} keys loaded in {:.1} s",
        loaded.ran.as_secs_f64()
    );

    kc.scale_measured(3, 4, "the default migrate-speed (4096 keys/s)")
        .await;

    kc.planned("4 -> 2 shards", json!({"shards": 2}), |c| shape(c, 2, 2))
        .await;
    let sets: Api<StatefulSet> = kc.sc.api();
    wait::for_deletion(&sets, "kc-3", READY_TIMEOUT)
        .await
        .unwrap();
    wait::for_deletion(&sets, "kc-2", READY_TIMEOUT)
        .await
        .unwrap();

    let (moved, _, _) = kc
        .planned(
            "manual slot moves",
            json!({"slotMigrations": [{"toShard": 1, "slots": ["0-99", "200"]}]}),
            |c| {
                c.status
                    .as_ref()
                    .is_some_and(|s| s.slot_migrations_done == Some(1))
            },
        )
        .await;
    let shard1 = &moved.status.as_ref().unwrap().shards[1].slots;
    assert!(shard1.iter().any(|r| r == "0-99"), "{shard1:?}");
    assert!(shard1.iter().any(|r| r == "200"), "{shard1:?}");
    // The same move unthrottled, side by side with the default above.
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"config": {"migrate-speed": "0"}}))
        .await;
    kc.set_live_everywhere("migrate-speed", "0").await;
    kc.scale_measured(2, 3, "migrate-speed 0 (unthrottled)")
        .await;
    kc.none_lost(
        &loaded,
        "cluster: the loaded keys after 3 -> 4 -> 2, the moves and 2 -> 3",
    )
    .await;
}

#[tokio::test]
async fn replica_scaling_a_roll_and_an_operator_killed_mid_migration_lose_no_write() {
    let Some(mut kc) = Kc::start(
        "cluster: replicas, roll, operator restart",
        "kc-replicas",
        2,
        1,
        json!({"migrate-speed": "0"}),
    )
    .await
    else {
        return;
    };
    let loaded = writer::load("bulk", &kc.target().await, KEYS, VALUE_BYTES)
        .await
        .unwrap();

    kc.planned("replicas 1 -> 2", json!({"replicasPerShard": 2}), |c| {
        shape(c, 2, 3)
    })
    .await;

    // A config change kvrocks cannot take live rolls every pod, masters after a switchover.
    let pods: Api<Pod> = kc.sc.api();
    let before = kc.sc.pod_uids("kc-").await;
    let writer = kc.writer("roll").await;
    let rolled = Instant::now();
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"config": {"rocksdb.block_size": "8192"}}))
        .await;
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
                .filter(|p| before.get(&p.name_any()) == p.uid().as_ref())
                .count();
            let c = kc.clusters().get(KC).await.map_err(|e| e.to_string())?;
            if same == 0 && shape(&c, 2, 3) {
                Ok(())
            } else {
                Err(format!("{same} pods not restarted yet"))
            }
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: config roll of 6 pods in {:.1} s",
        rolled.elapsed().as_secs_f64()
    );
    let log = kc.finish(writer).await;
    kc.none_lost(&log, "cluster: config roll").await;

    kc.planned("replicas 2 -> 0", json!({"replicasPerShard": 0}), |c| {
        shape(c, 2, 1)
    })
    .await;

    // The operator killed in the middle of a migration: a new one resumes it. At
    // migrate-speed 0 a migration is quick, so the test watches for it closely.
    let writer = kc.writer("operator restart").await;
    let started = Instant::now();
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"shards": 3}))
        .await;
    wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "a migration in flight",
        |c| c.status.as_ref().is_some_and(|s| s.migration.is_some()),
    )
    .await
    .unwrap();
    kc.sc.operator.kill();
    kc.sc.operator =
        kvrocks_e2e::operator::start_operator(kc.sc.testbed, &["--namespaces", &kc.sc.ns])
            .await
            .unwrap()
            .unwrap();
    let scaled = kc.wait_shape(3, 1, "Ready, 3 x 1 after the restart").await;
    let took = started.elapsed();
    let moved = slots_of_shard(&scaled, 2);
    kvrocks_e2e::say!(
        "cluster: 2 -> 3 shards at migrate-speed 0 (operator killed once mid-migration) in {:.1} s: {moved} slots, ~{:.0} keys/s of the loaded keys",
        took.as_secs_f64(),
        (KEYS as f64 * moved as f64 / 16384.0) / took.as_secs_f64()
    );
    let log = kc.finish(writer).await;
    kc.none_lost(&log, "cluster: operator killed mid-migration")
        .await;
    kc.none_lost(
        &loaded,
        "cluster: the loaded keys after replicas 1 -> 2 -> 0, the roll and the restart",
    )
    .await;
}

#[tokio::test]
async fn a_gracefully_deleted_master_pod_hands_over_and_loses_no_write() {
    let Some(kc) = Kc::start(
        "cluster: graceful master delete",
        "kc-graceful",
        3,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    // `kubectl delete pod` of shard 1's master: its preStop hook holds the process while the
    // operator fences it and hands the shard to its replica; nothing it acknowledged is lost.
    let old = master_of_shard(&kc.get().await, 1).unwrap();
    let writer = kc.writer("graceful").await;
    let started = Instant::now();
    kc.sc.testbed.delete_pod(&kc.sc.pod(&old)).await.unwrap();
    let after = wait::for_object(
        &kc.clusters(),
        KC,
        Duration::from_secs(30),
        "shard 1 handed over",
        |c| master_of_shard(c, 1).is_some_and(|m| m != old),
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: shard 1 handed over from {old} to {} {:.1} s after the delete",
        master_of_shard(&after, 1).unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    kc.wait_shape(3, 2, "Ready, 3 x 2 after the delete").await;
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_none_lost("cluster: master pod deleted gracefully");
}

/// The storage a claim (or claim template) requests.
fn claim_size(claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Option<String> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    Some(requests.get("storage")?.0.clone())
}

#[tokio::test]
async fn a_refused_storage_change_stops_no_failover_and_a_larger_size_grows_the_claims_in_place() {
    let Some(kc) = Kc::start("cluster: storage changes", "kc-storage", 2, 1, json!({})).await
    else {
        return;
    };
    let reason = |c: &KvrocksCluster| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default()
    };
    // A smaller size cannot be applied: a condition says so, and the operator goes on.
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"storage": {"size": "128Mi"}}))
        .await;
    let refused = wait::for_object(&kc.clusters(), KC, READY_TIMEOUT, "SpecNotApplied", |c| {
        reason(c).0 == "SpecNotApplied"
    })
    .await
    .unwrap();
    kvrocks_e2e::say!("cluster: shrinking refused: {}", reason(&refused).1);
    assert!(
        reason(&refused).1.contains("cannot shrink"),
        "{:?}",
        reason(&refused)
    );
    // A failover still happens while the StatefulSets keep their spec: shard 1's master is cut
    // off (and its pod stopped by the operator).
    let old = master_of_shard(&refused, 1).unwrap();
    let writer = kc.writer("refused").await;
    let started = Instant::now();
    kc.sc.testbed.cut_network(&kc.sc.pod(&old)).await.unwrap();
    let done = Instant::now();
    kc.cut_off_master_resolved(1, &old, started, 2).await;
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_lost_only_before(
            "cluster: a master cut off while a spec is refused",
            started,
            done,
        );

    // The size put back, the cluster is Ready again (the old master back as a replica).
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"storage": {"size": "256Mi"}}))
        .await;
    kc.wait_shape(2, 2, "Ready again at 256Mi").await;

    // A larger size grows every claim in place: same pods, no write lost.
    let uids = kc.sc.pod_uids("kc-").await;
    let (grown, _, _) = kc
        .planned(
            "storage 256Mi -> 512Mi",
            json!({"storage": {"size": "512Mi"}}),
            |c| shape(c, 2, 2),
        )
        .await;
    assert_eq!(reason(&grown).0, "TopologyInSync");
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = kc.sc.api();
    let sets: Api<StatefulSet> = kc.sc.api();
    wait::until(
        "every claim and StatefulSet at 512Mi",
        READY_TIMEOUT,
        async || {
            let list = claims
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let sizes: Vec<String> = list.items.iter().filter_map(claim_size).collect();
            let templates: Vec<String> = sets
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .flat_map(|s| {
                    s.spec
                        .iter()
                        .flat_map(|s| s.volume_claim_templates.iter().flatten())
                })
                .filter_map(claim_size)
                .collect();
            let all = |v: &[String]| !v.is_empty() && v.iter().all(|s| s == "512Mi");
            if all(&sizes) && all(&templates) && templates.len() == 2 {
                Ok(())
            } else {
                Err(format!("claims {sizes:?}, templates {templates:?}"))
            }
        },
    )
    .await
    .unwrap();
    let after = kc.sc.pod_uids("kc-").await;
    assert_eq!(after, uids, "growing the claims restarted pods");
}

#[tokio::test]
async fn a_password_rotation_fails_nothing_over_and_loses_no_write() {
    let Some(kc) = Kc::start("cluster: password rotation", "kc-rotation", 2, 1, json!({})).await
    else {
        return;
    };
    let before = kc.get().await;
    let version = before.status.as_ref().and_then(|s| s.topology_version);
    // The application takes the new password from the Secret as it changes.
    let writer = kc.writer("rotation").await;
    let new_password = "rotated-Cluster-Pa55word";
    kc.sc.set_password("kc-auth", new_password).await;
    kc.password.set(new_password);
    wait::until(
        "every node to take the new password",
        READY_TIMEOUT,
        async || {
            let c = kc.get().await;
            let status = c.status.clone().unwrap_or_default();
            for node in status.shards.iter().flat_map(|s| &s.nodes) {
                let answer = kc
                    .sc
                    .testbed
                    .redis_at_ip(&node.ip, 6379, Some(new_password), &["PING"])
                    .await
                    .map_err(|e| e.to_string())?;
                if answer.trim() != "PONG" {
                    return Err(format!(
                        "{} answers {answer:?} with the new password",
                        node.pod
                    ));
                }
            }
            if shape(&c, 2, 2) {
                Ok(())
            } else {
                Err("not Ready".into())
            }
        },
    )
    .await
    .unwrap();
    let after = kc.get().await;
    assert_eq!(
        after.status.as_ref().and_then(|s| s.topology_version),
        version,
        "the rotation changed the topology (a failover?)"
    );
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_none_lost("cluster: password rotation");
}

#[tokio::test]
async fn evicting_a_nodes_pods_as_a_drain_does_hands_masters_over_and_loses_no_write() {
    let Some(kc) = Kc::start(
        "cluster: evictions of a node's pods",
        "kc-drain",
        3,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    // The node of shard 0's master, and every master it holds.
    let c = kc.get().await;
    let pods: Api<Pod> = kc.sc.api();
    let node_of = async |pod: &str| {
        pods.get(pod)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.node_name)
            .unwrap()
    };
    let node = node_of(&master_of_shard(&c, 0).unwrap()).await;
    let mut held = Vec::new();
    for shard in 0..3 {
        let master = master_of_shard(&c, shard).unwrap();
        if node_of(&master).await == node {
            held.push((shard, master));
        }
    }
    let writer = kc.writer("drain").await;
    let started = Instant::now();
    // What `kubectl drain` does to the node's pods of this cluster, without cordoning the node
    // (other scenarios share it): each is evicted through the Eviction API, as the shards' PDBs
    // allow (429 while a shard has a pod down: retried). Each master's preStop hook holds it while
    // the operator hands its shard over.
    let on_node: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
        .map(|p| p.name_any())
        .collect();
    for pod in &on_node {
        wait::until(&format!("{pod} evicted"), READY_TIMEOUT, async || {
            pods.evict(pod, &Default::default())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
    }
    kvrocks_e2e::say!(
        "cluster: evicted {on_node:?} from {node} (masters {held:?}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let after = wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "masters off the evicted pods",
        |c| {
            held.iter()
                .all(|(shard, old)| master_of_shard(c, *shard).is_some_and(|m| m != *old))
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: masters after the evictions: {:?}",
        (0..3)
            .map(|s| master_of_shard(&after, s))
            .collect::<Vec<_>>()
    );
    kc.wait_shape(3, 2, "Ready, 3 x 2 after the evictions")
        .await;
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_none_lost("cluster: a node's pods evicted");
}

#[tokio::test]
async fn a_master_back_on_an_emptied_volume_loses_its_shard_to_its_replica() {
    // A long failover timeout: the master comes back before the operator would fail it over.
    let Some(kc) = Kc::start(
        "cluster: emptied master volume",
        "kc-emptied",
        2,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    kc.sc
        .patch_spec::<KvrocksCluster>(KC, json!({"failover": {"timeout": "120s"}}))
        .await;
    let old = master_of_shard(&kc.get().await, 1).unwrap();
    let writer = kc.writer("emptied").await;
    let started = Instant::now();
    // Its volume goes (the claim is deleted, then the pod, at once): the StatefulSet brings it back
    // on a new, empty volume.
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = kc.sc.api();
    claims
        .delete(&format!("data-{old}"), &Default::default())
        .await
        .unwrap();
    let pods: Api<Pod> = kc.sc.api();
    pods.delete(&old, &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let done = Instant::now();
    let after = wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "shard 1 on its replica",
        |c| master_of_shard(c, 1).is_some_and(|m| m != old),
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: {old} back empty; shard 1 went to {} {:.1} s after the delete",
        master_of_shard(&after, 1).unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    kc.wait_shape(2, 2, "Ready, 2 x 2, the emptied pod a replica")
        .await;
    let log = kc.finish(writer).await;
    log.verify(&kc.target().await)
        .await
        .unwrap()
        .assert_lost_only_before("cluster: a master back on an emptied volume", started, done);
}

/// The reason of the Ready condition.
fn ready_reason(c: &KvrocksCluster) -> Option<String> {
    let status = c.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

/// Asserts that shard `shard` keeps `master` for `window`: a failover is what must not happen.
async fn keeps_master(kc: &Kc, shard: usize, master: &str, window: Duration, what: &str) {
    let moved = wait::for_object(&kc.clusters(), KC, window, what, |c| {
        master_of_shard(c, shard).is_some_and(|m| m != master)
    })
    .await;
    assert!(
        moved.is_err(),
        "{what}: shard {shard} was failed over away from {master}: {:?}",
        moved.ok().and_then(|c| c.status)
    );
}

#[tokio::test]
async fn a_master_only_the_operator_cannot_reach_keeps_its_shard_and_loses_no_write() {
    let Some(kc) = Kc::start(
        "cluster: operator alone cut off a master",
        "kc-opcut",
        2,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    let master = master_of_shard(&kc.get().await, 0).unwrap();
    let ip = kc.sc.testbed.pod_ip(&kc.sc.pod(&master)).await.unwrap();
    let writer = kc.writer("operator cut").await;
    // Only the operator loses the master: its replica and the writer still reach it.
    let cut = kc.sc.operator.cut_from(&ip).unwrap();
    let started = Instant::now();
    wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "Ready=False, MasterUnreachableFromOperator",
        |c| ready_reason(c).as_deref() == Some("MasterUnreachableFromOperator"),
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: the operator reported it alone lost {master} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Five failover timeouts (3 s): the shard keeps its master, which keeps taking writes.
    let acked = writer.acked();
    keeps_master(
        &kc,
        0,
        &master,
        Duration::from_secs(15),
        "the operator alone cut off",
    )
    .await;
    assert!(
        writer.acked() > acked + ACKS,
        "the writer kept writing while only the operator was cut off: {} -> {}",
        acked,
        writer.acked()
    );
    drop(cut);
    let healed = kc
        .wait_shape(2, 2, "Ready once the operator reaches it again")
        .await;
    assert_eq!(
        master_of_shard(&healed, 0).as_deref(),
        Some(master.as_str())
    );
    let log = kc.finish(writer).await;
    kc.none_lost(&log, "cluster: the operator alone cut off a master")
        .await;
}

#[tokio::test]
async fn a_replica_that_never_completed_a_sync_is_not_promoted() {
    let Some(kc) = Kc::start(
        "cluster: unsynced replica, master down",
        "kc-unsynced",
        2,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    let c = kc.get().await;
    let master = master_of_shard(&c, 1).unwrap();
    let replica = replica_of_shard(&c, 1).unwrap();
    let writer = kc.writer("unsynced replica").await;
    // The master is cut off the other pods (the host still reaches it), then its replica comes
    // back on an empty volume: it can never sync.
    kc.sc
        .testbed
        .cut_from_pods(&kc.sc.pod(&master), true)
        .await
        .unwrap();
    let uid = kc.sc.pod_uids("kc-").await.get(&replica).cloned();
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = kc.sc.api();
    claims
        .delete(&format!("data-{replica}"), &Default::default())
        .await
        .unwrap();
    let pods: Api<Pod> = kc.sc.api();
    pods.delete(
        &replica,
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await
    .unwrap();
    wait::for_object(
        &pods,
        &replica,
        READY_TIMEOUT,
        "the replica back, empty",
        |p| {
            p.uid() != uid
                && p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        },
    )
    .await
    .unwrap();
    // Now the master goes (its network): its only replica holds nothing.
    let started = Instant::now();
    kc.sc
        .testbed
        .cut_network(&kc.sc.pod(&master))
        .await
        .unwrap();
    wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "Ready=False, NoFailoverCandidate",
        |c| ready_reason(c).as_deref() == Some("NoFailoverCandidate"),
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: no failover candidate for {master} after {:.1} s ({replica} is empty)",
        started.elapsed().as_secs_f64()
    );
    keeps_master(
        &kc,
        1,
        &master,
        Duration::from_secs(15),
        "master down, replica empty",
    )
    .await;
    kc.sc
        .testbed
        .restore_network(&kc.sc.pod(&master))
        .await
        .unwrap();
    kc.sc
        .testbed
        .cut_from_pods(&kc.sc.pod(&master), false)
        .await
        .unwrap();
    let healed = kc
        .wait_shape(2, 2, "Ready, the master back and its replica synced")
        .await;
    assert_eq!(
        master_of_shard(&healed, 1).as_deref(),
        Some(master.as_str())
    );
    let log = kc.finish(writer).await;
    kc.none_lost(&log, "cluster: master down with only an unsynced replica")
        .await;
}

#[tokio::test]
async fn a_finished_migration_whose_record_was_lost_reaches_its_new_owner() {
    let Some(mut kc) = Kc::start(
        "cluster: lost migration record",
        "kc-lostmig",
        2,
        0,
        json!({"migrate-speed": "0"}),
    )
    .await
    else {
        return;
    };
    let c = kc.get().await;
    let source = master_of_shard(&c, 0).unwrap();
    let destination = c.status.as_ref().unwrap().shards[1].nodes[0]
        .node_id
        .clone();
    let writer = kc.writer("lost record").await;
    // An operator sent MIGRATE and stopped before status recorded it: here the operator is
    // stopped and the migration sent by hand, so status never hears of it.
    kc.sc.operator.kill();
    let password = kc.password.get();
    let on_source = |args: Vec<String>| {
        let (kc, password, source) = (&kc, password.clone(), source.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kc.sc
                .testbed
                .redis_at(&kc.sc.pod(&source), 6379, Some(&password), &args)
                .await
        }
    };
    let sent = on_source(
        ["CLUSTERX", "MIGRATE", "0-99", &destination]
            .map(str::to_owned)
            .to_vec(),
    )
    .await
    .unwrap();
    assert!(sent.contains("OK"), "CLUSTERX MIGRATE: {sent:?}");
    wait::until(
        "the source reports the migration succeeded",
        READY_TIMEOUT,
        async || {
            let info = on_source(vec!["CLUSTER".into(), "INFO".into()])
                .await
                .map_err(|e| e.to_string())?;
            if info.contains("migrating_state: success") || info.contains("migrating_state:success")
            {
                Ok(())
            } else {
                Err(info)
            }
        },
    )
    .await
    .unwrap();
    // Slots 0-99 are wedged now: the source redirects them, the topology does not give them to
    // the destination. A new operator, with nothing in status, must finish the move.
    let started = Instant::now();
    kc.sc.operator =
        kvrocks_e2e::operator::start_operator(kc.sc.testbed, &["--namespaces", &kc.sc.ns])
            .await
            .unwrap()
            .unwrap();
    let moved = wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "slots 0-99 owned by shard 1",
        |c| {
            ready(c)
                && c.status.as_ref().is_some_and(|s| {
                    s.shards[1].slots.iter().any(|r| r.starts_with("0-99")) && s.migration.is_none()
                })
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "cluster: the lost migration adopted and pushed {:.1} s after the operator started (topology version {:?})",
        started.elapsed().as_secs_f64(),
        moved.status.as_ref().and_then(|s| s.topology_version)
    );
    let log = kc.finish(writer).await;
    kc.none_lost(&log, "cluster: a lost migration record").await;
}

#[tokio::test]
async fn a_cluster_created_again_over_its_kept_volumes_keeps_its_layout_and_data() {
    let Some(kc) = Kc::start(
        "cluster: created again over kept volumes",
        "kc-again",
        2,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    // A layout an even split with ordinal 0 as master would get wrong: slots 0-99 moved to
    // shard 1, and shard 0's master handed to ordinal 1.
    kc.planned(
        "slots 0-99 to shard 1",
        json!({"slotMigrations": [{"toShard": 1, "slots": ["0-99"]}]}),
        |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.slot_migrations_done == Some(1))
        },
    )
    .await;
    let pods: Api<Pod> = kc.sc.api();
    let old = master_of_shard(&kc.get().await, 0).unwrap();
    pods.delete(&old, &Default::default()).await.unwrap();
    let handed = wait::for_object(
        &kc.clusters(),
        KC,
        READY_TIMEOUT,
        "Ready, shard 0 handed over",
        |c| shape(c, 2, 2) && master_of_shard(c, 0).is_some_and(|m| m != old),
    )
    .await
    .unwrap();
    let master0 = master_of_shard(&handed, 0).unwrap();
    let loaded = writer::load("kept", &kc.target().await, 5_000, VALUE_BYTES)
        .await
        .unwrap();
    // The cluster goes; its claims stay (the default).
    kc.clusters().delete(KC, &Default::default()).await.unwrap();
    wait::for_deletion(&kc.clusters(), KC, READY_TIMEOUT)
        .await
        .unwrap();
    wait::until("its pods gone", READY_TIMEOUT, async || {
        let left = kc.sc.pod_uids("kc-").await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await
    .unwrap();
    kc.clusters()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                "metadata": {"name": KC},
                "spec": {"shards": 2, "replicasPerShard": 1, "storage": {"size": "256Mi"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let again = kc
        .wait_shape(2, 2, "Ready again over the kept volumes")
        .await;
    kc.password.set(kc.sc.password("kc-auth").await);
    let status = again.status.as_ref().unwrap();
    kvrocks_e2e::say!(
        "cluster: created again: shard 0 master {:?} slots {:?}, shard 1 slots {:?}",
        master_of_shard(&again, 0),
        status.shards[0].slots,
        status.shards[1].slots
    );
    assert_eq!(
        master_of_shard(&again, 0).as_deref(),
        Some(master0.as_str())
    );
    assert!(
        status.shards[1].slots.iter().any(|r| r == "0-99"),
        "shard 1 keeps slots 0-99: {:?}",
        status.shards[1].slots
    );
    kc.none_lost(&loaded, "cluster: created again over kept volumes")
        .await;
}

#[tokio::test]
async fn a_master_only_clients_still_reach_is_stopped_and_what_it_discarded_reported() {
    let Some(kc) = Kc::start(
        "cluster: master cut off its replica and the operator",
        "kc-clients",
        2,
        1,
        json!({}),
    )
    .await
    else {
        return;
    };
    let c = kc.get().await;
    let old = master_of_shard(&c, 1).unwrap();
    let replica = replica_of_shard(&c, 1).unwrap();
    let ip = kc.sc.testbed.pod_ip(&kc.sc.pod(&old)).await.unwrap();
    let writer = kc.writer("clients only").await;
    // The operator and the replica lose the master; the writer still reaches it and it keeps
    // acknowledging writes, which its successor never gets.
    let started = Instant::now();
    kc.sc
        .testbed
        .cut_between(&kc.sc.pod(&old), &kc.sc.pod(&replica), true)
        .await
        .unwrap();
    let cut = kc.sc.operator.cut_from(&ip).unwrap();
    // The operator stops the master's pod before it promotes; the recreated pod (a network of its
    // own) may answer first and keep the shard with everything it acknowledged.
    let failed_over = kc.cut_off_master_resolved(1, &old, started, 2).await;
    let record = if failed_over {
        let told = wait::for_object(
            &kc.clusters(),
            KC,
            READY_TIMEOUT,
            "the old master read back",
            |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.shards[1]
                        .last_failover
                        .as_ref()
                        .is_some_and(|f| f.from == old && f.discarded.is_some())
                })
            },
        )
        .await
        .unwrap();
        told.status.as_ref().unwrap().shards[1]
            .last_failover
            .clone()
    } else {
        None
    };
    let done = Instant::now();
    drop(cut);
    kvrocks_e2e::say!(
        "cluster: shard 1 {} {:.1} s after the cut: {record:?}",
        if failed_over {
            "failed over"
        } else {
            "kept by its recreated master"
        },
        started.elapsed().as_secs_f64()
    );
    let log = kc.finish(writer).await;
    let verdict = log.verify(&kc.target().await).await.unwrap();
    verdict.report("cluster: master only clients reach");
    // What it discarded is what status says it discarded: every acknowledged write lost is
    // counted in the reported range, and nothing is lost from before the fault's window.
    let discarded = match record.as_ref().and_then(|r| r.discarded.as_deref()) {
        Some("none") | None => 0,
        Some(range) => {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap() + 1
        }
    };
    assert!(
        verdict.lost.len() as i64 <= discarded,
        "{} acknowledged writes lost, {discarded} reported discarded ({record:?})",
        verdict.lost.len()
    );
    let window = started - kvrocks_e2e::writer::UNPLANNED_WINDOW;
    let outside: Vec<&str> = verdict
        .lost
        .iter()
        .filter(|a| a.at < window || a.sent > done)
        .map(|a| a.key.as_str())
        .collect();
    assert!(
        outside.is_empty(),
        "lost writes acknowledged before the fault's window or sent after the old master was read back: {outside:?}"
    );
    if discarded > 0 {
        let events: Api<k8s_openapi::api::core::v1::Event> = kc.sc.api();
        let listed = events.list(&Default::default()).await.unwrap();
        assert!(
            listed
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("WritesDiscarded")),
            "a WritesDiscarded Event tells of the {discarded} discarded writes"
        );
    }
}

#[tokio::test]
async fn a_secret_the_operator_did_not_make_is_used_only_once_labelled_and_sound() {
    let Some(sc) = common::Scenario::start("cluster: a named password Secret", "kc-secret").await
    else {
        return;
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = sc.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "someone-elses"},
                "stringData": {"password": "not-for-kvrocks-pods"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    sc.api::<KvrocksCluster>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                "metadata": {"name": KC},
                "spec": {"shards": 1, "replicasPerShard": 0,
                         "auth": {"secretName": "someone-elses"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let clusters: Api<KvrocksCluster> = sc.api();
    let refused = |needle: &'static str| {
        move |c: &KvrocksCluster| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.reason == "AuthSecretUnusable"
                        && c.message.contains(needle)
                })
            })
        }
    };
    // Not labelled: refused, and no pod was made to receive it.
    wait::for_object(
        &clusters,
        KC,
        READY_TIMEOUT,
        "AuthSecretUnusable: not labelled",
        refused("kvrocks.io/auth=true"),
    )
    .await
    .unwrap();
    let sets: Api<StatefulSet> = sc.api();
    assert!(
        sets.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no StatefulSet gets a Secret the operator may not use"
    );
    // Labelled, but a password that would break kvrocks.conf: still refused.
    secrets
        .patch(
            "someone-elses",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({
                "metadata": {"labels": {"kvrocks.io/auth": "true"}},
                "stringData": {"password": "two\nlines"},
            })),
        )
        .await
        .unwrap();
    wait::for_object(
        &clusters,
        KC,
        READY_TIMEOUT,
        "AuthSecretUnusable: not usable",
        refused("not usable"),
    )
    .await
    .unwrap();
    assert!(
        sets.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A sound one: the cluster comes up.
    sc.set_password("someone-elses", "now-Meant-for-kvrocks")
        .await;
    wait::for_object(&clusters, KC, READY_TIMEOUT, "Ready, 1 x 1", |c| {
        shape(c, 1, 1)
    })
    .await
    .unwrap();
}
