//! Real nodes: per virtual node one containerd (Debian's 1.6, runc, its own root, socket and
//! cgroup root) and one kubelet of the pinned release, and one kube-proxy for Services. Every pod
//! is a real container of a real image ([`crate::images`]); pods of all nodes share the testbed's
//! bridge, each node handing out addresses from its own /24.
//!
//! [`start`] brings the nodes up; [`chaos`] breaks them for tests; [`teardown`] removes what they
//! left (pods, shims, mounts, cgroups, iptables chains).

pub mod chaos;
pub mod render;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::binaries::Binaries;
use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::launcher::Launcher;
use crate::network::Network;
use crate::pki::Pki;
use crate::process::{Spec, run};
pub use render::NodeLayout;

/// Nodes of a testbed.
pub const NODES: u8 = 3;
/// The cluster DNS address kubelets write into pods' resolv.conf.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(30);
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// What `state.json` records of the real nodes, for the chaos helpers and the teardown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesRecord {
    /// The nodes.
    pub nodes: Vec<NodeLayout>,
    /// The crictl that drives them.
    pub crictl: PathBuf,
    /// The kube-proxy that programmed this host's iptables (its `--cleanup` removes them).
    pub kube_proxy: PathBuf,
}

impl NodesRecord {
    /// The node of that name.
    pub fn node(&self, name: &str) -> Result<&NodeLayout> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::invalid(format!("node {name}"), "not a node of this testbed"))
    }
}

