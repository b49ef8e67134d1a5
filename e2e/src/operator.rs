//! Running the operator itself against the testbed: the `kvrocks-operator run` binary built by
//! `cargo build -p kvrocks-operator`, as a user of its own ([`E2E_OPERATOR_USER`]) that holds
//! exactly the ClusterRole of `config/rbac/role.yaml` (so every scenario also proves those
//! permissions suffice, and the apiserver's audit log shows what the operator uses), with its own
//! metrics port and its own Lease, so several tests (or several operators in one test) never
//! share a leader election.
//! Each runs in a cgroup (v2) of its own, so a test can cut the operator alone off a pod
//! ([`Operator::cut_from`]) while the pods, and the test's own clients, still reach it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, Mode, Spec};
use crate::testbed::Testbed;

/// The default log filter: debug for the controllers, info for everything else.
pub const CONTROLLER_LOGS: &str = "info,kvrocks_operator_core=debug,\
kvrocks_sentinel_controller=debug,kvrocks_standard_controller=debug,\
kvrocks_cluster_controller=debug";

/// How long the operator may take to start and win its Lease.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running operator; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Operator {
    child: Option<Child>,
    metrics_addr: SocketAddr,
    log: PathBuf,
    lease: String,
    /// Its cgroup: the path below the cgroup2 root, and the directory.
    cgroup: Option<(String, PathBuf)>,
}

/// Drops every packet the operator sends to one address, until dropped.
#[derive(Debug)]
pub struct OperatorCut {
    cgroup: String,
    ip: String,
}

impl OperatorCut {
    fn rule(&self, op: &str) -> Result<()> {
        process::run(
            "iptables",
            &[
                op,
                "OUTPUT",
                "-m",
                "cgroup",
                "--path",
                &self.cgroup,
                "-d",
                &self.ip,
                "-j",
                "DROP",
            ],
        )
        .map(drop)
    }
}

impl Drop for OperatorCut {
    fn drop(&mut self) {
        if let Err(e) = self.rule("-D") {
            crate::say!("operator: cannot restore its path to {}: {e}", self.ip);
        }
    }
}

impl Operator {
    /// Cuts the operator alone off `ip` (a host firewall rule that matches its cgroup): the pod
    /// still reaches everything, and everything else still reaches the pod. Restored when the
    /// returned guard is dropped.
    pub fn cut_from(&self, ip: &str) -> Result<OperatorCut> {
        let (cgroup, _) = self.cgroup.as_ref().ok_or_else(|| {
            Error::invalid(
                "kvrocks-operator",
                "it runs in no cgroup of its own (this host has no cgroup2 hierarchy)",
            )
        })?;
        let cut = OperatorCut {
            cgroup: cgroup.clone(),
            ip: ip.to_owned(),
        };
        cut.rule("-I")?;
        Ok(cut)
    }

    /// The address of its `/metrics`, `/healthz` and `/readyz`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The name of its Lease (in namespace `default`).
    pub fn lease_name(&self) -> &str {
        &self.lease
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The text of its `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        crate::http::get_ok(self.metrics_addr, "/metrics", Duration::from_secs(5)).await
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log, lines)
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_cgroup();
    }

    fn remove_cgroup(&mut self) {
        if let Some((_, dir)) = self.cgroup.take() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Stops it with SIGTERM (a graceful shutdown that releases the Lease) and waits up to
    /// `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.remove_cgroup();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.remove_cgroup();
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `kvrocks-operator run <args>` against the testbed and waits until it leads (its
/// `/readyz` says `leading`), so its controllers run when this returns.
///
/// It gets the admin kubeconfig (`KUBECONFIG`), a free loopback metrics address, a Lease of
/// its own in `default`, and a log file under `<testbed root>/logs/`. `args` come last
/// (`["--controllers", "sentinel"]`); `--log-level` defaults to [`CONTROLLER_LOGS`].
///
/// Returns `None` after printing a `SKIPPED` line (counted by `make test`) when the binary has
/// not been built: `cargo build -p kvrocks-operator`.
pub async fn start_operator(testbed: &Testbed, args: &[&str]) -> Result<Option<Operator>> {
    let kubeconfig = e2e_identity(testbed).await?;
    start_operator_as(testbed, &kubeconfig, args).await
}

/// The user every operator of the scenarios runs as (a client certificate, no group).
pub const E2E_OPERATOR_USER: &str = "kvrocks-operator-e2e";

/// The ClusterRole the operator needs (`config/rbac/role.yaml`).
pub fn cluster_role_file() -> PathBuf {
    crate::binaries::repo_root().join("config/rbac/role.yaml")
}

/// The kubeconfig of [`E2E_OPERATOR_USER`], made on first use, with the ClusterRole of
/// [`cluster_role_file`] applied and bound to that user (and nothing else granted).
pub async fn e2e_identity(testbed: &Testbed) -> Result<PathBuf> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Patch, PatchParams};
    static MADE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _once = MADE.lock().await;
    let stem = "e2e-operator";
    let path = testbed.root().join(format!("{stem}.kubeconfig"));
    if !path.is_file() {
        let pki = crate::pki::Pki::open(&testbed.root().join("pki"));
        pki.client(stem, E2E_OPERATOR_USER, None)?;
        let server = format!("https://127.0.0.1:{}", testbed.state().ports.apiserver);
        crate::kubeconfig::write(testbed.root(), stem, &server, &pki, stem)?;
    }
    let file = cluster_role_file();
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
    let role: ClusterRole = serde_saphyr::from_str(&text)
        .map_err(|e| Error::invalid(file.display().to_string(), e.to_string()))?;
    let role_name = role.metadata.name.clone().unwrap_or_default();
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": E2E_OPERATOR_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": E2E_OPERATOR_USER}],
    }))
    .map_err(|e| Error::invalid("the e2e ClusterRoleBinding", e.to_string()))?;
    let client = testbed.client().await?;
    let apply = PatchParams::apply("kvrocks-e2e").force();
    let kube_err = |action: &str| {
        let action = action.to_owned();
        move |source| Error::Kube { action, source }
    };
    kube::Api::<ClusterRole>::all(client.clone())
        .patch(&role_name, &apply, &Patch::Apply(&role))
        .await
        .map_err(kube_err("applying the operator's ClusterRole"))?;
    kube::Api::<ClusterRoleBinding>::all(client)
        .patch(E2E_OPERATOR_USER, &apply, &Patch::Apply(&binding))
        .await
        .map_err(kube_err("binding the operator's ClusterRole"))?;
    Ok(path)
}

