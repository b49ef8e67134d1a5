//! `make bench`: speed, memory and API traffic of the operator on the local testbed, measured,
//! printed, never asserted. It starts a testbed and the operator (the debug build `cargo build -p
//! kvrocks-operator` made) under an identity of its own, whose requests the apiserver's audit log
//! records (Metadata level, that identity only), then measures:
//! - how long a sentinel group of 3 and a standard of 3 take to become Ready;
//! - steady states, each a window of 60 s that starts 15 s after everything is Ready: the
//!   operator's CPU (s per minute), resident memory, reconciles, and its API requests per minute
//!   by verb, reads (get/list/watch) and writes (create/update/patch/delete) apart, its Lease
//!   renewals apart (the target is 0 writes per minute once steady): for (a) that standard of 3
//!   with its sentinel group, (b) a KvrocksCluster of 3 shards x (1 master + 1 replica);
//! - a failover: the master's kvrocks process killed, until status names a new master and until
//!   the standard is Ready again;
//! - ten more standards (1 pod each) at once: time until all are Ready, memory after;
//! - scale, on the same operator, in two steps (40 %, then all): `--standards` KvrocksStandards
//!   of 1 pod sharing the sentinel group and `--clusters` KvrocksClusters of 3x1 (env
//!   `BENCH_STANDARDS`, `BENCH_CLUSTERS`; 50 and 5 by default): time until all are Ready, then a
//!   steady window as above. A step that does not fit the nodes' pod slots (kubelet maxPods) or
//!   this machine's memory is cut to what fits, and the table says so;
//! - the reconcile duration quantiles from the operator's histogram.
//!
//! Needs a kvrocks binary (`KVROCKS_BIN`): the testbed builds the apache/kvrocks image from it.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PostParams};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::operator::{Operator, start_operator_as};
use kvrocks_e2e::pki::Pki;
use kvrocks_e2e::{PodRef, Testbed, controlplane, wait};
use serde_json::json;

/// The sentinel group, the standards (db, s0.., x0..).
const NS: &str = "bench";
/// The clusters (kc, c0..).
const KC_NS: &str = "bench-kc";
const READY: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(15);
const STEADY: Duration = Duration::from_secs(60);
const MORE_STANDARDS: usize = 10;
/// The operator's username (its client certificate's CN): what the audit log records.
const OPERATOR_USER: &str = "kvrocks-operator-bench";
/// Pods of one 3x1 cluster.
const CLUSTER_PODS: usize = 6;
/// Pod slots left free for whatever else may want one.
const SLOT_MARGIN: usize = 3;
/// Memory this machine keeps free: a step stops growing (or waiting) below it.
const MEMORY_RESERVE_MIB: u64 = 1536;

/// Speed, memory and API traffic of the operator on the local testbed.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Cli {
    /// KvrocksStandards (1 pod each, one shared sentinel group) for the scale part.
    #[arg(long, env = "BENCH_STANDARDS", default_value_t = 50)]
    standards: usize,
    /// KvrocksClusters (3 shards x 1 replica: 6 pods each) for the scale part.
    #[arg(long, env = "BENCH_CLUSTERS", default_value_t = 5)]
    clusters: usize,
}

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn standard_ready(s: &KvrocksStandard) -> bool {
    s.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
}

/// Ready, with 3 shards of 2 nodes in status.
fn cluster_ready(c: &KvrocksCluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        is_ready(&s.conditions)
            && s.shards.len() == 3
            && s.shards.iter().all(|s| s.nodes.len() == 2)
    })
}

/// Resident memory (KiB) and CPU time (s) of a process, from /proc.
fn usage(pid: u32) -> Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `)` closing the command name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Ok((rss, ticks as f64 / 100.0))
}

