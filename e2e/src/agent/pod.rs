//! One pod on a virtual node, from sandbox to deletion: network namespace and IP, volumes, init
//! containers in order, containers with restart policy and back-off, probes, node stop/start,
//! graceful termination with preStop hooks, and the pod status the API server sees.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, LifecycleHandler, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use rustix::process::Signal;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::downward::PodFacts;
use super::env::{container_env, expand_all};
use super::imagemap::HOST_PATH;
use super::mounts::launch_script;
use super::network::{self, NetNames};
use super::node::{NODE_CPU, NODE_MEMORY, NodeHandle};
use super::probes::{self, ProbeEvent, Target};
use super::process::{self, Launch, exit_code, signal_group};
use super::volumes::{self, PodVolumes};

/// First restart delay after the first (immediate) restart; doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_secs(10);
/// Longest restart delay. The kubelet's is 5 minutes; tests of crash loops would wait too long.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A container that ran this long restarts without delay.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often file-backed volumes are refreshed from their sources.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often a pod whose volumes or config are not ready retries.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// The state of one container, as its status shows it.
#[derive(Clone, Debug)]
enum Phase {
    Waiting { reason: String, message: String },
    Running { pid: u32, since: jiff::Timestamp },
    Terminated(Ended),
}

#[derive(Clone, Debug)]
struct Ended {
    code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
}

#[derive(Clone, Debug)]
struct ContainerRun {
    name: String,
    image: String,
    phase: Phase,
    last: Option<Ended>,
    restarts: u32,
    ready: bool,
    started: bool,
}

