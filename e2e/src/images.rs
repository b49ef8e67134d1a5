//! The real nodes' container images, built offline by `e2e/tools/build-images.py` (cached) and
//! handed to the nodes as Docker archives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::binaries::e2e_dir;
use crate::error::{Error, Result};

/// The operator image's repository in the chart's values.yaml.
pub const OPERATOR_REPOSITORY: &str = "ghcr.io/kvrocks-operator/kvrocks-operator";

/// The name the operator's own image is built under: the chart's default (its repository and
/// appVersion), so `helm install` with no image settings runs the binary just built.
pub fn operator_image() -> Result<String> {
    let chart = crate::binaries::repo_root().join("deploy/helm/kvrocks-operator/Chart.yaml");
    let text = std::fs::read_to_string(&chart).map_err(|e| Error::io("read", &chart, e))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::invalid(chart.display().to_string(), "no appVersion"))?;
    Ok(format!("{OPERATOR_REPOSITORY}:{version}"))
}

/// The CoreDNS image's name: upstream's, at the version pinned in `e2e/versions.env`.
pub fn coredns_image() -> Result<String> {
    let file = e2e_dir().join("versions.env");
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("COREDNS_VERSION="))
        .map(|v| v.trim().trim_start_matches('v').to_owned())
        .ok_or_else(|| Error::invalid(file.display().to_string(), "no COREDNS_VERSION"))?;
    Ok(format!("coredns/coredns:{version}"))
}

/// Builds (or finds cached) every image: `apache/kvrocks:2.10.1` only with a kvrocks binary.
/// Returns image name -> archive.
pub fn build(
    kvrocks_bin: Option<&Path>,
    operator_bin: &Path,
    coredns_bin: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let script = e2e_dir().join("tools/build-images.py");
    let started = Instant::now();
    let mut command = std::process::Command::new("python3");
    command
        .arg(&script)
        .arg("--print-json")
        .arg("--operator-bin")
        .arg(operator_bin)
        .arg("--operator-image")
        .arg(operator_image()?)
        .arg("--coredns-bin")
        .arg(coredns_bin)
        .arg("--coredns-image")
        .arg(coredns_image()?)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    match kvrocks_bin {
        Some(bin) => command.arg("--kvrocks-bin").arg(bin),
        None => command.env_remove("KVROCKS_BIN"),
    };
    let line = format!("python3 {}", script.display());
    let output = command.output().map_err(|e| Error::Command {
        command: line.clone(),
        detail: format!("cannot run it: {e}"),
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: line,
            detail: format!("{} (its output is above)", output.status),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let images: BTreeMap<String, PathBuf> = serde_json::from_str(stdout.trim())
        .map_err(|e| Error::invalid(format!("output of {line}"), e.to_string()))?;
    crate::say!(
        "testbed: images ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        images.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(images)
}
