//! Starting the node agent (`node-agent run ...`) and talking to its HTTP control API.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::http;
use crate::kubeconfig;
use crate::launcher::Launcher;
use crate::network::Network;
use crate::process::Spec;

/// Virtual nodes the agent plays kubelet for.
pub const NODES: usize = 3;
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent reports about one pod (`GET /pods/{ns}/{name}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// The pod's UID.
    pub uid: String,
    /// The virtual node it runs on.
    pub node: String,
    /// Its IP.
    pub ip: String,
    /// Its network namespace (path or name).
    pub netns: String,
    /// Its containers by name.
    pub containers: BTreeMap<String, ContainerInfo>,
}

/// One container of a [`PodInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    /// Host pid of its process, when running.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restart_count: u32,
    /// Whether its process is running.
    pub running: bool,
}

/// A client of the agent's control API on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct AgentClient {
    /// The API address.
    pub addr: SocketAddr,
}

impl AgentClient {
    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<()> {
        http::get_ok(self.addr, "/healthz", CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// `GET /pods/{ns}/{name}`.
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<PodInfo> {
        let path = format!("/pods/{namespace}/{name}");
        let body = http::get_ok(self.addr, &path, CALL_TIMEOUT).await?;
        serde_json::from_str(&body).map_err(|e| {
            Error::invalid(format!("agent reply to GET {path}"), format!("{e}: {body}"))
        })
    }

    /// SIGKILLs a container's process (the pod's restart policy applies).
    pub async fn kill_container(&self, namespace: &str, pod: &str, container: &str) -> Result<()> {
        self.post(&format!(
            "/pods/{namespace}/{pod}/containers/{container}/kill"
        ))
        .await
    }

    /// Sets the pod's host-side veth down (`up == false`) or up.
    pub async fn set_network(&self, namespace: &str, pod: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.post(&format!("/pods/{namespace}/{pod}/network/{state}"))
            .await
    }

    /// Stops (`running == false`) or starts a virtual node.
    pub async fn set_node(&self, node: &str, running: bool) -> Result<()> {
        let action = if running { "start" } else { "stop" };
        self.post(&format!("/nodes/{node}/{action}")).await
    }

    async fn post(&self, path: &str) -> Result<()> {
        http::post_ok(self.addr, path, None, CALL_TIMEOUT)
            .await
            .map(drop)
    }
}

/// The `node-agent` binary: `$KVROCKS_TESTBED_AGENT`, else next to this executable (cargo puts
/// bins in `target/<profile>/` and test binaries in `target/<profile>/deps/`).
pub fn agent_binary() -> Option<PathBuf> {
    sibling_binary("KVROCKS_TESTBED_AGENT", "node-agent")
}

/// A binary of this package by name, from `env_override` or next to the current executable.
pub fn sibling_binary(env_override: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Starts the agent, waits for its control API and for its nodes to be Ready.
pub async fn start(
    launcher: &mut Launcher,
    agent_bin: &Path,
    kubeconfig_path: &Path,
    admin: &Path,
    network: &Network,
    image_map: &Path,
) -> Result<AgentClient> {
    let root = launcher.root();
    let agent_root = root.join("agent");
    let addr_file = agent_root.join("control.addr");
    let _ = std::fs::remove_file(&addr_file);
    let args: Vec<OsString> = [
        "run".into(),
        "--kubeconfig".into(),
        kubeconfig_path.as_os_str().to_owned(),
        "--root".into(),
        agent_root.as_os_str().to_owned(),
        "--nodes".into(),
        NODES.to_string().into(),
        "--bridge".into(),
        network.bridge.clone().into(),
        "--pod-cidr".into(),
        network.cidr().into(),
        "--image-map".into(),
        image_map.as_os_str().to_owned(),
    ]
    .into();
    launcher.start(Spec {
        name: "node-agent",
        program: agent_bin,
        args,
        env: vec![(
            "RUST_LOG".into(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )],
        log: root.join("logs").join("node-agent.log"),
    })?;
    let mut agent = None;
    let took = launcher
        .wait_healthy("node-agent", AGENT_TIMEOUT, async || {
            let text = std::fs::read_to_string(&addr_file)
                .map_err(|e| format!("{}: {e}", addr_file.display()))?;
            let addr: SocketAddr = text
                .trim()
                .parse()
                .map_err(|e| format!("{}: {e}: {text:?}", addr_file.display()))?;
            let client = AgentClient { addr };
            client.healthz().await.map_err(|e| e.to_string())?;
            agent = Some(client);
            Ok(())
        })
        .await?;
    let agent = agent.ok_or_else(|| launcher.failure("node-agent", "no control address".into()))?;
    launcher.state.agent_control_addr = Some(agent.addr);
    launcher.state.save()?;
    crate::say!(
        "testbed: node-agent control API on http://{} ({:.1} s)",
        agent.addr,
        took.as_secs_f64()
    );
    wait_nodes_ready(launcher, admin).await?;
    Ok(agent)
}

async fn wait_nodes_ready(launcher: &mut Launcher, admin: &Path) -> Result<()> {
    let nodes: Api<Node> = Api::all(kubeconfig::client(admin, None).await?);
    let started = Instant::now();
    launcher
        .wait_healthy("node-agent", AGENT_TIMEOUT, async || {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("list nodes: {e}"))?;
            let ready = list.items.iter().filter(|n| node_ready(n)).count();
            if ready >= NODES {
                Ok(())
            } else {
                Err(format!(
                    "{ready} of {NODES} nodes Ready ({} registered)",
                    list.items.len()
                ))
            }
        })
        .await?;
    crate::say!(
        "testbed: {NODES} nodes Ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether a Node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_agent_pod_reply() {
        let reply = r#"{"uid": "u1", "node": "node-1", "ip": "10.200.0.5", "netns": "/x/ns",
            "containers": {"redis": {"pid": 42, "restartCount": 1, "running": true},
                           "init": {"pid": null, "restartCount": 0, "running": false}}}"#;
        let info: PodInfo = serde_json::from_str(reply).unwrap();
        assert_eq!(info.containers["redis"].pid, Some(42));
        assert_eq!(info.containers["redis"].restart_count, 1);
        assert!(!info.containers["init"].running);
    }
}
