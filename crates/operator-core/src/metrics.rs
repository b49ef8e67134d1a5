//! The operator's Prometheus metrics: one registry, the metric families of the contract, a
//! guard that times a reconcile, and text-format encoding for `/metrics`.
//!
//! Label values are object names, controller names and fixed reasons only: never anything read
//! from a Secret.

use std::time::Instant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
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

/// One metric family of the operator: the catalogue `/metrics`, the README, the dashboards and
/// the alert rules are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// Full name, with the [`NAMESPACE`] prefix.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Label names, in order.
    pub labels: &'static [&'static str],
    /// What it measures (the `# HELP` text).
    pub help: &'static str,
}

/// Every metric family the operator registers.
pub const CATALOGUE: &[Family] = &[
    Family {
        name: "kvrocks_operator_reconcile_total",
        kind: "counter",
        labels: &["controller", "result"],
        help: "Reconciles by controller and result (success or error).",
    },
    Family {
        name: "kvrocks_operator_reconcile_duration_seconds",
        kind: "histogram",
        labels: &["controller"],
        help: "Duration of a reconcile in seconds, by controller.",
    },
    Family {
        name: "kvrocks_operator_reconcile_errors_total",
        kind: "counter",
        labels: &["controller", "reason"],
        help: "Failed reconciles by controller and error reason.",
    },
    Family {
        name: "kvrocks_operator_failovers_total",
        kind: "counter",
        labels: &["kind", "namespace", "name"],
        help: "Master changes followed or performed, by custom resource.",
    },
    Family {
        name: "kvrocks_operator_sentinel_events_total",
        kind: "counter",
        labels: &["event"],
        help: "Sentinel pub/sub events received, by event.",
    },
    Family {
        name: "kvrocks_operator_slots_migrated_total",
        kind: "counter",
        labels: &["namespace", "name"],
        help: "Slots migrated between the shards of a KvrocksCluster.",
    },
    Family {
        name: "kvrocks_operator_topology_version",
        kind: "gauge",
        labels: &["namespace", "name"],
        help: "Cluster topology version last pushed, by KvrocksCluster.",
    },
    Family {
        name: "kvrocks_operator_leader",
        kind: "gauge",
        labels: &[],
        help: "1 while this replica holds the leader Lease and runs the controllers, else 0.",
    },
    Family {
        name: "kvrocks_operator_resource_ready",
        kind: "gauge",
        labels: &["kind", "namespace", "name"],
        help: "1 when the custom resource's Ready condition is True, else 0.",
    },
    Family {
        name: "kvrocks_operator_shard_master_up",
        kind: "gauge",
        labels: &["kind", "namespace", "name", "shard"],
        help: "1 when the shard (shard 0 of a KvrocksStandard) has a master that answers, else 0.",
    },
    Family {
        name: "kvrocks_operator_cluster_slots_assigned",
        kind: "gauge",
        labels: &["namespace", "name"],
        help: "Slots of a KvrocksCluster owned by a shard master in the topology (16384 when whole).",
    },
    Family {
        name: "kvrocks_operator_migration_in_progress",
        kind: "gauge",
        labels: &["namespace", "name"],
        help: "1 while a slot migration of a KvrocksCluster is running, else 0.",
    },
    Family {
        name: "kvrocks_operator_sentinel_ready_replicas",
        kind: "gauge",
        labels: &["namespace", "name"],
        help: "Sentinel pods of a KvrocksSentinel that are ready.",
    },
    Family {
        name: "kvrocks_operator_sentinel_quorum",
        kind: "gauge",
        labels: &["namespace", "name"],
        help: "Quorum configured on a KvrocksSentinel's monitors (replicas / 2 + 1).",
    },
];

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
    /// `kvrocks_operator_slots_migrated_total{namespace,name}`: slots moved between cluster shards.
    pub slots_migrated: IntCounterVec,
    /// `kvrocks_operator_topology_version{namespace,name}`: the cluster topology version last
    /// pushed with `CLUSTERX SETNODES`.
    pub topology_version: IntGaugeVec,
    /// `kvrocks_operator_leader`: 1 while this replica leads.
    pub leader: IntGauge,
    /// `kvrocks_operator_resource_ready{kind,namespace,name}`.
    pub resource_ready: IntGaugeVec,
    /// `kvrocks_operator_shard_master_up{kind,namespace,name,shard}`.
    pub shard_master_up: IntGaugeVec,
    /// `kvrocks_operator_cluster_slots_assigned{namespace,name}`.
    pub cluster_slots_assigned: IntGaugeVec,
    /// `kvrocks_operator_migration_in_progress{namespace,name}`.
    pub migration_in_progress: IntGaugeVec,
    /// `kvrocks_operator_sentinel_ready_replicas{namespace,name}`.
    pub sentinel_ready_replicas: IntGaugeVec,
    /// `kvrocks_operator_sentinel_quorum{namespace,name}`.
    pub sentinel_quorum: IntGaugeVec,
    /// Shards with a `shard_master_up` series, by (kind, namespace, name): series of shards that
    /// went away are removed.
    shards: Arc<Mutex<HashMap<ObjectKey, usize>>>,
}

