//! The operator's Prometheus metrics: one registry, the metric families of the contract, a
//! guard that times a reconcile, and text-format encoding for `/metrics`.
//!
//! Label values are object names, controller names and fixed reasons only: never anything read
//! from a Secret.

use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::{Error, Result};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "kvrocks_operator";

/// Histogram buckets of the reconcile duration, in seconds: from 1ms (an idle pass answered
/// from the cache) to 60s (a pass that waits on many API calls).
pub const RECONCILE_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Value of the `result` label of a reconcile that returned `Ok`.
pub const RESULT_SUCCESS: &str = "success";
/// Value of the `result` label of a reconcile that returned `Err`.
pub const RESULT_ERROR: &str = "error";

/// All metrics of the operator, registered in one [`Registry`].
///
/// Cloning is cheap: the families are reference-counted, so every clone updates the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `kvrocks_operator_reconcile_total{controller,result}`: reconciles by outcome.
    pub reconcile_total: IntCounterVec,
    /// `kvrocks_operator_reconcile_duration_seconds{controller}`: how long a reconcile took.
    pub reconcile_duration: HistogramVec,
    /// `kvrocks_operator_reconcile_errors_total{controller,reason}`: failed reconciles by reason.
    pub reconcile_errors: IntCounterVec,
    /// `kvrocks_operator_failovers_total{kind,namespace,name}`: master changes the operator
    /// followed or performed, by custom resource.
    pub failovers: IntCounterVec,
    /// `kvrocks_operator_sentinel_events_total{event}`: sentinel pub/sub events received
    /// (`+switch-master`, `+odown`, ...).
    pub sentinel_events: IntCounterVec,
    /// `kvrocks_operator_slots_migrated_total`: slots moved between cluster shards.
    pub slots_migrated: IntCounter,
    /// `kvrocks_operator_topology_version{namespace,name}`: the cluster topology version last
    /// pushed with `CLUSTERX SETNODES`.
    pub topology_version: IntGaugeVec,
}

impl Metrics {
    /// Creates the metric families and registers them in a fresh registry.
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            opts(
                "reconcile_total",
                "Reconciles by controller and result (success or error).",
            ),
            &["controller", "result"],
        )
        .map_err(metrics_error("reconcile_total"))?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Duration of a reconcile in seconds, by controller.",
            )
            .namespace(NAMESPACE)
            .buckets(RECONCILE_DURATION_BUCKETS.to_vec()),
            &["controller"],
        )
        .map_err(metrics_error("reconcile_duration_seconds"))?;
        let reconcile_errors = IntCounterVec::new(
            opts(
                "reconcile_errors_total",
                "Failed reconciles by controller and error reason.",
            ),
            &["controller", "reason"],
        )
        .map_err(metrics_error("reconcile_errors_total"))?;
        let failovers = IntCounterVec::new(
            opts(
                "failovers_total",
                "Master changes followed or performed, by custom resource.",
            ),
            &["kind", "namespace", "name"],
        )
        .map_err(metrics_error("failovers_total"))?;
        let sentinel_events = IntCounterVec::new(
            opts(
                "sentinel_events_total",
                "Sentinel pub/sub events received, by event.",
            ),
            &["event"],
        )
        .map_err(metrics_error("sentinel_events_total"))?;
        let slots_migrated = IntCounter::with_opts(opts(
            "slots_migrated_total",
            "Slots migrated between cluster shards.",
        ))
        .map_err(metrics_error("slots_migrated_total"))?;
        let topology_version = IntGaugeVec::new(
            opts(
                "topology_version",
                "Cluster topology version last pushed, by KvrocksCluster.",
            ),
            &["namespace", "name"],
        )
        .map_err(metrics_error("topology_version"))?;

        let metrics = Metrics {
            registry,
            reconcile_total,
            reconcile_duration,
            reconcile_errors,
            failovers,
            sentinel_events,
            slots_migrated,
            topology_version,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<()> {
        let collectors: [(&str, Box<dyn prometheus::core::Collector>); 7] = [
            ("reconcile_total", Box::new(self.reconcile_total.clone())),
            (
                "reconcile_duration_seconds",
                Box::new(self.reconcile_duration.clone()),
            ),
            (
                "reconcile_errors_total",
                Box::new(self.reconcile_errors.clone()),
            ),
            ("failovers_total", Box::new(self.failovers.clone())),
            (
                "sentinel_events_total",
                Box::new(self.sentinel_events.clone()),
            ),
            (
                "slots_migrated_total",
                Box::new(self.slots_migrated.clone()),
            ),
            ("topology_version", Box::new(self.topology_version.clone())),
        ];
        for (name, collector) in collectors {
            self.registry
                .register(collector)
                .map_err(metrics_error(&format!("registering {name}")))?;
        }
        Ok(())
    }

    /// The registry, for registering further collectors (e.g. from the binary).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts timing a reconcile of `controller`; the duration is recorded when the guard drops.
    pub fn measure_reconcile(&self, controller: &str) -> ReconcileMeasurer {
        ReconcileMeasurer {
            start: Instant::now(),
            histogram: self.reconcile_duration.with_label_values(&[controller]),
        }
    }

    /// Counts a reconcile of `controller` that returned `Ok`.
    pub fn reconcile_succeeded(&self, controller: &str) {
        self.reconcile_total
            .with_label_values(&[controller, RESULT_SUCCESS])
            .inc();
    }

    /// Counts a reconcile of `controller` that failed, under the error's stable `reason` label.
    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.reconcile_total
            .with_label_values(&[controller, RESULT_ERROR])
            .inc();
        self.reconcile_errors
            .with_label_values(&[controller, reason])
            .inc();
    }

    /// Counts one failover of the custom resource `namespace/name` of `kind`.
    pub fn failover(&self, kind: &str, namespace: &str, name: &str) {
        self.failovers
            .with_label_values(&[kind, namespace, name])
            .inc();
    }

    /// Counts one sentinel pub/sub event such as `+switch-master`.
    pub fn sentinel_event(&self, event: &str) {
        self.sentinel_events.with_label_values(&[event]).inc();
    }

    /// Adds `slots` to the count of migrated slots.
    pub fn slots_migrated(&self, slots: u64) {
        self.slots_migrated.inc_by(slots);
    }

    /// Sets the topology version of the KvrocksCluster `namespace/name`.
    pub fn set_topology_version(&self, namespace: &str, name: &str, version: i64) {
        self.topology_version
            .with_label_values(&[namespace, name])
            .set(version);
    }

    /// Drops the per-object series of a deleted custom resource, so `/metrics` does not keep
    /// reporting objects that are gone. Series that never existed are ignored.
    pub fn forget_object(&self, kind: &str, namespace: &str, name: &str) {
        // `remove_label_values` fails only when the series does not exist, which is fine here.
        let _ = self.failovers.remove_label_values(&[kind, namespace, name]);
        let _ = self
            .topology_version
            .remove_label_values(&[namespace, name]);
    }

    /// Encodes every registered metric in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String> {
        let encoder = TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .map_err(metrics_error("encoding the text format"))
    }

    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_string()
    }
}

