//! A KvrocksStandard scenario's world: a sentinel group, a Standard, the writer's way in
//! through sentinel, and the checks every Standard scenario shares.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::wait;
use kvrocks_e2e::writer::{Log, SharedPassword, Target, Writer};
use serde_json::json;

use super::{READY_TIMEOUT, Scenario};

pub const STD: &str = "std";
pub const GROUP: &str = "sentinel";
pub const KVROCKS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
/// Acknowledged writes to see before and after each fault: the writer is really writing.
pub const ACKS: usize = 300;

pub fn master_of(s: &KvrocksStandard) -> Option<String> {
    s.status.as_ref()?.master.as_ref().map(|m| m.pod.clone())
}

pub fn standard_ready(s: &KvrocksStandard) -> bool {
    s.status
        .as_ref()
        .is_some_and(|st| super::ready(&st.conditions))
}

/// Every replica linked to the master.
pub fn all_linked(s: &KvrocksStandard, replicas: usize) -> bool {
    s.status
        .as_ref()
        .is_some_and(|st| st.replicas.len() == replicas && st.replicas.iter().all(|r| r.link_up))
}

/// A scenario with a sentinel group and a Standard of 3 pods, Ready.
pub struct Std {
    pub sc: Scenario,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub password: SharedPassword,
    /// The sentinel group's own password (Secret `sentinel-auth`).
    pub sentinel_password: SharedPassword,
}

impl Std {
    /// The common set-up: 3 pods, sentinel down-after 5 s, failover timeout 3 s, 2 workers.
    pub async fn start(what: &str, ns: &str) -> Option<Self> {
        Self::start_with(what, ns, 3, 5000, 3000, json!({"workers": "2"})).await
    }

    pub async fn start_with(
        what: &str,
        ns: &str,
        replicas: usize,
        down_after_ms: u64,
        failover_timeout_ms: u64,
        config: serde_json::Value,
    ) -> Option<Self> {
        let sc = Scenario::start(what, ns).await?;
        sc.api::<KvrocksSentinel>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksSentinel",
                    "metadata": {"name": GROUP},
                    "spec": {"replicas": 3, "downAfterMilliseconds": down_after_ms,
                             "failoverTimeoutMilliseconds": failover_timeout_ms}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        sc.api::<KvrocksStandard>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
                    "metadata": {"name": STD},
                    "spec": {"replicas": replicas, "sentinel": {"name": GROUP},
                             "config": config, "storage": {"size": "256Mi"}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let std = Self {
            password: SharedPassword::default(),
            sentinel_password: SharedPassword::default(),
            sc,
            down_after_ms,
            failover_timeout_ms,
        };
        let first = std
            .wait_ready("Ready, every replica linked", |s| {
                all_linked(s, replicas - 1)
            })
            .await;
        kvrocks_e2e::say!(
            "{ns}: {replicas} pods Ready (master {}) after {:.1} s",
            master_of(&first).unwrap(),
            started.elapsed().as_secs_f64()
        );
        std.password.set(std.sc.password("std-auth").await);
        std.sentinel_password
            .set(std.sc.password(&format!("{GROUP}-auth")).await);
        Some(std)
    }

    pub fn standards(&self) -> Api<KvrocksStandard> {
        self.sc.api()
    }

    pub async fn wait_ready(
        &self,
        what: &str,
        extra: impl Fn(&KvrocksStandard) -> bool,
    ) -> KvrocksStandard {
        wait::for_object(&self.standards(), STD, READY_TIMEOUT, what, |s| {
            standard_ready(s) && extra(s)
        })
        .await
        .unwrap()
    }

    pub async fn master(&self) -> String {
        master_of(&self.standards().get(STD).await.unwrap()).unwrap()
    }

    /// The writer's way in: the group's sentinels, asked for `standard_std`.
    pub async fn target(&self) -> Target {
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(self.sc.addr(&format!("{GROUP}-{i}"), SENTINEL_PORT).await);
        }
        Target::Sentinel {
            sentinels,
            master_name: format!("standard_{STD}"),
            password: self.password.clone(),
            sentinel_password: self.sentinel_password.clone(),
        }
    }

    pub async fn writer(&self, name: &str) -> Writer {
        Writer::start_writing(name, self.target().await, ACKS)
            .await
            .unwrap()
    }

    /// Waits for `ACKS` more writes and stops the writer.
    pub async fn finish(&self, writer: Writer) -> Log {
        writer.finish(ACKS).await.unwrap()
    }

    /// Sentinel starts no new failover of a master within twice the failover timeout of the
    /// previous one: its own rule, not a condition the test could await.
    pub async fn sentinel_may_fail_over_again(&self) {
        tokio::time::sleep(Duration::from_millis(2 * self.failover_timeout_ms)).await;
    }