/// (kind, namespace, name) of a custom resource.
type ObjectKey = (String, String, String);

fn family(name: &str) -> Result<&'static Family> {
    CATALOGUE
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| Error::Metrics {
            what: format!("{name} is not in the catalogue"),
            source: prometheus::Error::Msg(name.to_string()),
        })
}

/// `Opts` of the catalogue family `short` (the name without the prefix).
fn opts_of(short: &str) -> Result<(Opts, &'static [&'static str])> {
    let f = family(&format!("{NAMESPACE}_{short}"))?;
    Ok((Opts::new(short, f.help).namespace(NAMESPACE), f.labels))
}

fn counter_vec(short: &str) -> Result<IntCounterVec> {
    let (opts, labels) = opts_of(short)?;
    IntCounterVec::new(opts, labels).map_err(metrics_error(short))
}

fn gauge_vec(short: &str) -> Result<IntGaugeVec> {
    let (opts, labels) = opts_of(short)?;
    IntGaugeVec::new(opts, labels).map_err(metrics_error(short))
}

impl Metrics {
    /// Creates the metric families and registers them in a fresh registry.
    pub fn new() -> Result<Self> {
        let (duration_opts, duration_labels) = opts_of("reconcile_duration_seconds")?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::from(duration_opts).buckets(RECONCILE_DURATION_BUCKETS.to_vec()),
            duration_labels,
        )
        .map_err(metrics_error("reconcile_duration_seconds"))?;
        let (leader_opts, _) = opts_of("leader")?;
        let metrics = Metrics {
            registry: Registry::new(),
            reconcile_total: counter_vec("reconcile_total")?,
            reconcile_duration,
            reconcile_errors: counter_vec("reconcile_errors_total")?,
            failovers: counter_vec("failovers_total")?,
            sentinel_events: counter_vec("sentinel_events_total")?,
            slots_migrated: counter_vec("slots_migrated_total")?,
            topology_version: gauge_vec("topology_version")?,
            leader: IntGauge::with_opts(leader_opts).map_err(metrics_error("leader"))?,
            resource_ready: gauge_vec("resource_ready")?,
            shard_master_up: gauge_vec("shard_master_up")?,
            cluster_slots_assigned: gauge_vec("cluster_slots_assigned")?,
            migration_in_progress: gauge_vec("migration_in_progress")?,
            sentinel_ready_replicas: gauge_vec("sentinel_ready_replicas")?,
            sentinel_quorum: gauge_vec("sentinel_quorum")?,
            shards: Arc::default(),
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<()> {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.reconcile_total.clone()),
            Box::new(self.reconcile_duration.clone()),
            Box::new(self.reconcile_errors.clone()),
            Box::new(self.failovers.clone()),
            Box::new(self.sentinel_events.clone()),
            Box::new(self.slots_migrated.clone()),
            Box::new(self.topology_version.clone()),
            Box::new(self.leader.clone()),
            Box::new(self.resource_ready.clone()),
            Box::new(self.shard_master_up.clone()),
            Box::new(self.cluster_slots_assigned.clone()),
            Box::new(self.migration_in_progress.clone()),
            Box::new(self.sentinel_ready_replicas.clone()),
            Box::new(self.sentinel_quorum.clone()),
        ];
        for collector in collectors {
            let name = collector
                .desc()
                .first()
                .map(|d| d.fq_name.clone())
                .unwrap_or_default();
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

    /// Adds `slots` to the count of slots migrated in the KvrocksCluster `namespace/name`.
    pub fn slots_migrated(&self, namespace: &str, name: &str, slots: u64) {
        self.slots_migrated
            .with_label_values(&[namespace, name])
            .inc_by(slots);
    }

    /// Sets the topology version of the KvrocksCluster `namespace/name`.
    pub fn set_topology_version(&self, namespace: &str, name: &str, version: i64) {
        self.topology_version
            .with_label_values(&[namespace, name])
            .set(version);
    }

    /// Says whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records the Ready condition of a custom resource from the conditions it was given.
    pub fn set_ready(&self, kind: &str, namespace: &str, name: &str, conditions: &[Condition]) {
        let ready = conditions
            .iter()
            .any(|c| c.type_ == crate::conditions::READY && c.status == "True");
        self.resource_ready
            .with_label_values(&[kind, namespace, name])
            .set(i64::from(ready));
    }

    /// Records, shard by shard, whether each has a master that answers; series of shards beyond
    /// `up.len()` (after a scale-in) are removed.
    pub fn set_shard_masters(&self, kind: &str, namespace: &str, name: &str, up: &[bool]) {
        for (shard, up) in up.iter().enumerate() {
            self.shard_master_up
                .with_label_values(&[kind, namespace, name, &shard.to_string()])
                .set(i64::from(*up));
        }
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        let before = {
            let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
            shards.insert(key, up.len()).unwrap_or(0)
        };
        for shard in up.len()..before {
            let _ = self.shard_master_up.remove_label_values(&[
                kind,
                namespace,
                name,
                &shard.to_string(),
            ]);
        }
    }

    /// Records the slots owned by a master and whether a migration runs, for a KvrocksCluster.
    pub fn set_cluster_slots(&self, namespace: &str, name: &str, assigned: u32, migrating: bool) {
        self.cluster_slots_assigned
            .with_label_values(&[namespace, name])
            .set(i64::from(assigned));
        self.migration_in_progress
            .with_label_values(&[namespace, name])
            .set(i64::from(migrating));
    }

    /// Records the ready sentinels and the quorum of a KvrocksSentinel.
    pub fn set_sentinel(&self, namespace: &str, name: &str, ready: i32, quorum: i32) {
        self.sentinel_ready_replicas
            .with_label_values(&[namespace, name])
            .set(i64::from(ready));
        self.sentinel_quorum
            .with_label_values(&[namespace, name])
            .set(i64::from(quorum));
    }

    /// Drops the per-object series of a deleted custom resource, so `/metrics` does not keep
    /// reporting objects that are gone. Series that never existed are ignored.
    pub fn forget_object(&self, kind: &str, namespace: &str, name: &str) {
        // `remove_label_values` fails only when the series does not exist, which is fine here.
        let _ = self.failovers.remove_label_values(&[kind, namespace, name]);
        let _ = self
            .resource_ready
            .remove_label_values(&[kind, namespace, name]);
        self.set_shard_masters(kind, namespace, name, &[]);
        if let Ok(mut shards) = self.shards.lock() {
            shards.remove(&(kind.to_string(), namespace.to_string(), name.to_string()));
        }
        let ns_name = [namespace, name];
        for family in [
            &self.topology_version,
            &self.cluster_slots_assigned,
            &self.migration_in_progress,
            &self.sentinel_ready_replicas,
            &self.sentinel_quorum,
        ] {
            let _ = family.remove_label_values(&ns_name);
        }
        let _ = self.slots_migrated.remove_label_values(&ns_name);
    }

    /// Encodes every registered metric in the Prometheus text exposition format.
    ///
    /// A family without series yet (no failover so far, no cluster) is still announced with its
    /// `# HELP` and `# TYPE` lines, so what the operator exports can be read off `/metrics` at
    /// any time.
    pub fn encode(&self) -> Result<String> {
        let encoder = TextEncoder::new();
        let families = self.registry.gather();
        let mut text = encoder
            .encode_to_string(&families)
            .map_err(metrics_error("encoding the text format"))?;
        for f in CATALOGUE {
            if !families.iter().any(|g| g.name() == f.name) {
                text.push_str(&format!(
                    "# HELP {} {}\n# TYPE {} {}\n",
                    f.name, f.help, f.name, f.kind
                ));
            }
        }
        Ok(text)
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
    fn announces_every_catalogued_family_before_any_series_exists() {
        let m = Metrics::new().unwrap();
        let text = m.encode().unwrap();
        for f in CATALOGUE {
            assert!(
                text.contains(&format!("# TYPE {} {}\n", f.name, f.kind)),
                "{} missing in\n{text}",
                f.name
            );
            assert!(text.contains(&format!("# HELP {} {}\n", f.name, f.help)));
        }
        // Once a series exists the family is written by the encoder, exactly once.
        m.failover("standard", "ns", "db");
        let text = m.encode().unwrap();
        assert_eq!(
            text.matches("# TYPE kvrocks_operator_failovers_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn the_catalogue_is_what_the_registry_holds() {
        let m = Metrics::new().unwrap();
        let mut registered: Vec<(String, Vec<String>)> = Vec::new();
        // Descriptors carry the names and label names even without series.
        for c in [
            &m.reconcile_total as &dyn prometheus::core::Collector,
            &m.reconcile_duration,
            &m.reconcile_errors,
            &m.failovers,
            &m.sentinel_events,
            &m.slots_migrated,
            &m.topology_version,
            &m.leader,
            &m.resource_ready,
            &m.shard_master_up,
            &m.cluster_slots_assigned,
            &m.migration_in_progress,
            &m.sentinel_ready_replicas,
            &m.sentinel_quorum,
        ] {
            for d in c.desc() {
                registered.push((d.fq_name.clone(), d.variable_labels.clone()));
            }
        }
        assert_eq!(registered.len(), CATALOGUE.len());
        for f in CATALOGUE {
            let labels: Vec<String> = f.labels.iter().map(|l| l.to_string()).collect();
            assert!(
                registered.contains(&(f.name.to_string(), labels)),
                "{} with labels {:?} is not registered",
                f.name,
                f.labels
            );
        }
    }

    #[test]
    fn shard_series_follow_the_shard_count_and_go_with_the_object() {
        let m = Metrics::new().unwrap();
        m.set_shard_masters("cluster", "ns", "c", &[true, false, true]);
        let text = m.encode().unwrap();
        let shard = |i: u32| {
            format!(
                r#"kvrocks_operator_shard_master_up{{kind="cluster",name="c",namespace="ns",shard="{i}"}}"#
            )
        };
        assert_eq!(line_value(&text, &shard(1)), Some(0.0));
        assert_eq!(line_value(&text, &shard(2)), Some(1.0));
        m.set_shard_masters("cluster", "ns", "c", &[true]);
        let text = m.encode().unwrap();
        assert_eq!(line_value(&text, &shard(0)), Some(1.0));
        assert!(
            !text.contains(&shard(1)) && !text.contains(&shard(2)),
            "{text}"
        );

        m.set_cluster_slots("ns", "c", 16384, true);
        m.set_ready(
            "cluster",
            "ns",
            "c",
            &[crate::conditions::ready(
                crate::conditions::ConditionStatus::True,
                "TopologyInSync",
                "ok",
                Some(1),
            )],
        );
        let text = m.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_cluster_slots_assigned{name="c",namespace="ns"}"#
            ),
            Some(16384.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_resource_ready{kind="cluster",name="c",namespace="ns"}"#
            ),
            Some(1.0)
        );
        m.forget_object("cluster", "ns", "c");
        let text = m.encode().unwrap();
        assert!(!text.contains(r#"name="c""#), "{text}");
    }

    #[test]
    fn the_readme_lists_every_family_with_its_type_and_labels() {
        let readme = include_str!("../../../README.md");
        for f in CATALOGUE {
            let labels = f
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let row = format!("| `{}` | {} | {labels} |", f.name, f.kind);
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
        let rows = readme
            .lines()
            .filter(|l| l.starts_with("| `kvrocks_operator_"))
            .count();
        assert_eq!(
            rows,
            CATALOGUE.len(),
            "README.md lists metrics the operator does not have"
        );
    }

    #[test]
    fn leader_and_sentinel_gauges() {
        let m = Metrics::new().unwrap();
        m.set_leader(true);
        m.set_sentinel("ns", "s", 2, 2);
        let text = m.encode().unwrap();
        assert_eq!(line_value(&text, "kvrocks_operator_leader "), Some(1.0));
        assert_eq!(
            line_value(
                &text,
                r#"kvrocks_operator_sentinel_ready_replicas{name="s",namespace="ns"}"#
            ),
            Some(2.0)
        );
        m.set_leader(false);
        assert_eq!(
            line_value(&m.encode().unwrap(), "kvrocks_operator_leader "),
            Some(0.0)
        );
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
        m.slots_migrated("prod", "orders", 100);
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
            line_value(
                &text,
                r#"kvrocks_operator_slots_migrated_total{name="orders",namespace="prod"}"#
            ),
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