impl ContainerRun {
    fn new(container: &Container) -> Self {
        Self {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            phase: Phase::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self.phase {
            Phase::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    init: Vec<ContainerRun>,
    containers: Vec<ContainerRun>,
    initialized: bool,
    /// Set once the pod ended for good (`Succeeded` / `Failed`).
    terminal: Option<&'static str>,
    /// Condition type -> (status, last transition).
    transitions: BTreeMap<&'static str, (bool, jiff::Timestamp)>,
    started: Option<jiff::Timestamp>,
}

/// A running pod and the switches the control API and the watcher pull.
#[derive(Debug)]
pub struct PodRun {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Its node.
    pub node: NodeHandle,
    /// Its IP.
    pub ip: Ipv4Addr,
    /// Its network names.
    pub net: NetNames,
    /// Its directory (volumes, container logs).
    pub dir: PathBuf,
    /// The latest version of the object.
    pub object: watch::Sender<Arc<Pod>>,
    /// The object is gone from the API: stop everything at once.
    pub gone: CancellationToken,
    /// Whether the network was cut through the control API.
    pub cut: AtomicBool,
    state: Mutex<State>,
    dirty: Notify,
    /// Cancelled when the pod starts terminating (containers stop restarting).
    terminating: CancellationToken,
}

/// What the control API reports about one container.
#[derive(Clone, Debug)]
pub struct ContainerReport {
    /// Host pid when running.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
}

impl PodRun {
    /// A pod about to start.
    pub fn new(pod: Pod, node: NodeHandle, ip: Ipv4Addr, net: NetNames, dir: PathBuf) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let state = State {
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(ContainerRun::new)
                .collect(),
            containers: spec.containers.iter().map(ContainerRun::new).collect(),
            ..Default::default()
        };
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node,
            ip,
            net,
            dir,
            object: watch::Sender::new(Arc::new(pod)),
            gone: CancellationToken::new(),
            cut: AtomicBool::new(false),
            state: Mutex::new(state),
            dirty: Notify::new(),
            terminating: CancellationToken::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pod(&self) -> Arc<Pod> {
        self.object.borrow().clone()
    }

    /// Whether the pod is terminating or gone.
    pub fn is_terminating(&self) -> bool {
        self.terminating.is_cancelled() || self.gone.is_cancelled()
    }

    /// Containers (init containers included) by name.
    pub fn report(&self) -> BTreeMap<String, ContainerReport> {
        let state = self.state();
        state
            .init
            .iter()
            .chain(&state.containers)
            .map(|c| {
                (
                    c.name.clone(),
                    ContainerReport {
                        pid: c.pid(),
                        restarts: c.restarts,
                    },
                )
            })
            .collect()
    }

    /// SIGKILLs a container's processes; false when it does not run.
    pub fn kill(&self, container: &str) -> bool {
        let pid = {
            let state = self.state();
            state
                .init
                .iter()
                .chain(&state.containers)
                .find(|c| c.name == container)
                .and_then(ContainerRun::pid)
        };
        match pid {
            Some(pid) => {
                signal_group(pid, Signal::KILL);
                true
            }
            None => false,
        }
    }

    fn pids(&self) -> Vec<u32> {
        let state = self.state();
        state
            .init
            .iter()
            .chain(&state.containers)
            .filter_map(ContainerRun::pid)
            .collect()
    }

    fn update(&self, init: bool, index: usize, change: impl FnOnce(&mut ContainerRun)) {
        {
            let mut state = self.state();
            let list = if init {
                &mut state.init
            } else {
                &mut state.containers
            };
            if let Some(c) = list.get_mut(index) {
                change(c);
            }
        }
        self.dirty.notify_one();
    }

    fn waiting(&self, init: bool, index: usize, reason: &str, message: String) {
        self.update(init, index, |c| {
            c.phase = Phase::Waiting {
                reason: reason.to_owned(),
                message,
            };
            c.ready = false;
        });
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            ip: Some(self.ip),
            host_ip: self.node.ip(),
            node_cpu: NODE_CPU.parse().unwrap_or(8.0),
            node_memory: super::downward::parse_quantity(NODE_MEMORY)
                .unwrap_or(16.0 * 1024.0 * 1024.0 * 1024.0),
        }
    }

    /// The status the API server should show.
    fn status(&self) -> PodStatus {
        let mut state = self.state();
        let now = jiff::Timestamp::now();
        let all_ready = state.initialized
            && !state.containers.is_empty()
            && state.containers.iter().all(|c| c.ready);
        let pod_ready = all_ready && self.readiness_gates_pass();
        let phase = match state.terminal {
            Some(p) => p,
            None if state.initialized
                && state
                    .containers
                    .iter()
                    .any(|c| matches!(c.phase, Phase::Running { .. }) || c.restarts > 0) =>
            {
                "Running"
            }
            None => "Pending",
        };
        let wanted = [
            ("PodReadyToStartContainers", state.terminal.is_none()),
            ("Initialized", state.initialized),
            ("ContainersReady", all_ready),
            ("Ready", pod_ready),
            ("PodScheduled", true),
        ];
        let mut conditions = Vec::new();
        for (kind, value) in wanted {
            let entry = state.transitions.entry(kind).or_insert((value, now));
            if entry.0 != value {
                *entry = (value, now);
            }
            conditions.push(PodCondition {
                type_: kind.to_owned(),
                status: if value { "True" } else { "False" }.to_owned(),
                last_transition_time: Some(Time(entry.1)),
                ..Default::default()
            });
        }
        let start_time = *state.started.get_or_insert(now);
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            host_ip: Some(self.node.ip().to_string()),
            host_ips: Some(vec![HostIP {
                ip: self.node.ip().to_string(),
            }]),
            pod_ip: Some(self.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: self.ip.to_string(),
            }]),
            start_time: Some(Time(start_time)),
            init_container_statuses: Some(state.init.iter().map(container_status).collect()),
            container_statuses: Some(state.containers.iter().map(container_status).collect()),
            ..Default::default()
        }
    }

    fn readiness_gates_pass(&self) -> bool {
        let pod = self.pod();
        let gates = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.clone())
            .unwrap_or_default();
        gates.iter().all(|g| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
        })
    }
}

