//! KvrocksStandard end to end on the testbed, every data-plane change under a writer that finds
//! the master through sentinel (`standard_std`) and counts acknowledged writes. Each scenario
//! has its own namespace, sentinel group, Standard and operator:
//! - a killed master process, then a force-deleted master pod (unplanned: only writes from the
//!   last second before the fault may be lost), and a gracefully deleted master pod (planned);
//! - the master's network cut for 12 s, three times: nothing a replica held is lost, and
//!   afterwards every pod holds exactly the master's data;
//! - scale 1 -> 3; scale 3 -> 1 and a config roll, both with a planned switchover (ignored: the
//!   switchover is not fenced yet and loses writes, see their reasons);
//! - an operator restart, a password rotation, a config key the running kvrocks does not know,
//!   and deletion leaving no sentinel monitor.
//!
//! On real kvrocks (`KVROCKS_BIN`, in the testbed's apache/kvrocks image); without it every
//! scenario prints SKIPPED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::READY_TIMEOUT;
use common::standard::{
    GROUP, KVROCKS_PORT, SENTINEL_PORT, STD, Std, all_linked, master_of, standard_ready,
};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::DeleteParams;
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::wait;
use serde_json::json;

#[tokio::test]
async fn a_killed_master_process_and_a_forced_pod_delete_lose_only_the_last_second() {
    let Some(std) = Std::start("standard: unplanned failures", "std-unplanned").await else {
        return;
    };
    let target = std.target().await;
    // Sentinel alone calls a master that reports itself a replica down only after down-after +
    // 2 INFO periods and needs more to agree and promote: a new master within that time is the
    // operator's switchover at work.
    let (log, started, done) = std
        .fail_over(
            "killing the master's process",
            Duration::from_millis(std.down_after_ms + 2000),
            async |old: &str| {
                std.sc
                    .testbed
                    .kill_container(&std.sc.pod(old), "kvrocks")
                    .await
                    .unwrap();
                // SIGKILL: dead when the kill returns (and restarted by kubelet).
                Instant::now()
            },
        )
        .await;
    log.verify(&target).await.unwrap().assert_lost_only_before(
        "standard: master process killed",
        started,
        done,
    );
    std.pods_agree(&log).await;

    let (log, started, done) = std
        .fail_over(
            "force-deleting the master pod",
            // Sentinel's own failover: down-after, agreement, election, promotion.
            Duration::from_millis(std.down_after_ms) + Duration::from_secs(15),
            async |old: &str| {
                let ip = std.sc.testbed.pod_ip(&std.sc.pod(old)).await.unwrap();
                std.sc
                    .api::<Pod>()
                    .delete(old, &DeleteParams::default().grace_period(0))
                    .await
                    .unwrap();
                // kubelet kills the process after the API server accepted the delete.
                std.stopped_answering(&ip).await
            },
        )
        .await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_lost_only_before("standard: master pod force-deleted", started, done);
    std.pods_agree(&log).await;
}

#[tokio::test]
async fn a_second_failure_inside_sentinels_lockout_fails_over_promptly() {
    // failover-timeout 10 s: sentinel starts no failover of the same master for 20 s after the
    // last one; the second kill comes as soon as the first is over.
    let Some(std) = Std::start_with(
        "standard: back-to-back failures",
        "std-lockout",
        3,
        3000,
        10_000,
        json!({"workers": "2"}),
    )
    .await
    else {
        return;
    };
    let budget = Duration::from_millis(std.down_after_ms) + Duration::from_secs(15);
    for round in 1..=2 {
        let what = format!("killing the master's process, round {round}");
        let (log, started, done) = std
            .fail_over_now(&what, budget, async |old: &str| {
                std.sc
                    .testbed
                    .kill_container(&std.sc.pod(old), "kvrocks")
                    .await
                    .unwrap();
                Instant::now()
            })
            .await;
        log.verify(&std.target().await)
            .await
            .unwrap()
            .assert_lost_only_before(&format!("standard: {what}"), started, done);
    }
}

#[tokio::test]
async fn without_a_sentinel_quorum_the_operator_waits_and_changes_nothing() {
    let Some(std) = Std::start("standard: no sentinel quorum", "std-quorum").await else {
        return;
    };
    let master = std.master().await;
    let writer = std.writer("quorum").await;
    // Two of the three sentinels cut off: the one left is a minority.
    for sentinel in ["sentinel-1", "sentinel-2"] {
        std.sc
            .testbed
            .cut_network(&std.sc.pod(sentinel))
            .await
            .unwrap();
    }
    let waiting = wait::for_object(
        &std.standards(),
        STD,
        READY_TIMEOUT,
        "NoSentinelQuorum",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "NoSentinelQuorum")
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(master_of(&waiting).as_deref(), Some(master.as_str()));
    for sentinel in ["sentinel-1", "sentinel-2"] {
        std.sc
            .testbed
            .restore_network(&std.sc.pod(sentinel))
            .await
            .unwrap();
    }
    let back = std
        .wait_ready("Ready with a quorum again", |s| all_linked(s, 2))
        .await;
    assert_eq!(master_of(&back).as_deref(), Some(master.as_str()));
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: a sentinel minority");
}

