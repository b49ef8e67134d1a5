//! The Helm chart (`deploy/helm/kvrocks-operator`), checked the way `make lint-helm` promises and
//! then installed for real on the testbed:
//! - its `crds/` and dashboards are the copies of `config/crd` and `deploy/dashboards`;
//! - `helm lint --strict` and `helm template`, with the defaults and with every option on
//!   (`e2e/fixtures/helm-all-options.yaml`);
//! - the rendered objects (CRDs included) through the real API server's server-side dry run, with
//!   prometheus-operator's CRDs installed so the ServiceMonitor, PodMonitor and PrometheusRule
//!   meet their real schemas;
//! - `helm install` of the operator image built from the binary just built: two replicas, one
//!   leader, the examples Ready under it, every operator metric named by the dashboards and the
//!   alert rules present on the leader's `/metrics`, `helm test`, a leader hand-over, and
//!   `helm uninstall`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};
use kvrocks_e2e::binaries::{self, Binaries};
use kvrocks_e2e::{Testbed, http, wait};

const RELEASE: &str = "kvrocks-operator";
const RELEASE_NS: &str = "kvrocks-system";
const EXAMPLES_NS: &str = "examples";
/// Namespace of the server-side dry run (not the install test's, which runs alongside).
const DRY_RUN_NS: &str = "chart-dry-run";
const READY_TIMEOUT: Duration = Duration::from_secs(240);

fn chart() -> PathBuf {
    binaries::repo_root().join("deploy/helm/kvrocks-operator")
}

fn all_options() -> PathBuf {
    binaries::e2e_dir().join("fixtures/helm-all-options.yaml")
}

fn tools() -> Binaries {
    binaries::find_or_build().expect("testbed binaries")
}

