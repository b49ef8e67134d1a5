//! Pod volumes on the host: emptyDir (a directory of the pod, removed with it), persistentVolumeClaim
//! (the bound PV's directory, which outlives the pod), hostPath, and the files of configMap, secret,
//! downwardAPI and projected volumes (rewritten when their sources change, as the kubelet does).
//! Each container then bind-mounts them at its mount paths (see [`super::mounts`]).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;

use super::downward::{PodFacts, field_value, resource_value};
use super::env::Sources;
use super::mounts::BindMount;

/// Where a pod's volumes live on the host.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes {
    /// Volume name -> host directory.
    pub paths: BTreeMap<String, PathBuf>,
}

/// The directory of volume `name` of a pod whose directory is `pod_dir`.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// What file-backed volumes (configMap, secret, downwardAPI, projected) should contain: relative
/// path -> (content, mode).
pub type Files = BTreeMap<PathBuf, (Vec<u8>, u32)>;

/// Why a pod's volumes are not ready yet (the pod waits in `ContainerCreating` with this message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// Resolves every volume of the pod to a host directory, creating emptyDir directories and
/// writing the files of file-backed volumes. Fails (to be retried) while a PVC is not bound or a
/// non-optional ConfigMap or Secret is missing.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    facts: &PodFacts,
    sources: &(dyn Sources + Sync),
) -> Result<PodVolumes, NotReady> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut volumes = PodVolumes::default();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = if let Some(claim) = &volume.persistent_volume_claim {
            claim_dir(client, namespace, &claim.claim_name).await?
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                create_dir(&path)?;
            }
            path
        } else {
            let dir = volume_dir(pod_dir, &volume.name);
            create_dir(&dir)?;
            if volume.empty_dir.is_none() {
                let files = desired_files(client, pod, volume, facts, sources).await?;
                sync_files(&dir, &files).map_err(NotReady)?;
            }
            dir
        };
        volumes.paths.insert(volume.name.clone(), path);
    }
    Ok(volumes)
}

/// Rewrites the files of the pod's configMap, secret, downwardAPI and projected volumes from their
/// current sources (service-account tokens are kept). Errors are returned for logging only.
pub async fn refresh(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    facts: &PodFacts,
    sources: &(dyn Sources + Sync),
) -> Result<(), String> {
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let file_backed = volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.downward_api.is_some()
            || volume.projected.is_some();
        if !file_backed {
            continue;
        }
        let dir = volume_dir(pod_dir, &volume.name);
        let mut files = desired_files(client, pod, volume, facts, sources)
            .await
            .map_err(|e| e.0)?;
        // Keep issued tokens instead of asking for new ones every few seconds.
        keep_tokens(volume, &dir, &mut files);
        sync_files(&dir, &files)?;
    }
    Ok(())
}

fn keep_tokens(volume: &Volume, dir: &Path, files: &mut Files) {
    for source in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
    {
        if let Some(token) = &source.service_account_token
            && let Ok(existing) = std::fs::read(dir.join(&token.path))
        {
            files.insert(PathBuf::from(&token.path), (existing, 0o644));
        }
    }
}

async fn claim_dir(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, NotReady> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| {
            NotReady(format!(
                "get persistentvolumeclaim {namespace}/{claim}: {e}"
            ))
        })?
        .ok_or_else(|| NotReady(format!("persistentvolumeclaim \"{claim}\" not found")))?;
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let (Some("Bound"), Some(volume_name)) = (phase, volume_name) else {
        return Err(NotReady(format!(
            "persistentvolumeclaim \"{claim}\" is not bound yet"
        )));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get(volume_name)
        .await
        .map_err(|e| NotReady(format!("get persistentvolume {volume_name}: {e}")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            NotReady(format!(
                "persistentvolume {volume_name} is neither hostPath nor local: the testbed cannot mount it"
            ))
        })?;
    let path = PathBuf::from(path);
    create_dir(&path)?;
    Ok(path)
}

