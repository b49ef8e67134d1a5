//! `testbed up | down | status | logs | kubectl | helm`: the local testbed for people (and
//! `make demo`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kvrocks_e2e::cleanup;
use kvrocks_e2e::process::{Mode, ProcRecord};
use kvrocks_e2e::state::State;
use kvrocks_e2e::testbed::{Options, Testbed};

/// The local testbed: a real Kubernetes control plane and three real nodes, on this machine.
#[derive(Parser, Debug)]
#[command(name = "testbed")]
struct Cli {
    /// State root of the testbed.
    #[arg(
        long,
        global = true,
        env = "KVROCKS_TESTBED_ROOT",
        default_value = "/tmp/kvrocks-testbed"
    )]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the control plane and the nodes, detached; prints the KUBECONFIG line.
    Up,
    /// Stop every recorded process and remove pods, shims, mounts, cgroups, the bridge and the root.
    Down,
    /// Show the recorded processes, ports and network, and whether the apiserver answers.
    Status,
    /// Print a pod's container logs (`name` or `namespace/name`).
    Logs {
        /// The pod.
        pod: String,
        /// Only this container.
        container: Option<String>,
    },
    /// Run kubectl (of the pinned release) against the testbed.
    #[command(disable_help_flag = true)]
    Kubectl {
        /// kubectl's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run helm (of the pinned release) against the testbed, its caches under the root.
    #[command(disable_help_flag = true)]
    Helm {
        /// helm's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start a process detached, with KUBECONFIG set, and record it so `down` stops it.
    Spawn {
        /// Its name in `status` (`kvrocks-operator` is stopped first, gracefully).
        #[arg(long)]
        name: String,
        /// Its log file; default `<root>/logs/<name>.log`.
        #[arg(long)]
        log: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Run the real nodes' PV provisioner (`local` volumes under `<root>/pv`) until stopped.
    #[command(hide = true)]
    Provision {
        /// The admin kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Wait for `--pid` to exit, then stop what it started (used by test binaries).
    #[command(hide = true)]
    Reap {
        /// The process to outlive.
        #[arg(long)]
        pid: u32,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let root = std::path::absolute(&cli.root)
        .with_context(|| format!("resolving {}", cli.root.display()))?;
    match cli.command {
        Command::Up => up(&root).await,
        Command::Down => down(&root),
        Command::Status => status(&root).await,
        Command::Logs { pod, container } => logs(&root, &pod, container.as_deref()),
        Command::Kubectl { args } => kubectl(&root, &args),
        Command::Helm { args } => helm(&root, &args),
        Command::Spawn { name, log, command } => spawn(&root, &name, log, &command),
        Command::Reap { pid } => reap(&root, pid),
        Command::Provision { kubeconfig } => provision(&root, &kubeconfig).await,
    }
}

async fn up(root: &Path) -> anyhow::Result<()> {
    let options = Options {
        root: root.to_path_buf(),
        mode: Mode::Detached,
    };
    match Testbed::start(options).await {
        Ok(testbed) => {
            println!("export KUBECONFIG={}", testbed.kubeconfig_path().display());
            Ok(())
        }
        Err(e) => {
            eprintln!("testbed up failed; removing what was started");
            if let Err(cleanup_error) = cleanup::teardown(root) {
                eprintln!("cleanup after the failure also failed: {cleanup_error}");
            }
            Err(e).context("testbed up")
        }
    }
}

fn down(root: &Path) -> anyhow::Result<()> {
    if !root.exists() {
        println!("nothing at {}", root.display());
        return Ok(());
    }
    cleanup::teardown(root).with_context(|| format!("testbed down {}", root.display()))?;
    println!("removed the testbed at {}", root.display());
    Ok(())
}

async fn status(root: &Path) -> anyhow::Result<()> {
    let Some(state) = State::load(root)? else {
        bail!("no testbed at {} (no state.json)", root.display());
    };
    println!("root:       {}", state.root.display());
    println!("mode:       {:?}", state.mode);
    println!("kubeconfig: {}", state.kubeconfig.display());
    if let Some(network) = &state.network {
        println!(
            "network:    bridge {} ({}), pod CIDR {}",
            network.bridge,
            if kvrocks_e2e::network::bridge_exists(&network.bridge) {
                "present"
            } else {
                "MISSING"
            },
            network.cidr()
        );
    }
    if let Some(data_plane) = &state.data_plane {
        println!("{data_plane}");
    }
    let p = state.ports;
    println!(
        "ports:      etcd {} (peer {}), apiserver {}, controller-manager {}, scheduler {}",
        p.etcd_client, p.etcd_peer, p.apiserver, p.controller_manager, p.scheduler
    );
    println!("processes:");
    let mut total_kib = 0;
    for record in &state.processes {
        let ProcRecord { name, pid, log, .. } = record;
        let alive = record.is_alive();
        total_kib += kvrocks_e2e::process::rss_kib(*pid)
            .filter(|_| alive)
            .unwrap_or(0);
        println!(
            "  {name:<24} pid {pid:<8} {:<8} rss {:>7} log {}",
            if alive { "running" } else { "DEAD" },
            if alive { rss_mib(*pid) } else { "-".to_owned() },
            log.display()
        );
    }
    println!(
        "  total RSS of the running processes: {} MiB",
        total_kib / 1024
    );
    let client = kvrocks_e2e::kubeconfig::client(&state.kubeconfig, None).await?;
    match tokio::time::timeout(
        Duration::from_secs(5),
        kvrocks_e2e::kubeconfig::get_text(&client, "/readyz"),
    )
    .await
    {
        Ok(Ok(body)) => println!("apiserver /readyz: {}", body.trim()),
        Ok(Err(e)) => println!("apiserver /readyz: {e}"),
        Err(_) => println!("apiserver /readyz: no answer within 5 s"),
    }
    Ok(())
}

/// `VmRSS` of a process, in MiB.
fn rss_mib(pid: u32) -> String {
    kvrocks_e2e::process::rss_kib(pid)
        .map(|kib| format!("{} MiB", kib / 1024))
        .unwrap_or_else(|| "?".to_owned())
}

fn logs(root: &Path, pod: &str, container: Option<&str>) -> anyhow::Result<()> {
    let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
    let files = kvrocks_e2e::podlogs::find(root, namespace, name, container)?;
    if files.is_empty() {
        bail!(
            "no container logs for pod {namespace}/{name}{} under {}",
            container
                .map(|c| format!(" container {c}"))
                .unwrap_or_default(),
            root.display()
        );
    }
    for file in files {
        println!("==> {} <==", file.display());
        let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        print!("{}", String::from_utf8_lossy(&text));
    }
    Ok(())
}

fn load(root: &Path) -> anyhow::Result<State> {
    State::load(root)?
        .with_context(|| format!("no testbed at {} (run `testbed up`)", root.display()))
}

fn kubectl(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let state = load(root)?;
    let kubectl = state
        .kubectl
        .clone()
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let status = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&state.kubeconfig)
        .args(args)
        .status()
        .with_context(|| format!("running {}", kubectl.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn helm(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let state = load(root)?;
    let helm = kvrocks_e2e::binaries::find_or_build()?.helm;
    let mut command = std::process::Command::new(&helm);
    command.env("KUBECONFIG", &state.kubeconfig);
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, root.join("helm").join(dir));
    }
    let status = command
        .args(args)
        .status()
        .with_context(|| format!("running {}", helm.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn spawn(root: &Path, name: &str, log: Option<PathBuf>, command: &[String]) -> anyhow::Result<()> {
    let mut state = load(root)?;
    let (program, args) = command.split_first().context("no command given")?;
    let log = log.unwrap_or_else(|| root.join("logs").join(format!("{name}.log")));
    let spec = kvrocks_e2e::process::Spec {
        name,
        program: Path::new(program),
        args: args.iter().map(Into::into).collect(),
        env: vec![("KUBECONFIG".into(), state.kubeconfig.display().to_string())],
        log: log.clone(),
    };
    let (mut child, record) = kvrocks_e2e::process::start(Mode::Detached, spec)?;
    state.record(record.clone())?;
    // A process that cannot even start (bad flags, no CRDs) says so within a moment.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(status) = child.try_wait()? {
        bail!(
            "{name} exited at once ({status}); last lines of {}:\n{}",
            log.display(),
            kvrocks_e2e::process::log_tail(&log, 30)
        );
    }
    println!("{name} running, pid {}, log {}", record.pid, log.display());
    Ok(())
}

fn reap(root: &Path, pid: u32) -> anyhow::Result<()> {
    if let Some(watched) = kvrocks_e2e::process::observe("test binary", pid) {
        while watched.is_alive() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    cleanup::stop(root).with_context(|| format!("stopping the testbed at {}", root.display()))?;
    eprintln!(
        "reaper: pid {pid} exited; stopped the testbed at {} (logs kept until the next run)",
        root.display()
    );
    Ok(())
}

async fn provision(root: &Path, kubeconfig: &Path) -> anyhow::Result<()> {
    use kvrocks_e2e::provisioner;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let client = kvrocks_e2e::kubeconfig::client(kubeconfig, None).await?;
    provisioner::ensure_storage_class(&client).await?;
    eprintln!(
        "provisioner: local volumes under {}",
        root.join("pv").display()
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    provisioner::run(client, root.join("pv"), shutdown).await;
    Ok(())
}
