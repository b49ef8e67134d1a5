//! The testbed's real nodes: liveness restarts and preStop hooks, a stopped node (NotReady, its
//! pods silent until it starts again), and a kvrocks pod of the locally built image.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use kvrocks_e2e::nodes::node_ready;
use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;

const POD_TIMEOUT: Duration = Duration::from_secs(90);

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

async fn create<K>(client: &Client, ns: &str, object: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

fn phase_is(pod: &Pod, phase: &str) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)
}

fn ready(pod: &Pod) -> bool {
    phase_is(pod, "Running")
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_and_deletion_runs_the_pre_stop_hook() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let ns = "liveness";
    namespace(&client, ns).await;
    let shared = testbed.root().join("liveness-host-dir");
    std::fs::create_dir_all(&shared).unwrap();
    let _ = std::fs::remove_file(shared.join("unhealthy"));
    let _: Pod = create(
        &client,
        ns,
        json!({
            "metadata": {"name": "patient"},
            "spec": {
                "containers": [{
                    "name": "main", "image": "redis:7.2",
                    "command": ["sh", "-c", "trap 'echo term > /host/sigterm; exit 0' TERM; while true; do sleep 0.2; done"],
                    "livenessProbe": {"exec": {"command": ["sh", "-c", "test ! -e /host/unhealthy"]},
                                      "periodSeconds": 1, "failureThreshold": 2},
                    "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /host/prestop"]}}},
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                }],
                "volumes": [{"name": "host", "hostPath": {"path": shared.display().to_string(), "type": "Directory"}}],
                "terminationGracePeriodSeconds": 10,
            },
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait::for_object(&pods, "patient", POD_TIMEOUT, "Running and Ready", ready)
        .await
        .unwrap();
    std::fs::write(shared.join("unhealthy"), "").unwrap();
    wait::for_object(
        &pods,
        "patient",
        POD_TIMEOUT,
        "restarted by liveness",
        |p| restarts(p) >= 1,
    )
    .await
    .unwrap();
    std::fs::remove_file(shared.join("unhealthy")).unwrap();
    let _ = std::fs::remove_file(shared.join("sigterm"));
    wait::for_object(&pods, "patient", POD_TIMEOUT, "Running and Ready", ready)
        .await
        .unwrap();
    testbed
        .delete_pod(&PodRef::new(ns, "patient"))
        .await
        .unwrap();
    wait::for_deletion(&pods, "patient", POD_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(shared.join("prestop"))
            .unwrap()
            .trim(),
        "bye"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("sigterm"))
            .unwrap()
            .trim(),
        "term",
        "SIGTERM after the hook"
    );
}

#[tokio::test]
async fn a_stopped_node_turns_not_ready_and_its_pods_go_silent() {
    let testbed = Testbed::shared().await.unwrap();
    let client = testbed.client().await.unwrap();
    let ns = "nodestop";
    namespace(&client, ns).await;
    let _: Pod = create(
        &client,
        ns,
        json!({"metadata": {"name": "frozen"},
               "spec": {"containers": [{
                   "name": "redis", "image": "redis:7.2",
                   "command": ["redis-server", "--port", "6379", "--protected-mode", "no", "--save", ""],
                   "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1}}],
                   "terminationGracePeriodSeconds": 1}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = wait::for_object(&pods, "frozen", POD_TIMEOUT, "Running and Ready", ready)
        .await
        .unwrap();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    let probe = Duration::from_millis(500);
    assert!(Testbed::tcp_reachable(&ip, 6379, probe).await);

    testbed.stop_node(&node).await.unwrap();
    assert!(
        !Testbed::tcp_reachable(&ip, 6379, probe).await,
        "a stopped node's pod is cut off"
    );
    let nodes: Api<Node> = Api::all(client.clone());
    wait::for_object(&nodes, &node, Duration::from_secs(90), "NotReady", |n| {
        !node_ready(n)
    })
    .await
    .unwrap();

    testbed.start_node(&node).await.unwrap();
    wait::for_object(
        &nodes,
        &node,
        Duration::from_secs(60),
        "Ready again",
        node_ready,
    )
    .await
    .unwrap();
    wait::tcp(&ip, 6379, true, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        testbed
            .redis(&PodRef::new(ns, "frozen"), &["PING"])
            .await
            .unwrap(),
        "PONG"
    );
}

#[tokio::test]
async fn a_kvrocks_pod_runs_on_this_machines_data_plane() {
    let testbed = Testbed::shared().await.unwrap();
    if !testbed.data_plane().is_real() {
        kvrocks_e2e::say!(
            "\nSKIPPED kvrocks pod: no apache/kvrocks image without a kvrocks binary (set KVROCKS_BIN)"
        );
        return;
    }
    kvrocks_e2e::say!("kvrocks pod test: {}", testbed.data_plane().describe());
    let client = testbed.client().await.unwrap();
    let ns = "kvrocks";
    namespace(&client, ns).await;
    let conf = "bind 0.0.0.0\nport 6666\ndir /data\nrequirepass pa55word\nworkers 2\n";
    let _: ConfigMap = create(
        &client,
        ns,
        json!({"metadata": {"name": "conf"}, "data": {"kvrocks.conf": conf}}),
    )
    .await;
    let _: Pod = create(
        &client,
        ns,
        json!({"metadata": {"name": "kv"},
               "spec": {"containers": [{
                   "name": "kvrocks", "image": "apache/kvrocks:2.10.1",
                   "command": ["sh", "-c", "cp /conf/kvrocks.conf /data/kvrocks.conf && exec kvrocks -c /data/kvrocks.conf"],
                   "readinessProbe": {"tcpSocket": {"port": 6666}, "periodSeconds": 1},
                   "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                    {"name": "conf", "mountPath": "/conf"}]}],
                   "volumes": [{"name": "data", "emptyDir": {}},
                               {"name": "conf", "configMap": {"name": "conf"}}],
                   "terminationGracePeriodSeconds": 5}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait::for_object(&pods, "kv", POD_TIMEOUT, "Running and Ready", ready)
        .await
        .unwrap();
    let pod = PodRef::new(ns, "kv");
    // The image's user and filesystem, as `kubectl exec` shows them.
    let uid = testbed
        .kubectl(&["-n", ns, "exec", "kv", "--", "id", "-u"])
        .await
        .unwrap();
    assert_eq!(
        uid.trim(),
        "999",
        "kvrocks runs as the image's user kvrocks"
    );
    let default_conf = testbed
        .kubectl(&[
            "-n",
            ns,
            "exec",
            "kv",
            "--",
            "cat",
            "/var/lib/kvrocks/kvrocks.conf",
        ])
        .await
        .unwrap();
    assert!(
        default_conf.contains("dir /var/lib/kvrocks"),
        "the image's own default config: {default_conf}"
    );
    let unauthenticated = testbed.redis_at(&pod, 6666, None, &["SET", "k", "v"]).await;
    assert!(
        unauthenticated.is_err(),
        "requirepass is applied: {unauthenticated:?}"
    );
    assert_eq!(
        testbed
            .redis_at(&pod, 6666, Some("pa55word"), &["SET", "k", "v"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(
        testbed
            .redis_at(&pod, 6666, Some("pa55word"), &["GET", "k"])
            .await
            .unwrap(),
        "v"
    );
}
