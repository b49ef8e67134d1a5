//! KvrocksSentinel end to end on the testbed, with the operator running only its sentinel
//! controller: a group of 3 becomes Ready; a KvrocksStandard whose master is a plain
//! redis-server pod (with a password) gets monitored on every sentinel at quorum 2; scaling
//! 3 -> 5 -> 3 keeps every pod carrying the monitor at quorum 3, then 2; deleting the group is
//! refused (`Ready=False`, `InUse`) while the Standard uses it; deleting the Standard removes the
//! monitor from every sentinel and lets the group go.
//!
//! The standard controller does not run here, so the test plays it: it creates the master pod
//! and writes the Standard's `status.master` itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;

const NS: &str = "sentinel-e2e";
const GROUP: &str = "guards";
const STANDARD: &str = "db";
const PASSWORD: &str = "e2e-sentinel-Pa55";
/// The group's own password, in a Secret the test makes (`spec.auth.secretName`).
const GROUP_SECRET: &str = "guards-pass";
const GROUP_PASSWORD: &str = "e2e-guards-Pa55";
const TIMEOUT: Duration = Duration::from_secs(120);

fn condition<'a>(group: &'a KvrocksSentinel, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = group
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_str()))
}

/// Ready with `n` ready sentinels at `quorum`, each carrying every monitor.
fn ready_with(group: &KvrocksSentinel, n: i32, quorum: i32) -> bool {
    let Some(status) = group.status.as_ref() else {
        return false;
    };
    condition(group, "Ready") == Some(("True", "SentinelsReady"))
        && status.ready_replicas == Some(n)
        && status.current_replicas == Some(n)
        && status.quorum == Some(quorum)
        && status.observed_generation == group.metadata.generation
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `SENTINEL MASTER <name>` on a sentinel pod as field -> value, or the error.
async fn sentinel_master(
    testbed: &Testbed,
    pod: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let out = testbed
        .redis_at(
            &PodRef::new(NS, pod),
            26379,
            Some(GROUP_PASSWORD),
            &["SENTINEL", "MASTER", name],
        )
        .await
        .map_err(|e| e.to_string())?;
    let lines: Vec<&str> = out.lines().collect();
    Ok(lines
        .chunks(2)
        .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string())))
        .collect())
}