fn container_status(c: &ContainerRun) -> ContainerStatus {
    let ended = |e: &Ended| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: e.code,
            signal: e.signal,
            reason: Some(e.reason.clone()),
            message: e.message.clone(),
            started_at: Some(Time(e.started)),
            finished_at: Some(Time(e.finished)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let state = match &c.phase {
        Phase::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        Phase::Running { since, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*since)),
            }),
            ..Default::default()
        },
        Phase::Terminated(e) => ended(e),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: format!("testbed://{}", c.image),
        container_id: c.pid().map(|pid| format!("testbed://{pid}")),
        ready: c.ready,
        started: Some(c.started),
        restart_count: i32::try_from(c.restarts).unwrap_or(i32::MAX),
        state: Some(state),
        last_state: c.last.as_ref().map(ended),
        ..Default::default()
    }
}

/// Runs the pod until it is deleted (or gone) and cleaned up.
pub async fn run(shared: Arc<Shared>, pod: Arc<PodRun>) {
    let mut tasks = JoinSet::new();
    tasks.spawn(write_status(shared.clone(), pod.clone()));
    tasks.spawn(follow_object(pod.clone()));
    tasks.spawn(follow_node(pod.clone()));
    // The lifecycle keeps running while the pod terminates: its container tasks see their
    // processes exit (and stop restarting them), which is how termination knows they are gone.
    let lifecycle = tokio::spawn(lifecycle(shared.clone(), pod.clone()));
    tokio::select! {
        () = pod.terminating.cancelled() => {}
        () = pod.gone.cancelled() => {}
    }
    terminate(&shared, &pod).await;
    lifecycle.abort();
    tasks.abort_all();
    cleanup(&shared, &pod).await;
    if pod.terminating.is_cancelled() && !pod.gone.is_cancelled() {
        delete_object(&shared, &pod).await;
    }
    shared.forget(&pod.uid);
}

/// Sandbox, volumes, init containers, then containers until they all end for good.
async fn lifecycle(shared: Arc<Shared>, pod: Arc<PodRun>) {
    let started = std::time::Instant::now();
    loop {
        match network::create_sandbox(&pod.net, &shared.bridge, shared.cidr, pod.ip).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(pod = %pod.name, error = %e, "cannot create the pod's network");
                for i in 0..pod.state().containers.len() {
                    pod.waiting(false, i, "CreatePodSandboxError", e.to_string());
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
    if !pod.node.is_running() {
        let _ = network::set_link(&pod.net.host_veth, false).await;
    }
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, ip = %pod.ip, node = pod.node.name(),
        took_ms = started.elapsed().as_millis() as u64, "sandbox ready");
    pod.dirty.notify_one();
    let volumes = loop {
        let object = pod.pod();
        match volumes::prepare(
            &shared.client,
            &object,
            &pod.dir,
            &pod.facts(),
            shared.sources.as_ref(),
        )
        .await
        {
            Ok(v) => break v,
            Err(e) => {
                for i in 0..pod.state().containers.len() {
                    pod.waiting(false, i, "ContainerCreating", e.0.clone());
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    };
    let refresher = tokio::spawn(refresh_volumes(shared.clone(), pod.clone()));
    let spec = pod.pod().spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let ok = run_container(&shared, &pod, &volumes, container, true, i, &policy).await;
        if !ok {
            pod.state().terminal = Some("Failed");
            pod.dirty.notify_one();
            refresher.abort();
            return;
        }
    }
    pod.state().initialized = true;
    pod.dirty.notify_one();
    let mut containers = JoinSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let (shared, pod, volumes, container, policy) = (
            shared.clone(),
            pod.clone(),
            volumes.clone(),
            container.clone(),
            policy.clone(),
        );
        containers.spawn(async move {
            run_container(&shared, &pod, &volumes, &container, false, i, &policy).await
        });
    }
    let mut all_ok = true;
    while let Some(done) = containers.join_next().await {
        all_ok &= done.unwrap_or(false);
    }
    refresher.abort();
    pod.state().terminal = Some(if all_ok { "Succeeded" } else { "Failed" });
    pod.dirty.notify_one();
    // A finished pod keeps its object (and status) until someone deletes it.
    std::future::pending::<()>().await;
}

/// Runs one container, restarting it as the policy says; returns whether it ended successfully
/// (for an init container: completed; for a container: exit code 0 without restart).
async fn run_container(
    shared: &Arc<Shared>,
    pod: &Arc<PodRun>,
    volumes: &PodVolumes,
    container: &Container,
    init: bool,
    index: usize,
    policy: &str,
) -> bool {
    let mut delay = Duration::ZERO;
    loop {
        if pod.is_terminating() {
            return false;
        }
        pod.node.wait_running().await;
        let outcome = run_once(shared, pod, volumes, container, init, index).await;
        let Some((ok, ran_for)) = outcome else {
            // Not startable yet (config, image map): retry.
            wait_or_terminate(pod, RETRY_EVERY).await;
            continue;
        };
        if pod.is_terminating() {
            return ok;
        }
        let restart = match policy {
            "Never" => false,
            "OnFailure" => !ok,
            _ => !init || !ok,
        };
        if !restart {
            return ok;
        }
        if ran_for >= BACKOFF_RESET {
            delay = Duration::ZERO;
        }
        if !delay.is_zero() {
            pod.waiting(
                init,
                index,
                "CrashLoopBackOff",
                format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    container.name,
                    pod.name,
                    pod.namespace,
                    pod.uid
                ),
            );
            wait_or_terminate(pod, delay).await;
            if pod.is_terminating() {
                return false;
            }
        }
        delay = if delay.is_zero() {
            BACKOFF_START
        } else {
            (delay * 2).min(BACKOFF_CAP)
        };
        pod.update(init, index, |c| c.restarts += 1);
    }
}

async fn wait_or_terminate(pod: &PodRun, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = pod.terminating.cancelled() => {}
        () = pod.gone.cancelled() => {}
    }
}

