//! Kubeconfig files for each identity of the testbed, and kube clients built from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};
use crate::pki::Pki;

/// Writes `<root>/<name>.kubeconfig` for the client certificate `stem` of `pki`, talking to the
/// apiserver at `server`.
pub fn write(root: &Path, name: &str, server: &str, pki: &Pki, stem: &str) -> Result<PathBuf> {
    let pair = pki.pair(stem);
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: testbed\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: {stem}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: {stem}\n\
         current-context: testbed\n",
        ca = pki.ca_cert().display(),
        cert = pair.cert.display(),
        key = pair.key.display(),
    );
    let path = root.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
    Ok(path)
}

/// A client from a kubeconfig file, optionally aimed at another server with the same CA (the
/// controller manager's and scheduler's own secure ports, for their /healthz).
pub async fn client(path: &Path, server: Option<&str>) -> Result<kube::Client> {
    let mut kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    if let Some(server) = server {
        for cluster in &mut kubeconfig.clusters {
            if let Some(c) = cluster.cluster.as_mut() {
                c.server = Some(server.to_owned());
            }
        }
    }
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(60));
    kube::Client::try_from(config)
        .map_err(|e| Error::kube(format!("client from {}", path.display()), e))
}

/// `GET path` through `client`, as text (for /readyz and /healthz).
pub async fn get_text(client: &kube::Client, path: &str) -> std::result::Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())
}
