//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free loopback ports, all
//! state under `<root>`, each health-checked before the next one starts.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use crate::binaries::Binaries;
use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::launcher::Launcher;
use crate::pki::Pki;
use crate::process::Spec;
use crate::state::Ports;

/// The Service CIDR.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_TIMEOUT: Duration = Duration::from_secs(120);
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Kubeconfig files written for the control plane.
#[derive(Clone, Debug)]
pub struct Kubeconfigs {
    /// `<root>/admin.kubeconfig` (system:masters).
    pub admin: PathBuf,
}

/// Picks the control plane's ports: every one free at the same moment.
pub fn free_ports() -> Result<Ports> {
    // The apiserver listens on all addresses (pods reach it through the bridge gateway), so its
    // port must be free on all of them; the others only listen on loopback.
    let bind = |addr: Ipv4Addr| {
        TcpListener::bind((addr, 0))
            .map_err(|e| Error::io("bind a free port on", addr.to_string(), e))
    };
    let listeners = [
        bind(Ipv4Addr::LOCALHOST)?,
        bind(Ipv4Addr::LOCALHOST)?,
        bind(Ipv4Addr::UNSPECIFIED)?,
        bind(Ipv4Addr::LOCALHOST)?,
        bind(Ipv4Addr::LOCALHOST)?,
    ];
    let port = |i: usize| {
        listeners[i]
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| Error::io("read the address of", "a bound socket", e))
    };
    Ok(Ports {
        etcd_client: port(0)?,
        etcd_peer: port(1)?,
        apiserver: port(2)?,
        controller_manager: port(3)?,
        scheduler: port(4)?,
    })
}

/// Users whose requests the apiserver audits; `None` (the default): the operator's identities
/// of the scenarios ([`DEFAULT_AUDITED`]), whose requests the least-privilege test reads.
static AUDITED_USERS: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// The identities the operator has in the scenarios: its own user when it runs as a process
/// (`crate::operator::E2E_OPERATOR_USER`) and the chart's ServiceAccount when it runs in a pod.
pub const DEFAULT_AUDITED: [&str; 2] = [
    crate::operator::E2E_OPERATOR_USER,
    "system:serviceaccount:kvrocks-system:kvrocks-operator",
];

/// Makes every apiserver started after this call write an audit log of the requests of `users`
/// (by username), and of no one else: one JSON line per request at the Metadata level (verb,
/// resource, namespace, name, user agent, status code; no bodies), at [`audit_log_path`]. Without
/// this call the operator's identities of the scenarios are audited ([`DEFAULT_AUDITED`]);
/// `make bench` names its own operator identity to count its API requests by verb.
pub fn audit_requests_of(users: &[&str]) {
    let mut audited = AUDITED_USERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *audited = Some(users.iter().map(|u| (*u).to_owned()).collect());
}

/// The apiserver's audit log under the state root (written only after [`audit_requests_of`]).
pub fn audit_log_path(root: &Path) -> PathBuf {
    log_path(root, "audit")
}

/// The flags for an audit log of `users` (none when `users` is empty), and the policy file
/// they name, written under `root`.
fn audit_flags(root: &Path, users: &[String]) -> Result<Vec<OsString>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    // One event per request (RequestReceived omitted): ResponseComplete, and ResponseStarted
    // for a watch; everyone else's requests are not logged at all.
    let quoted: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
    let policy = format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\n\
         rules:\n- level: Metadata\n  users: [{}]\n- level: None\n",
        quoted.join(", ")
    );
    let path = root.join("audit-policy.yaml");
    std::fs::write(&path, policy).map_err(|e| Error::io("write", &path, e))?;
    Ok(vec![
        arg("--audit-policy-file", &path),
        arg("--audit-log-path", audit_log_path(root)),
        arg("--audit-log-format", "json"),
        arg("--audit-log-mode", "blocking"),
    ])
}

