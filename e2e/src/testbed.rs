//! [`Testbed`]: the Rust API the end-to-end tests stand on, and the start-up shared with the CLI.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use tokio::sync::OnceCell;

use crate::binaries::{self, Binaries};
use crate::cleanup;
use crate::controlplane;
use crate::dataplane::DataPlane;
use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::launcher::Launcher;
use crate::network::Network;
use crate::nodes::{self, NodesRecord, chaos};
use crate::pki::Pki;
use crate::process::{self, Mode};
use crate::state::State;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PodRef {
    /// `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How to start a testbed.
#[derive(Clone, Debug)]
pub struct Options {
    /// State root (removed first when it holds an old testbed).
    pub root: PathBuf,
    /// Attached to this process (tests) or detached (`testbed up`).
    pub mode: Mode,
}

/// A running testbed: the control plane and the real nodes.
pub struct Testbed {
    state: State,
    binaries: Binaries,
    data_plane: DataPlane,
    nodes: NodesRecord,
    /// Kept so exited children can be reaped; dropping a handle does not kill the process.
    _children: Mutex<Vec<(String, Child)>>,
}

static SHARED: OnceCell<std::result::Result<Testbed, String>> = OnceCell::const_new();

impl Testbed {
    /// The testbed of this test binary, started on first use (later calls, from any test and any
    /// runtime, get the same one). Its processes die with the test binary; a reaper process
    /// removes its namespaces, mounts and bridge then, and the next run removes its state root.
    pub async fn shared() -> Result<&'static Testbed> {
        let outcome = SHARED
            .get_or_init(|| async {
                let options = Options {
                    root: test_root(),
                    mode: Mode::Attached,
                };
                Testbed::start(options).await.map_err(|e| e.to_string())
            })
            .await;
        outcome.as_ref().map_err(|reason| {
            Error::invalid(
                "the shared testbed",
                format!("it failed to start in this test binary: {reason}"),
            )
        })
    }

    /// Starts a testbed from scratch at `options.root`.
    pub async fn start(options: Options) -> Result<Self> {
        let started = Instant::now();
        if !rustix::process::geteuid().is_root() {
            return Err(Error::invalid(
                "the testbed",
                "needs root (it creates a bridge, network namespaces and mounts): run it as root, \
                 e.g. `sudo -E cargo test -p kvrocks-e2e` or in CI",
            ));
        }
        let root = absolute(&options.root)?;
        if root.exists() {
            crate::say!(
                "testbed: removing what an earlier run left in {}",
                root.display()
            );
            cleanup::teardown(&root)?;
        }
        let binaries = binaries::find_or_build()?;
        let data_plane = DataPlane::detect()?;
        let kvrocks_bin = match &data_plane {
            DataPlane::KvrocksBin { path, .. } => Some(path.as_path()),
            DataPlane::Missing => None,
        };
        let images = crate::images::build(kvrocks_bin, &operator_binary(), &binaries.coredns)?;
        crate::say!("testbed: {}", data_plane.describe());
        std::fs::create_dir_all(&root).map_err(|e| Error::io("create directory", &root, e))?;
        crate::say!("testbed: state root {} (logs in logs/)", root.display());
        let mut state = State::new(&root, options.mode);
        state.data_plane = Some(data_plane.describe());
        state.kubectl = Some(binaries.kubectl.clone());
        let network = Network::choose(&root)?;
        state.network = Some(network.clone());
        state.save()?;
        network.create_bridge()?;
        crate::say!(
            "testbed: bridge {} with pod CIDR {} (gateway {})",
            network.bridge,
            network.cidr(),
            network.gateway()
        );
        if options.mode == Mode::Attached {
            start_reaper(&root);
        }
        let pki = Pki::create(&root.join("pki"), &[network.gateway()])?;
        let mut launcher = Launcher::new(state);
        let kubeconfigs =
            controlplane::start(&mut launcher, &binaries, &pki, network.gateway()).await?;
        let server = format!("https://127.0.0.1:{}", launcher.state.ports.apiserver);
        let nodes = nodes::start(
            &mut launcher,
            &binaries,
            &pki,
            &network,
            &server,
            &kubeconfigs.admin,
            &images,
        )
        .await?;
        start_provisioner(&mut launcher, &kubeconfigs.admin)?;
        let (state, children) = launcher.into_parts();
        crate::say!(
            "testbed: up in {:.1} s; export KUBECONFIG={}",
            started.elapsed().as_secs_f64(),
            state.kubeconfig.display()
        );
        Ok(Self {
            state,
            binaries,
            data_plane,
            nodes,
            _children: Mutex::new(children),
        })
    }

    /// Installs `config/crd/*.yaml` (server-side apply) and waits until they are Established.
    pub async fn install_crds(&self) -> Result<Vec<String>> {
        crate::crds::install(&self.client().await?, &crate::crds::crd_dir()).await
    }

    /// The recorded state (ports, pids, network).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// The admin kubeconfig (`<root>/admin.kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.state.kubeconfig
    }

    /// The binaries of the pinned release.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// What runs kvrocks containers.
    pub fn data_plane(&self) -> &DataPlane {
        &self.data_plane
    }

    /// A new admin client. A kube `Client` belongs to the tokio runtime it was made in, and every
    /// `#[tokio::test]` has its own, so each test asks for its own client.
    pub async fn client(&self) -> Result<kube::Client> {
        kubeconfig::client(&self.state.kubeconfig, None).await
    }

    /// Runs `kubectl --kubeconfig <admin> <args>`; returns stdout, or an error with stderr.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(&self.binaries.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.state.kubeconfig)
            .args(args);
        output_of(command, &format!("kubectl {}", args.join(" "))).await
    }

    /// Runs a redis command (through `redis-cli`) against port 6379 of the pod's current IP.
    pub async fn redis(&self, pod: &PodRef, args: &[&str]) -> Result<String> {
        self.redis_at(pod, 6379, None, args).await
    }

    /// Runs a redis command against `port` of the pod's current IP, with an optional password.
    pub async fn redis_at(
        &self,
        pod: &PodRef,
        port: u16,
        password: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        let ip = self.pod_ip(pod).await?;
        self.redis_at_ip(&ip, port, password, args)
            .await
            .map_err(|e| match e {
                Error::Command { command, detail } => Error::Command {
                    command: format!("{command} (pod {pod})"),
                    detail,
                },
                other => other,
            })
    }

    /// Runs a redis command against `ip:port`, with an optional password.
    pub async fn redis_at_ip(
        &self,
        ip: &str,
        port: u16,
        password: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        let mut command = tokio::process::Command::new("redis-cli");
        command.args(["-h", ip, "-p", &port.to_string()]).args(args);
        if let Some(password) = password {
            // Through the environment, never the command line.
            command.env("REDISCLI_AUTH", password);
        }
        let line = format!("redis-cli -h {ip} -p {port} {}", args.join(" "));
        let out = output_of(command, &line).await?;
        // redis-cli exits 0 on server errors; make them errors here.
        if out.starts_with("ERR") || out.starts_with("WRONGTYPE") || out.starts_with("NOAUTH") {
            return Err(Error::Command {
                command: line,
                detail: out.trim().to_owned(),
            });
        }
        if out.starts_with("Could not connect") || out.contains("Connection refused") {
            return Err(Error::Command {
                command: line,
                detail: out.trim().to_owned(),
            });
        }
        Ok(out.trim_end().to_owned())
    }

    /// Whether a TCP connection to `ip:port` opens within `timeout`.
    pub async fn tcp_reachable(ip: &str, port: u16, timeout: Duration) -> bool {
        let connect = tokio::net::TcpStream::connect((ip, port));
        matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
    }

    /// The pod's `status.podIP`.
    pub async fn pod_ip(&self, pod: &PodRef) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client().await?, &pod.namespace);
        let object = pods
            .get(&pod.name)
            .await
            .map_err(|e| Error::kube(format!("get pod {pod}"), e))?;
        object
            .status
            .and_then(|s| s.pod_ip)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| Error::invalid(format!("pod {pod}"), "has no IP yet"))
    }

    /// The host pid of a running container's process.
    pub async fn container_pid(&self, pod: &PodRef, container: &str) -> Result<u32> {
        let node = self.node_of(pod).await?;
        chaos::container_pid(&self.nodes, node, &pod.namespace, &pod.name, container)
    }

    /// SIGKILLs a container's process; the pod's restart policy applies.
    pub async fn kill_container(&self, pod: &PodRef, container: &str) -> Result<()> {
        chaos::kill(self.container_pid(pod, container).await?)
    }

    /// Deletes a pod through the API (graceful, as a user would).
    pub async fn delete_pod(&self, pod: &PodRef) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client().await?, &pod.namespace);
        pods.delete(&pod.name, &DeleteParams::default())
            .await
            .map(drop)
            .map_err(|e| Error::kube(format!("delete pod {pod}"), e))
    }

    /// Sets the pod's host-side veth down: the pod can no longer be reached, nor reach anything.
    pub async fn cut_network(&self, pod: &PodRef) -> Result<()> {
        self.set_network(pod, false).await
    }

    /// Undoes [`Testbed::cut_network`].
    pub async fn restore_network(&self, pod: &PodRef) -> Result<()> {
        self.set_network(pod, true).await
    }

    async fn set_network(&self, pod: &PodRef, up: bool) -> Result<()> {
        let node = self.node_of(pod).await?;
        let sandbox = chaos::sandbox(&self.nodes, node, &pod.namespace, &pod.name)?;
        chaos::set_link(&chaos::host_veth(&sandbox.netns, self.bridge()?)?, up)
    }

    /// Cuts (or restores) only the path between two pods: each still reaches everything else.
    pub async fn cut_between(&self, a: &PodRef, b: &PodRef, cut: bool) -> Result<()> {
        let node = self.node_of(a).await?;
        let sandbox = chaos::sandbox(&self.nodes, node, &a.namespace, &a.name)?;
        let peer = self.pod_ip(b).await?;
        chaos::cut_path(&sandbox.netns, &peer, cut)
    }

    /// Cuts (or restores) the paths between a pod and every other pod; the host still reaches it.
    pub async fn cut_from_pods(&self, pod: &PodRef, cut: bool) -> Result<()> {
        let node = self.node_of(pod).await?;
        let sandbox = chaos::sandbox(&self.nodes, node, &pod.namespace, &pod.name)?;
        let network = self
            .state
            .network
            .as_ref()
            .ok_or_else(|| Error::invalid("the testbed", "has no recorded network"))?;
        chaos::cut_from_pods(
            &sandbox.netns,
            &network.cidr(),
            &network.gateway().to_string(),
            cut,
        )
    }

    /// Stops a node: its kubelet stopped (the node goes NotReady), its containers frozen and
    /// cut off.
    pub async fn stop_node(&self, node: &str) -> Result<()> {
        self.set_node(node, false)
    }

    /// Undoes [`Testbed::stop_node`].
    pub async fn start_node(&self, node: &str) -> Result<()> {
        self.set_node(node, true)
    }

    fn set_node(&self, name: &str, running: bool) -> Result<()> {
        let node = self.nodes.node(name)?;
        let kubelet = self
            .state
            .process(&format!("kubelet-{name}"))
            .ok_or_else(|| Error::invalid(format!("node {name}"), "no kubelet recorded"))?;
        let bridge = self.bridge()?;
        if running {
            chaos::freeze(node, false)?;
            for sandbox in chaos::sandboxes_on(&self.nodes, node)? {
                chaos::set_link(&chaos::host_veth(&sandbox.netns, bridge)?, true)?;
            }
            chaos::pause_process(kubelet, false);
        } else {
            chaos::pause_process(kubelet, true);
            for sandbox in chaos::sandboxes_on(&self.nodes, node)? {
                chaos::set_link(&chaos::host_veth(&sandbox.netns, bridge)?, false)?;
            }
            chaos::freeze(node, true)?;
        }
        Ok(())
    }

    fn bridge(&self) -> Result<&str> {
        self.state
            .network
            .as_ref()
            .map(|n| n.bridge.as_str())
            .ok_or_else(|| Error::invalid("the testbed", "has no recorded network"))
    }

    /// The node the pod is scheduled to.
    async fn node_of(&self, pod: &PodRef) -> Result<&nodes::NodeLayout> {
        let pods: Api<Pod> = Api::namespaced(self.client().await?, &pod.namespace);
        let object = pods
            .get(&pod.name)
            .await
            .map_err(|e| Error::kube(format!("get pod {pod}"), e))?;
        let name = object
            .spec
            .and_then(|s| s.node_name)
            .ok_or_else(|| Error::invalid(format!("pod {pod}"), "not scheduled to a node"))?;
        self.nodes.node(&name)
    }
}

