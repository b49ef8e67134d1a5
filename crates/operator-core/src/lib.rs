//! What all kvrocks-operator controllers share: the [`Context`], server-side apply with
//! skip-when-unchanged, orphan cleanup, status conditions, Events, metrics, the error type and
//! per-object error backoff.
//!
//! A reconcile built on this crate looks like:
//!
//! ```text
//! let _timer = ctx.measure_reconcile(CONTROLLER);
//! let mut owned = OwnedObjects::new(&*cr, Component::Standard)?;
//! owned.apply(&services, &desired_service, live_service.as_ref()).await?;
//! owned.delete_orphans(&services).await?;
//! let conditions = conditions::merge(&old_conditions, [conditions::ready(..)]);
//! apply::patch_status_if_changed(&crs, &cr, &status).await?;
//! ctx.reconcile_succeeded(CONTROLLER, &*cr);
//! // and in error_policy: ctx.error_policy(CONTROLLER, &*cr, err)
//! ```

pub mod apply;
pub mod auth;
pub mod backoff;
pub mod builders;
pub mod compare;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod error;
pub mod events;
pub mod fence;
pub mod finalizers;
pub mod metrics;
pub mod node;
pub mod orphans;
pub mod pods;
pub mod prober;
pub mod server;
pub mod statefulset;
pub mod wake;

#[cfg(test)]
mod testing;

pub use apply::{
    Applied, apply, apply_if_changed, get_and_apply_if_changed, patch_status,
    patch_status_if_changed,
};
pub use backoff::{Backoff, BackoffConfig, BackoffKey};
pub use conditions::ConditionStatus;
pub use context::{Context, WatchNamespaces};
pub use error::{ControllerError, Error, ReconcileError, Result, object_name};
pub use metrics::{Metrics, ReconcileMeasurer};
pub use orphans::OwnedObjects;
pub use wake::{WakeBus, WakeTarget};
