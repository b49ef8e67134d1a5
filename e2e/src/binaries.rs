//! The control-plane binaries: found or built by `e2e/tools/build-binaries.sh` (the one place that
//! knows the lookup order and the pinned versions), whose report is parsed here.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{Error, Result};

/// Paths of the testbed binaries of the pinned releases.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kube-scheduler.
    pub kube_scheduler: PathBuf,
    /// kubectl.
    pub kubectl: PathBuf,
    /// `kubelet`, one per real node.
    pub kubelet: PathBuf,
    /// `kube-proxy`, for Services on the real nodes.
    pub kube_proxy: PathBuf,
    /// `crictl`, the CRI client the real nodes are driven with.
    pub crictl: PathBuf,
    /// `coredns`, the real nodes' cluster DNS (put into an image of its own).
    pub coredns: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// helm.
    pub helm: PathBuf,
    /// promtool (Prometheus' rule checker and rule unit-test runner).
    pub promtool: PathBuf,
    /// A directory with the CRDs of prometheus-operator's ServiceMonitor, PodMonitor and
    /// PrometheusRule.
    pub monitoring_crds: PathBuf,
    /// The cache directory the script used.
    pub cache_dir: PathBuf,
}

/// The `e2e/` directory of the source tree this crate was built from.
pub fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository root (`config/crd`, `examples/`, `target/`).
pub fn repo_root() -> PathBuf {
    e2e_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(e2e_dir)
}

/// Runs the build script (a no-op when everything is cached), echoing its progress to stderr.
pub fn find_or_build() -> Result<Binaries> {
    let script = e2e_dir().join("tools/build-binaries.sh");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Command {
            command: format!("bash {}", script.display()),
            detail: format!("cannot run it: {e}"),
        })?;
    let mut lines = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            // The per-binary table is summarised below; everything else (builds) is progress.
            if !line.starts_with("  ") && !line.starts_with("cache dir: ") {
                crate::say!("{line}");
            }
            lines.push(line);
        }
    }
    let status = child.wait().map_err(|e| Error::Command {
        command: format!("bash {}", script.display()),
        detail: e.to_string(),
    })?;
    if !status.success() {
        return Err(Error::Command {
            command: format!("bash {}", script.display()),
            detail: format!("{status} (its output is above)"),
        });
    }
    let binaries = parse_report(&lines)
        .map_err(|reason| Error::invalid(format!("output of {}", script.display()), reason))?;
    crate::say!(
        "testbed: binaries ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        binaries.cache_dir.display()
    );
    Ok(binaries)
}

/// Parses the script's report: one `  <name>  <source>  <path>` line per binary and a last line
/// `cache dir: <dir>`.
fn parse_report(lines: &[String]) -> std::result::Result<Binaries, String> {
    let cache_dir = lines
        .last()
        .and_then(|l| l.strip_prefix("cache dir: "))
        .map(PathBuf::from)
        .ok_or("the last line is not `cache dir: <dir>`")?;
    let path_of = |name: &str| -> std::result::Result<PathBuf, String> {
        lines
            .iter()
            .filter(|l| l.starts_with("  "))
            .find_map(|l| {
                let mut fields = l.split_whitespace();
                (fields.next() == Some(name))
                    .then(|| fields.nth(1))
                    .flatten()
                    .map(PathBuf::from)
            })
            .ok_or_else(|| format!("no line reports the path of {name}"))
    };
    Ok(Binaries {
        kube_apiserver: path_of("kube-apiserver")?,
        kube_controller_manager: path_of("kube-controller-manager")?,
        kube_scheduler: path_of("kube-scheduler")?,
        kubectl: path_of("kubectl")?,
        kubelet: path_of("kubelet")?,
        kube_proxy: path_of("kube-proxy")?,
        crictl: path_of("crictl")?,
        coredns: path_of("coredns")?,
        etcd: path_of("etcd")?,
        helm: path_of("helm")?,
        promtool: path_of("promtool")?,
        monitoring_crds: path_of("monitoring-crds")?,
        cache_dir,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_script_report() {
        let report = "testbed binaries: Kubernetes v1.37.1, etcd v3.6.16, helm v3.22.0\n\
            cache dir: /c\n\
            \x20 kube-apiserver           cache              /c/kube-apiserver\n\
            \x20 kube-controller-manager  cache              /c/kube-controller-manager\n\
            \x20 kube-scheduler           built              /c/kube-scheduler\n\
            \x20 kubectl                  KUBEBUILDER_ASSETS /k/kubectl\n\
            \x20 kubelet                  cache              /c/kubelet\n\
            \x20 kube-proxy               cache              /c/kube-proxy\n\
            \x20 crictl                   built              /c/crictl\n\
            \x20 coredns                  built              /c/coredns\n\
            \x20 etcd                     cache              /c/etcd\n\
            \x20 helm                     cache              /c/helm\n\
            \x20 promtool                 built              /c/promtool\n\
            \x20 monitoring-crds          fetched            /c/monitoring-crds-v0.85.0\n\
            nothing to build (1 s)\n\
            cache dir: /c";
        let lines: Vec<String> = report.lines().map(str::to_owned).collect();
        let b = parse_report(&lines).unwrap();
        assert_eq!(b.kubectl, PathBuf::from("/k/kubectl"));
        assert_eq!(b.kube_scheduler, PathBuf::from("/c/kube-scheduler"));
        assert_eq!(b.cache_dir, PathBuf::from("/c"));
        assert_eq!(
            b.monitoring_crds,
            PathBuf::from("/c/monitoring-crds-v0.85.0")
        );
    }
}
