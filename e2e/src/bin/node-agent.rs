//! `node-agent`: the testbed's kubelet for a few virtual nodes (see `kvrocks_e2e::agent`).
//!
//! - `node-agent run --kubeconfig F --root DIR --nodes N --bridge NAME --pod-cidr CIDR --image-map F`
//! - `node-agent standin-kvrocks <kvrocks args>`: redis-server standing in for kvrocks
//! - `node-agent standin-exporter`: redis_exporter standing in for the kvrocks exporter sidecar
//! - `node-agent cleanup --root DIR`: remove the namespaces and links an agent root left

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kvrocks_e2e::agent::{self, Options, ipam::Cidr};

#[derive(Parser, Debug)]
#[command(
    name = "node-agent",
    about = "The testbed's node agent (plays kubelet)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plays kubelet for the virtual nodes until SIGTERM.
    Run {
        /// Kubeconfig of the agent.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Agent root directory.
        #[arg(long)]
        root: PathBuf,
        /// Number of virtual nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The bridge pods attach to.
        #[arg(long)]
        bridge: String,
        /// The pod CIDR, e.g. 10.230.0.0/16.
        #[arg(long)]
        pod_cidr: Cidr,
        /// The image map file.
        #[arg(long)]
        image_map: PathBuf,
    },
    /// Removes the network namespaces and links an agent root left.
    Cleanup {
        /// Agent root directory.
        #[arg(long)]
        root: PathBuf,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("standin-kvrocks") {
        let code = agent::standin::main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if args.get(1).map(String::as_str) == Some("standin-exporter") {
        let code = agent::standin_exporter::main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match cli.command {
        Command::Cleanup { root } => {
            let problems = agent::remove_leftovers(&root);
            for p in &problems {
                eprintln!("node-agent cleanup: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run {
            kubeconfig,
            root,
            nodes,
            bridge,
            pod_cidr,
            image_map,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("node-agent: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = Options {
                kubeconfig,
                root,
                nodes,
                bridge,
                pod_cidr,
                image_map,
            };
            match runtime.block_on(agent::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "node agent failed");
                    eprintln!("node-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
