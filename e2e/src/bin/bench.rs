//! `make bench`: speed and memory of the operator on the local testbed, measured, printed, never
//! asserted. It starts a testbed and the operator (the debug build `cargo build -p
//! kvrocks-operator` made), then measures:
//! - how long a sentinel group of 3 and a standard of 3 take to become Ready;
//! - the operator's resident memory and CPU while those sit steady for a while, and how many
//!   reconciles it runs meanwhile;
//! - a failover: the master's kvrocks process killed, until status names a new master and until
//!   the standard is Ready again;
//! - ten more standards (1 pod each) at once: time until all are Ready, memory after;
//! - the reconcile duration quantiles from the operator's histogram.
//!
//! Needs a kvrocks binary (`KVROCKS_BIN`): the testbed builds the apache/kvrocks image from it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kvrocks_api::{KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::operator::start_operator;
use kvrocks_e2e::{PodRef, Testbed, wait};
use serde_json::json;

const NS: &str = "bench";
const READY: Duration = Duration::from_secs(300);
const STEADY: Duration = Duration::from_secs(60);
const MORE_STANDARDS: usize = 10;

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
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

#[tokio::main]
async fn main() -> Result<()> {
    let testbed = Testbed::shared().await?;
    if !testbed.data_plane().is_real() {
        bail!("no kvrocks binary (set KVROCKS_BIN): the testbed has no apache/kvrocks image");
    }
    testbed.install_crds().await?;
    let client = testbed.client().await?;
    println!("bench on {}", testbed.data_plane().describe());
    let started = Instant::now();
    let Some(operator) = start_operator(testbed, &[]).await? else {
        bail!("no operator binary: cargo build -p kvrocks-operator");
    };
    let pid = operator.pid().context("operator pid")?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| {
        println!("  {k:<58} {v}");
        rows.push((k.to_owned(), v));
    };
    row(
        "operator start until leading",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    );
    let (rss, _) = usage(pid)?;
    row(
        "operator RSS, idle with no resources",
        format!("{} MiB", rss / 1024),
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await;
    let sentinels: Api<KvrocksSentinel> = Api::namespaced(client.clone(), NS);
    let standards: Api<KvrocksStandard> = Api::namespaced(client.clone(), NS);
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
    row(
        "KvrocksSentinel (3) created -> Ready",
        format!("{:.1} s", t.as_secs_f64()),
    );
    standards
        .create(&PostParams::default(), &standard("db", 3)?)
        .await?;
    let standard_ready =
        |s: &KvrocksStandard| s.status.as_ref().is_some_and(|s| is_ready(&s.conditions));
    let t = wait_ready(&standards, "db", standard_ready).await?;
    row(
        "KvrocksStandard (3) created -> Ready",
        format!("{:.1} s", t.as_secs_f64()),
    );

    // Steady state.
    let before_page = operator.metrics().await?;
    let (_, cpu_before) = usage(pid)?;
    tokio::time::sleep(STEADY).await;
    let (rss, cpu_after) = usage(pid)?;
    let after_page = operator.metrics().await?;
    let reconciles = sum_of(&after_page, "kvrocks_operator_reconcile_total{")
        - sum_of(&before_page, "kvrocks_operator_reconcile_total{");
    row(
        &format!("steady {} s: operator CPU", STEADY.as_secs()),
        format!(
            "{:.2} s ({:.2}% of one core)",
            cpu_after - cpu_before,
            100.0 * (cpu_after - cpu_before) / STEADY.as_secs_f64()
        ),
    );
    row(
        &format!("steady {} s: reconciles", STEADY.as_secs()),
        format!("{reconciles:.0}"),
    );
    row(
        "operator RSS, 1 sentinel group + 1 standard",
        format!("{} MiB", rss / 1024),
    );

    // Failover.
    let master = standards
        .get("db")
        .await?
        .status
        .and_then(|s| s.master)
        .map(|m| m.pod)
        .context("no master in status")?;
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
    row(
        "failover: master killed -> new master in status",
        format!("{:.1} s (down-after 5 s)", killed.elapsed().as_secs_f64()),
    );
    wait::for_object(&standards, "db", READY, "Ready", standard_ready).await?;
    row(
        "failover: master killed -> Ready again",
        format!("{:.1} s", killed.elapsed().as_secs_f64()),
    );

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
    row(
        &format!("{MORE_STANDARDS} more standards (1 pod each) created -> all Ready"),
        format!("{:.1} s", burst.elapsed().as_secs_f64()),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss, _) = usage(pid)?;
    row(
        &format!(
            "operator RSS, 1 sentinel group + {} standards",
            MORE_STANDARDS + 1
        ),
        format!("{} MiB", rss / 1024),
    );
    let page = operator.metrics().await?;
    for q in [0.5, 0.9, 0.99] {
        row(
            &format!("reconcile duration p{:.0} (bucket bound)", q * 100.0),
            quantile(&page, q).map_or("n/a".into(), |s| format!("<= {s} s")),
        );
    }
    row(
        "reconciles in all",
        format!("{:.0}", sum_of(&page, "kvrocks_operator_reconcile_total{")),
    );
    println!("\nbench: {} figures measured", rows.len());
    drop(operator);
    Ok(())
}
