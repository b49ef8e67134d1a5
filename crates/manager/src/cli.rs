//! Command line and environment of the `kvrocks-operator` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The kvrocks operator: runs KvrocksSentinel, KvrocksStandard and KvrocksCluster.
#[derive(Parser, Debug)]
#[command(name = "kvrocks-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers (one leader among the replicas reconciles).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crd {
        /// Write `<plural>.kvrocks.io.yaml` files into this directory instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One of the controllers `run` can start.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControllerName {
    /// KvrocksSentinel.
    Sentinel,
    /// KvrocksStandard.
    Standard,
    /// KvrocksCluster.
    Cluster,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Controllers to run, comma separated (end-to-end tests run one alone).
    #[arg(
        long,
        env = "KVROCKS_CONTROLLERS",
        value_enum,
        value_delimiter = ',',
        default_value = "sentinel,standard,cluster"
    )]
    pub controllers: Vec<ControllerName>,
    /// Namespaces to watch, comma separated; empty means every namespace.
    #[arg(
        long,
        env = "KVROCKS_OPERATOR_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Log filter, in tracing's EnvFilter syntax (`info`, `kvrocks=debug,kube=info`).
    #[arg(long, env = "KVROCKS_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "KVROCKS_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "KVROCKS_OPERATOR_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,
    /// Serve /metrics only to a bearer token the apiserver authenticates (TokenReview) and
    /// authorizes for `get` on the non-resource URL /metrics (SubjectAccessReview), as
    /// kube-rbac-proxy does; /healthz and /readyz stay open for the kubelet. Needs `create` on
    /// tokenreviews and subjectaccessreviews.
    #[arg(long, env = "KVROCKS_OPERATOR_METRICS_AUTH")]
    pub metrics_auth: bool,
    /// Name of the Lease that elects the one replica that reconciles.
    #[arg(
        long,
        env = "KVROCKS_OPERATOR_LEASE_NAME",
        default_value = "kvrocks-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; the pod's own namespace (POD_NAMESPACE) or `default`.
    #[arg(long, env = "KVROCKS_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Identity of this replica in the Lease; the pod name (POD_NAME) or the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl RunArgs {
    /// The controllers to run, each once, in a fixed order.
    pub fn enabled_controllers(&self) -> std::collections::BTreeSet<ControllerName> {
        self.controllers.iter().copied().collect()
    }

    /// The watched namespaces, or `None` for all.
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        (!list.is_empty()).then_some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut full = vec!["kvrocks-operator", "run"];
        full.extend_from_slice(args);
        match Cli::parse_from(full).command {
            Command::Run(r) => r,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn namespaces_default_to_all() {
        assert_eq!(run_args(&[]).watched_namespaces(), None);
    }

    #[test]
    fn namespaces_are_a_comma_separated_list() {
        let args = run_args(&["--namespaces", "a, b,,c", "--log-format", "json"]);
        assert_eq!(
            args.watched_namespaces(),
            Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
        );
        assert_eq!(args.log_format, LogFormat::Json);
    }

    #[test]
    fn every_controller_runs_unless_told_otherwise() {
        assert_eq!(
            run_args(&[]).enabled_controllers(),
            [
                ControllerName::Sentinel,
                ControllerName::Standard,
                ControllerName::Cluster
            ]
            .into()
        );
        assert_eq!(
            run_args(&["--controllers", "sentinel,sentinel"]).enabled_controllers(),
            [ControllerName::Sentinel].into()
        );
        assert!(
            Cli::try_parse_from(["kvrocks-operator", "run", "--controllers", "redis"]).is_err()
        );
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