    /// Every pod holds exactly what the master holds of the writer's keys.
    pub async fn pods_agree(&self, log: &Log) {
        let master = self.master().await;
        let password = self.password.get();
        let master_addr = self.sc.addr(&master, KVROCKS_PORT).await;
        let reference = log.verify_on(&master_addr, &password).await.unwrap();
        let expected: Vec<&str> = reference.lost.iter().map(|a| a.key.as_str()).collect();
        let pods: Vec<String> = self
            .sc
            .api::<Pod>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(ResourceExt::name_any)
            .filter(|n| n.starts_with("std-") && *n != master)
            .collect();
        for pod in pods {
            let addr = self.sc.addr(&pod, KVROCKS_PORT).await;
            wait::until(
                &format!("{pod} to hold exactly the master {master}'s data"),
                Duration::from_secs(60),
                async || {
                    let verdict = log
                        .verify_on(&addr, &password)
                        .await
                        .map_err(|e| e.to_string())?;
                    let lacks: Vec<&str> = verdict.lost.iter().map(|a| a.key.as_str()).collect();
                    if lacks == expected {
                        Ok(())
                    } else {
                        Err(format!(
                            "{pod} lacks (or differs on) {} keys, the master {master} {}; first on {pod}: {:?}, on the master: {:?}",
                            lacks.len(),
                            expected.len(),
                            lacks.iter().take(5).collect::<Vec<_>>(),
                            expected.iter().take(5).collect::<Vec<_>>()
                        ))
                    }
                },
            )
            .await
            .unwrap();
        }
        kvrocks_e2e::say!(
            "{}: every pod holds the master {master}'s {} of {} acknowledged keys",
            self.sc.ns,
            log.acked.len() - expected.len(),
            log.acked.len()
        );
    }

    /// The replication offsets of every pod but the cut-off master, once two reads a poll apart
    /// agree (replication from the cut master has stopped).
    pub async fn frozen_replica_offsets(&self, master: &str) -> BTreeMap<String, i64> {
        let password = self.password.get();
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        wait::until(
            "the replicas' offsets to freeze",
            Duration::from_secs(5),
            async || {
                let mut now = BTreeMap::new();
                for i in 0..3 {
                    let pod = format!("{STD}-{i}");
                    if pod == master {
                        continue;
                    }
                    let info = self
                        .sc
                        .testbed
                        .redis_at(
                            &self.sc.pod(&pod),
                            KVROCKS_PORT,
                            Some(&password),
                            &["INFO", "replication"],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let offset = info
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("slave_repl_offset:"))
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .ok_or_else(|| format!("{pod}: no slave_repl_offset in {info}"))?;
                    now.insert(pod, offset);
                }
                let same = now == last;
                last = now;
                if same {
                    Ok(())
                } else {
                    Err(format!("offsets still moving: {last:?}"))
                }
            },
        )
        .await
        .unwrap();
        last
    }

    /// When `ip` stopped taking connections on the kvrocks port (polled from now on): the moment
    /// a deleted pod's process really ended, which is after the API server accepted the delete.
    pub async fn stopped_answering(&self, ip: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && kvrocks_e2e::Testbed::tcp_reachable(ip, KVROCKS_PORT, Duration::from_millis(100))
                .await
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Instant::now()
    }

    /// Breaks the master with `fault` (which returns when the fault took effect), waits for a new master and for the old one to be back as
    /// a linked replica; returns the writer's log and when the fault started and took effect.
    pub async fn fail_over(
        &self,
        what: &str,
        budget: Duration,
        fault: impl AsyncFnOnce(&str) -> Instant,
    ) -> (Log, Instant, Instant) {
        self.sentinel_may_fail_over_again().await;
        self.fail_over_now(what, budget, fault).await
    }

    /// [`Std::fail_over`] without waiting out sentinel's lockout after a previous failover.
    pub async fn fail_over_now(
        &self,
        what: &str,
        budget: Duration,
        fault: impl AsyncFnOnce(&str) -> Instant,
    ) -> (Log, Instant, Instant) {
        let old = self.master().await;
        let writer = self.writer(what).await;
        let started = Instant::now();
        let done = fault(&old).await;
        wait::for_object(
            &self.standards(),
            STD,
            budget,
            &format!("a new master after {what}"),
            |s| master_of(s).is_some_and(|m| m != old),
        )
        .await
        .unwrap();
        kvrocks_e2e::say!(
            "{}: {what}: new master after {:.1} s",
            self.sc.ns,
            started.elapsed().as_secs_f64()
        );
        self.wait_ready(
            &format!("Ready again after {what}, {old} a linked replica"),
            |s| {
                all_linked(s, 2)
                    && s.status
                        .as_ref()
                        .is_some_and(|st| st.replicas.iter().any(|r| r.pod == old))
            },
        )
        .await;
        (self.finish(writer).await, started, done)
    }
}