fn arg(flag: &str, value: impl AsRef<Path>) -> OsString {
    let mut a = OsString::from(flag);
    a.push("=");
    a.push(value.as_ref());
    a
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn log_path(root: &Path, name: &str) -> PathBuf {
    root.join("logs").join(format!("{name}.log"))
}

/// Starts the four components in order and waits for each, then for the controllers to act (the
/// service-account controller creates `default/default`). Returns the kubeconfigs.
/// The apiserver advertises `gateway`, the bridge's address (the `kubernetes` Service's endpoint,
/// reached from pods through kube-proxy), and reaches kubelets by their InternalIP with the admin
/// certificate.
pub async fn start(
    launcher: &mut Launcher,
    bins: &Binaries,
    pki: &Pki,
    gateway: Ipv4Addr,
) -> Result<Kubeconfigs> {
    let root = launcher.root();
    let ports = free_ports()?;
    launcher.state.ports = ports;
    launcher.state.save()?;
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let admin = kubeconfig::write(&root, "admin", &server, pki, "admin")?;
    let kcm_config = kubeconfig::write(
        &root,
        "kube-controller-manager",
        &server,
        pki,
        "kube-controller-manager",
    )?;
    let sched_config = kubeconfig::write(&root, "kube-scheduler", &server, pki, "kube-scheduler")?;

    let started = Instant::now();
    start_etcd(launcher, bins, ports).await?;
    start_apiserver(launcher, bins, pki, ports, &admin, gateway).await?;
    launcher.start(controller_manager_spec(
        &root,
        bins,
        pki,
        ports,
        &kcm_config,
    ))?;
    launcher.start(scheduler_spec(&root, bins, pki, ports, &sched_config))?;
    for (name, port) in [
        ("kube-controller-manager", ports.controller_manager),
        ("kube-scheduler", ports.scheduler),
    ] {
        let client = kubeconfig::client(&admin, Some(&format!("https://127.0.0.1:{port}"))).await?;
        let took = launcher
            .wait_healthy(name, COMPONENT_TIMEOUT, async || {
                probe_ok(&client, "/healthz").await
            })
            .await?;
        crate::say!(
            "testbed: {name} healthy on 127.0.0.1:{port} ({:.1} s)",
            took.as_secs_f64()
        );
    }
    wait_for_controllers(launcher, &admin).await?;
    crate::say!(
        "testbed: control plane ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Kubeconfigs { admin })
}

async fn probe_ok(client: &kube::Client, path: &str) -> std::result::Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, kubeconfig::get_text(client, path)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => Err(format!("GET {path}: {}", body.trim())),
        Ok(Err(e)) => Err(format!("GET {path}: {e}")),
        Err(_) => Err(format!("GET {path}: no answer within {PROBE_TIMEOUT:?}")),
    }
}