/// `MemAvailable` of this machine, MiB.
fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn sum_of(page: &str, prefix: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Quantile `q` of the reconcile duration histogram over all controllers (upper bucket bound).
fn quantile(page: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in page
        .lines()
        .filter(|l| l.starts_with("kvrocks_operator_reconcile_duration_seconds_bucket{"))
    {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

async fn wait_ready<K>(api: &Api<K>, name: &str, ready: impl Fn(&K) -> bool) -> Result<Duration>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let started = Instant::now();
    wait::for_object(api, name, READY, "Ready", ready).await?;
    Ok(started.elapsed())
}

fn standard(name: &str, replicas: i32) -> Result<KvrocksStandard> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "sentinel": {"name": "sentinel"},
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
    }))?)
}

/// A KvrocksCluster of 3 shards, each a master and 1 replica, on emptyDirs.
fn cluster(name: &str) -> Result<KvrocksCluster> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
        "metadata": {"name": name},
        "spec": {"shards": 3, "replicasPerShard": 1,
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
    }))?)
}

/// The operator's API requests in one window, from the apiserver's audit log.
#[derive(Default, Debug)]
struct ApiCounts {
    /// By verb, in the scenario's scope (its namespace and cluster-wide requests), Leases apart.
    verbs: BTreeMap<String, u64>,
    /// Requests in other namespaces (other scenarios still running), Leases apart.
    elsewhere: u64,
    /// Requests on Leases (leader election): renewals are writes, by design.
    lease: u64,
    /// In-scope writes by `verb resource[/subresource] namespace/name`.
    writes: BTreeMap<String, u64>,
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl ApiCounts {
    fn verb(&self, verb: &str) -> u64 {
        self.verbs.get(verb).copied().unwrap_or(0)
    }

    fn writes_total(&self) -> u64 {
        WRITE_VERBS.iter().map(|v| self.verb(v)).sum()
    }
}

/// The audit log of the operator's requests; a window is two byte offsets of it.
struct Audit {
    path: PathBuf,
}

impl Audit {
    fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Counts the requests logged between two marks; `scope`: a namespace, or `None` for all.
    fn count(&self, from: u64, to: u64, scope: Option<&str>) -> Result<ApiCounts> {
        let mut file = std::fs::File::open(&self.path)
            .with_context(|| format!("open {}", self.path.display()))?;
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.take(to.saturating_sub(from)).read_to_end(&mut bytes)?;
        let mut counts = ApiCounts::default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            // A line cut by a mark does not parse, and is skipped.
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let text = |pointer: &str| event.pointer(pointer).and_then(|v| v.as_str());
            if text("/user/username") != Some(OPERATOR_USER) {
                continue;
            }
            let verb = text("/verb").unwrap_or("?");
            // One event per request: a watch counts when its response starts, the rest when
            // they complete.
            let counted = match text("/stage") {
                Some("ResponseStarted") => verb == "watch",
                Some("ResponseComplete") => verb != "watch",
                _ => false,
            };
            if !counted {
                continue;
            }
            let resource = text("/objectRef/resource").unwrap_or("?");
            let namespace = text("/objectRef/namespace");
            if resource == "leases" {
                counts.lease += 1;
                continue;
            }
            if let (Some(scope), Some(namespace)) = (scope, namespace)
                && scope != namespace
            {
                counts.elsewhere += 1;
                continue;
            }
            *counts.verbs.entry(verb.to_owned()).or_default() += 1;
            if WRITE_VERBS.contains(&verb) {
                let sub = text("/objectRef/subresource")
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                let target = format!(
                    "{verb} {resource}{sub} {}/{}",
                    namespace.unwrap_or("-"),
                    text("/objectRef/name").unwrap_or("-")
                );
                *counts.writes.entry(target).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

/// One steady-state window.
struct Steady {
    scenario: String,
    pods: usize,
    ready: Option<Duration>,
    cpu_per_min: f64,
    rss_mib: u64,
    reconciles_per_min: f64,
    /// Requests per minute need the window's length.
    window: Duration,
    api: Option<ApiCounts>,
    /// Objects the operator writes whose resourceVersion moved in the window: the writes that
    /// changed something (a server-side apply that changes nothing leaves it alone).
    changed: Option<usize>,
}

/// `kind namespace/name` -> resourceVersion of every object the operator writes, in the bench's
/// namespaces.
type Versions = BTreeMap<String, String>;

async fn add_versions<K>(client: &kube::Client, versions: &mut Versions) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    for object in api.list_metadata(&ListParams::default()).await?.items {
        let meta = object.metadata;
        let namespace = meta.namespace.unwrap_or_default();
        if !namespace.starts_with(NS) {
            continue;
        }
        versions.insert(
            format!(
                "{} {namespace}/{}",
                K::kind(&()),
                meta.name.unwrap_or_default()
            ),
            meta.resource_version.unwrap_or_default(),
        );
    }
    Ok(())
}

async fn versions(client: &kube::Client) -> Result<Versions> {
    let mut versions = Versions::new();
    add_versions::<ConfigMap>(client, &mut versions).await?;
    add_versions::<Secret>(client, &mut versions).await?;
    add_versions::<Service>(client, &mut versions).await?;
    add_versions::<PodDisruptionBudget>(client, &mut versions).await?;
    add_versions::<StatefulSet>(client, &mut versions).await?;
    add_versions::<KvrocksSentinel>(client, &mut versions).await?;
    add_versions::<KvrocksStandard>(client, &mut versions).await?;
    add_versions::<KvrocksCluster>(client, &mut versions).await?;
    Ok(versions)
}

/// How many objects were created, changed or deleted between two snapshots.
fn changed(before: &Versions, after: &Versions) -> usize {
    let moved = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .count();
    moved + before.keys().filter(|k| !after.contains_key(*k)).count()
}

struct Bench {
    client: kube::Client,
    operator: Operator,
    pid: u32,
    audit: Audit,
    rows: Vec<(String, String)>,
    steady: Vec<Steady>,
    notes: Vec<String>,
}

impl Bench {
    fn row(&mut self, k: &str, v: String) {
        println!("  {k:<58} {v}");
        self.rows.push((k.to_owned(), v));
    }

    fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// Waits `SETTLE`, then measures a `STEADY` window.
    async fn steady(
        &mut self,
        scenario: &str,
        scope: Option<&str>,
        ready: Option<Duration>,
    ) -> Result<()> {
        tokio::time::sleep(SETTLE).await;
        let page = self.operator.metrics().await?;
        let (_, cpu_before) = usage(self.pid)?;
        let mark = self.audit.mark();
        let started = Instant::now();
        let versions_before = versions(&self.client).await;
        tokio::time::sleep(STEADY).await;
        let (rss, cpu_after) = usage(self.pid)?;
        let end = self.audit.mark();
        let versions_after = versions(&self.client).await;
        let window = started.elapsed();
        let after = self.operator.metrics().await?;
        let minutes = window.as_secs_f64() / 60.0;
        let reconciles = sum_of(&after, "kvrocks_operator_reconcile_total{")
            - sum_of(&page, "kvrocks_operator_reconcile_total{");
        let api = match self.audit.count(mark, end, scope) {
            Ok(api) => Some(api),
            Err(e) => {
                self.note(format!("{scenario}: no API counts ({e:#})"));
                None
            }
        };
        let steady = Steady {
            scenario: scenario.to_owned(),
            pods: self.pods().await?.len(),
            ready,
            cpu_per_min: (cpu_after - cpu_before) / minutes,
            rss_mib: rss / 1024,
            reconciles_per_min: reconciles / minutes,
            window,
            api,
            changed: match (versions_before, versions_after) {
                (Ok(before), Ok(after)) => Some(changed(&before, &after)),
                _ => None,
            },
        };
        println!(
            "  steady {scenario}: CPU {:.2} s/min, RSS {} MiB, {:.0} reconciles/min, {}, {}",
            steady.cpu_per_min,
            steady.rss_mib,
            steady.reconciles_per_min,
            steady.api.as_ref().map_or("no API counts".to_owned(), |a| {
                format!("{:.1} writes/min", a.writes_total() as f64 / minutes)
            }),
            steady
                .changed
                .map_or("?".to_owned(), |n| format!("{n} objects changed")),
        );
        self.steady.push(steady);
        Ok(())
    }

    /// Pods of the testbed that are not done (all namespaces).
    async fn pods(&self) -> Result<Vec<Pod>> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        Ok(pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect())
    }

    /// Pod slots of all nodes (kubelet maxPods, as allocatable) and pods that hold one now.
    async fn pod_slots(&self) -> Result<(usize, usize, usize)> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let nodes = nodes.list(&ListParams::default()).await?.items;
        let slots = nodes
            .iter()
            .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get("pods"))
            .filter_map(|q| q.0.parse::<usize>().ok())
            .sum();
        let pods = self.pods().await?.len();
        Ok((slots, pods, nodes.len()))
    }

