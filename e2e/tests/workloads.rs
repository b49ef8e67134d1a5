//! The testbed behaves like a cluster: StatefulSets with PVCs, pod deletion, process restarts, a
//! cut network and the garbage collector, with redis-server pods on the real nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;

const POD_TIMEOUT: Duration = Duration::from_secs(90);
const NETWORK_TIMEOUT: Duration = Duration::from_secs(15);

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// A redis-server container; `/data` is the volume `data`.
fn redis_container() -> serde_json::Value {
    json!({
        "name": "redis",
        "image": "redis:7.2",
        "command": ["redis-server", "--port", "6379", "--dir", "/data", "--protected-mode", "no",
                    "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    })
}

fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

fn restart_count(pod: &Pod, container: &str) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.restart_count)
}

/// A bare pod running redis-server on an emptyDir, Running and Ready.
async fn redis_pod(client: &Client, ns: &str, name: &str) -> Pod {
    namespace(client, ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [redis_container()],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 5,
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait::for_object(&pods, name, POD_TIMEOUT, "Running and Ready", ready)
        .await
        .unwrap()
}

#[tokio::test]
async fn statefulset_pods_get_their_own_ips_and_keep_data_across_deletion() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let ns = "sts";
    namespace(&client, ns).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "redis"},
        "spec": {
            "serviceName": "redis",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "redis"}},
            "template": {
                "metadata": {"labels": {"app": "redis"}},
                "spec": {"containers": [redis_container()], "terminationGracePeriodSeconds": 5},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
            }],
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut ips = BTreeSet::new();
    for i in 0..3 {
        let pod = wait::for_object(
            &pods,
            &format!("redis-{i}"),
            POD_TIMEOUT,
            "Running and Ready",
            ready,
        )
        .await
        .unwrap();
        ips.insert(ip(&pod));
    }
    assert_eq!(ips.len(), 3, "three pods, three IPs: {ips:?}");

    let pod0 = PodRef::new(ns, "redis-0");
    assert_eq!(
        testbed
            .redis(&pod0, &["SET", "greeting", "hello"])
            .await
            .unwrap(),
        "OK"
    );
    let before = pods.get("redis-0").await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims.get("data-redis-0").await.unwrap();
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    assert!(
        volume.is_some(),
        "data-redis-0 is bound: {:?}",
        claim.status
    );

    testbed.delete_pod(&pod0).await.unwrap();
    let old_uid = before.uid().unwrap();
    let after = wait::for_object(
        &pods,
        "redis-0",
        POD_TIMEOUT,
        "recreated, Running and Ready",
        |p| p.uid().as_deref() != Some(old_uid.as_str()) && ready(p),
    )
    .await
    .unwrap();
    assert_ne!(ip(&after), ip(&before), "a recreated pod gets a new IP");
    let claim_after = claims.get("data-redis-0").await.unwrap();
    assert_eq!(claim_after.uid(), claim.uid(), "the same PVC");
    assert_eq!(
        claim_after.spec.and_then(|s| s.volume_name),
        volume,
        "the same PV"
    );
    assert_eq!(
        testbed.redis(&pod0, &["GET", "greeting"]).await.unwrap(),
        "hello"
    );
}

#[tokio::test]
async fn a_killed_process_is_restarted() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let pod = redis_pod(&client, "restart", "victim").await;
    assert_eq!(restart_count(&pod, "redis"), Some(0));
    let target = PodRef::new("restart", "victim");
    let first_pid = testbed.container_pid(&target, "redis").await.unwrap();

    testbed.kill_container(&target, "redis").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "restart");
    wait::for_object(
        &pods,
        "victim",
        POD_TIMEOUT,
        "restartCount 1 and Ready",
        |p| restart_count(p, "redis") == Some(1) && ready(p),
    )
    .await
    .unwrap();
    let pid = testbed.container_pid(&target, "redis").await.unwrap();
    assert_ne!(pid, first_pid, "a new process");
    assert_eq!(testbed.redis(&target, &["PING"]).await.unwrap(), "PONG");
}

