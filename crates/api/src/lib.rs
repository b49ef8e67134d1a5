//! The kvrocks.io/v1alpha1 custom resources, their shared spec pieces, labels, names and
//! finalizers. No client and no async runtime: every other crate builds on these types.

pub mod cluster;
pub mod common;
pub mod config;
pub mod config_keys;
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

/// What the three statuses share: the conditions and the generation they describe. The shared
/// early exits of a reconcile (invalid spec, missing Secret) write only these and keep the rest.
pub trait CommonStatus: Clone + Default + serde::Serialize {
    /// The conditions.
    fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition];
    /// This status with `conditions` and `observed_generation` replaced.
    fn with_conditions(
        &self,
        conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
        observed_generation: Option<i64>,
    ) -> Self;
}

macro_rules! common_status {
    ($($status:ty),*) => {$(
        impl CommonStatus for $status {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }
            fn with_conditions(
                &self,
                conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
                observed_generation: Option<i64>,
            ) -> Self {
                Self { conditions, observed_generation, ..self.clone() }
            }
        }
    )*};
}
common_status!(
    KvrocksClusterStatus,
    KvrocksSentinelStatus,
    KvrocksStandardStatus
);