    /// Why pods are still Pending: the distinct scheduler messages and waiting reasons.
    async fn pending_reasons(&self) -> Result<String> {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for pod in self.pods().await? {
            let Some(status) = pod.status else { continue };
            let unscheduled = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False");
            let reason = if let Some(c) = unscheduled {
                format!("unscheduled: {}", c.message.clone().unwrap_or_default())
            } else if let Some(waiting) = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref())
            {
                format!("waiting: {}", waiting.reason.clone().unwrap_or_default())
            } else if status.phase.as_deref() == Some("Pending") {
                "pending".to_owned()
            } else if status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "False")
            {
                "running, not Ready".to_owned()
            } else {
                continue;
            };
            *reasons.entry(reason).or_default() += 1;
        }
        Ok(if reasons.is_empty() {
            "every pod runs and is Ready".to_owned()
        } else {
            reasons
                .iter()
                .map(|(r, n)| format!("{n} pods {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // The apiserver audits the operator's identity, and only that one.
    controlplane::audit_requests_of(&[OPERATOR_USER]);
    let testbed = Testbed::shared().await?;
    if !testbed.data_plane().is_real() {
        bail!("no kvrocks binary (set KVROCKS_BIN): the testbed has no apache/kvrocks image");
    }
    testbed.install_crds().await?;
    let client = testbed.client().await?;
    println!("bench on {}", testbed.data_plane().describe());
    // The operator's own identity (a client certificate in system:masters, like the admin).
    let pki = Pki::open(&testbed.root().join("pki"));
    pki.client("bench-operator", OPERATOR_USER, Some("system:masters"))?;
    let server = format!("https://127.0.0.1:{}", testbed.state().ports.apiserver);
    let kubeconfig = kvrocks_e2e::kubeconfig::write(
        testbed.root(),
        "bench-operator",
        &server,
        &pki,
        "bench-operator",
    )?;
    let started = Instant::now();
    let Some(operator) = start_operator_as(testbed, &kubeconfig, &[]).await? else {
        bail!("no operator binary: cargo build -p kvrocks-operator");
    };
    let pid = operator.pid().context("operator pid")?;
    let mut bench = Bench {
        client: client.clone(),
        operator,
        pid,
        audit: Audit {
            path: controlplane::audit_log_path(testbed.root()),
        },
        rows: Vec::new(),
        steady: Vec::new(),
        notes: Vec::new(),
    };
    bench.row(
        "operator start until leading",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    );
    let (rss, _) = usage(pid)?;
    bench.row(
        "operator RSS, idle with no resources",
        format!("{} MiB", rss / 1024),
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, KC_NS] {
        let _ = namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await;
    }
    let sentinels: Api<KvrocksSentinel> = Api::namespaced(client.clone(), NS);
    let standards: Api<KvrocksStandard> = Api::namespaced(client.clone(), NS);
    let clusters: Api<KvrocksCluster> = Api::namespaced(client.clone(), KC_NS);
    sentinels
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksSentinel",
                "metadata": {"name": "sentinel"},
                "spec": {"replicas": 3, "downAfterMilliseconds": 5000,
                         "failoverTimeoutMilliseconds": 3000}
            }))?,
        )
        .await?;
    let t = wait_ready(&sentinels, "sentinel", |s: &KvrocksSentinel| {
        s.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
    })
    .await?;
    bench.row(
        "KvrocksSentinel (3) created -> Ready",
        format!("{:.1} s", t.as_secs_f64()),
    );
    let created = Instant::now();
    standards
        .create(&PostParams::default(), &standard("db", 3)?)
        .await?;
    let t = wait_ready(&standards, "db", standard_ready).await?;
    bench.row(
        "KvrocksStandard (3) created -> Ready",
        format!("{:.1} s", t.as_secs_f64()),
    );

    // (a) Steady state: the standard of 3 and its sentinel group.
    bench
        .steady(
            "(a) standard 3 + sentinel 3",
            Some(NS),
            Some(created.elapsed()),
        )
        .await?;
    let a = bench.steady.last().context("a steady window")?;
    let (cpu, reconciles, rss) = (
        a.cpu_per_min * a.window.as_secs_f64() / 60.0,
        a.reconciles_per_min * a.window.as_secs_f64() / 60.0,
        a.rss_mib,
    );
    bench.row(
        &format!("steady {} s: operator CPU", STEADY.as_secs()),
        format!(
            "{cpu:.2} s ({:.2}% of one core)",
            100.0 * cpu / STEADY.as_secs_f64()
        ),
    );
    bench.row(
        &format!("steady {} s: reconciles", STEADY.as_secs()),
        format!("{reconciles:.0}"),
    );
    bench.row(
        "operator RSS, 1 sentinel group + 1 standard",
        format!("{rss} MiB"),
    );
    let master = standards
        .get("db")
        .await?
        .status
        .and_then(|s| s.master)
        .map(|m| m.pod)
        .context("no master in status")?;
    // What one kvrocks pod costs this machine: the size of a step that still fits.
    let kvrocks_rss_mib = match testbed
        .container_pid(&PodRef::new(NS, &master), "kvrocks")
        .await
        .map_err(anyhow::Error::from)
        .and_then(usage)
    {
        Ok((rss, _)) => {
            bench.row(
                "kvrocks RSS, one master of db",
                format!("{} MiB", rss / 1024),
            );
            rss / 1024
        }
        Err(e) => {
            bench.note(format!("no RSS of the kvrocks master: {e:#}"));
            64
        }
    };

    // Failover.
    let killed = Instant::now();
    testbed
        .kill_container(&PodRef::new(NS, &master), "kvrocks")
        .await?;
    wait::for_object(&standards, "db", READY, "a new master", |s| {
        s.status
            .as_ref()
            .and_then(|s| s.master.as_ref())
            .is_some_and(|m| m.pod != master)
    })
    .await?;
    bench.row(
        "failover: master killed -> new master in status",
        format!("{:.1} s (down-after 5 s)", killed.elapsed().as_secs_f64()),
    );
    wait::for_object(&standards, "db", READY, "Ready", standard_ready).await?;
    bench.row(
        "failover: master killed -> Ready again",
        format!("{:.1} s", killed.elapsed().as_secs_f64()),
    );

    // (b) Steady state: a 3x1 cluster, in a namespace of its own.
    let created = Instant::now();
    clusters
        .create(&PostParams::default(), &cluster("kc")?)
        .await?;
    let t = wait_ready(&clusters, "kc", cluster_ready).await?;
    bench.row(
        "KvrocksCluster (3x1, 6 pods) created -> Ready",
        format!("{:.1} s", t.as_secs_f64()),
    );
    bench
        .steady(
            "(b) cluster 3x1 (+ (a) elsewhere)",
            Some(KC_NS),
            Some(created.elapsed()),
        )
        .await?;

    // Ten more standards at once.
    let burst = Instant::now();
    for i in 0..MORE_STANDARDS {
        standards
            .create(&PostParams::default(), &standard(&format!("s{i}"), 1)?)
            .await?;
    }
    for i in 0..MORE_STANDARDS {
        wait::for_object(&standards, &format!("s{i}"), READY, "Ready", standard_ready).await?;
    }
    bench.row(
        &format!("{MORE_STANDARDS} more standards (1 pod each) created -> all Ready"),
        format!("{:.1} s", burst.elapsed().as_secs_f64()),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss, _) = usage(pid)?;
    bench.row(
        &format!(
            "operator RSS, 1 sentinel group + {} standards + 1 cluster",
            MORE_STANDARDS + 1
        ),
        format!("{} MiB", rss / 1024),
    );

    // Scale, in steps on the same operator.
    scale(&mut bench, &cli, &standards, &clusters, kvrocks_rss_mib).await?;

    let page = bench.operator.metrics().await?;
    for q in [0.5, 0.9, 0.99] {
        bench.row(
            &format!("reconcile duration p{:.0} (bucket bound)", q * 100.0),
            quantile(&page, q).map_or("n/a".into(), |s| format!("<= {s} s")),
        );
    }
    bench.row(
        "reconciles in all",
        format!("{:.0}", sum_of(&page, "kvrocks_operator_reconcile_total{")),
    );
    report(&bench);
    Ok(())
}

