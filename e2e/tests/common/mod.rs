//! Set-up shared by the data-plane scenarios: each scenario gets a namespace of its own and an
//! operator that watches only that namespace, so scenarios of one test binary run side by side
//! on the binary's testbed and one failing scenario hides nothing from the others.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod standard;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kvrocks_client::NodeAddr;
use kvrocks_e2e::operator::Operator;
use kvrocks_e2e::{PodRef, Testbed};
use serde_json::json;

/// How long a resource may take to become Ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);

/// One scenario's world: the shared testbed, a client, its namespace and its own operator.
pub struct Scenario {
    pub testbed: &'static Testbed,
    pub client: Client,
    pub ns: String,
    pub operator: Operator,
}

impl Scenario {
    /// Starts the scenario `what` in namespace `ns`, or prints why it is skipped and returns
    /// `None`.
    pub async fn start(what: &str, ns: &str) -> Option<Self> {
        let testbed = Testbed::shared().await.unwrap();
        if !testbed.data_plane().is_real() {
            kvrocks_e2e::say!(
                "\nSKIPPED {what}: no apache/kvrocks image without a kvrocks binary; set KVROCKS_BIN (a stand-in never runs under a kvrocks image name)"
            );
            return None;
        }
        kvrocks_e2e::say!("{what}: {}", testbed.data_plane().describe());
        testbed.install_crds().await.unwrap();
        let client = testbed.client().await.unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces
            .create(
                &PostParams::default(),
                // Every pod the operator makes must pass the restricted Pod Security Standard.
                &serde_json::from_value(json!({"metadata": {
                    "name": ns,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                }}))
                .unwrap(),
            )
            .await;
        let operator = kvrocks_e2e::operator::start_operator(testbed, &["--namespaces", ns])
            .await
            .unwrap()?;
        Some(Self {
            testbed,
            client,
            ns: ns.to_owned(),
            operator,
        })
    }

    /// A typed API in the scenario's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The `password` key of a Secret.
    pub async fn password(&self, secret: &str) -> String {
        let secrets: Api<Secret> = self.api();
        let secret = secrets.get(secret).await.unwrap();
        String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap()
    }

    /// Sets the `password` key of a Secret.
    pub async fn set_password(&self, secret: &str, password: &str) {
        let secrets: Api<Secret> = self.api();
        secrets
            .patch(
                secret,
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"password": password}})),
            )
            .await
            .unwrap();
    }

    /// A pod of the namespace.
    pub fn pod(&self, name: &str) -> PodRef {
        PodRef::new(&self.ns, name)
    }

    /// A pod's current address on `port`.
    pub async fn addr(&self, pod: &str, port: u16) -> NodeAddr {
        NodeAddr::new(self.testbed.pod_ip(&self.pod(pod)).await.unwrap(), port)
    }

    /// The uid of every pod of the namespace whose name starts with `prefix`, by name.
    pub async fn pod_uids(&self, prefix: &str) -> BTreeMap<String, String> {
        self.api::<Pod>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.name_any().starts_with(prefix))
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .collect()
    }

    /// Merge-patches a resource's spec.
    pub async fn patch_spec<K>(&self, name: &str, spec: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }
}

/// Whether the conditions hold `Ready=True`.
pub fn ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}