/// Starts the container once and waits for it to end: `Some((exited 0, how long it ran))`, or
/// `None` when it could not be started (its Waiting reason says why).
async fn run_once(
    shared: &Arc<Shared>,
    pod: &Arc<PodRun>,
    volumes: &PodVolumes,
    container: &Container,
    init: bool,
    index: usize,
) -> Option<(bool, Duration)> {
    let object = pod.pod();
    let image = container.image.clone().unwrap_or_default();
    let facts = pod.facts();
    let mut env = BTreeMap::new();
    let wrapper = shared.images.wrapper_dir(&shared.root, &image);
    let path = match &wrapper {
        Some(dir) => format!("{}:{HOST_PATH}", dir.display()),
        None => HOST_PATH.to_owned(),
    };
    let hostname = object
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name.clone());
    for (k, v) in [
        ("PATH", path),
        ("HOSTNAME", hostname.clone()),
        ("HOME", "/root".to_owned()),
        ("KUBERNETES_SERVICE_HOST", shared.apiserver.0.to_string()),
        ("KUBERNETES_SERVICE_PORT", shared.apiserver.1.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS",
            shared.apiserver.1.to_string(),
        ),
    ] {
        env.insert(k.to_owned(), v);
    }
    match container_env(&object, container, &facts, shared.sources.as_ref()) {
        Ok(vars) => env.extend(vars),
        Err(e) => {
            pod.waiting(init, index, "CreateContainerConfigError", e.0);
            return None;
        }
    }
    let command = expand_all(container.command.as_deref().unwrap_or_default(), &env);
    let args = expand_all(container.args.as_deref().unwrap_or_default(), &env);
    let argv = match shared.images.resolve(&image, &command, &args) {
        Ok(argv) => argv,
        Err(e) => {
            pod.waiting(init, index, "ImageNotMapped", e.to_string());
            return None;
        }
    };
    let mut mounts = match volumes::bind_mounts(container, volumes, &env) {
        Ok(m) => m,
        Err(e) => {
            pod.waiting(init, index, "CreateContainerError", e);
            return None;
        }
    };
    match write_hosts(
        shared,
        &object,
        &facts,
        &hostname,
        &pod.dir,
        &container.name,
    )
    .await
    {
        Ok(hosts) => mounts.push(hosts),
        Err(e) => {
            pod.waiting(init, index, "CreateContainerError", e);
            return None;
        }
    }
    let layer = pod.dir.join("layers").join(&container.name);
    let script = launch_script(&mounts, &layer, &hostname, container.working_dir.as_deref());
    let log = pod.dir.join(format!("{}.log", container.name));
    let spawned = process::spawn(&Launch {
        netns: &pod.net.netns,
        script: &script,
        argv: &argv,
        env: &env,
        log: &log,
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            pod.waiting(init, index, "RunContainerError", e.to_string());
            return None;
        }
    };
    let Some(pid) = child.id() else {
        pod.waiting(init, index, "RunContainerError", "no pid".into());
        return None;
    };
    let started_at = jiff::Timestamp::now();
    let started = Instant::now();
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, container = %container.name, pid,
        argv = ?argv.first(), "container started");
    let has_probes = !init
        && (container.readiness_probe.is_some()
            || container.liveness_probe.is_some()
            || container.startup_probe.is_some());
    pod.update(init, index, |c| {
        c.phase = Phase::Running {
            pid,
            since: started_at,
        };
        c.started = !init && container.startup_probe.is_none();
        c.ready = !init && !has_probes;
    });
    if !pod.node.is_running() {
        // Started on a node stopped meanwhile: freeze it with the rest.
        signal_group(pid, Signal::STOP);
    }
    let (tx, mut rx) = mpsc::channel(8);
    let probing = if has_probes {
        let target = Arc::new(Target {
            pid,
            ip: pod.ip,
            env: env.clone(),
            image: image.clone(),
            images: shared.images.clone(),
            ports: container.ports.clone().unwrap_or_default(),
            node: pod.node.clone(),
        });
        Some(tokio::spawn(probes::run(
            container.clone(),
            target,
            started,
            tx,
        )))
    } else {
        drop(tx);
        None
    };
    let mut unhealthy: Option<String> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            event = rx.recv(), if probing.is_some() => match event {
                Some(ProbeEvent::Started) => pod.update(init, index, |c| c.started = true),
                Some(ProbeEvent::Ready(ready)) => pod.update(init, index, |c| c.ready = ready),
                Some(ProbeEvent::Unhealthy { probe, message }) => {
                    tracing::info!(pod = %pod.name, container = %container.name, probe, %message,
                        "probe failed: restarting the container");
                    unhealthy = Some(format!("{probe} probe failed: {message}"));
                    pod.update(init, index, |c| c.ready = false);
                    let grace = grace_seconds(&object);
                    stop_process(pid, Duration::from_secs(grace), &mut child).await;
                }
                None => {}
            },
        }
    };
    if let Some(task) = probing {
        task.abort();
    }
    let ran_for = started.elapsed();
    let finished = jiff::Timestamp::now();
    let (code, signal) = match status {
        Ok(status) => exit_code(status),
        Err(_) => (255, None),
    };
    // Whatever the main process left behind in its group goes too.
    signal_group(pid, Signal::KILL);
    let ok = code == 0;
    let reason = if ok { "Completed" } else { "Error" };
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, container = %container.name, pid,
        code, "container exited");
    let ended = Ended {
        code,
        signal,
        reason: reason.to_owned(),
        message: unhealthy,
        started: started_at,
        finished,
    };
    pod.update(init, index, |c| {
        c.ready = false;
        c.last = Some(ended.clone());
        c.phase = Phase::Terminated(ended);
    });
    Some((ok, ran_for))
}

