//! The CRDs from `config/crd/` in a real kube-apiserver: they install, the examples are accepted
//! as written, and the CEL rules refuse bad specs with the apiserver's own message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use kvrocks_e2e::Testbed;
use kvrocks_e2e::binaries::repo_root;
use tokio::sync::OnceCell;

const GROUP: &str = "kvrocks.io";
const VERSION: &str = "v1alpha1";

/// The testbed with the CRDs installed (once per test binary).
async fn testbed() -> &'static Testbed {
    static CRDS: OnceCell<&'static Testbed> = OnceCell::const_new();
    CRDS.get_or_init(|| async {
        let testbed = Testbed::shared().await.expect("testbed starts");
        let names = testbed.install_crds().await.expect("CRDs install");
        assert_eq!(
            names,
            [
                "kvrocksclusters.kvrocks.io",
                "kvrockssentinels.kvrocks.io",
                "kvrocksstandards.kvrocks.io"
            ]
        );
        testbed
    })
    .await
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

fn api_for(client: &Client, namespace: &str, object: &DynamicObject) -> Api<DynamicObject> {
    let types = object.types.as_ref().expect("apiVersion and kind");
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, &types.kind);
    let plural = format!("{}s", types.kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn example(name: &str) -> DynamicObject {
    let path = repo_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Creates `object` and returns the apiserver's refusal message; panics when it is accepted.
async fn rejection(client: &Client, namespace: &str, object: DynamicObject) -> String {
    let api = api_for(client, namespace, &object);
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => panic!("the apiserver accepted an invalid object: {created:?}"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "an Invalid status, got {e:?}");
            eprintln!(
                "apiserver refused {}: {}",
                object.metadata.name.as_deref().unwrap_or("?"),
                e.message
            );
            e.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn examples_are_accepted_as_written() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "examples").await;
    for file in ["sentinel.yaml", "standard.yaml", "cluster.yaml"] {
        let object = example(file);
        let api = api_for(&client, "examples", &object);
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("examples/{file} refused: {e}"));
        let name = created.metadata.name.clone().unwrap();
        // What the apiserver stored is what the file says (defaults aside).
        assert_eq!(
            created.data["spec"]["replicas"],
            object.data["spec"]["replicas"]
        );
        api.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test]
async fn even_sentinel_replicas_are_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    let mut object = example("sentinel.yaml");
    object.metadata.name = Some("even".into());
    object.data["spec"]["replicas"] = 4.into();
    let message = rejection(&client, "cel", object).await;
    assert!(
        message.contains("spec.replicas: Invalid value")
            && message.contains("sentinel replicas must be odd and at least 3"),
        "{message}"
    );
}

#[tokio::test]
async fn slot_16384_is_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    let mut object = example("cluster.yaml");
    object.metadata.name = Some("slots".into());
    object.data["spec"]["slotMigrations"] = serde_json::json!([{"toShard": 1, "slots": ["16384"]}]);
    let message = rejection(&client, "cel", object).await;
    assert!(
        message.contains("spec.slotMigrations[0].slots")
            && message.contains("every slot is N or A-B with 0 <= A < B <= 16383"),
        "{message}"
    );
}

#[tokio::test]
async fn owned_config_keys_are_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    let mut object = example("standard.yaml");
    object.metadata.name = Some("owned-key".into());
    object.data["spec"]["config"]["port"] = "6380".into();
    let message = rejection(&client, "cel", object).await;
    assert!(
        message.contains("spec.config")
            && message.contains("config may not set keys the operator owns"),
        "{message}"
    );
}