fn create_dir(path: &Path) -> Result<(), NotReady> {
    std::fs::create_dir_all(path).map_err(|e| NotReady(format!("create {}: {e}", path.display())))
}

/// The files a file-backed volume should hold now.
async fn desired_files(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
    facts: &PodFacts,
    sources: &(dyn Sources + Sync),
) -> Result<Files, NotReady> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut files = Files::new();
    if let Some(cm) = &volume.config_map {
        let mode = mode_of(cm.default_mode, 0o644);
        let data = sources.config_map(namespace, &cm.name);
        add_keyed(
            &mut files,
            "configmap",
            &cm.name,
            data,
            cm.items.as_deref(),
            cm.optional,
            mode,
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let mode = mode_of(secret.default_mode, 0o644);
        let data = sources.secret(namespace, &name);
        add_keyed(
            &mut files,
            "secret",
            &name,
            data,
            secret.items.as_deref(),
            secret.optional,
            mode,
        )?;
    } else if let Some(downward) = &volume.downward_api {
        let mode = mode_of(downward.default_mode, 0o644);
        add_downward(&mut files, pod, facts, downward.items.as_deref(), mode)?;
    } else if let Some(projected) = &volume.projected {
        let mode = mode_of(projected.default_mode, 0o644);
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = sources.config_map(namespace, &cm.name);
                add_keyed(
                    &mut files,
                    "configmap",
                    &cm.name,
                    data,
                    cm.items.as_deref(),
                    cm.optional,
                    mode,
                )?;
            }
            if let Some(secret) = &source.secret {
                let data = sources.secret(namespace, &secret.name);
                add_keyed(
                    &mut files,
                    "secret",
                    &secret.name,
                    data,
                    secret.items.as_deref(),
                    secret.optional,
                    mode,
                )?;
            }
            if let Some(downward) = &source.downward_api {
                add_downward(&mut files, pod, facts, downward.items.as_deref(), mode)?;
            }
            if let Some(token) = &source.service_account_token {
                let text = request_token(
                    client,
                    pod,
                    token.audience.as_deref(),
                    token.expiration_seconds,
                )
                .await?;
                files.insert(safe_path(&token.path)?, (text.into_bytes(), mode));
            }
        }
    } else {
        return Err(NotReady(format!(
            "volume {:?}: this volume type is not supported by the testbed (emptyDir, \
             persistentVolumeClaim, hostPath, configMap, secret, downwardAPI, projected are)",
            volume.name
        )));
    }
    Ok(files)
}

fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o777)
}

fn add_keyed(
    files: &mut Files,
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<(), NotReady> {
    let Some(data) = data else {
        if optional == Some(true) {
            return Ok(());
        }
        return Err(NotReady(format!("{kind} \"{name}\" not found")));
    };
    match items {
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional == Some(true) {
                        continue;
                    }
                    return Err(NotReady(format!(
                        "{kind} \"{name}\" has no key {:?}",
                        item.key
                    )));
                };
                let mode = item
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .map_or(mode, |m| m & 0o777);
                files.insert(safe_path(&item.path)?, (value.clone().into_bytes(), mode));
            }
        }
        None => {
            for (key, value) in data {
                files.insert(safe_path(&key)?, (value.into_bytes(), mode));
            }
        }
    }
    Ok(())
}

fn add_downward(
    files: &mut Files,
    pod: &Pod,
    facts: &PodFacts,
    items: Option<&[DownwardAPIVolumeFile]>,
    mode: u32,
) -> Result<(), NotReady> {
    for item in items.into_iter().flatten() {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, facts, &field.field_path)
        } else if let Some(resource) = &item.resource_field_ref {
            let container: Option<&Container> = resource.container_name.as_deref().and_then(|c| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|x| x.name == c))
            });
            resource_value(pod, facts, container, resource)
        } else {
            Err("neither fieldRef nor resourceFieldRef".to_owned())
        }
        .map_err(|e| NotReady(format!("downwardAPI {:?}: {e}", item.path)))?;
        let mode = item
            .mode
            .and_then(|m| u32::try_from(m).ok())
            .map_or(mode, |m| m & 0o777);
        files.insert(safe_path(&item.path)?, (value.into_bytes(), mode));
    }
    Ok(())
}

