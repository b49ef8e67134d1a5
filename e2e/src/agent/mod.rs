//! The node agent: plays kubelet for the testbed's virtual nodes. Each pod bound to one of them
//! gets a network namespace with a veth on the testbed bridge and a fresh IP, its volumes, and its
//! containers as local processes (through the image map); probes, restarts, graceful deletion and
//! the pod status are real. A local provisioner backs PVCs with directories. A small HTTP API on
//! 127.0.0.1 lets tests kill processes, cut networks and stop nodes.

pub mod cmd;
pub mod control;
pub mod downward;
pub mod env;
pub mod error;
pub mod imagemap;
pub mod ipam;
pub mod mounts;
pub mod network;
pub mod node;
pub mod pod;
pub mod probes;
pub mod process;
pub mod provisioner;
pub mod services;
pub mod standin;
pub mod standin_exporter;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use self::error::{AgentError, AgentResult};
use self::imagemap::ImageMap;
use self::ipam::{Cidr, Ipam};
use self::node::NodeHandle;
use self::pod::PodRun;

/// How `node-agent run` is configured.
#[derive(Clone, Debug)]
pub struct Options {
    /// Kubeconfig of the agent's identity.
    pub kubeconfig: PathBuf,
    /// Agent root: pods, PVs, wrappers, `control.addr`.
    pub root: PathBuf,
    /// Number of virtual nodes.
    pub nodes: usize,
    /// The bridge pods attach to.
    pub bridge: String,
    /// The pod CIDR (the bridge holds its first address).
    pub pod_cidr: Cidr,
    /// The image map file.
    pub image_map: PathBuf,
}