#[tokio::test]
async fn a_storage_size_that_is_no_quantity_is_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    for (name, size) in [
        ("lots", serde_json::json!("lots")),
        ("negative", serde_json::json!(-1)),
    ] {
        let mut object = example("cluster.yaml");
        object.metadata.name = Some(format!("size-{name}"));
        object.data["spec"]["storage"] = serde_json::json!({"size": size});
        let message = rejection(&client, "cel", object).await;
        assert!(
            message.contains("spec.storage.size")
                && message.contains("storage.size must be a quantity such as 10Gi or 500Mi"),
            "{message}"
        );
    }
    // A valid one is accepted.
    let mut object = example("cluster.yaml");
    object.metadata.name = Some("size-ok".into());
    object.data["spec"]["storage"] = serde_json::json!({"size": "1.5Gi"});
    let api = api_for(&client, "cel", &object);
    api.create(&PostParams::default(), &object).await.unwrap();
    api.delete("size-ok", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_name_too_long_for_the_objects_named_after_it_is_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    for file in ["sentinel.yaml", "standard.yaml", "cluster.yaml"] {
        let mut object = example(file);
        object.metadata.name = Some("n".repeat(kvrocks_api::common::MAX_NAME_LEN + 1));
        let message = rejection(&client, "cel", object).await;
        assert!(
            message.contains("metadata.name must be at most 40 characters"),
            "{file}: {message}"
        );
    }
}

#[tokio::test]
async fn credentials_paths_and_writable_replicas_in_config_are_refused() {
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "cel").await;
    for (key, value, says) in [
        (
            "namespace.tenant",
            "a-token",
            "config may not carry credentials",
        ),
        (
            "backup-dir",
            "/tmp/elsewhere",
            "config may not set keys the operator owns",
        ),
        (
            "slave-read-only",
            "no",
            "config may not set keys the operator owns",
        ),
    ] {
        let mut object = example("standard.yaml");
        object.metadata.name = Some(format!("cfg-{}", key.replace('.', "-")));
        object.data["spec"]["config"][key] = value.into();
        let message = rejection(&client, "cel", object).await;
        assert!(
            message.contains("spec.config") && message.contains(says),
            "{key}: {message}"
        );
    }
}