/// Times one reconcile and records the duration in the histogram when dropped, so every exit
/// path (including `?` and panics unwinding) is measured.
#[derive(Debug)]
pub struct ReconcileMeasurer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn metrics_error(what: &str) -> impl FnOnce(prometheus::Error) -> Error + use<> {
    let what = what.to_string();
    move |source| Error::Metrics { what, source }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn registers_every_family_of_the_contract() {
        let m = Metrics::new().unwrap();
        m.reconcile_succeeded("sentinel");
        m.reconcile_failed("sentinel", "apply");
        drop(m.measure_reconcile("sentinel"));
        m.failover("KvrocksStandard", "ns", "db");
        m.sentinel_event("+switch-master");
        m.slots_migrated(3);
        m.set_topology_version("ns", "c", 7);
        let text = m.encode().unwrap();
        for name in [
            "kvrocks_operator_reconcile_total",
            "kvrocks_operator_reconcile_duration_seconds",
            "kvrocks_operator_reconcile_errors_total",
            "kvrocks_operator_failovers_total",
            "kvrocks_operator_sentinel_events_total",
            "kvrocks_operator_slots_migrated_total",
            "kvrocks_operator_topology_version",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing in\n{text}"
            );
        }
    }

    #[test]
    fn encodes_counters_with_their_labels() {
        let m = Metrics::new().unwrap();
        m.reconcile_succeeded("standard");
        m.reconcile_succeeded("standard");
        m.reconcile_failed("standard", "apply");
        let text = m.encode().unwrap();
        assert!(text.contains("# TYPE kvrocks_operator_reconcile_total counter"));
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_reconcile_total{controller="standard",result="success"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_reconcile_total{controller="standard",result="error"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_reconcile_errors_total{controller="standard",reason="apply"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn measurer_records_one_observation_on_drop() {
        let m = Metrics::new().unwrap();
        {
            let _timer = m.measure_reconcile("cluster");
        }
        let text = m.encode().unwrap();
        assert!(text.contains("# TYPE kvrocks_operator_reconcile_duration_seconds histogram"));
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_reconcile_duration_seconds_count{controller="cluster"}"#
            ),
            Some(1.0)
        );
        for le in ["0.001", "60", "+Inf"] {
            let prefix = format!(
                r#"kvrocks_operator_reconcile_duration_seconds_bucket{{controller="cluster",le="{le}"}}"#
            );
            assert!(text.contains(&prefix), "bucket le={le} missing in\n{text}");
        }
    }

    #[test]
    fn encodes_object_series_and_forgets_them() {
        let m = Metrics::new().unwrap();
        m.failover("KvrocksCluster", "prod", "orders");
        m.set_topology_version("prod", "orders", 42);
        m.sentinel_event("+odown");
        m.slots_migrated(100);
        let text = m.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_failovers_total{kind="KvrocksCluster",name="orders",namespace="prod"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_topology_version{name="orders",namespace="prod"}"#
            ),
            Some(42.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_sentinel_events_total{event="+odown"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "kvrocks_operator_slots_migrated_total "),
            Some(100.0)
        );

        m.forget_object("KvrocksCluster", "prod", "orders");
        m.forget_object("KvrocksCluster", "prod", "never-seen");
        let text = m.encode().unwrap();
        assert!(!text.contains(r#"name="orders""#), "{text}");
    }

    #[test]
    fn clones_share_series() {
        let m = Metrics::new().unwrap();
        let clone = m.clone();
        clone.reconcile_succeeded("sentinel");
        assert_eq!(
            m.reconcile_total
                .with_label_values(&["sentinel", RESULT_SUCCESS])
                .get(),
            1
        );
        assert!(m.content_type().starts_with("text/plain"));
    }
}