#[tokio::test]
async fn a_gracefully_deleted_master_pod_loses_no_write() {
    let Some(std) = Std::start("standard: graceful master delete", "std-graceful").await else {
        return;
    };
    let (log, _, _) = std
        .fail_over(
            "deleting the master pod",
            Duration::from_millis(std.down_after_ms) + Duration::from_secs(15),
            async |old: &str| {
                std.sc.testbed.delete_pod(&std.sc.pod(old)).await.unwrap();
                Instant::now()
            },
        )
        .await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: master pod deleted gracefully");
    std.pods_agree(&log).await;
}

#[tokio::test]
async fn a_master_cut_off_three_times_keeps_every_replica_held_write_and_the_pods_agree() {
    const CUT: Duration = Duration::from_secs(12);
    let Some(std) = Std::start_with(
        "standard: master network cut",
        "std-netcut",
        3,
        3000,
        3000,
        json!({"workers": "2"}),
    )
    .await
    else {
        return;
    };
    for round in 1..=3 {
        let what = format!("master network cut, round {round}");
        let (log, started, done) = std
            .fail_over(&what, CUT + Duration::from_secs(15), async |old: &str| {
                std.sc.testbed.cut_network(&std.sc.pod(old)).await.unwrap();
                let cut_at = Instant::now();
                let frozen = std.frozen_replica_offsets(old).await;
                let standards = std.standards();
                let promoted =
                    wait::for_object(&standards, STD, CUT, "sentinel's new master", |s| {
                        master_of(s).is_some_and(|m| m != old)
                    })
                    .await
                    .unwrap();
                let new = master_of(&promoted).unwrap();
                let best = frozen.values().max().copied().unwrap_or_default();
                kvrocks_e2e::say!(
                    "{}: replica offsets frozen by the cut {frozen:?}; {new} promoted",
                    std.sc.ns
                );
                assert_eq!(
                    frozen.get(&new).copied(),
                    Some(best),
                    "the promoted replica {new} must be the most advanced: {frozen:?}"
                );
                tokio::time::sleep(CUT.saturating_sub(cut_at.elapsed())).await;
                std.sc
                    .testbed
                    .restore_network(&std.sc.pod(old))
                    .await
                    .unwrap();
                // The fault took effect when the cut did, not when it was restored.
                cut_at
            })
            .await;
        log.verify(&std.target().await)
            .await
            .unwrap()
            .assert_lost_only_before(&format!("standard: {what}"), started, done);
        std.pods_agree(&log).await;
    }
}

#[tokio::test]
async fn scaling_in_with_the_master_on_the_highest_ordinal_loses_no_write() {
    let Some(std) = Std::start("standard: scale 3 -> 1", "std-scale-in").await else {
        return;
    };
    // The master onto the highest ordinal first (set-up, no writer): sentinel picks among
    // healthy replicas by priority, offset, then run id, so the test makes std-2 the only healthy
    // one: it cuts the other replica's network until sentinel marks it down, asks for a
    // failover, then restores the network.
    let master = std.master().await;
    if master != "std-2" {
        let other = ["std-0", "std-1"]
            .into_iter()
            .find(|p| *p != master)
            .unwrap();
        let other_ip = std.sc.testbed.pod_ip(&std.sc.pod(other)).await.unwrap();
        std.sc
            .testbed
            .cut_network(&std.sc.pod(other))
            .await
            .unwrap();
        let sentinel0 = std.sc.pod("sentinel-0");
        wait::until(
            "sentinel to mark the other replica down",
            Duration::from_secs(30),
            async || {
                let replicas = std
                    .sc
                    .testbed
                    .redis_at(
                        &sentinel0,
                        SENTINEL_PORT,
                        Some(&std.sentinel_password.get()),
                        &["SENTINEL", "REPLICAS", "standard_std"],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
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
        std.sentinel_may_fail_over_again().await;
        std.sc
            .testbed
            .redis_at(
                &sentinel0,
                SENTINEL_PORT,
                Some(&std.sentinel_password.get()),
                &["SENTINEL", "FAILOVER", "standard_std"],
            )
            .await
            .unwrap();
        wait::for_object(
            &std.standards(),
            STD,
            Duration::from_secs(30),
            "the master on std-2",
            |s| master_of(s).as_deref() == Some("std-2"),
        )
        .await
        .unwrap();
        std.sc
            .testbed
            .restore_network(&std.sc.pod(other))
            .await
            .unwrap();
        std.wait_ready("Ready with the master on std-2", |s| {
            master_of(s).as_deref() == Some("std-2") && all_linked(s, 2)
        })
        .await;
    }
    let target = std.target().await;
    std.sentinel_may_fail_over_again().await;
    let writer = std.writer("scale-in").await;
    std.sc
        .patch_spec::<KvrocksStandard>(STD, json!({"replicas": 1}))
        .await;
    std.wait_ready("Ready with 1 pod", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.current_replicas == Some(1) && st.master.as_ref().is_some_and(|m| m.pod == "std-0")
        })
    })
    .await;
    let log = std.finish(writer).await;
    log.verify(&target)
        .await
        .unwrap()
        .assert_none_lost("standard: scale 3 -> 1 (master switched over off std-2)");
}