/// SIGTERM, then SIGKILL after `grace` if the process still runs.
async fn stop_process(pid: u32, grace: Duration, child: &mut tokio::process::Child) {
    signal_group(pid, Signal::TERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, Signal::KILL);
    }
}

fn grace_seconds(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64
}

/// Graceful termination: preStop hooks, SIGTERM, SIGKILL at the end of the grace period. A pod
/// on a stopped node waits for the node, as a pod on a dead kubelet does.
async fn terminate(shared: &Arc<Shared>, pod: &Arc<PodRun>) {
    if !pod.gone.is_cancelled() {
        tokio::select! {
            () = pod.node.wait_running() => {}
            () = pod.gone.cancelled() => {}
        }
    }
    let object = pod.pod();
    let grace = if pod.gone.is_cancelled() {
        Duration::ZERO
    } else {
        Duration::from_secs(grace_seconds(&object))
    };
    let deadline = Instant::now() + grace;
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, grace_s = grace.as_secs(), "terminating");
    let spec = object.spec.clone().unwrap_or_default();
    let running: Vec<(Container, u32)> = {
        let state = pod.state();
        spec.containers
            .iter()
            .zip(&state.containers)
            .filter_map(|(spec, run)| run.pid().map(|pid| (spec.clone(), pid)))
            .collect()
    };
    let mut hooks = JoinSet::new();
    for (container, pid) in running {
        let shared = shared.clone();
        let ip = pod.ip;
        let node = pod.node.clone();
        hooks.spawn(async move {
            if let Some(handler) = container
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.clone())
                && !grace.is_zero()
            {
                let target = Target {
                    pid,
                    ip,
                    env: BTreeMap::new(),
                    image: container.image.clone().unwrap_or_default(),
                    images: shared.images.clone(),
                    ports: container.ports.clone().unwrap_or_default(),
                    node,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(e) = run_hook(&target, &handler, left).await {
                    tracing::info!(container = %container.name, error = %e, "preStop hook failed");
                }
            }
            signal_group(pid, Signal::TERM);
        });
    }
    let hooks_done = async { while hooks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout_at(deadline, hooks_done).await;
    // Wait until every process is gone, or the grace period ends.
    loop {
        let pids = pod.pids();
        if pids.is_empty() || Instant::now() >= deadline {
            for pid in pids {
                signal_group(pid, Signal::KILL);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_hook(
    target: &Target,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        probes::run_exec(target, exec, timeout).await
    } else if let Some(http) = &handler.http_get {
        probes::run_http(target, http, timeout).await
    } else if let Some(tcp) = &handler.tcp_socket {
        probes::run_tcp(target, tcp, timeout).await
    } else if let Some(sleep) = &handler.sleep {
        let secs = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(secs).min(timeout)).await;
        Ok(())
    } else {
        Err("unsupported lifecycle handler".into())
    }
}

/// Kills what is left, removes the network namespace and the pod's volumes (PV directories stay),
/// frees the IP. The container logs stay.
async fn cleanup(shared: &Arc<Shared>, pod: &Arc<PodRun>) {
    for pid in pod.pids() {
        signal_group(pid, Signal::KILL);
    }
    network::delete_sandbox(&pod.net).await;
    let volumes = pod.dir.join("volumes");
    if let Err(e) = std::fs::remove_dir_all(&volumes)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %volumes.display(), error = %e, "cannot remove the pod's volumes");
    }
    shared.release_ip(&pod.uid);
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, "pod cleaned up");
}