/// Starts the nodes and kube-proxy, imports `images` (name -> Docker archive) into every node,
/// and waits until every node is Ready.
pub async fn start(
    launcher: &mut Launcher,
    bins: &Binaries,
    pki: &Pki,
    network: &Network,
    server: &str,
    admin: &Path,
    images: &BTreeMap<String, PathBuf>,
) -> Result<NodesRecord> {
    let root = launcher.root();
    enable_bridge_netfilter();
    let mut record = NodesRecord {
        nodes: Vec::new(),
        crictl: bins.crictl.clone(),
        kube_proxy: bins.kube_proxy.clone(),
    };
    for number in 1..=NODES {
        let name = format!("testbed-node-{number}");
        let ports = free_ports(2)?;
        record.nodes.push(NodeLayout {
            dir: root.join("nodes").join(&name),
            cgroup_root: format!("/{}-{number}", network.bridge),
            name,
            number,
            kubelet_port: ports[0],
            healthz_port: ports[1],
        });
    }
    launcher.state.nodes = Some(record.clone());
    launcher.state.save()?;
    let started = Instant::now();
    for node in &record.nodes {
        start_containerd(launcher, node, network).await?;
    }
    crate::say!(
        "testbed: {NODES} containerd up ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let imported = Instant::now();
    import_images(&record.nodes, images)?;
    crate::say!(
        "testbed: {} images imported into every node ({:.1} s)",
        images.len(),
        imported.elapsed().as_secs_f64()
    );
    let client = kubeconfig::client(admin, None).await?;
    bind_node_role(&client).await?;
    for node in &record.nodes {
        let stem = format!("kubelet-{}", node.name);
        pki.client(
            &stem,
            &format!("system:node:{}", node.name),
            Some("system:nodes"),
        )?;
        let kubeconfig = kubeconfig::write(&node.dir, "kubelet", server, pki, &stem)?;
        start_kubelet(launcher, bins, pki, network, node, &kubeconfig)?;
        // One at a time: kubelet binds its device-plugin socket at a fixed host path
        // (/var/lib/kubelet/device-plugins/kubelet.sock, whatever its root dir), and two kubelets
        // starting together both fail to (seen: a node that never registered). Once a kubelet
        // registered its node it is past that point; the next one takes the path over.
        wait_registered(launcher, &client, node).await?;
    }
    start_kube_proxy(launcher, bins, pki, network, server, &record.nodes[0])?;
    wait_nodes_ready(launcher, &client).await?;
    crate::say!(
        "testbed: {NODES} kubelet nodes Ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    start_cluster_dns(&root, bins, admin)?;
    Ok(record)
}

/// Applies CoreDNS (`e2e/fixtures/coredns.yaml`) behind the Service `kube-system/kube-dns` at
/// [`CLUSTER_DNS`]; waits until it answers.
fn start_cluster_dns(root: &Path, bins: &Binaries, admin: &Path) -> Result<()> {
    let started = Instant::now();
    let fixture = crate::binaries::e2e_dir().join("fixtures/coredns.yaml");
    let text = std::fs::read_to_string(&fixture).map_err(|e| Error::io("read", &fixture, e))?;
    let manifest = text
        .replace(
            "image: IMAGE",
            &format!("image: {}", crate::images::coredns_image()?),
        )
        .replace(
            "clusterIP: CLUSTER_DNS",
            &format!("clusterIP: {CLUSTER_DNS}"),
        );
    let path = root.join("coredns.yaml");
    write(&path, &manifest)?;
    let kubectl = bins.kubectl.to_string_lossy();
    let admin = admin.to_string_lossy();
    run(
        &kubectl,
        &[
            "--kubeconfig",
            &admin,
            "apply",
            "-f",
            &path.to_string_lossy(),
        ],
    )?;
    run(
        &kubectl,
        &[
            "--kubeconfig",
            &admin,
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            "--timeout=90s",
        ],
    )?;
    crate::say!(
        "testbed: cluster DNS (CoreDNS) on {CLUSTER_DNS} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pods on one bridge reach a Service backend on the same bridge only when bridged traffic
/// passes iptables (kube-proxy's DNAT, and its reverse on the reply).
fn enable_bridge_netfilter() {
    let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::fs::write(knob, "1").is_err() {
        crate::say!(
            "testbed: WARNING: cannot set {knob} (no br_netfilter): pod-to-Service traffic \
             within the bridge will not work"
        );
    }
}

/// `count` ports free on all addresses at the same moment.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
                .map_err(|e| Error::io("bind a free port on", "0.0.0.0", e))
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| Error::io("read the address of", "a bound socket", e))
        })
        .collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

async fn start_containerd(
    launcher: &mut Launcher,
    node: &NodeLayout,
    network: &Network,
) -> Result<()> {
    write(&node.containerd_config(), &render::containerd_config(node))?;
    write(
        &node.cni_conf_dir().join("10-testbed.conflist"),
        &render::cni_conflist(node, network),
    )?;
    write(&node.crictl_config(), &render::crictl_config(node))?;
    for controller in render::CGROUP_CONTROLLERS {
        let dir = node.cgroup_dir(controller);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create cgroup", &dir, e))?;
    }
    let name = format!("containerd-{}", node.name);
    let program = which("containerd");
    launcher.start(Spec {
        name: &name,
        program: &program,
        args: vec!["--config".into(), node.containerd_config().into()],
        env: Vec::new(),
        log: launcher.root().join("logs").join(format!("{name}.log")),
    })?;
    let socket = node.socket();
    launcher
        .wait_healthy(&name, CONTAINERD_TIMEOUT, async || {
            ctr(&socket, &["version"])
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;
    Ok(())
}

/// Runs Debian's `ctr` against a node's containerd, in the CRI namespace.
pub fn ctr(socket: &Path, args: &[&str]) -> Result<String> {
    let socket = socket.to_string_lossy();
    let mut all = vec!["--address", socket.as_ref(), "--namespace", "k8s.io"];
    all.extend_from_slice(args);
    run("ctr", &all)
}

/// Imports every image archive into every node, the nodes in parallel.
fn import_images(nodes: &[NodeLayout], images: &BTreeMap<String, PathBuf>) -> Result<()> {
    std::thread::scope(|scope| {
        let jobs: Vec<_> = nodes
            .iter()
            .map(|node| {
                scope.spawn(move || -> Result<()> {
                    for archive in images.values() {
                        ctr(
                            &node.socket(),
                            &["images", "import", &archive.to_string_lossy()],
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for job in jobs {
            job.join()
                .map_err(|_| Error::invalid("image import", "a thread panicked"))??;
        }
        Ok(())
    })
}

/// Kubelets authenticate as `system:node:<name>` in `system:nodes`; without the Node authorizer
/// that group gets the `system:node` role through RBAC.
async fn bind_node_role(client: &kube::Client) -> Result<()> {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("testbed:nodes".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:node".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: "system:nodes".into(),
            namespace: None,
        }]),
    };
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    api.patch(
        "testbed:nodes",
        &PatchParams::apply("testbed").force(),
        &Patch::Apply(&binding),
    )
    .await
    .map(drop)
    .map_err(|e| Error::kube("apply ClusterRoleBinding testbed:nodes", e))
}

fn start_kubelet(
    launcher: &mut Launcher,
    bins: &Binaries,
    pki: &Pki,
    network: &Network,
    node: &NodeLayout,
    kubeconfig: &Path,
) -> Result<()> {
    write(
        &node.kubelet_config(),
        &render::kubelet_config(node, network, &pki.ca_cert(), CLUSTER_DNS),
    )?;
    let name = format!("kubelet-{}", node.name);
    let args: Vec<OsString> = vec![
        "--config".into(),
        node.kubelet_config().into(),
        "--kubeconfig".into(),
        kubeconfig.into(),
        "--root-dir".into(),
        node.kubelet_dir().into(),
        "--cert-dir".into(),
        node.dir.join("kubelet-pki").into(),
        "--hostname-override".into(),
        node.name.clone().into(),
        "--node-ip".into(),
        network.gateway().to_string().into(),
        "--v=1".into(),
    ];
    launcher.start(Spec {
        name: &name,
        program: &bins.kubelet,
        args,
        env: Vec::new(),
        log: launcher.root().join("logs").join(format!("{name}.log")),
    })?;
    Ok(())
}

fn start_kube_proxy(
    launcher: &mut Launcher,
    bins: &Binaries,
    pki: &Pki,
    network: &Network,
    server: &str,
    node: &NodeLayout,
) -> Result<()> {
    // The bootstrap binding system:node-proxier grants this user what kube-proxy needs.
    pki.client("kube-proxy", "system:kube-proxy", None)?;
    let root = launcher.root();
    let kubeconfig = kubeconfig::write(&root, "kube-proxy", server, pki, "kube-proxy")?;
    let ports = free_ports(2)?;
    let config = root.join("kube-proxy.yaml");
    write(
        &config,
        &render::kube_proxy_config(&kubeconfig, network, &node.name, ports[0], ports[1]),
    )?;
    launcher.start(Spec {
        name: "kube-proxy",
        program: &bins.kube_proxy,
        args: vec!["--config".into(), config.into(), "--v=1".into()],
        env: Vec::new(),
        log: root.join("logs").join("kube-proxy.log"),
    })?;
    Ok(())
}

async fn wait_registered(
    launcher: &mut Launcher,
    client: &kube::Client,
    node: &NodeLayout,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = format!("kubelet-{}", node.name);
    launcher
        .wait_healthy(&name, NODE_TIMEOUT, async || {
            match nodes.get_opt(&node.name).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!("node {} not registered yet", node.name)),
                Err(e) => Err(format!("get node {}: {e}", node.name)),
            }
        })
        .await
        .map(drop)
}

async fn wait_nodes_ready(launcher: &mut Launcher, client: &kube::Client) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let first = "kubelet-testbed-node-1";
    launcher
        .wait_healthy(first, NODE_TIMEOUT, async || {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("list nodes: {e}"))?;
            let ready = list.items.iter().filter(|n| node_ready(n)).count();
            if ready >= usize::from(NODES) {
                Ok(())
            } else {
                Err(format!(
                    "{ready} of {NODES} nodes Ready ({} registered)",
                    list.items.len()
                ))
            }
        })
        .await
        .map(drop)
}

/// Whether a Node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The absolute path of a program on `PATH` (Debian's packages: containerd, ctr, runc).
pub fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
}

/// Removes what the nodes left: every pod (stopped and removed through the CRI, so CNI releases
/// their network namespaces and veths), then, once the recorded processes are gone (see
/// [`after_processes`]), shims, containers, cgroups and kube-proxy's iptables chains.
/// Called with the kubelets already stopped; a node whose containerd is gone gets a temporary
/// one for the removal.
pub fn remove_pods(record: &NodesRecord) {
    for node in &record.nodes {
        if !node.containerd_config().exists() {
            continue;
        }
        let temporary = if ctr(&node.socket(), &["version"]).is_err() {
            start_temporary_containerd(node)
        } else {
            None
        };
        let crictl = record.crictl.to_string_lossy();
        let config = node.crictl_config();
        if let Err(e) = run(
            &crictl,
            &[
                "--config",
                &config.to_string_lossy(),
                "rmp",
                "--all",
                "--force",
            ],
        ) {
            crate::say!("testbed: cleanup: pods of {}: {e}", node.name);
        }
        if let Some(mut child) = temporary {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_temporary_containerd(node: &NodeLayout) -> Option<std::process::Child> {
    let mut child = std::process::Command::new(which("containerd"))
        .arg("--config")
        .arg(node.containerd_config())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + CONTAINERD_TIMEOUT;
    while Instant::now() < deadline {
        if ctr(&node.socket(), &["version"]).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The rest of the teardown, once containerd and kubelet are gone: shims of these nodes' sockets
/// and every process left in their cgroups are killed, the cgroups removed, and kube-proxy's
/// chains flushed.
pub fn after_processes(record: &NodesRecord) {
    for node in &record.nodes {
        kill_shims(&node.socket());
        let _ = std::fs::write(node.cgroup_dir("freezer").join("freezer.state"), "THAWED");
        chaos::kill_cgroup(&node.cgroup_dir("pids"));
        for mount in render::CGROUP_MOUNTS {
            remove_cgroup_tree(&node.cgroup_dir(mount));
        }
    }
    if record.kube_proxy.is_file()
        && let Err(e) = run(&record.kube_proxy.to_string_lossy(), &["--cleanup"])
    {
        crate::say!("testbed: cleanup: kube-proxy --cleanup: {e}");
    }
    remove_kubelet_chains();
}

/// The chains kubelet keeps in the host's iptables (a canary, and a rule against routed traffic
/// to loopback); an error means the rule or chain is already gone.
fn remove_kubelet_chains() {
    for chain in ["INPUT", "OUTPUT"] {
        let _ = run("iptables", &["-D", chain, "-j", "KUBE-FIREWALL"]);
    }
    for (table, chain) in [
        ("filter", "KUBE-FIREWALL"),
        ("filter", "KUBE-KUBELET-CANARY"),
        ("nat", "KUBE-KUBELET-CANARY"),
        ("mangle", "KUBE-KUBELET-CANARY"),
    ] {
        let _ = run("iptables", &["-t", table, "-F", chain]);
        let _ = run("iptables", &["-t", table, "-X", chain]);
    }
}

/// SIGKILLs every containerd shim serving `socket`.
fn kill_shims(socket: &Path) {
    let needle = socket.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args.first().is_some_and(|a| a.contains("containerd-shim"));
        if is_shim
            && args.iter().any(|a| a == &needle)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Removes a cgroup directory and everything below it, deepest first (a cgroup directory is
/// removed with rmdir, its files go with it).
fn remove_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            // Busy while its last processes exit.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    crate::say!("testbed: cleanup: cannot remove cgroup {}", dir.display());
}