/// The per-test-binary state root: `<tmp>/kvrocks-e2e-<test binary name without its hash>`, so
/// the next run of the same binary finds and removes what this one left.
fn test_root() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tests".to_owned());
    let name = match stem.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            base.to_owned()
        }
        _ => stem,
    };
    std::env::temp_dir().join(format!("kvrocks-e2e-{name}"))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))
}

/// The operator binary the operator image is built from: built by
/// `cargo build -p kvrocks-operator` into the same target directory.
pub fn operator_binary() -> PathBuf {
    crate::process::sibling_binary("KVROCKS_OPERATOR_BIN", "kvrocks-operator")
        .unwrap_or_else(|| binaries::repo_root().join("target/debug/kvrocks-operator"))
}

/// Starts `testbed provision`: the local PV provisioner of the real nodes' StorageClass.
fn start_provisioner(launcher: &mut Launcher, admin: &Path) -> Result<()> {
    let testbed_bin =
        crate::process::sibling_binary("KVROCKS_TESTBED_CLI", "testbed").ok_or_else(|| {
            Error::invalid(
                "the testbed binary",
                "not found next to this executable: the real nodes' PV provisioner cannot start",
            )
        })?;
    let root = launcher.root();
    launcher.start(process::Spec {
        name: "provisioner",
        program: &testbed_bin,
        args: vec![
            "--root".into(),
            root.as_os_str().to_owned(),
            "provision".into(),
            "--kubeconfig".into(),
            admin.as_os_str().to_owned(),
        ],
        env: Vec::new(),
        log: root.join("logs").join("provisioner.log"),
    })?;
    Ok(())
}