#[tokio::test]
async fn a_cut_network_makes_the_pod_unreachable_until_restored() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let pod = redis_pod(&client, "network", "isolated").await;
    let addr = ip(&pod);
    let target = PodRef::new("network", "isolated");
    let probe = Duration::from_millis(500);
    assert!(Testbed::tcp_reachable(&addr, 6379, probe).await);

    testbed.cut_network(&target).await.unwrap();
    wait::tcp(&addr, 6379, false, NETWORK_TIMEOUT)
        .await
        .unwrap();

    testbed.restore_network(&target).await.unwrap();
    wait::tcp(&addr, 6379, true, NETWORK_TIMEOUT).await.unwrap();
    assert_eq!(testbed.redis(&target, &["PING"]).await.unwrap(), "PONG");
}

#[tokio::test]
async fn the_garbage_collector_deletes_owned_objects() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let ns = "gc";
    namespace(&client, ns).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "owner"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "owner"}},
            "template": {
                "metadata": {"labels": {"app": "owner"}},
                "spec": {
                    "containers": [redis_container()],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "terminationGracePeriodSeconds": 5,
                },
            },
        },
    }))
    .unwrap();
    let owner = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let owner_ref = owner.controller_owner_ref(&()).unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owned: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "owned", "ownerReferences": [owner_ref]},
        "data": {"k": "v"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();

    // The deployment and replicaset controllers act: a ReplicaSet and a pod appear.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels("app=owner");
    wait::until(
        "a ReplicaSet and a pod of deployment gc/owner",
        POD_TIMEOUT,
        async || {
            let rs = sets
                .list(&selector)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let pod = pods
                .list(&selector)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if rs == 1 && pod == 1 {
                Ok(())
            } else {
                Err(format!("{rs} ReplicaSets, {pod} pods"))
            }
        },
    )
    .await
    .unwrap();

    deployments
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait::for_deletion(&config_maps, "owned", POD_TIMEOUT)
        .await
        .unwrap();
    wait::until(
        "the ReplicaSet and pod of gc/owner to be deleted",
        POD_TIMEOUT,
        async || {
            let rs = sets
                .list(&selector)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let pod = pods
                .list(&selector)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if rs == 0 && pod == 0 {
                Ok(())
            } else {
                Err(format!("{rs} ReplicaSets, {pod} pods left"))
            }
        },
    )
    .await
    .unwrap();
}

/// Whether `redis-cli PING` from inside pod `from` gets PONG from `ip` within 3 s.
async fn ping_from(testbed: &Testbed, ns: &str, from: &str, ip: &str) -> bool {
    let args = [
        "-n",
        ns,
        "exec",
        from,
        "--",
        "timeout",
        "3",
        "redis-cli",
        "-h",
        ip,
        "ping",
    ];
    testbed
        .kubectl(&args)
        .await
        .is_ok_and(|out| out.trim() == "PONG")
}

#[tokio::test]
async fn a_cut_path_parts_two_pods_and_nothing_else() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let ns = "partition";
    let a = ip(&redis_pod(&client, ns, "a").await);
    let b = ip(&redis_pod(&client, ns, "b").await);
    let c = ip(&redis_pod(&client, ns, "c").await);
    let (pod_a, pod_b) = (PodRef::new(ns, "a"), PodRef::new(ns, "b"));
    assert!(
        ping_from(testbed, ns, "a", &b).await,
        "a reaches b before the cut"
    );

    testbed.cut_between(&pod_a, &pod_b, true).await.unwrap();
    assert!(
        !ping_from(testbed, ns, "a", &b).await,
        "a no longer reaches b"
    );
    assert!(!ping_from(testbed, ns, "b", &a).await, "nor b a");
    assert!(ping_from(testbed, ns, "a", &c).await, "a still reaches c");
    assert!(ping_from(testbed, ns, "b", &c).await, "b still reaches c");
    let probe = Duration::from_secs(2);
    assert!(
        Testbed::tcp_reachable(&a, 6379, probe).await,
        "this machine still reaches a"
    );

    testbed.cut_between(&pod_a, &pod_b, false).await.unwrap();
    assert!(ping_from(testbed, ns, "a", &b).await, "a reaches b again");
}