#[tokio::test]
async fn scaling_out_loses_no_write_and_the_new_pods_hold_the_masters_data() {
    let Some(std) = Std::start_with(
        "standard: scale 1 -> 3",
        "std-scale-out",
        1,
        5000,
        3000,
        json!({"workers": "2"}),
    )
    .await
    else {
        return;
    };
    let writer = std.writer("scale-out").await;
    std.sc
        .patch_spec::<KvrocksStandard>(STD, json!({"replicas": 3}))
        .await;
    std.wait_ready("Ready with 3 pods", |s| all_linked(s, 2))
        .await;
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: scale 1 -> 3");
    std.pods_agree(&log).await;
}

#[tokio::test]
async fn a_config_roll_loses_no_write() {
    let Some(std) = Std::start_with(
        "standard: config roll",
        "std-roll",
        3,
        5000,
        3000,
        json!({"workers": "2", "rocksdb.block_size": "16384"}),
    )
    .await
    else {
        return;
    };
    // A config change kvrocks cannot take live (rocksdb.block_size) rolls the pods, the master last.
    let pods = std.sc.api::<Pod>();
    let uids = std.sc.pod_uids("std-").await;
    let master_before = std.master().await;
    let writer = std.writer("roll").await;
    std.sc
        .patch_spec::<KvrocksStandard>(STD, json!({"config": {"rocksdb.block_size": "8192"}}))
        .await;
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
    std.wait_ready("Ready after the roll", |s| all_linked(s, 2))
        .await;
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: config roll");
    std.pods_agree(&log).await;
}

