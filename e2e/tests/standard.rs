//! KvrocksStandard end to end on the testbed, with the operator running all its controllers:
//! create, failover after a killed master process and after a deleted master pod, scale 3 -> 1
//! -> 3 with the master on the highest ordinal first, a config change rolled with the master
//! last, password rotation, and deletion leaving no sentinel monitor. On real kvrocks when
//! `KVROCKS_BIN` is set, otherwise on the redis-server stand-in; the output says which.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const NS: &str = "standard-e2e";
const DOWN_AFTER_MS: u64 = 5000;
/// Sentinel's failover timeout for the group. Sentinel starts no new failover of a master within
/// twice this time after the previous one, so back-to-back scenarios wait that long.
const FAILOVER_TIMEOUT_MS: u64 = 3000;
const KEYS: usize = 10_000;
const READY_TIMEOUT: Duration = Duration::from_secs(180);

fn ready(
    conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
) -> bool {
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn standard_ready(s: &KvrocksStandard) -> bool {
    ready(s.status.as_ref().map(|s| &s.conditions))
}

fn master_of(s: &KvrocksStandard) -> Option<String> {
    s.status.as_ref()?.master.as_ref().map(|m| m.pod.clone())
}

async fn password(client: &Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = secrets.get("std-auth").await.unwrap();
    String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap()
}

/// Runs redis-cli with one command per line on stdin; returns stdout lines.
async fn redis_lines(ip: &str, password: &str, lines: &str) -> Vec<String> {
    let mut child = tokio::process::Command::new("redis-cli")
        .args(["-h", ip, "-p", "6379"])
        .env("REDISCLI_AUTH", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn master_ip(testbed: &Testbed, standards: &Api<KvrocksStandard>) -> String {
    let s = standards.get("std").await.unwrap();
    let pod = master_of(&s).unwrap();
    testbed.pod_ip(&PodRef::new(NS, &pod)).await.unwrap()
}

/// How many of the test keys the master holds with the right value.
async fn keys_present(
    testbed: &Testbed,
    standards: &Api<KvrocksStandard>,
    password: &str,
) -> usize {
    let ip = master_ip(testbed, standards).await;
    let mut script = String::new();
    for i in 0..KEYS {
        script.push_str(&format!("GET key:{i}\n"));
    }
    let out = redis_lines(&ip, password, &script).await;
    out.iter()
        .enumerate()
        .filter(|(i, v)| **v == format!("value-{i}"))
        .count()
}

async fn wait_ready(
    standards: &Api<KvrocksStandard>,
    what: &str,
    extra: impl Fn(&KvrocksStandard) -> bool,
) -> KvrocksStandard {
    wait::for_object(standards, "std", READY_TIMEOUT, what, |s| {
        standard_ready(s) && extra(s)
    })
    .await
    .unwrap()
}

/// A failover scenario: do `break_it` to the master, wait for another master, check the keys
/// and that the old master is back as a synced replica. Returns the time to the new master.
async fn failover(
    testbed: &Testbed,
    standards: &Api<KvrocksStandard>,
    password: &str,
    what: &str,
    budget: Duration,
    break_it: impl AsyncFnOnce(&str),
) -> Duration {
    let before = standards.get("std").await.unwrap();
    let old = master_of(&before).unwrap();
    // Sentinel's own rule, not a condition the test could await: no new failover of the same
    // master within 2 x failover-timeout of the previous one.
    tokio::time::sleep(Duration::from_millis(2 * FAILOVER_TIMEOUT_MS)).await;
    let started = Instant::now();
    break_it(&old).await;
    wait::for_object(
        standards,
        "std",
        budget,
        &format!("a new master after {what}"),
        |s| master_of(s).is_some_and(|m| m != old),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    kvrocks_e2e::say!(
        "standard e2e: {what}: new master after {:.1} s",
        took.as_secs_f64()
    );
    wait_ready(
        standards,
        &format!("Ready again after {what}, {old} a synced replica"),
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.replicas.iter().any(|r| r.pod == old && r.link_up))
        },
    )
    .await;
    assert_eq!(
        keys_present(testbed, standards, password).await,
        KEYS,
        "every key after {what}"
    );
    took
}

#[tokio::test]
async fn a_standard_heals_scales_rolls_and_rotates_without_losing_a_key() {
    let testbed = Testbed::shared().await.unwrap();
    if !testbed.agent_or_skip("KvrocksStandard end to end") {
        return;
    }
    kvrocks_e2e::say!("standard e2e: {}", testbed.data_plane().describe());
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
    let sentinels: Api<KvrocksSentinel> = Api::namespaced(client.clone(), NS);
    let standards: Api<KvrocksStandard> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    sentinels
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksSentinel",
                "metadata": {"name": "sentinel"},
                "spec": {"replicas": 3, "downAfterMilliseconds": DOWN_AFTER_MS,
                         "failoverTimeoutMilliseconds": FAILOVER_TIMEOUT_MS}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    standards
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
                "metadata": {"name": "std"},
                "spec": {"replicas": 3, "sentinel": {"name": "sentinel"},
                         "config": {"workers": "2", "rocksdb.block_size": "16384"},
                         "storage": {"size": "256Mi"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let first = wait_ready(&standards, "Ready", |_| true).await;
    kvrocks_e2e::say!(
        "standard e2e: 3 pods Ready (master {}) after {:.1} s",
        master_of(&first).unwrap(),
        started.elapsed().as_secs_f64()
    );
    let password = password(&client).await;

    // 10,000 keys on the master.
    let ip = master_ip(testbed, &standards).await;
    let mut script = String::new();
    for i in 0..KEYS {
        script.push_str(&format!("SET key:{i} value-{i}\n"));
    }
    let out = redis_lines(&ip, &password, &script).await;
    assert_eq!(out.iter().filter(|l| *l == "OK").count(), KEYS);
    assert_eq!(keys_present(testbed, &standards, &password).await, KEYS);

    // Steady: no writes to the API server.
    let rv = standards.get("std").await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        standards.get("std").await.unwrap().resource_version(),
        rv,
        "an idle Standard writes nothing"
    );

    // Failovers.
    let kill = failover(
        testbed,
        &standards,
        &password,
        "killing the master's process",
        // Sentinel alone calls a master that reports itself a replica down only after
        // down-after + 2 INFO periods, and needs more to agree and promote: a new master within
        // that time is the operator's switchover at work.
        Duration::from_millis(DOWN_AFTER_MS + 2000),
        async |old: &str| {
            testbed
                .kill_container(&PodRef::new(NS, old), "kvrocks")
                .await
                .unwrap();
        },
    )
    .await;
    let delete = failover(
        testbed,
        &standards,
        &password,
        "deleting the master pod",
        // Sentinel's own failover: down-after, agreement, election, promotion.
        Duration::from_millis(DOWN_AFTER_MS) + Duration::from_secs(15),
        async |old: &str| {
            testbed.delete_pod(&PodRef::new(NS, old)).await.unwrap();
        },
    )
    .await;
    kvrocks_e2e::say!(
        "standard e2e: failover times: process kill {:.1} s, pod delete {:.1} s (down-after {} ms)",
        kill.as_secs_f64(),
        delete.as_secs_f64(),
        DOWN_AFTER_MS
    );

    // The master onto the highest ordinal, then scale 3 -> 1: the operator switches it over
    // first. Sentinel picks among healthy replicas by priority, offset, then run id, so the
    // test makes std-2 the only healthy one: it cuts the other replica's network until sentinel
    // marks it down, asks for a failover, then restores the network.
    let s = standards.get("std").await.unwrap();
    let master = master_of(&s).unwrap();
    if master != "std-2" {
        let other = ["std-0", "std-1"]
            .into_iter()
            .find(|p| *p != master)
            .unwrap();
        let other_ip = testbed.pod_ip(&PodRef::new(NS, other)).await.unwrap();
        testbed.cut_network(&PodRef::new(NS, other)).await.unwrap();
        let sentinel0 = PodRef::new(NS, "sentinel-0");
        wait::until(
            "sentinel to mark the other replica down",
            Duration::from_secs(30),
            async || {
                let replicas = testbed
                    .redis_at(
                        &sentinel0,
                        26379,
                        None,
                        &["SENTINEL", "REPLICAS", "standard_std"],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                // One replica's fields, one per line: name, ip, port, runid, flags, ...
                let down = replicas
                    .split("\nname\n")
                    .any(|r| r.contains(&other_ip) && r.contains("s_down"));
                if down {
                    Ok(())
                } else {
                    Err(format!("not down yet: {replicas}"))
                }
            },
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2 * FAILOVER_TIMEOUT_MS)).await;
        testbed
            .redis_at(
                &sentinel0,
                26379,
                None,
                &["SENTINEL", "FAILOVER", "standard_std"],
            )
            .await
            .unwrap();
        wait::for_object(
            &standards,
            "std",
            Duration::from_secs(30),
            "the master on std-2",
            |s| master_of(s).as_deref() == Some("std-2"),
        )
        .await
        .unwrap();
        testbed
            .restore_network(&PodRef::new(NS, other))
            .await
            .unwrap();
        wait_ready(&standards, "Ready with the master on std-2", |s| {
            master_of(s).as_deref() == Some("std-2")
        })
        .await;
    }
    standards
        .patch(
            "std",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    wait_ready(&standards, "Ready with 1 pod", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.current_replicas == Some(1) && st.master.as_ref().is_some_and(|m| m.pod == "std-0")
        })
    })
    .await;
    assert_eq!(
        keys_present(testbed, &standards, &password).await,
        KEYS,
        "every key after 3 -> 1"
    );
    standards
        .patch(
            "std",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    wait_ready(&standards, "Ready with 3 pods", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.replicas.len() == 2 && st.replicas.iter().all(|r| r.link_up))
    })
    .await;
    assert_eq!(
        keys_present(testbed, &standards, &password).await,
        KEYS,
        "every key after 1 -> 3"
    );

    // A config change kvrocks cannot take live (rocksdb.block_size) rolls the pods, the master last.
    let uids: BTreeMap<String, String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.name_any().starts_with("std-"))
        .map(|p| (p.name_any(), p.uid().unwrap()))
        .collect();
    let master_before = master_of(&standards.get("std").await.unwrap()).unwrap();
    standards
        .patch(
            "std",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"rocksdb.block_size": "8192"}}})),
        )
        .await
        .unwrap();
    let mut order: Vec<String> = Vec::new();
    wait::until("every pod restarted once", READY_TIMEOUT, async || {
        let list = pods
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for p in &list.items {
            let name = p.name_any();
            if let Some(old) = uids.get(&name)
                && p.uid().as_ref() != Some(old)
                && !order.contains(&name)
            {
                order.push(name);
            }
        }
        if order.len() == uids.len() {
            Ok(())
        } else {
            Err(format!("restarted so far: {order:?}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(
        order.last(),
        Some(&master_before),
        "the master restarts last: {order:?}"
    );
    wait_ready(&standards, "Ready after the roll", |_| true).await;
    assert_eq!(
        keys_present(testbed, &standards, &password).await,
        KEYS,
        "every key after the roll"
    );

    // Password rotation.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let new_password = "rotated-Pa55word-2026";
    secrets
        .patch(
            "std-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": new_password}})),
        )
        .await
        .unwrap();
    wait::until(
        "every pod to take the new password",
        READY_TIMEOUT,
        async || {
            let s = standards.get("std").await.map_err(|e| e.to_string())?;
            let status = s.status.clone().unwrap_or_default();
            let mut ips: Vec<String> = status.replicas.iter().map(|r| r.ip.clone()).collect();
            ips.extend(status.master.iter().map(|m| m.ip.clone()));
            for ip in &ips {
                let out = redis_lines(ip, new_password, "PING\n").await;
                if out.first().map(String::as_str) != Some("PONG") {
                    return Err(format!("{ip} answers {out:?} with the new password"));
                }
            }
            if standard_ready(&s) && status.replicas.iter().all(|r| r.link_up) {
                Ok(())
            } else {
                Err("not Ready".into())
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        keys_present(testbed, &standards, new_password).await,
        KEYS,
        "every key after the rotation"
    );

    // Delete: the monitor goes from every sentinel.
    standards
        .delete("std", &DeleteParams::default())
        .await
        .unwrap();
    wait::for_deletion(&standards, "std", READY_TIMEOUT)
        .await
        .unwrap();
    for i in 0..3 {
        let masters = testbed
            .redis_at(
                &PodRef::new(NS, &format!("sentinel-{i}")),
                26379,
                None,
                &["SENTINEL", "MASTERS"],
            )
            .await
            .unwrap();
        assert!(
            !masters.contains("standard_std"),
            "sentinel-{i} still monitors: {masters}"
        );
    }
    sentinels
        .delete("sentinel", &DeleteParams::default())
        .await
        .unwrap();
    wait::for_deletion(&sentinels, "sentinel", READY_TIMEOUT)
        .await
        .unwrap();
}
