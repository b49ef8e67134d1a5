//! Start-up checks: the CRDs must be installed before the controllers can watch anything.

use anyhow::{Result, bail};
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};
use serde::de::DeserializeOwned;

async fn check<K>(client: &Client, namespace: Option<&str>) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let plural = K::plural(&());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => bail!(
            "the CRD {plural}.{group} is not installed. Install the CRDs first: \
             `kubectl apply -f config/crd/` (or `kvrocks-operator crd | kubectl apply -f -`), \
             or install the Helm chart, which ships them",
            group = K::group(&())
        ),
        Err(kube::Error::Api(status)) if status.code == 403 => bail!(
            "not allowed to list {plural}.{group}{scope}: {message}. Bind the operator's \
             ServiceAccount to the ClusterRole in config/rbac/role.yaml",
            group = K::group(&()),
            scope = namespace
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_default(),
            message = status.message
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("listing {plural} to check the CRD"))),
    }
}

/// Fails with a hint when a CRD is missing or cannot be read.
pub async fn ensure_crds(client: &Client, namespaces: Option<&[String]>) -> Result<()> {
    let scopes: Vec<Option<&str>> = match namespaces {
        Some(list) => list.iter().map(|n| Some(n.as_str())).collect(),
        None => vec![None],
    };
    for scope in scopes {
        check::<KvrocksSentinel>(client, scope).await?;
        check::<KvrocksStandard>(client, scope).await?;
        check::<KvrocksCluster>(client, scope).await?;
    }
    Ok(())
}