/// Runs helm with its caches under `home` (never the user's), against `kubeconfig` if given.
fn helm(bins: &Binaries, home: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let mut command = std::process::Command::new(&bins.helm);
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, home.join(dir));
    }
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    let out = command.args(args).output().expect("run helm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvrocks-e2e-chart-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The files of `dir` (name -> bytes).
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_chart_ships_current_copies_of_the_crds_and_dashboards() {
    let root = binaries::repo_root();
    for (copy, source) in [
        ("deploy/helm/kvrocks-operator/crds", "config/crd"),
        (
            "deploy/helm/kvrocks-operator/files/dashboards",
            "deploy/dashboards",
        ),
    ] {
        let (copy_files, source_files) = (files(&root.join(copy)), files(&root.join(source)));
        assert!(!source_files.is_empty(), "{source} is empty");
        assert_eq!(
            copy_files.keys().collect::<Vec<_>>(),
            source_files.keys().collect::<Vec<_>>(),
            "{copy} does not hold the files of {source}: copy them (cp {source}/* {copy}/)"
        );
        for (name, bytes) in &source_files {
            assert!(
                copy_files[name] == *bytes,
                "{copy}/{name} differs from {source}/{name}: copy it again"
            );
        }
    }
}

#[test]
fn helm_lint_and_template_with_defaults_and_every_option() {
    let bins = tools();
    let home = scratch("lint");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let options = all_options();
    let options = options.to_str().unwrap();
    helm(&bins, &home, None, &["lint", "--strict", chart]);
    helm(
        &bins,
        &home,
        None,
        &["lint", "--strict", chart, "-f", options],
    );

    let defaults = helm(
        &bins,
        &home,
        None,
        &["template", RELEASE, chart, "-n", RELEASE_NS],
    );
    let kinds = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .map(str::to_owned)
            .collect()
    };
    let default_kinds = kinds(&defaults);
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(default_kinds.contains(kind), "defaults render no {kind}");
    }
    // The data pods' NetworkPolicy is on by default, in the release namespace, and can be
    // switched off.
    let policy = defaults
        .split("\n---")
        .find(|d| d.contains("kind: NetworkPolicy"))
        .unwrap();
    assert!(
        policy.contains(&format!("namespace: {RELEASE_NS}"))
            && policy.contains("app.kubernetes.io/managed-by: kvrocks-operator")
            && policy.contains("port: 6379")
            && !policy.contains("port: 9121"),
        "{policy}"
    );
    let without = helm(
        &bins,
        &home,
        None,
        &[
            "template",
            RELEASE,
            chart,
            "-n",
            RELEASE_NS,
            "--set",
            "networkPolicy.enabled=false",
        ],
    );
    assert!(!kinds(&without).contains("NetworkPolicy"), "{without}");
    for off in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(
            !default_kinds.contains(off),
            "{off} is rendered though off by default"
        );
    }
    let everything = helm(
        &bins,
        &home,
        None,
        &["template", RELEASE, chart, "-n", RELEASE_NS, "-f", options],
    );
    let all_kinds = kinds(&everything);
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
        "Role",
        "RoleBinding",
    ] {
        assert!(
            all_kinds.contains(kind),
            "every option on renders no {kind}"
        );
    }
    // One NetworkPolicy per watched namespace, letting the named clients in.
    assert_eq!(
        everything.matches("kind: NetworkPolicy").count(),
        2,
        "{everything}"
    );
    assert!(everything.contains("app: checkout") && everything.contains("port: 9121"));
    // The helm test pod asks the named sentinel group, with the group's own password.
    assert!(
        everything.contains("name: guards-auth")
            && everything.contains("value: \"standard_orders\""),
        "{everything}"
    );
    // Namespaced mode: the operator's rules in Roles only; the only ClusterRoles are the metrics
    // authentication's (TokenReview and SubjectAccessReview are cluster-scoped).
    let docs_all: Vec<serde_json::Value> = everything
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .collect();
    let cluster_roles: Vec<&str> = docs_all
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        cluster_roles,
        [
            "kvrocks-operator-all-metrics-auth",
            "kvrocks-operator-all-metrics-reader"
        ],
        "{everything}"
    );
    assert!(everything.contains("--metrics-auth") && everything.contains("bearerTokenFile"));
    assert!(everything.contains("name: prometheus"));
    assert!(everything.contains("--namespaces=chart-team-a,chart-team-b"));
    // Least privilege: no wildcard anywhere in the rules.
    for text in [&defaults, &everything] {
        assert!(!text.contains("\"*\""), "a wildcard in the rendered rules");
    }
    // The ClusterRole is exactly config/rbac/role.yaml's rules.
    let docs: Vec<serde_json::Value> = defaults
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .collect();
    let cluster_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let role_yaml =
        std::fs::read_to_string(binaries::repo_root().join("config/rbac/role.yaml")).unwrap();
    let reference: serde_json::Value = serde_saphyr::from_str(&role_yaml).unwrap();
    assert!(reference["rules"].as_array().is_some_and(|r| r.len() >= 5));
    assert_eq!(
        cluster_role["rules"], reference["rules"],
        "the chart's ClusterRole and config/rbac/role.yaml differ"
    );
    // Hardened pod: what the chart promises.
    for promise in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "type: RuntimeDefault",
        "drop: [\"ALL\"]",
    ] {
        assert!(defaults.contains(promise), "the Deployment lacks {promise}");
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// Installs prometheus-operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule) once.
async fn install_monitoring_crds(testbed: &Testbed) {
    let dir = testbed.binaries().monitoring_crds.clone();
    testbed
        .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .unwrap();
    testbed
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            dir.to_str().unwrap(),
        ])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_api_server_accepts_the_rendered_chart() {
    let testbed = Testbed::shared().await.unwrap();
    install_monitoring_crds(testbed).await;
    for ns in [
        DRY_RUN_NS,
        "chart-team-a",
        "chart-team-b",
        "chart-monitoring",
    ] {
        // May exist already (the install test shares the testbed).
        let _ = testbed.kubectl(&["create", "namespace", ns]).await;
    }
    let home = scratch("dry-run");
    let chart = chart();
    let options = all_options();
    for (what, extra) in [
        ("defaults", vec![]),
        ("every option on", vec!["-f", options.to_str().unwrap()]),
    ] {
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            DRY_RUN_NS,
            "--include-crds",
        ];
        args.extend(extra);
        let rendered = helm(testbed.binaries(), &home, None, &args);
        let file = home.join("rendered.yaml");
        std::fs::write(&file, &rendered).unwrap();
        let out = testbed
            .kubectl(&[
                "apply",
                "--dry-run=server",
                "--server-side",
                "--field-manager=chart-dry-run",
                // The install test may own the same cluster-scoped objects meanwhile; a dry
                // run is about validity, not about who owns a field.
                "--force-conflicts",
                "-f",
                file.to_str().unwrap(),
            ])
            .await
            .unwrap_or_else(|e| panic!("the API server refused the chart ({what}): {e}"));
        let accepted = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        let objects =
            rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: "));
        kvrocks_e2e::say!("chart dry run ({what}): {accepted} objects accepted\n{out}");
        assert_eq!(
            accepted, objects,
            "not every rendered object was accepted:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// The operator metric families a text names (histogram series folded into their family).
fn operator_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("kvrocks_operator_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if before_ok {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| base.ends_with("_seconds"))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// Families announced on a `/metrics` page (`# TYPE <name> <kind>`).
fn exported_families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn operator_pods(client: &kube::Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NS);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=kvrocks-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The ServiceAccount allowed to scrape the operator (`metricsAuth.readers`).
const SCRAPER: &str = "metrics-scraper";
/// Its token, once made (see [`metrics_need_a_token`]).
static SCRAPER_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A token of ServiceAccount `name` in the release namespace, made by the apiserver.
async fn token_of(testbed: &Testbed, name: &str) -> String {
    let _ = testbed
        .kubectl(&["create", "serviceaccount", name, "-n", RELEASE_NS])
        .await;
    testbed
        .kubectl(&["create", "token", name, "-n", RELEASE_NS, "--duration=2h"])
        .await
        .unwrap()
        .trim()
        .to_owned()
}

/// With metricsAuth on, the operator's /metrics answers 401 without a token, 403 to a
/// ServiceAccount not bound to the metrics-reader role, and 200 to the scraper's token.
async fn metrics_need_a_token(testbed: &Testbed, client: &kube::Client) {
    let scraper = token_of(testbed, SCRAPER).await;
    let stranger = token_of(testbed, "not-a-scraper").await;
    let pod = operator_pods(client).await.remove(0);
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
    let status = async |token: Option<&str>| {
        http::get_with_token(addr, "/metrics", token, Duration::from_secs(5))
            .await
            .unwrap()
            .status
    };
    assert_eq!(status(None).await, 401, "no token");
    assert_eq!(status(Some("not-a-token")).await, 401, "a made-up token");
    assert_eq!(
        status(Some(&stranger)).await,
        403,
        "a ServiceAccount not bound"
    );
    assert_eq!(status(Some(&scraper)).await, 200, "the scraper");
    let healthz = http::get_with_token(addr, "/healthz", None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(healthz.status, 200, "the kubelet's probes need no token");
    kvrocks_e2e::say!("metrics auth: 401 without a token, 403 for a stranger, 200 for {SCRAPER}");
    let _ = SCRAPER_TOKEN.set(scraper);
}

async fn metrics_of(pod: &Pod) -> Result<String, String> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no pod IP")?;
    let addr: SocketAddr = format!("{ip}:8080").parse().map_err(|e| format!("{e}"))?;
    let token = SCRAPER_TOKEN.get().map(String::as_str);
    let response = http::get_with_token(addr, "/metrics", token, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    if response.is_success() {
        Ok(response.body)
    } else {
        Err(format!("HTTP {}: {}", response.status, response.body))
    }
}

/// The name of the operator pod that leads (its `kvrocks_operator_leader` is 1) and its page,
/// once exactly one of the running pods leads.
async fn leader(client: &kube::Client, not: Option<&str>) -> (String, String) {
    wait::until(
        "exactly one operator pod leading",
        READY_TIMEOUT,
        async || {
            let mut leading = Vec::new();
            let pods = operator_pods(client).await;
            for pod in &pods {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Ok(page) = metrics_of(pod).await
                    && sample(&page, "kvrocks_operator_leader") == Some(1.0)
                {
                    leading.push((name, page));
                }
            }
            match leading.as_slice() {
                [(name, _)] if Some(name.as_str()) == not => Err(format!("{name} still leads")),
                [_] => Ok(leading.remove(0)),
                _ => Err(format!("{} of {} pods lead", leading.len(), pods.len())),
            }
        },
    )
    .await
    .unwrap()
}

fn ready(
    conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
) -> bool {
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn helm_install_runs_the_examples_and_every_named_metric_exists() {
    let testbed = Testbed::shared().await.unwrap();
    if !kvrocks_e2e::testbed::operator_binary().is_file() {
        kvrocks_e2e::say!(
            "\nSKIPPED helm install e2e: no operator binary (run `cargo build -p kvrocks-operator`)"
        );
        return;
    }
    if !testbed.data_plane().is_real() {
        kvrocks_e2e::say!(
            "\nSKIPPED helm install e2e: the examples need the apache/kvrocks image, and there is none without a kvrocks binary (set KVROCKS_BIN)"
        );
        return;
    }
    let client = testbed.client().await.unwrap();
    kvrocks_e2e::say!("helm install e2e on {}", testbed.data_plane().describe());
    let home = scratch("install");
    let kubeconfig = testbed.kubeconfig_path().to_path_buf();
    let chart = chart();

    // Install: two replicas of the operator image the testbed built from the binary just built.
    let out = helm(
        testbed.binaries(),
        &home,
        Some(&kubeconfig),
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            RELEASE_NS,
            "--create-namespace",
            "--set",
            &format!("test.namespace={EXAMPLES_NS}"),
            "--set",
            "logLevel=info\\,kvrocks_operator_core=debug",
            // /metrics only for the scraper's token (TokenReview + SubjectAccessReview).
            "--set",
            "metricsAuth.enabled=true",
            "--set",
            &format!(
                "metricsAuth.readers[0].kind=ServiceAccount,metricsAuth.readers[0].name={SCRAPER},metricsAuth.readers[0].namespace={RELEASE_NS}"
            ),
            "--wait",
            "--timeout",
            "4m",
        ],
    );
    kvrocks_e2e::say!("{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NS);
    let deployment = deployments.get(RELEASE).await.unwrap();
    let status = deployment.status.unwrap_or_default();
    assert_eq!(
        status.ready_replicas,
        Some(2),
        "both operator replicas ready"
    );
    metrics_need_a_token(testbed, &client).await;
    let (first_leader, _) = leader(&client, None).await;
    kvrocks_e2e::say!("operator leader: {first_leader}");

    // The examples, as written, in a namespace of their own.
    let _ = testbed.kubectl(&["create", "namespace", EXAMPLES_NS]).await;
    // The examples (and the chart's test pod) run under the restricted Pod Security Standard.
    testbed
        .kubectl(&[
            "label",
            "namespace",
            EXAMPLES_NS,
            "pod-security.kubernetes.io/enforce=restricted",
            "--overwrite",
        ])
        .await
        .unwrap();
    let examples = binaries::repo_root().join("examples");
    let files = ["sentinel.yaml", "standard.yaml", "cluster.yaml"];
    for file in &files {
        testbed
            .kubectl(&[
                "apply",
                "-n",
                EXAMPLES_NS,
                "-f",
                examples.join(file).to_str().unwrap(),
            ])
            .await
            .unwrap();
    }
    let sentinels: Api<KvrocksSentinel> = Api::namespaced(client.clone(), EXAMPLES_NS);
    let standards: Api<KvrocksStandard> = Api::namespaced(client.clone(), EXAMPLES_NS);
    let clusters: Api<KvrocksCluster> = Api::namespaced(client.clone(), EXAMPLES_NS);
    wait::for_object(&sentinels, "sentinel", READY_TIMEOUT, "Ready", |s| {
        ready(s.status.as_ref().map(|s| &s.conditions))
    })
    .await
    .unwrap();
    wait::for_object(&standards, "standard", READY_TIMEOUT, "Ready", |s| {
        ready(s.status.as_ref().map(|s| &s.conditions))
    })
    .await
    .unwrap();
    wait::for_object(&clusters, "cluster", READY_TIMEOUT, "Ready", |s| {
        ready(s.status.as_ref().map(|s| &s.conditions))
    })
    .await
    .unwrap();

    // Every operator metric the dashboards and the alert rules name is on the leader's /metrics.
    let (_, page) = leader(&client, None).await;
    let exported = exported_families(&page);
    let mut named = BTreeSet::new();
    for dashboard in ["kvrocks-operator.json", "kvrocks.json"] {
        let text = std::fs::read_to_string(
            binaries::repo_root()
                .join("deploy/dashboards")
                .join(dashboard),
        )
        .unwrap();
        named.extend(operator_metric_names(&text));
    }
    let rules = render_rules(testbed.binaries(), &home, &[]);
    let in_rules = operator_metric_names(&rules);
    assert!(
        in_rules.len() >= 5,
        "the rules name too few operator metrics: {in_rules:?}"
    );
    named.extend(in_rules);
    let missing: Vec<&String> = named.difference(&exported).collect();
    kvrocks_e2e::say!(
        "metric names: {} operator families named by dashboards and rules, {} exported, missing: {missing:?}",
        named.len(),
        exported.len()
    );
    assert!(named.len() >= 10, "suspiciously few names found: {named:?}");
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\n{page}"
    );
    // And the health gauges say what the resources' conditions say.
    for (series, want) in [
        (
            r#"kvrocks_operator_resource_ready{kind="standard",name="standard",namespace="examples"}"#,
            1.0,
        ),
        (
            r#"kvrocks_operator_resource_ready{kind="sentinel",name="sentinel",namespace="examples"}"#,
            1.0,
        ),
        (
            r#"kvrocks_operator_shard_master_up{kind="standard",name="standard",namespace="examples",shard="0"}"#,
            1.0,
        ),
        (
            r#"kvrocks_operator_sentinel_ready_replicas{name="sentinel",namespace="examples"}"#,
            3.0,
        ),
        (
            r#"kvrocks_operator_sentinel_quorum{name="sentinel",namespace="examples"}"#,
            2.0,
        ),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }
    assert_eq!(
        sample(
            &page,
            r#"kvrocks_operator_cluster_slots_assigned{name="cluster",namespace="examples"}"#
        ),
        Some(16384.0)
    );

    // helm test: a pod PINGs the standard's master Service with its password and exits 0 only
    // on PONG (its hook deletes it on success, so its log is not read here).
    let out = helm(
        testbed.binaries(),
        &home,
        Some(&kubeconfig),
        &["test", RELEASE, "-n", RELEASE_NS, "--timeout", "2m"],
    );
    kvrocks_e2e::say!("{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Phase:") && l.trim_end().ends_with("Succeeded")),
        "{out}"
    );

    // The exporter sidecar: switched on, rolled in, scraped on every data pod.
    exporter_sidecar(&client, &standards, &rules).await;

    // The leader goes: the standby takes over.
    testbed
        .kubectl(&[
            "delete",
            "pod",
            "-n",
            RELEASE_NS,
            &first_leader,
            "--wait=false",
        ])
        .await
        .unwrap();
    let (second_leader, _) = leader(&client, Some(&first_leader)).await;
    kvrocks_e2e::say!("after deleting {first_leader}, {second_leader} leads");
    assert_ne!(second_leader, first_leader);

    // Clean up in order: the resources (their finalizers need the operator), then the release.
    let mut delete = vec!["delete", "-n", EXAMPLES_NS, "--timeout=180s"];
    let paths: Vec<String> = files
        .iter()
        .rev()
        .map(|f| examples.join(f).to_string_lossy().into_owned())
        .collect();
    for p in &paths {
        delete.extend(["-f", p.as_str()]);
    }
    testbed.kubectl(&delete).await.unwrap();
    // The operator stops before its permissions go: `helm uninstall` removes the RBAC while the
    // pods of the deleted Deployment still terminate, and their last request (releasing the
    // Lease) would be refused (harmless: the Lease expires), which the least-privilege suite
    // would count against the role.
    testbed
        .kubectl(&[
            "scale",
            "deployment",
            RELEASE,
            "-n",
            RELEASE_NS,
            "--replicas=0",
        ])
        .await
        .unwrap();
    wait::until(
        "the operator pods gone before uninstalling",
        Duration::from_secs(60),
        async || {
            // Terminating ones included: they still send requests.
            let left = Api::<Pod>::namespaced(client.clone(), RELEASE_NS)
                .list(&ListParams::default().labels("app.kubernetes.io/name=kvrocks-operator"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} operator pods left"))
            }
        },
    )
    .await
    .unwrap();
    helm(
        testbed.binaries(),
        &home,
        Some(&kubeconfig),
        &[
            "uninstall",
            RELEASE,
            "-n",
            RELEASE_NS,
            "--wait",
            "--timeout",
            "2m",
        ],
    );
    wait::for_deletion(&deployments, RELEASE, Duration::from_secs(60))
        .await
        .unwrap();

    // Namespaced mode: Roles in the watched namespace only, no ClusterRole; a sentinel group
    // comes up Ready under it and is deleted cleanly.
    let namespaced = "kvrocks-operator-ns";
    helm(
        testbed.binaries(),
        &home,
        Some(&kubeconfig),
        &[
            "install",
            namespaced,
            chart.to_str().unwrap(),
            "-n",
            RELEASE_NS,
            "--set",
            &format!("watchNamespaces={{{EXAMPLES_NS}}}"),
            "--set",
            "replicaCount=1",
            "--wait",
            "--timeout",
            "4m",
        ],
    );
    let cluster_roles = testbed
        .kubectl(&["get", "clusterrole", "-o", "name"])
        .await
        .unwrap();
    assert!(
        !cluster_roles.contains(namespaced),
        "namespaced mode made a ClusterRole"
    );
    let sentinel = examples.join("sentinel.yaml");
    testbed
        .kubectl(&["apply", "-n", EXAMPLES_NS, "-f", sentinel.to_str().unwrap()])
        .await
        .unwrap();
    wait::for_object(
        &sentinels,
        "sentinel",
        READY_TIMEOUT,
        "Ready (namespaced operator)",
        |s| ready(s.status.as_ref().map(|s| &s.conditions)),
    )
    .await
    .unwrap();
    testbed
        .kubectl(&[
            "delete",
            "-n",
            EXAMPLES_NS,
            "--timeout=120s",
            "-f",
            sentinel.to_str().unwrap(),
        ])
        .await
        .unwrap();
    helm(
        testbed.binaries(),
        &home,
        Some(&kubeconfig),
        &[
            "uninstall",
            namespaced,
            "-n",
            RELEASE_NS,
            "--wait",
            "--timeout",
            "2m",
        ],
    );
    kvrocks_e2e::say!("namespaced mode: a sentinel group Ready and deleted under Roles only");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn exporter_names_in_rules_skip_labels_and_comments() {
    let rules = "# adds kvrocks_instance, kvrocks_role\n          expr: |\n            kvrocks_up{kvrocks_component=~\"standard\"} == 0 and kvrocks_master_link_up{kvrocks_component=\"x\"} == 0 and kvrocks_operator_leader\n";
    assert_eq!(
        exporter_names_in_rules(rules)
            .into_iter()
            .collect::<Vec<_>>(),
        ["master_link_up", "up"]
    );
}

#[test]
fn metric_names_are_found_in_queries() {
    let names = operator_metric_names(
        r#"histogram_quantile(0.99, rate(kvrocks_operator_reconcile_duration_seconds_bucket[5m])) + x_kvrocks_operator_nope + kvrocks_operator_leader"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "kvrocks_operator_leader",
            "kvrocks_operator_reconcile_duration_seconds"
        ]
    );
}

/// Families of the "Kvrocks" dashboard that come from kvrocks_exporter's RocksDB and disk figures
/// (`INFO` sections kvrocks has and Redis lacks): the testbed's redis_exporter stand-in cannot
/// produce them, so they are listed, not checked.
const ROCKSDB_ONLY: &[&str] = &[
    "num_running_compactions",
    "compaction_pending",
    "compaction_count",
    "memtable_flush_pending",
    "num_immutable_tables",
    "num_background_errors",
    "used_disk_size",
    "disk_capacity_bytes",
];

/// The exporter families (`${prefix}_<name>`) a dashboard names, without the prefix.
fn exporter_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(pos) = rest.find("${prefix}_") {
        rest = &rest[pos + "${prefix}_".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    names
}

async fn exporter_sidecar(client: &kube::Client, standards: &Api<KvrocksStandard>, rules: &str) {
    standards
        .patch(
            "standard",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"exporter": {"enabled": true}}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), EXAMPLES_NS);
    let with_exporter = wait::until(
        "every standard pod running its exporter sidecar, the standard Ready",
        READY_TIMEOUT,
        async || {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=standard"))
                .await
                .map_err(|e| e.to_string())?;
            let ready_with_sidecar = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|cs| {
                            cs.len() == 2 && cs.iter().all(|c| c.ready)
                        })
                })
                .count();
            let standard = standards.get("standard").await.map_err(|e| e.to_string())?;
            let generation = standard.metadata.generation;
            let status = standard.status.unwrap_or_default();
            if ready_with_sidecar == 3
                && status.observed_generation == generation
                && ready(Some(&status.conditions))
            {
                Ok(list.items)
            } else {
                Err(format!(
                    "{ready_with_sidecar} of 3 pods ready with the sidecar; observed generation {:?} of {generation:?}",
                    status.observed_generation
                ))
            }
        },
    )
    .await
    .unwrap();

    let dashboard =
        std::fs::read_to_string(binaries::repo_root().join("deploy/dashboards/kvrocks.json"))
            .unwrap();
    let mut named = exporter_metric_names(&dashboard);
    assert!(named.contains("up") && named.len() >= 10, "{named:?}");
    // The exporter alerts, rendered with the default prefix `kvrocks`.
    let in_rules = exporter_names_in_rules(rules);
    assert!(in_rules.contains("master_link_up"), "{in_rules:?}");
    named.extend(in_rules);
    let mut masters = 0;
    let mut exported = BTreeSet::new();
    for pod in &with_exporter {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
        let addr: SocketAddr = format!("{ip}:9121").parse().unwrap();
        // The sidecar's first scrape may race the pod turning ready: wait for kvrocks_up 1.
        let page = wait::until(
            &format!("{name}: kvrocks_up 1"),
            Duration::from_secs(60),
            async || {
                let page = http::get_ok(addr, "/metrics", Duration::from_secs(5))
                    .await
                    .map_err(|e| e.to_string())?;
                if sample(&page, "kvrocks_up") == Some(1.0) {
                    Ok(page)
                } else {
                    Err(format!("kvrocks_up is {:?}", sample(&page, "kvrocks_up")))
                }
            },
        )
        .await
        .unwrap();
        // Some families exist only on a master (connected_slave_offset_bytes) or only on a
        // replica (master_link_up): the check is over all pods together.
        exported.extend(
            exported_families(&page)
                .into_iter()
                .filter_map(|f| f.strip_prefix("kvrocks_").map(str::to_owned)),
        );
        if page
            .lines()
            .any(|l| l.starts_with("kvrocks_instance_info{") && l.contains("role=\"master\""))
        {
            masters += 1;
        }
    }
    assert_eq!(masters, 1, "exactly one sidecar reports role=master");
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !ROCKSDB_ONLY.contains(&n.as_str()) && !exported.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard names exporter metrics no sidecar exports: {missing:?}"
    );
    let unchecked: Vec<&String> = named
        .iter()
        .filter(|n| ROCKSDB_ONLY.contains(&n.as_str()))
        .collect();
    kvrocks_e2e::say!(
        "exporter sidecar: {} pods scraped, {} dashboard families checked; not checkable on the redis_exporter stand-in (kvrocks_exporter's RocksDB figures): {unchecked:?}",
        with_exporter.len(),
        named.len() - unchecked.len()
    );
}