/// Removes the pod object once its processes are gone (what the kubelet does at the end of a
/// graceful deletion).
async fn delete_object(shared: &Arc<Shared>, pod: &Arc<PodRun>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &pod.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    for _ in 0..10 {
        match api.delete(&pod.name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::warn!(pod = %pod.name, error = %e, "cannot delete the pod object");
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
}

/// Starts termination when the object gets a deletion timestamp.
async fn follow_object(pod: Arc<PodRun>) {
    let mut rx = pod.object.subscribe();
    loop {
        if rx.borrow_and_update().metadata.deletion_timestamp.is_some() {
            pod.terminating.cancel();
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Freezes the pod's processes and cuts its network while its node is stopped.
async fn follow_node(pod: Arc<PodRun>) {
    let mut rx = pod.node.subscribe();
    while rx.changed().await.is_ok() {
        let running = *rx.borrow_and_update();
        pod.follow_node_state(running).await;
    }
}

impl PodRun {
    /// Freezes (SIGSTOP) and cuts off the pod when its node is stopped, and undoes it when the
    /// node starts again. Idempotent.
    pub async fn follow_node_state(&self, running: bool) {
        let signal = if running { Signal::CONT } else { Signal::STOP };
        for pid in self.pids() {
            signal_group(pid, signal);
        }
        let up = running && !self.cut.load(Ordering::SeqCst);
        if let Err(e) = network::set_link(&self.net.host_veth, up).await {
            tracing::warn!(pod = %self.name, error = %e, "cannot set the pod's link");
        }
        if running {
            self.dirty.notify_one();
        }
    }
}

/// Writes the status when it changed, coalescing bursts; nothing while the node is stopped.
async fn write_status(shared: Arc<Shared>, pod: Arc<PodRun>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &pod.namespace);
    let mut last: Option<serde_json::Value> = None;
    loop {
        pod.dirty.notified().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        pod.node.wait_running().await;
        let status = pod.status();
        let Ok(value) = serde_json::to_value(&status) else {
            continue;
        };
        if last.as_ref() == Some(&value) {
            continue;
        }
        let patch = serde_json::json!({
            "metadata": {"uid": pod.uid},
            "status": value,
        });
        match api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => last = Some(value),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::warn!(pod = %pod.name, error = %e, "cannot write the pod status");
                tokio::time::sleep(Duration::from_secs(1)).await;
                pod.dirty.notify_one();
            }
        }
    }
}

async fn refresh_volumes(shared: Arc<Shared>, pod: Arc<PodRun>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let object = pod.pod();
        if let Err(e) = volumes::refresh(
            &shared.client,
            &object,
            &pod.dir,
            &pod.facts(),
            shared.sources.as_ref(),
        )
        .await
        {
            tracing::debug!(pod = %pod.name, error = %e, "volume refresh failed");
        }
    }
}

/// Whether a pod belongs to one of the agent's nodes and should run.
pub fn wants(pod: &Pod, nodes: &[NodeHandle]) -> Option<NodeHandle> {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    nodes.iter().find(|n| n.name() == node).cloned()
}

/// Whether the pod already ended (`Succeeded` or `Failed`).
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The status IP a pod already has (kept across an agent restart).
pub fn status_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// `<ns>_<name>_<uid>`, the pod's directory name.
pub fn dir_name(pod: &Pod) -> String {
    format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Writes the container's `/etc/hosts` (the pod's own names, then the Services'; see
/// [`super::services`]) next to the pod's files and returns its read-only bind mount.
async fn write_hosts(
    shared: &Shared,
    object: &Pod,
    facts: &super::downward::PodFacts,
    hostname: &str,
    pod_dir: &std::path::Path,
    container: &str,
) -> Result<super::mounts::BindMount, String> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let ip = facts.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let fqdn = object
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .map(|sub| {
            format!(
                "{hostname}.{sub}.{namespace}.svc.{}",
                super::services::CLUSTER_DOMAIN
            )
        });
    let mut text = super::mounts::hosts_file(&ip, hostname, fqdn.as_deref());
    for (ip, names) in super::services::host_entries(&shared.client, &namespace).await {
        text.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    let path = pod_dir.join(format!("hosts-{container}"));
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(super::mounts::BindMount {
        source: path,
        target: "/etc/hosts".into(),
        read_only: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sample() -> PodRun {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": [{"name": "a", "image": "redis"}],
                     "initContainers": [{"name": "i", "image": "redis"}]}
        }))
        .unwrap();
        let net = network::names("abcd", "ns", "p", "u-1");
        PodRun::new(
            pod,
            NodeHandle::new("testbed-node-1".into(), Ipv4Addr::new(10, 9, 0, 1)),
            Ipv4Addr::new(10, 9, 0, 7),
            net,
            PathBuf::from("/nonexistent"),
        )
    }

    #[test]
    fn status_follows_the_containers() {
        let pod = sample();
        let status = pod.status();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.9.0.7"));
        pod.state().initialized = true;
        pod.update(false, 0, |c| {
            c.phase = Phase::Running {
                pid: 42,
                since: jiff::Timestamp::now(),
            };
            c.ready = true;
        });
        let status = pod.status();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        let cs = &status.container_statuses.unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("testbed://42"));
        assert_eq!(pod.report()["a"].pid, Some(42));
        assert_eq!(pod.report()["i"].pid, None);
    }
}