/// Merges `patch` into `value` (objects key by key; anything else replaced).
fn merge(value: &mut serde_json::Value, patch: &serde_json::Value) {
    match (value, patch) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[tokio::test]
async fn every_invalid_spec_of_the_table_is_refused_naming_its_field() {
    use serde_json::json;
    let testbed = testbed().await;
    let client = testbed.client().await.unwrap();
    namespace(&client, "invalid").await;
    let long = "n".repeat(kvrocks_api::common::MAX_NAME_LEN + 1);
    // (example, spec patch or a name, the field the message names, what it says)
    let table: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "sentinel.yaml",
            json!({"replicas": 4}),
            "spec.replicas",
            "odd and at least 3",
        ),
        (
            "sentinel.yaml",
            json!({"replicas": 1}),
            "spec.replicas",
            "odd and at least 3",
        ),
        (
            "sentinel.yaml",
            json!({"replicas": "three"}),
            "spec.replicas",
            "integer",
        ),
        (
            "sentinel.yaml",
            json!({"downAfterMilliseconds": "soon"}),
            "spec.downAfterMilliseconds",
            "integer",
        ),
        (
            "sentinel.yaml",
            json!({"name": long}),
            "metadata.name",
            "at most 40",
        ),
        (
            "standard.yaml",
            json!({"replicas": 0}),
            "spec.replicas",
            "at least 1",
        ),
        (
            "standard.yaml",
            json!({"replicas": "x"}),
            "spec.replicas",
            "integer",
        ),
        (
            "standard.yaml",
            json!({"config": {"port": "6380"}}),
            "spec.config",
            "operator owns",
        ),
        (
            "standard.yaml",
            json!({"config": {"requirepass": "x"}}),
            "spec.config",
            "operator owns",
        ),
        (
            "standard.yaml",
            json!({"config": {"rename-command": "CONFIG x"}}),
            "spec.config",
            "operator owns",
        ),
        (
            "standard.yaml",
            json!({"config": {"dir": "/tmp"}}),
            "spec.config",
            "operator owns",
        ),
        (
            "standard.yaml",
            json!({"config": {"namespace.team": "token"}}),
            "spec.config",
            "credentials",
        ),
        (
            "standard.yaml",
            json!({"config": {"Workers": "4"}}),
            "spec.config",
            "lower-case",
        ),
        (
            "standard.yaml",
            json!({"config": {"workers": "4\nrequirepass x"}}),
            "spec.config",
            "single lines",
        ),
        (
            "standard.yaml",
            json!({"config": {"workers": 4}}),
            "spec.config.workers",
            "string",
        ),
        (
            "standard.yaml",
            json!({"storage": {"size": "lots"}}),
            "spec.storage.size",
            "quantity",
        ),
        (
            "standard.yaml",
            json!({"storage": {"size": "10 Gi"}}),
            "spec.storage.size",
            "quantity",
        ),
        (
            "standard.yaml",
            json!({"name": long}),
            "metadata.name",
            "at most 40",
        ),
        (
            "cluster.yaml",
            json!({"shards": 0}),
            "spec.shards",
            "between 1 and 1024",
        ),
        (
            "cluster.yaml",
            json!({"shards": 2000}),
            "spec.shards",
            "between 1 and 1024",
        ),
        (
            "cluster.yaml",
            json!({"replicasPerShard": 17}),
            "spec.replicasPerShard",
            "between 0 and 16",
        ),
        (
            "cluster.yaml",
            json!({"replicasPerShard": -1}),
            "spec.replicasPerShard",
            "between 0 and 16",
        ),
        (
            "cluster.yaml",
            json!({"failover": {"timeout": "soon"}}),
            "spec.failover.timeout",
            "3s or 1500ms",
        ),
        (
            "cluster.yaml",
            json!({"slotMigrations": [{"toShard": 5, "slots": ["1"]}]}),
            "spec",
            "existing shard",
        ),
        (
            "cluster.yaml",
            json!({"slotMigrations": [{"toShard": 1, "slots": ["5-5"]}]}),
            "spec.slotMigrations[0].slots",
            "0 <= A < B <= 16383",
        ),
        (
            "cluster.yaml",
            json!({"slotMigrations": [{"toShard": 1, "slots": ["20000"]}]}),
            "spec.slotMigrations[0].slots",
            "0 <= A < B <= 16383",
        ),
        (
            "cluster.yaml",
            json!({"storage": {"size": -1}}),
            "spec.storage.size",
            "quantity",
        ),
        (
            "cluster.yaml",
            json!({"config": {"slave-read-only": "no"}}),
            "spec.config",
            "operator owns",
        ),
        (
            "cluster.yaml",
            json!({"name": long}),
            "metadata.name",
            "at most 40",
        ),
        (
            "standard.yaml",
            json!({"config": {"slave-serve-stale-data": "maybe"}}),
            "slave-serve-stale-data",
            "must be yes or no",
        ),
        (
            "cluster.yaml",
            json!({"config": {"workers": "lots"}}),
            "workers",
            "must be an integer",
        ),
        (
            "standard.yaml",
            json!({"config": {"rocksdb.compression": "brotli"}}),
            "rocksdb.compression",
            "must be one of no, snappy",
        ),
        (
            "cluster.yaml",
            json!({"config": {"tls-cert-file": "/etc/passwd"}}),
            "tls-cert-file",
            "may not set",
        ),
        (
            "standard.yaml",
            json!({"config": {"tls-key-file-pass": "hunter2"}}),
            "tls-key-file-pass",
            "may not set",
        ),
    ];
    assert!(table.len() >= 25);
    for (i, (file, patch, field, says)) in table.into_iter().enumerate() {
        let mut object = example(file);
        object.metadata.name = Some(format!("invalid-{i}"));
        match patch.get("name").and_then(|n| n.as_str()) {
            Some(name) => object.metadata.name = Some(name.to_owned()),
            None => merge(&mut object.data["spec"], &patch),
        }
        let message = rejection(&client, "invalid", object).await;
        assert!(
            message.contains(field) && message.contains(says),
            "case {i} ({file} {patch}): expected {field:?} and {says:?} in {message:?}"
        );
    }
}