#[tokio::test]
async fn an_operator_restart_and_a_password_rotation_lose_no_write_and_deletion_leaves_no_monitor()
{
    let Some(mut std) = Std::start(
        "standard: operator restart, rotation, unknown config, deletion",
        "std-rotate",
    )
    .await
    else {
        return;
    };
    // Steady: no writes to the API server.
    let rv = std.standards().get(STD).await.unwrap().resource_version();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        std.standards().get(STD).await.unwrap().resource_version(),
        rv,
        "an idle Standard writes nothing"
    );

    // The operator killed and started again: it takes over from what the pods and sentinel say.
    let writer = std.writer("operator restart").await;
    std.sc.operator.kill();
    std.sc.operator =
        kvrocks_e2e::operator::start_operator(std.sc.testbed, &["--namespaces", &std.sc.ns])
            .await
            .unwrap()
            .unwrap();
    std.wait_ready("Ready after the operator restarted", |s| all_linked(s, 2))
        .await;
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: operator restart");

    // Password rotation: the application takes the new password from the Secret as it changes.
    let writer = std.writer("rotation").await;
    let new_password = "rotated-Pa55word-2026";
    std.sc.set_password("std-auth", new_password).await;
    std.password.set(new_password);
    wait::until(
        "every pod to take the new password",
        READY_TIMEOUT,
        async || {
            let s = std.standards().get(STD).await.map_err(|e| e.to_string())?;
            let status = s.status.clone().unwrap_or_default();
            let mut ips: Vec<String> = status.replicas.iter().map(|r| r.ip.clone()).collect();
            ips.extend(status.master.iter().map(|m| m.ip.clone()));
            for ip in &ips {
                let pod = std
                    .sc
                    .testbed
                    .redis_at_ip(ip, KVROCKS_PORT, Some(new_password), &["PING"])
                    .await
                    .map_err(|e| e.to_string())?;
                if pod.trim() != "PONG" {
                    return Err(format!("{ip} answers {pod:?} with the new password"));
                }
            }
            if standard_ready(&s) && all_linked(&s, 2) {
                Ok(())
            } else {
                Err("not Ready".into())
            }
        },
    )
    .await
    .unwrap();
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: password rotation");

    // The sentinel group's own password rotated: every sentinel takes the new one live, no
    // sentinel restarts, nothing fails over, and the old one is refused once it is done.
    let sentinel_uids = std.sc.pod_uids(&format!("{GROUP}-")).await;
    let master_before = std.master().await;
    let old_sentinel_password = std.sentinel_password.get();
    let writer = std.writer("sentinel password rotation").await;
    let new_sentinel_password = "sentinel-Rotated-2026";
    std.sc
        .set_password(&format!("{GROUP}-auth"), new_sentinel_password)
        .await;
    std.sentinel_password.set(new_sentinel_password);
    let groups = std.sc.api::<KvrocksSentinel>();
    let rotated_in = Instant::now();
    wait::until(
        "every sentinel to take the new password and drop the old one",
        READY_TIMEOUT,
        async || {
            for i in 0..3 {
                let pod = std.sc.pod(&format!("{GROUP}-{i}"));
                let new = std
                    .sc
                    .testbed
                    .redis_at(&pod, SENTINEL_PORT, Some(new_sentinel_password), &["PING"])
                    .await
                    .map_err(|e| e.to_string())?;
                let old = std
                    .sc
                    .testbed
                    .redis_at(&pod, SENTINEL_PORT, Some(&old_sentinel_password), &["PING"])
                    .await;
                if new.trim() != "PONG" || old.is_ok_and(|o| o.trim() == "PONG") {
                    return Err(format!("{pod}: new -> {new:?}, the old one still works"));
                }
            }
            let group = groups.get(GROUP).await.map_err(|e| e.to_string())?;
            let steady = group.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Progressing" && c.status == "False" && c.reason == "Steady"
                })
            });
            if steady {
                Ok(())
            } else {
                Err("the group is still progressing".into())
            }
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "standard: sentinel password rotated on 3 sentinels in {:.1} s",
        rotated_in.elapsed().as_secs_f64()
    );
    for i in 0..3 {
        let quorum = std
            .sc
            .testbed
            .redis_at(
                &std.sc.pod(&format!("{GROUP}-{i}")),
                SENTINEL_PORT,
                Some(new_sentinel_password),
                &["SENTINEL", "CKQUORUM", "standard_std"],
            )
            .await
            .unwrap();
        assert!(
            quorum.starts_with("OK 3 usable Sentinels"),
            "{GROUP}-{i} after the rotation: {quorum}"
        );
    }
    let log = std.finish(writer).await;
    log.verify(&std.target().await)
        .await
        .unwrap()
        .assert_none_lost("standard: sentinel password rotation");
    assert_eq!(std.master().await, master_before, "no failover");
    assert_eq!(
        std.sc.pod_uids(&format!("{GROUP}-")).await,
        sentinel_uids,
        "no sentinel restarted"
    );

    // A key the running kvrocks does not know is named in a condition, neither rendered nor set,
    // and restarts nothing.
    let uids = std.sc.pod_uids("std-").await;
    std.sc
        .patch_spec::<KvrocksStandard>(STD, json!({"config": {"no-such-key": "1"}}))
        .await;
    let flagged = wait::for_object(
        &std.standards(),
        STD,
        Duration::from_secs(60),
        "Degraded naming the unknown key",
        |s| {
            s.status.as_ref().is_some_and(|st| {
                st.unsupported_config == ["no-such-key"]
                    && st.conditions.iter().any(|c| {
                        c.type_ == "Degraded"
                            && c.status == "True"
                            && c.reason == "UnsupportedConfig"
                            && c.message.contains("no-such-key")
                    })
            })
        },
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "standard: unknown config key reported, kvrocks {:?}",
        flagged
            .status
            .as_ref()
            .and_then(|s| s.kvrocks_version.clone())
    );
    std.sc
        .patch_spec::<KvrocksStandard>(STD, json!({"config": {"no-such-key": null}}))
        .await;
    std.wait_ready("Ready without the unknown key", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.unsupported_config.is_empty())
    })
    .await;
    let after = std.sc.pod_uids("std-").await;
    assert_eq!(after, uids, "an unknown key restarts no pod");

    // Delete: the monitor goes from every sentinel.
    std.standards()
        .delete(STD, &DeleteParams::default())
        .await
        .unwrap();
    wait::for_deletion(&std.standards(), STD, READY_TIMEOUT)
        .await
        .unwrap();
    for i in 0..3 {
        let masters = std
            .sc
            .testbed
            .redis_at(
                &std.sc.pod(&format!("{GROUP}-{i}")),
                SENTINEL_PORT,
                Some(&std.sentinel_password.get()),
                &["SENTINEL", "MASTERS"],
            )
            .await
            .unwrap();
        assert!(
            !masters.contains("standard_std"),
            "{GROUP}-{i} still monitors: {masters}"
        );
    }
    let sentinels = std.sc.api::<KvrocksSentinel>();
    sentinels
        .delete(GROUP, &DeleteParams::default())
        .await
        .unwrap();
    wait::for_deletion(&sentinels, GROUP, READY_TIMEOUT)
        .await
        .unwrap();
}
