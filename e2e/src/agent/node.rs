//! The virtual nodes: their Node objects (Ready, capacity, addresses), Lease heartbeats, and the
//! running/stopped switch that `POST /nodes/{node}/stop|start` flips.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::{AgentError, AgentResult};

/// Field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "node-agent";
/// Namespace of the node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration, as the kubelet's default.
const LEASE_SECONDS: i32 = 40;
/// How often the Lease is renewed (the kubelet renews every quarter of the duration).
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often the Node status is re-posted while nothing changes (the kubelet's default).
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// Capacity of every virtual node.
pub const NODE_CPU: &str = "8";
/// See [`NODE_CPU`].
pub const NODE_MEMORY: &str = "16Gi";
const NODE_PODS: &str = "110";

/// The name of virtual node `i` (1-based).
pub fn node_name(i: usize) -> String {
    format!("testbed-node-{i}")
}

/// A shared handle on one virtual node: its name, host IP and whether it runs.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
struct NodeInner {
    name: String,
    ip: Ipv4Addr,
    running: watch::Sender<bool>,
}

impl NodeHandle {
    /// A running node.
    pub fn new(name: String, ip: Ipv4Addr) -> Self {
        Self {
            inner: Arc::new(NodeInner {
                name,
                ip,
                running: watch::Sender::new(true),
            }),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's (host) IP.
    pub fn ip(&self) -> Ipv4Addr {
        self.inner.ip
    }

    /// Whether the node runs (not stopped through the control API).
    pub fn is_running(&self) -> bool {
        *self.inner.running.borrow()
    }

    /// Stops or starts the node; returns whether that changed anything.
    pub fn set_running(&self, running: bool) -> bool {
        self.inner.running.send_if_modified(|r| {
            let changed = *r != running;
            *r = running;
            changed
        })
    }

    /// A receiver that sees every stop and start.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.running.subscribe()
    }

    /// Returns at once while the node runs; otherwise when it is started again.
    pub async fn wait_running(&self) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// The Node object of a virtual node.
pub fn node_object(node: &NodeHandle) -> Node {
    let name = node.name().to_owned();
    let resources = [
        ("cpu", NODE_CPU),
        ("memory", NODE_MEMORY),
        ("pods", NODE_PODS),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
    .collect::<std::collections::BTreeMap<_, _>>();
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(
                [
                    ("kubernetes.io/hostname", name.as_str()),
                    ("kubernetes.io/os", "linux"),
                    ("kubernetes.io/arch", std::env::consts::ARCH),
                    ("node.kvrocks.io/testbed", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: node.ip().to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name,
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints::default()),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.into(),
                operating_system: "linux".into(),
                os_image: "kvrocks-operator testbed".into(),
                kernel_version: kernel_version(),
                container_runtime_version: "testbed://processes".into(),
                kubelet_version: "testbed-node-agent".into(),
                kube_proxy_version: String::new(),
                boot_id: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                ..Default::default()
            }),
            conditions: Some(conditions()),
            ..Default::default()
        }),
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn conditions() -> Vec<NodeCondition> {
    let now = Time(jiff::Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "testbed node agent",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "testbed node agent",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "testbed node agent",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "testbed node agent is posting ready status",
        ),
    ]
}

/// Registers the node (server-side apply of metadata and spec, then its status).
pub async fn register(client: &kube::Client, node: &NodeHandle) -> AgentResult<()> {
    let api: Api<Node> = Api::all(client.clone());
    let mut object = node_object(node);
    let status = object.status.take();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut meta_only = object.clone();
    meta_only.status = None;
    api.patch(node.name(), &params, &Patch::Apply(&meta_only))
        .await
        .map_err(|e| AgentError::kube(format!("register node {}", node.name()), e))?;
    post_status(&api, node.name(), status).await
}

async fn post_status(api: &Api<Node>, name: &str, status: Option<NodeStatus>) -> AgentResult<()> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| AgentError::kube(format!("post status of node {name}"), e))
}

async fn renew_lease(api: &Api<Lease>, node: &NodeHandle) -> AgentResult<()> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.name().to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name().to_owned()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        }),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(node.name(), &params, &Patch::Apply(&lease))
        .await
        .map(drop)
        .map_err(|e| AgentError::kube(format!("renew lease of node {}", node.name()), e))
}

/// Heartbeats of one node until `shutdown`: the Lease every 10 s and the status every minute, and
/// both at once when the node is started again. A stopped node sends nothing, so the node
/// lifecycle controller marks it NotReady as it would a dead kubelet.
pub async fn heartbeat(client: kube::Client, node: NodeHandle, shutdown: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let mut running = node.subscribe();
    let mut last_status = tokio::time::Instant::now();
    loop {
        if node.is_running() {
            if let Err(e) = renew_lease(&leases, &node).await {
                tracing::warn!(node = node.name(), error = %e, "lease renewal failed");
            }
            if last_status.elapsed() >= STATUS_EVERY {
                let status = node_object(&node).status;
                match post_status(&nodes, node.name(), status).await {
                    Ok(()) => last_status = tokio::time::Instant::now(),
                    Err(e) => tracing::warn!(node = node.name(), error = %e, "status post failed"),
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
            changed = running.changed() => {
                if changed.is_err() {
                    return;
                }
                if *running.borrow_and_update() {
                    tracing::info!(node = node.name(), "node started");
                    // Post Ready at once on the next turn.
                    last_status = tokio::time::Instant::now() - STATUS_EVERY;
                } else {
                    tracing::info!(node = node.name(), "node stopped: no heartbeats");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn stop_and_start_wake_waiters() {
        let node = NodeHandle::new(node_name(1), Ipv4Addr::new(10, 1, 0, 1));
        assert!(node.is_running());
        node.wait_running().await;
        assert!(node.set_running(false));
        assert!(!node.set_running(false));
        let waiter = tokio::spawn({
            let node = node.clone();
            async move { node.wait_running().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        node.set_running(true);
        waiter.await.unwrap();
    }

    #[test]
    fn node_object_is_ready_with_capacity() {
        let node = NodeHandle::new(node_name(2), Ipv4Addr::new(10, 1, 0, 1));
        let object = node_object(&node);
        let status = object.status.unwrap();
        assert_eq!(status.capacity.unwrap()["cpu"].0, NODE_CPU);
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(
            object.metadata.labels.unwrap()["kubernetes.io/hostname"],
            "testbed-node-2"
        );
    }
}