/// What every pod task shares.
pub struct Shared {
    /// API client.
    pub client: kube::Client,
    /// Agent root.
    pub root: PathBuf,
    /// The image map.
    pub images: Arc<ImageMap>,
    /// Bridge name.
    pub bridge: String,
    /// Pod CIDR.
    pub cidr: Cidr,
    /// Name tag of this agent's namespaces and links.
    pub tag: String,
    /// Where pods reach the API server (`KUBERNETES_SERVICE_HOST/PORT`).
    pub apiserver: (Ipv4Addr, u16),
    /// ConfigMaps and Secrets, from watch caches.
    pub sources: Arc<StoreSources>,
    /// The virtual nodes.
    pub nodes: Vec<NodeHandle>,
    ipam: Mutex<Ipam>,
    pods: Mutex<HashMap<String, Arc<PodRun>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn pods(&self) -> MutexGuard<'_, HashMap<String, Arc<PodRun>>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ipam(&self) -> MutexGuard<'_, Ipam> {
        self.ipam.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a finished pod from the table.
    pub fn forget(&self, uid: &str) {
        self.pods().remove(uid);
    }

    /// Frees a pod's IP.
    pub fn release_ip(&self, uid: &str) {
        self.ipam().release(uid);
    }

    /// The pod `namespace/name`: the one not terminating if there are two (old and new).
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<PodRun>> {
        let pods = self.pods();
        let mut found: Vec<&Arc<PodRun>> = pods
            .values()
            .filter(|p| p.namespace == namespace && p.name == name)
            .collect();
        found.sort_by_key(|p| p.is_terminating());
        found.first().map(|p| Arc::clone(p))
    }

    /// The virtual node of that name.
    pub fn node(&self, name: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// Pods on a node.
    pub fn pods_on(&self, node: &str) -> Vec<Arc<PodRun>> {
        self.pods()
            .values()
            .filter(|p| p.node.name() == node)
            .cloned()
            .collect()
    }
}

/// ConfigMaps and Secrets from the agent's watch caches.
#[derive(Clone)]
pub struct StoreSources {
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
}

impl env::Sources for StoreSources {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = self
            .config_maps
            .get(&ObjectRef::new(name).within(namespace))?;
        let mut data: BTreeMap<String, String> = cm.data.clone().unwrap_or_default();
        for (k, v) in cm.binary_data.iter().flatten() {
            data.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
        }
        Some(data)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let secret = self.secrets.get(&ObjectRef::new(name).within(namespace))?;
        let mut data: BTreeMap<String, String> = secret.string_data.clone().unwrap_or_default();
        for (k, v) in secret.data.iter().flatten() {
            data.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
        }
        Some(data)
    }
}

/// The file the control API address is written to.
pub fn control_addr_file(root: &Path) -> PathBuf {
    root.join("control.addr")
}

/// Runs the agent until SIGTERM or SIGINT; then stops every pod process and removes their
/// namespaces (the pod objects stay, as with a kubelet that went away).
pub async fn run(options: Options) -> AgentResult<()> {
    let root = std::path::absolute(&options.root)
        .map_err(|e| AgentError::io("resolve", &options.root, e))?;
    for dir in [root.clone(), root.join("pods"), root.join("pv")] {
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("create directory", &dir, e))?;
    }
    let tag = network::root_tag(&root);
    for problem in remove_leftovers(&root) {
        tracing::warn!(%problem, "leftover of an earlier agent");
    }
    network::ensure_bridge(&options.bridge, options.pod_cidr).await?;
    let images = ImageMap::load(&options.image_map)?;
    images.write_wrappers(&root)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&options.kubeconfig).map_err(|e| {
        AgentError::invalid(options.kubeconfig.display().to_string(), e.to_string())
    })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| AgentError::invalid(options.kubeconfig.display().to_string(), e.to_string()))?;
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let client =
        kube::Client::try_from(config).map_err(|e| AgentError::kube("build the API client", e))?;
    let shutdown = CancellationToken::new();
    let mut background = tokio::task::JoinSet::new();

    provisioner::ensure_storage_class(&client, provisioner::Placement::HostPath).await?;
    background.spawn(provisioner::run(
        client.clone(),
        provisioner::Volumes {
            root: root.join("pv"),
            placement: provisioner::Placement::HostPath,
        },
        shutdown.clone(),
    ));

    let (config_maps, cm_writer) = reflector::store();
    let (secrets, secret_writer) = reflector::store();
    background.spawn(drive(
        reflector::reflector(
            cm_writer,
            watcher::watcher(
                Api::<ConfigMap>::all(client.clone()),
                watcher::Config::default(),
            ),
        ),
        shutdown.clone(),
    ));
    background.spawn(drive(
        reflector::reflector(
            secret_writer,
            watcher::watcher(
                Api::<Secret>::all(client.clone()),
                watcher::Config::default(),
            ),
        ),
        shutdown.clone(),
    ));
    let host_ip = options.pod_cidr.gateway();
    let nodes: Vec<NodeHandle> = (1..=options.nodes)
        .map(|i| NodeHandle::new(node::node_name(i), host_ip))
        .collect();
    let shared = Arc::new(Shared {
        client: client.clone(),
        root: root.clone(),
        images: Arc::new(images),
        bridge: options.bridge.clone(),
        cidr: options.pod_cidr,
        tag,
        apiserver: (host_ip, port),
        sources: Arc::new(StoreSources {
            config_maps: config_maps.clone(),
            secrets: secrets.clone(),
        }),
        nodes: nodes.clone(),
        ipam: Mutex::new(Ipam::new(options.pod_cidr, 0)),
        pods: Mutex::new(HashMap::new()),
    });
    let control = control::serve(shared.clone(), shutdown.clone()).await?;
    let addr_file = control_addr_file(&root);
    std::fs::write(&addr_file, control.to_string())
        .map_err(|e| AgentError::io("write", &addr_file, e))?;
    tracing::info!(%control, "control API listening");

    for (store, what) in [
        (config_maps.wait_until_ready().await, "configmaps"),
        (secrets.wait_until_ready().await, "secrets"),
    ] {
        if store.is_err() {
            return Err(AgentError::invalid(
                what,
                "the watch cache never became ready",
            ));
        }
    }
    for node in &nodes {
        node::register(&client, node).await?;
        background.spawn(node::heartbeat(
            client.clone(),
            node.clone(),
            shutdown.clone(),
        ));
        tracing::info!(node = node.name(), "node registered");
    }

    let watching = watch_pods(shared.clone());
    tokio::select! {
        result = watching => result?,
        () = signal() => tracing::info!("stopping: every pod process is killed"),
    }
    shutdown.cancel();
    let pods: Vec<Arc<PodRun>> = shared.pods().values().cloned().collect();
    for pod in &pods {
        pod.gone.cancel();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !shared.pods().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    background.abort_all();
    for problem in remove_leftovers(&root) {
        tracing::warn!(%problem, "could not clean up");
    }
    Ok(())
}