/// Exporter families (`kvrocks_<name>`, not `kvrocks_operator_...`) named by rendered rules.
fn exporter_names_in_rules(rules: &str) -> BTreeSet<String> {
    let rules: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let rules = rules.as_str();
    let mut names = BTreeSet::new();
    for (i, _) in rules.match_indices("kvrocks_") {
        if i > 0 && rules[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &rules[i + "kvrocks_".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        // Label names (kvrocks_component, kvrocks_instance, ...) follow `{` or `,` or `(`.
        let label = rest[end..].starts_with('=') || rest[end..].starts_with(" =");
        let in_by = rules[..i].trim_end().ends_with(['(', ',']);
        if !name.starts_with("operator_") && !name.is_empty() && !label && !in_by {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The chart's PrometheusRule rendered with `prometheusRule.enabled=true` and `extra` arguments.
fn render_rules(bins: &Binaries, home: &Path, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    args.extend(extra);
    helm(bins, home, None, &args)
}

/// The rule groups of a rendered PrometheusRule, as a Prometheus rules file (JSON is YAML);
/// `annotations: false` leaves the annotations out (for `promtool test rules`, which would
/// compare them word for word).
fn rules_file(rendered: &str, annotations: bool) -> serde_json::Value {
    let rule: serde_json::Value = serde_saphyr::from_str(rendered).expect("PrometheusRule YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    let mut groups = rule["spec"]["groups"].clone();
    if !annotations {
        for group in groups.as_array_mut().unwrap() {
            for r in group["rules"].as_array_mut().unwrap() {
                r.as_object_mut().unwrap().remove("annotations");
            }
        }
    }
    serde_json::json!({ "groups": groups })
}

fn promtool(bins: &Binaries, dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(&bins.promtool)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let bins = tools();
    let home = scratch("promtool");
    let options = all_options();
    let render = |extra: &[&str]| render_rules(&bins, &home, extra);
    // Syntax, PromQL and annotation templates, with the defaults and with every option.
    for (what, rendered) in [
        ("defaults", render(&[])),
        ("every option", render(&["-f", options.to_str().unwrap()])),
    ] {
        let file = home.join("check.json");
        std::fs::write(&file, rules_file(&rendered, true).to_string()).unwrap();
        let out = promtool(&bins, &home, &["check", "rules", "check.json"]);
        kvrocks_e2e::say!("promtool check rules ({what}): {}", out.trim());
    }
    // When each alert fires, and that it stays quiet on healthy input.
    let rules = rules_file(&render(&[]), false);
    std::fs::write(home.join("rules.json"), rules.to_string()).unwrap();
    let tests = binaries::e2e_dir().join("fixtures/alerts-test.yaml");
    let tests_text = std::fs::read_to_string(&tests).unwrap();
    std::fs::write(home.join("alerts-test.yaml"), &tests_text).unwrap();
    let out = promtool(&bins, &home, &["test", "rules", "alerts-test.yaml"]);
    kvrocks_e2e::say!("promtool test rules: {}", out.trim());
    // Every alert of the chart has a test that makes it fire.
    let alerts: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests_text.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "no test in {} makes {alert} fire",
            tests.display()
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}
