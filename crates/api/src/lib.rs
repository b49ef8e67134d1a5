//! The kvrocks.io/v1alpha1 custom resources, their shared spec pieces, labels, names and
//! finalizers. No client and no async runtime: every other crate builds on these types.

pub mod cluster;
pub mod common;
pub mod config;
pub mod labels;
pub mod sentinel;
pub mod slots;
pub mod standard;

pub use cluster::{KvrocksCluster, KvrocksClusterSpec, KvrocksClusterStatus};
pub use sentinel::{KvrocksSentinel, KvrocksSentinelSpec, KvrocksSentinelStatus};
pub use standard::{KvrocksStandard, KvrocksStandardSpec, KvrocksStandardStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs of the three kinds, in the order they are printed and installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        KvrocksSentinel::crd(),
        KvrocksStandard::crd(),
        KvrocksCluster::crd(),
    ]
}