/// Starts `testbed reap`, which waits for this process to exit and then removes the testbed's
/// processes, namespaces, mounts and bridge (keeping the logs until the next run).
fn start_reaper(root: &Path) {
    let Some(testbed_bin) = crate::process::sibling_binary("KVROCKS_TESTBED_CLI", "testbed") else {
        crate::say!(
            "testbed: no testbed binary found for the reaper; leftovers are removed at the next run"
        );
        return;
    };
    let spec = process::Spec {
        name: "reaper",
        program: &testbed_bin,
        args: vec![
            "reap".into(),
            "--root".into(),
            root.as_os_str().to_owned(),
            "--pid".into(),
            std::process::id().to_string().into(),
        ],
        env: Vec::new(),
        log: root.join("logs").join("reaper.log"),
    };
    if let Err(e) = process::start(Mode::Detached, spec) {
        crate::say!(
            "testbed: cannot start the reaper ({e}); leftovers are removed at the next run"
        );
    }
}

async fn output_of(mut command: tokio::process::Command, line: &str) -> Result<String> {
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(Error::Command {
                command: line.to_owned(),
                detail: format!("cannot run it: {e}"),
            });
        }
        Err(_) => {
            return Err(Error::Command {
                command: line.to_owned(),
                detail: format!("no result within {COMMAND_TIMEOUT:?}"),
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(Error::Command {
            command: line.to_owned(),
            detail: format!(
                "{}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            ),
        })
    }
}