/// [`start_operator`] with another kubeconfig than the admin one: another identity (the bench
/// gives the operator a client certificate of its own, so the apiserver's audit log tells its
/// requests apart).
pub async fn start_operator_as(
    testbed: &Testbed,
    kubeconfig: &Path,
    args: &[&str],
) -> Result<Option<Operator>> {
    let binary = crate::testbed::operator_binary();
    if !binary.is_file() {
        crate::say!(
            "\nSKIPPED operator test: no operator binary at {} (run `cargo build -p kvrocks-operator`)",
            binary.display()
        );
        return Ok(None);
    }
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n}", std::process::id());
    let metrics_addr = free_loopback_addr()?;
    let lease = format!("kvrocks-operator-e2e-{id}");
    let log = testbed
        .root()
        .join("logs")
        .join(format!("operator-{id}.log"));
    let mut full: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--metrics-address".into(),
        metrics_addr.to_string().into(),
        "--lease-name".into(),
        lease.clone().into(),
        "--lease-namespace".into(),
        "default".into(),
    ];
    if !args.iter().any(|a| a.starts_with("--log-level")) {
        full.extend(["--log-level".into(), CONTROLLER_LOGS.into()]);
    }
    full.extend(args.iter().map(Into::into));
    let (child, _record) = process::start(
        Mode::Attached,
        Spec {
            name: "kvrocks-operator",
            program: &binary,
            args: full,
            env: vec![
                ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
                ("POD_NAME".to_owned(), format!("e2e-operator-{id}")),
            ],
            log: log.clone(),
        },
    )?;
    // Moved into its cgroup before it leads, so every connection it opens to a pod is its
    // cgroup's (a socket belongs to the cgroup of the process that created it).
    let cgroup = join_own_cgroup(&id, child.id());
    let mut operator = Operator {
        child: Some(child),
        metrics_addr,
        log,
        lease,
        cgroup,
    };
    crate::say!(
        "operator: started {} {} (log {})",
        binary.display(),
        args.join(" "),
        operator.log.display()
    );
    let started = Instant::now();
    loop {
        if !operator.is_running() {
            return Err(failed(&operator, "exited before it started leading"));
        }
        let readyz =
            crate::http::request(metrics_addr, "GET", "/readyz", None, Duration::from_secs(2))
                .await;
        if let Ok(r) = readyz
            && r.is_success()
            && r.body.trim() == "leading"
        {
            crate::say!(
                "operator: leading after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(Some(operator));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(failed(
                &operator,
                &format!("not leading within {START_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn failed(operator: &Operator, reason: &str) -> Error {
    Error::Component {
        component: "kvrocks-operator".to_owned(),
        reason: reason.to_owned(),
        log: operator.log.clone(),
        tail: operator.log_tail(40),
    }
}

/// Prefix of the operators' cgroups below the cgroup2 root.
pub const CGROUP_PREFIX: &str = "kvrocks-e2e-operator-";

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` or, on a hybrid host, its
/// `unified` directory).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

/// Creates the operator's cgroup and moves `pid` into it; None (said) when it cannot.
fn join_own_cgroup(id: &str, pid: u32) -> Option<(String, PathBuf)> {
    let name = format!("{CGROUP_PREFIX}{id}");
    let dir = cgroup2_root()?.join(&name);
    let joined = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
    match joined {
        Ok(()) => Some((name, dir)),
        Err(e) => {
            crate::say!(
                "operator: runs in no cgroup of its own ({}: {e}); it cannot be cut off alone",
                dir.display()
            );
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

/// A loopback address with a port nothing listens on right now.
fn free_loopback_addr() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
    listener
        .local_addr()
        .map_err(|e| Error::io("read the address of", "127.0.0.1:0", e))
}