async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn drive<S, T, E>(stream: S, shutdown: CancellationToken)
where
    S: futures::Stream<Item = Result<T, E>> + Send,
    E: std::fmt::Display,
{
    let stream = stream.default_backoff();
    futures::pin_mut!(stream);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            item = stream.next() => match item {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watch failed"),
                None => return,
            },
        }
    }
}

/// Watches every pod and runs those bound to the agent's nodes.
async fn watch_pods(shared: Arc<Shared>) -> AgentResult<()> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut relisted: Option<HashSet<String>> = None;
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed");
                continue;
            }
        };
        match event {
            Event::Apply(pod) => admit(&shared, pod),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && let Some(run) = shared.pods().get(uid)
                {
                    run.gone.cancel();
                }
            }
            Event::Init => relisted = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                admit(&shared, pod);
            }
            Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    for (uid, run) in shared.pods().iter() {
                        if !seen.contains(uid) {
                            run.gone.cancel();
                        }
                    }
                }
            }
        }
    }
}

/// A pod event: a new pod of ours starts; a known one gets its new version.
fn admit(shared: &Arc<Shared>, pod: Pod) {
    let Some(node) = pod::wants(&pod, &shared.nodes) else {
        return;
    };
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(run) = shared.pods().get(&uid) {
        run.object.send_replace(Arc::new(pod));
        return;
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        // Nothing of it runs here: remove the object straight away.
        tokio::spawn(delete_now(shared.client.clone(), namespace, name, uid));
        return;
    }
    if pod::is_finished(&pod) {
        return;
    }
    let ip = {
        let mut ipam = shared.ipam();
        match pod::status_ip(&pod).filter(|ip| ipam.reserve(&uid, *ip)) {
            Some(ip) => Some(ip),
            None => ipam.allocate(&uid),
        }
    };
    let Some(ip) = ip else {
        tracing::error!(pod = %name, "the pod CIDR is exhausted");
        return;
    };
    let net = network::names(&shared.tag, &namespace, &name, &uid);
    let dir = shared.root.join("pods").join(pod::dir_name(&pod));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(pod = %name, error = %e, "cannot create the pod directory");
        shared.release_ip(&uid);
        return;
    }
    tracing::info!(pod = %name, %namespace, node = node.name(), %ip, "pod admitted");
    let run = Arc::new(PodRun::new(pod, node, ip, net, dir));
    shared.pods().insert(uid, run.clone());
    tokio::spawn(pod::run(shared.clone(), run));
}

async fn delete_now(client: kube::Client, namespace: String, name: String, uid: String) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&name, &params).await {
        tracing::debug!(pod = %name, error = %e, "delete");
    }
}

/// Removes the network namespaces and host veths this agent root may have left (processes in
/// them are SIGKILLed first). Synchronous, so `testbed down` can call it too. Returns problems.
pub fn remove_leftovers(agent_root: &Path) -> Vec<String> {
    let tag = network::root_tag(agent_root);
    let prefix = network::netns_prefix(&tag);
    let ip = cmd::tool("ip");
    let mut problems = Vec::new();
    let names: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for name in names {
        if let Ok(out) = std::process::Command::new(&ip)
            .args(["netns", "pids", &name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        match std::process::Command::new(&ip)
            .args(["netns", "del", &name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "ip netns del {name}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!("ip netns del {name}: {e}")),
        }
    }
    let veth = network::veth_prefix(&tag);
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(&veth) || n.starts_with(&format!("kvq{tag}")))
        .collect();
    for link in links {
        let _ = std::process::Command::new(&ip)
            .args(["link", "del", &link])
            .output();
    }
    problems
}