/// The scale part: steps of 40 % and then all of `--standards` and `--clusters`, each created at
/// once, waited for until all are Ready, then measured steady.
async fn scale(
    bench: &mut Bench,
    cli: &Cli,
    standards: &Api<KvrocksStandard>,
    clusters: &Api<KvrocksCluster>,
    kvrocks_rss_mib: u64,
) -> Result<()> {
    let mut steps = vec![(cli.standards * 2 / 5, cli.clusters * 2 / 5)];
    steps.push((cli.standards, cli.clusters));
    steps.retain(|&(s, c)| s + c > 0);
    steps.dedup();
    let (mut have_s, mut have_c) = (0usize, 0usize);
    for (want_s, want_c) in steps {
        let (mut add_s, mut add_c) = (want_s - have_s, want_c - have_c);
        if add_s + add_c == 0 {
            continue;
        }
        // Does it fit the pod slots and the memory?
        let (slots, used, nodes) = bench.pod_slots().await?;
        let free_slots = slots.saturating_sub(used + SLOT_MARGIN);
        let per_pod_mib = kvrocks_rss_mib + 16;
        let free_mem = mem_available_mib().saturating_sub(MEMORY_RESERVE_MIB);
        let fit_pods = free_slots.min(usize::try_from(free_mem / per_pod_mib).unwrap_or(0));
        let need = add_s + add_c * CLUSTER_PODS;
        if need > fit_pods {
            let why = if free_slots <= fit_pods {
                format!(
                    "pod slots: {slots} on {nodes} nodes (kubelet maxPods), {used} taken, \
                     {SLOT_MARGIN} kept free"
                )
            } else {
                format!(
                    "memory: {free_mem} MiB available beyond a reserve of {MEMORY_RESERVE_MIB} \
                     MiB, about {per_pod_mib} MiB per kvrocks pod"
                )
            };
            // Cut both in proportion.
            let fraction = fit_pods as f64 / need as f64;
            add_s = (add_s as f64 * fraction).floor() as usize;
            add_c = (add_c as f64 * fraction).floor() as usize;
            bench.note(format!(
                "step {want_s}+{want_c} does not fit ({need} more pods, {fit_pods} fit: {why}); \
                 cut to {}+{}",
                have_s + add_s,
                have_c + add_c
            ));
            if add_s + add_c == 0 {
                break;
            }
        }
        let (to_s, to_c) = (have_s + add_s, have_c + add_c);
        let started = Instant::now();
        for i in have_s..to_s {
            standards
                .create(&PostParams::default(), &standard(&format!("x{i}"), 1)?)
                .await?;
        }
        for i in have_c..to_c {
            clusters
                .create(&PostParams::default(), &cluster(&format!("c{i}"))?)
                .await?;
        }
        let deadline = READY + Duration::from_secs(3 * (add_s + add_c * 3) as u64);
        let (ready_s, ready_c) = loop {
            let ready_s = standards
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|s| {
                    s.metadata.name.as_deref().is_some_and(|n| {
                        n.strip_prefix('x')
                            .and_then(|i| i.parse::<usize>().ok())
                            .is_some_and(|i| i < to_s)
                    }) && standard_ready(s)
                })
                .count();
            let ready_c = clusters
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|c| {
                    c.metadata.name.as_deref().is_some_and(|n| {
                        n.strip_prefix('c')
                            .and_then(|i| i.parse::<usize>().ok())
                            .is_some_and(|i| i < to_c)
                    }) && cluster_ready(c)
                })
                .count();
            if (ready_s, ready_c) == (to_s, to_c) {
                break (ready_s, ready_c);
            }
            let low_memory = mem_available_mib() < MEMORY_RESERVE_MIB / 2;
            if started.elapsed() > deadline || low_memory {
                let why = if low_memory {
                    format!(
                        "this machine is low on memory ({} MiB available)",
                        mem_available_mib()
                    )
                } else {
                    format!("not all Ready within {:.0} s", deadline.as_secs_f64())
                };
                bench.note(format!(
                    "step {to_s}+{to_c}: {why}; Ready: {ready_s}/{to_s} standards, \
                     {ready_c}/{to_c} clusters; not Ready, by reason: {}; pods: {}; \
                     load average {}",
                    not_ready_reasons(standards, clusters).await?,
                    bench.pending_reasons().await?,
                    std::fs::read_to_string("/proc/loadavg")
                        .unwrap_or_default()
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                break (ready_s, ready_c);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let took = started.elapsed();
        let (rss, _) = usage(bench.pid)?;
        if (ready_s, ready_c) != (to_s, to_c) {
            bench.row(
                &format!("scale {to_s}+{to_c}: largest count Ready"),
                format!(
                    "{ready_s} standards + {ready_c} clusters after {:.1} s, RSS {} MiB",
                    took.as_secs_f64(),
                    rss / 1024
                ),
            );
            break;
        }
        bench.row(
            &format!("scale {to_s}+{to_c}: +{add_s} standards, +{add_c} clusters -> all Ready"),
            format!("{:.1} s, RSS {} MiB", took.as_secs_f64(), rss / 1024),
        );
        bench
            .steady(
                &format!("scale {to_s}+{to_c} (+ (a), (b), {MORE_STANDARDS} standards)"),
                None,
                Some(took),
            )
            .await?;
        (have_s, have_c) = (to_s, to_c);
        if (to_s, to_c) != (want_s, want_c) {
            break;
        }
    }
    Ok(())
}

/// The reasons of the Ready conditions of the resources that are not Ready, counted.
async fn not_ready_reasons(
    standards: &Api<KvrocksStandard>,
    clusters: &Api<KvrocksCluster>,
) -> Result<String> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let reason =
        |conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
            conditions
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map_or("no Ready condition".to_owned(), |c| c.reason.clone())
        };
    for s in standards.list(&ListParams::default()).await?.items {
        if !standard_ready(&s) {
            let r = reason(s.status.as_ref().map(|s| &s.conditions));
            *reasons.entry(format!("KvrocksStandard {r}")).or_default() += 1;
        }
    }
    for c in clusters.list(&ListParams::default()).await?.items {
        if !cluster_ready(&c) {
            let r = reason(c.status.as_ref().map(|s| &s.conditions));
            *reasons.entry(format!("KvrocksCluster {r}")).or_default() += 1;
        }
    }
    Ok(reasons
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// The tables.
fn report(bench: &Bench) {
    println!("\n== figures ==");
    for (k, v) in &bench.rows {
        println!("  {k:<58} {v}");
    }
    println!(
        "\n== steady states: a {} s window starting {} s after Ready; per minute ==",
        STEADY.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "  API requests by the operator (apiserver audit log, its username {OPERATOR_USER}); \
         `in scope`: the scenario's namespace and cluster-wide requests; `elsewhere`: other \
         namespaces; `lease`: leader election"
    );
    let columns = [
        "pods",
        "ready s",
        "CPU s",
        "RSS",
        "reconc",
        "|",
        "get",
        "list",
        "watch",
        "|",
        "create",
        "update",
        "patch",
        "delete",
        "|",
        "WRITES",
        "changed",
        "|",
        "elsewhere",
        "lease",
    ];
    let line = |first: &str, cells: &[String]| {
        let mut text = format!("  {first:<40}");
        for cell in cells {
            if cell == "|" {
                text.push_str(" |");
            } else {
                text.push_str(&format!(" {cell:>7}"));
            }
        }
        text
    };
    let header = line(
        "scenario",
        &columns.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
    );
    println!("{header}");
    println!("  {}", "-".repeat(header.len() - 2));
    for s in &bench.steady {
        let minutes = s.window.as_secs_f64() / 60.0;
        let per = |n: u64| {
            let rate = n as f64 / minutes;
            if rate >= 100.0 {
                format!("{rate:.0}")
            } else {
                format!("{rate:.1}")
            }
        };
        let mut cells = vec![
            s.pods.to_string(),
            s.ready
                .map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64())),
            format!("{:.2}", s.cpu_per_min),
            s.rss_mib.to_string(),
            format!("{:.0}", s.reconciles_per_min),
            "|".to_owned(),
        ];
        match &s.api {
            Some(a) => cells.extend([
                per(a.verb("get")),
                per(a.verb("list")),
                per(a.verb("watch")),
                "|".to_owned(),
                per(a.verb("create")),
                per(a.verb("update")),
                per(a.verb("patch")),
                per(a.verb("delete") + a.verb("deletecollection")),
                "|".to_owned(),
                per(a.writes_total()),
                s.changed.map_or("?".to_owned(), |n| per(n as u64)),
                "|".to_owned(),
                per(a.elsewhere),
                per(a.lease),
            ]),
            None => cells.push("no audit log".to_owned()),
        }
        println!("{}", line(&s.scenario, &cells));
    }
    println!(
        "  (pods: all pods of the testbed; ready s: created -> Ready; CPU s: operator CPU seconds \
         per minute; RSS: operator MiB; reconc: reconciles; get..delete: requests by verb in \
         scope; WRITES: their create+update+patch+delete; changed: objects the operator writes \
         (configmaps, secrets, services, PDBs, statefulsets, kvrocks resources) whose \
         resourceVersion moved, in all bench namespaces: the writes that changed something)"
    );
    for s in &bench.steady {
        let Some(a) = &s.api else { continue };
        if a.writes.is_empty() {
            continue;
        }
        let minutes = s.window.as_secs_f64() / 60.0;
        let mut writes: Vec<(&String, &u64)> = a.writes.iter().collect();
        writes.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        println!("  writes in `{}` (per minute):", s.scenario);
        for (target, n) in writes.iter().take(8) {
            println!("    {:>6.1}  {target}", **n as f64 / minutes);
        }
        if writes.len() > 8 {
            println!("    ... and {} more targets", writes.len() - 8);
        }
    }
    if !bench.notes.is_empty() {
        println!("\n== did not fit / not measured ==");
        for note in &bench.notes {
            println!("  {note}");
        }
    }
    println!(
        "\nbench: {} figures, {} steady windows measured",
        bench.rows.len(),
        bench.steady.len()
    );
}