async fn start_etcd(launcher: &mut Launcher, bins: &Binaries, ports: Ports) -> Result<()> {
    let root = launcher.root();
    let client_url = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let mut list = vec![
        arg("--data-dir", root.join("etcd")),
        arg("--name", "testbed"),
        arg("--listen-client-urls", &client_url),
        arg("--advertise-client-urls", &client_url),
        arg("--listen-peer-urls", &peer_url),
        arg("--initial-advertise-peer-urls", &peer_url),
        arg("--initial-cluster", format!("testbed={peer_url}")),
        arg("--log-level", "warn"),
    ];
    // A throw-away store: fsync buys nothing and costs seconds on a busy disk.
    list.extend(args(&["--unsafe-no-fsync"]));
    launcher.start(Spec {
        name: "etcd",
        program: &bins.etcd,
        args: list,
        env: Vec::new(),
        log: log_path(&root, "etcd"),
    })?;
    let addr = (Ipv4Addr::LOCALHOST, ports.etcd_client).into();
    let took = launcher
        .wait_healthy("etcd", ETCD_TIMEOUT, async || {
            match crate::http::get_ok(addr, "/health", PROBE_TIMEOUT).await {
                Ok(body) if body.contains("\"health\":\"true\"") => Ok(()),
                Ok(body) => Err(format!("GET /health: {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
    crate::say!(
        "testbed: etcd healthy on {client_url} ({:.1} s)",
        took.as_secs_f64()
    );
    Ok(())
}

async fn start_apiserver(
    launcher: &mut Launcher,
    bins: &Binaries,
    pki: &Pki,
    ports: Ports,
    admin: &Path,
    gateway: Ipv4Addr,
) -> Result<()> {
    let root = launcher.root();
    let serving = pki.pair("apiserver");
    let kubelet_client = pki.pair("admin");
    let mut list = vec![
        arg(
            "--etcd-servers",
            format!("http://127.0.0.1:{}", ports.etcd_client),
        ),
        // All addresses: host processes use 127.0.0.1, pods the bridge gateway.
        arg("--bind-address", "0.0.0.0"),
        arg("--secure-port", ports.apiserver.to_string()),
        arg("--cert-dir", root.join("apiserver-certs")),
        arg("--tls-cert-file", &serving.cert),
        arg("--tls-private-key-file", &serving.key),
        arg("--client-ca-file", pki.ca_cert()),
        arg("--authorization-mode", "RBAC"),
        arg("--service-cluster-ip-range", SERVICE_CIDR),
        arg(
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ),
        arg("--service-account-key-file", pki.sa_pub()),
        arg("--service-account-signing-key-file", pki.sa_key()),
    ];
    list.extend(args(&["--allow-privileged=true"]));
    list.extend([
        arg("--advertise-address", gateway.to_string()),
        arg("--endpoint-reconciler-type", "lease"),
        arg("--kubelet-preferred-address-types", "InternalIP"),
        arg("--kubelet-client-certificate", &kubelet_client.cert),
        arg("--kubelet-client-key", &kubelet_client.key),
    ]);
    let audited = AUDITED_USERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| DEFAULT_AUDITED.iter().map(|u| (*u).to_owned()).collect());
    list.extend(audit_flags(&root, &audited)?);
    launcher.start(Spec {
        name: "kube-apiserver",
        program: &bins.kube_apiserver,
        args: list,
        env: Vec::new(),
        log: log_path(&root, "kube-apiserver"),
    })?;
    let client = kubeconfig::client(admin, None).await?;
    let took = launcher
        .wait_healthy("kube-apiserver", APISERVER_TIMEOUT, async || {
            probe_ok(&client, "/readyz").await
        })
        .await?;
    crate::say!(
        "testbed: kube-apiserver ready on https://127.0.0.1:{} ({:.1} s)",
        ports.apiserver,
        took.as_secs_f64()
    );
    Ok(())
}

fn controller_manager_spec<'a>(
    root: &Path,
    bins: &'a Binaries,
    pki: &Pki,
    ports: Ports,
    kubeconfig: &Path,
) -> Spec<'a> {
    let serving = pki.pair("components");
    let mut list = vec![
        arg("--kubeconfig", kubeconfig),
        arg("--bind-address", "127.0.0.1"),
        arg("--secure-port", ports.controller_manager.to_string()),
        arg("--tls-cert-file", &serving.cert),
        arg("--tls-private-key-file", &serving.key),
        // Every on-by-default controller: statefulset, deployment, replicaset, garbage collector,
        // PV binder, endpoints/endpointslice, namespace, service account (+ token), disruption,
        // node lifecycle, ...
        arg("--controllers", "*"),
        arg("--service-account-private-key-file", pki.sa_key()),
        arg("--root-ca-file", pki.ca_cert()),
        arg("--cluster-signing-cert-file", pki.ca_cert()),
        arg("--cluster-signing-key-file", pki.ca_key()),
        // Nodes whose kubelet stopped heart-beating turn NotReady/Unknown in 20 s instead of 50 s,
        // so node-failure scenarios stay short.
        arg("--node-monitor-grace-period", "20s"),
        arg("--node-monitor-period", "2s"),
    ];
    list.extend(args(&[
        "--leader-elect=false",
        "--use-service-account-credentials=false",
    ]));
    Spec {
        name: "kube-controller-manager",
        program: &bins.kube_controller_manager,
        args: list,
        env: Vec::new(),
        log: log_path(root, "kube-controller-manager"),
    }
}

fn scheduler_spec<'a>(
    root: &Path,
    bins: &'a Binaries,
    pki: &Pki,
    ports: Ports,
    kubeconfig: &Path,
) -> Spec<'a> {
    let serving = pki.pair("components");
    let mut list = vec![
        arg("--kubeconfig", kubeconfig),
        arg("--bind-address", "127.0.0.1"),
        arg("--secure-port", ports.scheduler.to_string()),
        arg("--tls-cert-file", &serving.cert),
        arg("--tls-private-key-file", &serving.key),
    ];
    list.extend(args(&["--leader-elect=false"]));
    Spec {
        name: "kube-scheduler",
        program: &bins.kube_scheduler,
        args: list,
        env: Vec::new(),
        log: log_path(root, "kube-scheduler"),
    }
}

/// Waits until the service-account controller has created `default/default`: proof that the
/// controller manager's controllers really run (and pods can be admitted).
async fn wait_for_controllers(launcher: &mut Launcher, admin: &Path) -> Result<()> {
    let client = kubeconfig::client(admin, None).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    let took = launcher
        .wait_healthy(
            "kube-controller-manager",
            COMPONENT_TIMEOUT,
            async || match accounts.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("no ServiceAccount default/default yet".to_owned()),
                Err(e) => Err(format!("get ServiceAccount default/default: {e}")),
            },
        )
        .await?;
    crate::say!(
        "testbed: controllers running (ServiceAccount default/default after {:.1} s)",
        took.as_secs_f64()
    );
    Ok(())
}