/// Waits until every one of the group's `n` pods monitors `standard_db` at `ip` with `quorum`.
async fn every_pod_monitors(testbed: &Testbed, n: usize, ip: &str, quorum: u32) {
    let monitor = format!("standard_{STANDARD}");
    wait::until(
        &format!("{monitor} at {ip} with quorum {quorum} on all {n} sentinels"),
        TIMEOUT,
        async || {
            for i in 0..n {
                let pod = format!("{GROUP}-{i}");
                let m = sentinel_master(testbed, &pod, &monitor).await?;
                let seen = (
                    m.get("ip").map(String::as_str),
                    m.get("quorum").map(String::as_str),
                );
                if seen != (Some(ip), Some(quorum.to_string().as_str())) {
                    return Err(format!("{pod}: ip, quorum = {seen:?}"));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// Waits until every one of the group's `n` pods counts exactly the `n - 1` others as peers.
async fn every_pod_knows_the_others(testbed: &Testbed, n: usize, timeout: Duration) {
    let want = (n - 1).to_string();
    wait::until(
        &format!("each of the {n} sentinels to count exactly {want} peers"),
        timeout,
        async || {
            for i in 0..n {
                let pod = format!("{GROUP}-{i}");
                let m = sentinel_master(testbed, &pod, "standard_db").await?;
                let peers = m.get("num-other-sentinels");
                if peers != Some(&want) {
                    return Err(format!("{pod}: num-other-sentinels {peers:?}"));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
}

/// A redis-server pod with a password, labelled like a pod of the Standard `db`.
async fn master_pod(client: &Client) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db-master", "labels": {
            "app.kubernetes.io/name": "kvrocks",
            "app.kubernetes.io/instance": STANDARD,
            "app.kubernetes.io/component": "standard",
        }},
        "spec": {
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "redis",
                "image": "redis:7.2",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
                "command": ["sh", "-c", "exec redis-server --port 6379 --protected-mode no --save '' \
                            --requirepass \"$PASSWORD\" --masterauth \"$PASSWORD\""],
                "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                    "name": format!("{STANDARD}-auth"), "key": "password"}}}],
                "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
            }],
            "terminationGracePeriodSeconds": 2,
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait::for_object(&pods, "db-master", TIMEOUT, "Running and Ready", pod_ready)
        .await
        .unwrap()
}

async fn scale(groups: &Api<KvrocksSentinel>, replicas: i32) {
    groups
        .patch(
            GROUP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sentinel_group_monitors_scales_and_outlives_its_users() {
    let testbed = Testbed::shared().await.unwrap();
    testbed.install_crds().await.unwrap();
    let Some(operator) =
        kvrocks_e2e::operator::start_operator(testbed, &["--controllers", "sentinel"])
            .await
            .unwrap()
    else {
        return;
    };
    let client = testbed.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            // Every pod here must pass the restricted Pod Security Standard.
            &serde_json::from_value(json!({"metadata": {
                "name": NS,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }}))
            .unwrap(),
        )
        .await
        .unwrap();
    let groups: Api<KvrocksSentinel> = Api::namespaced(client.clone(), NS);
    let standards: Api<KvrocksStandard> = Api::namespaced(client.clone(), NS);

    // A group of 3, its password in a Secret of the test's own, labelled for the operator.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": GROUP_SECRET, "labels": {"kvrocks.io/auth": "true"}},
                "stringData": {"password": GROUP_PASSWORD},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    groups
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksSentinel",
                "metadata": {"name": GROUP},
                "spec": {"replicas": 3, "downAfterMilliseconds": 3000,
                         "auth": {"secretName": GROUP_SECRET}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let group = wait::for_object(&groups, GROUP, TIMEOUT, "Ready with 3 sentinels", |g| {
        ready_with(g, 3, 2)
    })
    .await
    .unwrap();
    let to_ready = started.elapsed();
    kvrocks_e2e::say!(
        "sentinel e2e: 3 sentinels Ready in {:.1} s",
        to_ready.as_secs_f64()
    );
    assert!(
        group
            .finalizers()
            .contains(&"kvrocks.io/sentinel-in-use".to_owned())
    );
    let set: StatefulSet = Api::namespaced(client.clone(), NS)
        .get(GROUP)
        .await
        .unwrap();
    assert_eq!(
        set.spec.as_ref().unwrap().service_name.as_deref(),
        Some(GROUP)
    );
    let svc: Service = Api::namespaced(client.clone(), NS)
        .get(GROUP)
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let _: PodDisruptionBudget = Api::namespaced(client.clone(), NS)
        .get(GROUP)
        .await
        .unwrap();
    let config: ConfigMap = Api::namespaced(client.clone(), NS)
        .get(&format!("{GROUP}-config"))
        .await
        .unwrap();
    assert!(config.data.unwrap()["sentinel.conf"].contains("port 26379"));

    // Every sentinel requires the group's password: nothing else gets in.
    for i in 0..3 {
        let pod = PodRef::new(NS, &format!("{GROUP}-{i}"));
        let anonymous = testbed
            .redis_at(&pod, 26379, None, &["SENTINEL", "MASTERS"])
            .await;
        assert!(
            anonymous
                .as_ref()
                .is_err_and(|e| e.to_string().contains("NOAUTH")),
            "{pod} answers without a password: {anonymous:?}"
        );
        let wrong = testbed
            .redis_at(&pod, 26379, Some("not-the-Pa55word"), &["PING"])
            .await;
        assert!(wrong.is_err(), "{pod} takes a wrong password: {wrong:?}");
        let right = testbed
            .redis_at(&pod, 26379, Some(GROUP_PASSWORD), &["PING"])
            .await
            .unwrap();
        assert_eq!(right.trim(), "PONG");
    }

    // A Standard, its Secret and a master the test runs itself.
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("{STANDARD}-auth"),
                             "labels": {"kvrocks.io/auth": "true"}},
                "stringData": {"password": PASSWORD},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let master = master_pod(&client).await;
    let master_ip = master.status.unwrap().pod_ip.unwrap();
    standards
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
                "metadata": {"name": STANDARD},
                "spec": {"replicas": 1, "sentinel": {"name": GROUP}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let monitored = Instant::now();
    standards
        .patch_status(
            STANDARD,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"master": {"pod": "db-master", "ip": master_ip}}})),
        )
        .await
        .unwrap();
    every_pod_monitors(testbed, 3, &master_ip, 2).await;
    let group = wait::for_object(&groups, GROUP, TIMEOUT, "Ready, listing standard_db", |g| {
        ready_with(g, 3, 2)
            && g.status.as_ref().is_some_and(|s| {
                s.monitors.iter().any(|m| {
                    m.name == "standard_db"
                        && m.ip == master_ip
                        && m.port == 6379
                        && m.kind == "KvrocksStandard"
                        && m.instance == STANDARD
                })
            })
    })
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "sentinel e2e: standard_db monitored on 3 sentinels in {:.1} s",
        monitored.elapsed().as_secs_f64()
    );
    assert_eq!(
        condition(&group, "Degraded"),
        Some(("False", "Healthy")),
        "{:?}",
        group.status
    );
    // The auth-pass is right: after more than down-after-milliseconds the master is still
    // just `master` (a wrong password would make it s_down), and the sentinels found each other.
    wait::until(
        "every sentinel to see a healthy master and 2 peers",
        TIMEOUT,
        async || {
            for i in 0..3 {
                let pod = format!("{GROUP}-{i}");
                let m = sentinel_master(testbed, &pod, "standard_db").await?;
                let seen = (
                    m.get("flags").map(String::as_str),
                    m.get("num-other-sentinels").map(String::as_str),
                );
                if seen != (Some("master"), Some("2")) {
                    return Err(format!("{pod}: flags, peers = {seen:?}"));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for i in 0..3 {
        let m = sentinel_master(testbed, &format!("{GROUP}-{i}"), "standard_db")
            .await
            .unwrap();
        assert_eq!(m["flags"], "master", "{GROUP}-{i}: {m:?}");
    }

    // A steady group writes nothing: a change of the Standard that means nothing to the group
    // reconciles it, and no object of the group gets a new resourceVersion.
    let versions = async || {
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
        let svc: Api<Service> = Api::namespaced(client.clone(), NS);
        let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        [
            groups.get(GROUP).await.unwrap().resource_version(),
            sts.get(GROUP).await.unwrap().resource_version(),
            svc.get(GROUP).await.unwrap().resource_version(),
            pdb.get(GROUP).await.unwrap().resource_version(),
            cm.get(&format!("{GROUP}-config"))
                .await
                .unwrap()
                .resource_version(),
        ]
    };
    let before = versions().await;
    standards
        .patch(
            STANDARD,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/poke": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions().await,
        before,
        "a steady reconcile wrote something"
    );

    // Sentinel events reach the operator: with the master cut off, the sentinels agree it is
    // down (+sdown, +odown; a failover finds no replica), and -odown once it is back.
    let master_ref = PodRef::new(NS, "db-master");
    let counted = async |event: &str| -> Result<(), String> {
        let text = operator.metrics().await.map_err(|e| e.to_string())?;
        let line = format!("kvrocks_operator_sentinel_events_total{{event=\"{event}\"}}");
        if text.lines().any(|l| l.starts_with(&line)) {
            Ok(())
        } else {
            Err(format!("no {line} yet"))
        }
    };
    let cut = Instant::now();
    testbed.cut_network(&master_ref).await.unwrap();
    wait::until(
        "the operator to count +odown",
        Duration::from_secs(60),
        async || counted("+odown").await,
    )
    .await
    .unwrap();
    kvrocks_e2e::say!(
        "sentinel e2e: +odown counted {:.1} s after the master was cut off (down-after 3 s)",
        cut.elapsed().as_secs_f64()
    );
    counted("+sdown").await.unwrap();
    testbed.restore_network(&master_ref).await.unwrap();
    wait::until(
        "the operator to count -odown",
        Duration::from_secs(60),
        async || counted("-odown").await,
    )
    .await
    .unwrap();
    wait::until(
        "every sentinel to see the master up again",
        TIMEOUT,
        async || {
            for i in 0..3 {
                let pod = format!("{GROUP}-{i}");
                let m = sentinel_master(testbed, &pod, "standard_db").await?;
                if m.get("flags").map(String::as_str) != Some("master") || m["ip"] != master_ip {
                    return Err(format!("{pod}: {:?} at {:?}", m.get("flags"), m.get("ip")));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();

    // 3 -> 5: quorum 3 on every pod.
    let started = Instant::now();
    scale(&groups, 5).await;
    wait::for_object(&groups, GROUP, TIMEOUT, "Ready with 5 sentinels", |g| {
        ready_with(g, 5, 3)
    })
    .await
    .unwrap();
    let up = started.elapsed();
    every_pod_monitors(testbed, 5, &master_ip, 3).await;
    kvrocks_e2e::say!(
        "sentinel e2e: scaled 3 -> 5 (Ready, quorum 3 everywhere) in {:.1} s",
        up.as_secs_f64()
    );
    // Sentinels find each other through the master's hello channel (every 2 s).
    every_pod_knows_the_others(testbed, 5, TIMEOUT).await;
    kvrocks_e2e::say!(
        "sentinel e2e: the 5 sentinels know each other {:.1} s after the scale-up",
        started.elapsed().as_secs_f64()
    );

    // 5 -> 3: quorum 2 on every pod, and the remaining ones forget the two that left.
    let started = Instant::now();
    scale(&groups, 3).await;
    wait::for_object(&groups, GROUP, TIMEOUT, "Ready with 3 sentinels", |g| {
        ready_with(g, 3, 2)
    })
    .await
    .unwrap();
    let down = started.elapsed();
    every_pod_monitors(testbed, 3, &master_ip, 2).await;
    kvrocks_e2e::say!(
        "sentinel e2e: scaled 5 -> 3 (Ready, quorum 2 everywhere) in {:.1} s",
        down.as_secs_f64()
    );
    // The two that left are forgotten (SENTINEL RESET, one sentinel per pass), or the majority
    // a failover needs would still count them.
    every_pod_knows_the_others(testbed, 3, Duration::from_secs(180)).await;
    kvrocks_e2e::say!(
        "sentinel e2e: stale peers forgotten {:.1} s after the scale-in",
        started.elapsed().as_secs_f64()
    );

    // Deleting the group is refused while the Standard uses it.
    groups
        .delete(GROUP, &DeleteParams::default())
        .await
        .unwrap();
    wait::for_object(&groups, GROUP, TIMEOUT, "Ready=False, InUse", |g| {
        g.metadata.deletion_timestamp.is_some() && condition(g, "Ready") == Some(("False", "InUse"))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = groups.get(GROUP).await.unwrap();
    assert_eq!(condition(&held, "Ready"), Some(("False", "InUse")));
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let warned = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("InUse")
                && e.type_.as_deref() == Some("Warning")
                && e.note.unwrap_or_default().contains("KvrocksStandard db")
        });
    assert!(warned, "a Warning event names the Standard");
    // The monitor is still maintained meanwhile.
    every_pod_monitors(testbed, 3, &master_ip, 2).await;

    // Deleting the Standard removes its monitor everywhere, then the group goes.
    let started = Instant::now();
    standards
        .delete(STANDARD, &DeleteParams::default())
        .await
        .unwrap();
    // The group goes right after its last pass, taking its pods: a pod already gone counts as
    // clean, and the operator's Event says where the monitor was removed.
    wait::until(
        "standard_db removed from every sentinel",
        TIMEOUT,
        async || {
            for i in 0..3 {
                let pod = format!("{GROUP}-{i}");
                match sentinel_master(testbed, &pod, "standard_db").await {
                    Err(e)
                        if e.contains("No such master")
                            || e.contains("not found")
                            || e.contains("no IP")
                            || e.contains("Could not connect")
                            || e.contains("refused") => {}
                    Err(e) => return Err(format!("{pod}: {e}")),
                    Ok(m) => return Err(format!("{pod} still monitors it: {:?}", m.get("ip"))),
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    let removed_everywhere = |e: &Event| {
        let note = e.note.clone().unwrap_or_default();
        e.reason.as_deref() == Some("MonitorRemoved")
            && note.starts_with("standard_db removed from")
            && (0..3).all(|i| note.contains(&format!("{GROUP}-{i}")))
    };
    wait::until(
        "a MonitorRemoved event naming the 3 sentinels",
        TIMEOUT,
        async || {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if list.items.iter().any(removed_everywhere) {
                Ok(())
            } else {
                Err("no such event yet".to_owned())
            }
        },
    )
    .await
    .unwrap();
    wait::for_deletion(&groups, GROUP, TIMEOUT).await.unwrap();
    kvrocks_e2e::say!(
        "sentinel e2e: monitor removed and group deleted {:.1} s after the Standard",
        started.elapsed().as_secs_f64()
    );
    // A spec the schema takes but whose StatefulSet the apiserver refuses (requests above
    // limits): Ready=False with the apiserver's words, then Ready once fixed.
    let broken = "broken";
    groups
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksSentinel",
                "metadata": {"name": broken},
                "spec": {"replicas": 3, "auth": {"secretName": GROUP_SECRET},
                         "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "32Mi"}}},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let refused = wait::for_object(&groups, broken, TIMEOUT, "Ready=False ApplyRefused", |g| {
        condition(g, "Ready") == Some(("False", "ApplyRefused"))
    })
    .await
    .unwrap();
    let message = refused
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("StatefulSet") && message.contains("limit"),
        "{message}"
    );
    kvrocks_e2e::say!("sentinel e2e: refused apply reported: {message}");
    groups
        .patch(
            broken,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resources": {"limits": {"memory": "128Mi"}}}})),
        )
        .await
        .unwrap();
    wait::for_object(&groups, broken, TIMEOUT, "Ready once fixed", |g| {
        ready_with(g, 3, 2)
    })
    .await
    .unwrap();
    groups
        .delete(broken, &DeleteParams::default())
        .await
        .unwrap();
    wait::for_deletion(&groups, broken, TIMEOUT).await.unwrap();

    let metrics = operator.metrics().await.unwrap();
    assert!(
        metrics.contains(
            r#"kvrocks_operator_reconcile_total{controller="sentinel",result="success"}"#
        ),
        "{metrics}"
    );
    assert!(
        !std::fs::read_to_string(operator.log_path())
            .unwrap()
            .contains(PASSWORD),
        "the password never reaches the operator's log"
    );
}
