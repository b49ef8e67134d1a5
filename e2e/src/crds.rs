//! Installing the project's CRDs (`config/crd/*.yaml`) into the testbed's apiserver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::binaries::repo_root;
use crate::error::{Error, Result};
use crate::wait;

/// Field manager of everything the testbed applies.
pub const FIELD_MANAGER: &str = "kvrocks-e2e";
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// `config/crd` of the source tree.
pub fn crd_dir() -> PathBuf {
    repo_root().join("config/crd")
}

/// Server-side applies every CRD file in `dir` and waits until each is Established; returns
/// their names.
pub async fn install(client: &kube::Client, dir: &Path) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read directory", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("read", file, e))?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .map_err(|e| Error::invalid(file.display().to_string(), e.to_string()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| Error::kube(format!("apply CRD {name} from {}", file.display()), e))?;
        names.push(name);
    }
    for name in &names {
        wait::for_object(&api, name, ESTABLISHED_TIMEOUT, "Established", established).await?;
    }
    Ok(names)
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
