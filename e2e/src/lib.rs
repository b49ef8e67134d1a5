//! The local testbed: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler of one pinned release) and three real nodes on one
//! machine (containerd and kubelet each, kube-proxy, CoreDNS): every pod a real container of a
//! real image.
//!
//! Tests use [`Testbed::shared`]; people use the `testbed` CLI (`testbed up|down|status|logs`).

/// Prints a progress line to stderr, bypassing the test harness's output capture, so every e2e
/// run shows how its testbed started (and which data plane it used) even when its tests pass.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::report(::std::format_args!($($arg)*))
    };
}

pub mod binaries;
pub mod cleanup;
pub mod controlplane;
pub mod crds;
pub mod dataplane;
pub mod error;
pub mod http;
pub mod images;
pub mod kubeconfig;
pub mod launcher;
pub mod network;
pub mod nodes;
pub mod operator;
pub mod pki;
pub mod podlogs;
pub mod process;
pub mod provisioner;
pub mod state;
pub mod testbed;
pub mod wait;
pub mod writer;

pub use dataplane::DataPlane;
pub use error::{Error, Result};
pub use testbed::{PodRef, Testbed};

/// Writes one line to the process's stderr (see [`say!`]).
pub fn report(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