/// A relative path without `..`, as the API server also demands.
fn safe_path(path: &str) -> Result<PathBuf, NotReady> {
    let p = PathBuf::from(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(NotReady(format!(
            "volume file path {path:?} must be relative, without '..'"
        )))
    }
}

async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String, NotReady> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3607).max(600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let reply = api
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            NotReady(format!(
                "token for serviceaccount {namespace}/{account}: {e}"
            ))
        })?;
    reply.status.map(|s| s.token).ok_or_else(|| {
        NotReady(format!(
            "token for serviceaccount {namespace}/{account}: empty reply"
        ))
    })
}

/// Makes `dir` hold exactly `files`: changed files are replaced atomically (write + rename),
/// files no longer wanted are removed.
pub fn sync_files(dir: &Path, files: &Files) -> Result<(), String> {
    for (rel, (content, mode)) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        let same = std::fs::read(&path).is_ok_and(|old| &old == content);
        if same {
            continue;
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        std::fs::write(&tmp, content).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
    }
    remove_unwanted(dir, dir, files)
}

fn remove_unwanted(base: &Path, dir: &Path, files: &Files) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if files.keys().any(|f| f.starts_with(&rel)) {
                remove_unwanted(base, &path, files)?;
            } else {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| format!("remove {}: {e}", path.display()))?;
            }
        } else if !files.contains_key(&rel) {
            std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The bind mounts of one container: each volumeMount's volume directory (or its `subPath`,
/// created when missing, with `$(VAR)` expanded for `subPathExpr`).
pub fn bind_mounts(
    container: &Container,
    volumes: &PodVolumes,
    env: &BTreeMap<String, String>,
) -> Result<Vec<BindMount>, String> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let base = volumes.paths.get(&mount.name).ok_or_else(|| {
            format!(
                "volumeMount {:?}: the pod has no volume of that name",
                mount.name
            )
        })?;
        let sub = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => {
                Some(super::env::expand(e, |name| env.get(name).cloned()))
            }
            _ => None,
        };
        let source = match sub {
            Some(sub) => {
                let rel = safe_path(&sub).map_err(|e| e.0)?;
                let path = base.join(rel);
                if !path.exists() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("create subPath {}: {e}", path.display()))?;
                }
                path
            }
            None => base.clone(),
        };
        mounts.push(BindMount {
            source,
            target: PathBuf::from(&mount.mount_path),
            read_only: mount.read_only == Some(true),
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sync_replaces_changed_and_removes_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        sync_files(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/b")).unwrap(), b"2");
        let mode = std::fs::metadata(dir.path().join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        files.remove(&PathBuf::from("sub/b"));
        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        sync_files(dir.path(), &files).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"changed");
        assert!(!dir.path().join("sub").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn keyed_volumes_honour_items_and_optional() {
        let mut files = Files::new();
        let data: BTreeMap<String, String> = [("k".to_owned(), "v".to_owned())].into();
        let items = [KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o400),
        }];
        add_keyed(
            &mut files,
            "secret",
            "s",
            Some(data.clone()),
            Some(&items),
            None,
            0o644,
        )
        .unwrap();
        assert_eq!(files[&PathBuf::from("dir/file")], (b"v".to_vec(), 0o400));
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(
            add_keyed(
                &mut files,
                "secret",
                "s",
                Some(data),
                Some(&missing),
                None,
                0o644
            )
            .is_err()
        );
        assert!(add_keyed(&mut files, "configmap", "c", None, None, Some(true), 0o644).is_ok());
        let err = add_keyed(&mut files, "configmap", "c", None, None, None, 0o644).unwrap_err();
        assert_eq!(err.0, "configmap \"c\" not found");
        assert!(safe_path("../etc/passwd").is_err());
        assert!(safe_path("/abs").is_err());
    }
}
