//! The generated CRDs: structural schemas, descriptions, subresources and CEL rules evaluated
//! client-side with the same schema the apiserver gets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::core::cel::Validator;
use kvrocks_api::crds;
use serde_json::{Value, json};

fn schema_of(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind exists");
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Walks a schema and reports every node the apiserver would not accept as structural.
fn structural_problems(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    for banned in [
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
        "definitions",
        "$defs",
    ] {
        if obj.contains_key(banned) {
            out.push(format!("{path}: has {banned}"));
        }
    }
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if !typed {
        out.push(format!("{path}: no type"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_problems(child, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_problems(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        structural_problems(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_schema_is_structural() {
    for kind in ["KvrocksSentinel", "KvrocksStandard", "KvrocksCluster"] {
        let mut problems = Vec::new();
        structural_problems(&schema_of(kind), kind, &mut problems);
        assert!(
            problems.is_empty(),
            "{kind} is not structural: {problems:#?}"
        );
    }
}

/// Every field of our own (everything under spec and status, k8s pod-spec types included) has a
/// description, so `kubectl explain` explains it.
#[test]
fn every_field_is_documented() {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                let documented = child
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !documented {
                    out.push(p.clone());
                }
                walk(child, &p, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(items, &format!("{path}[]"), out);
        }
    }
    for kind in ["KvrocksSentinel", "KvrocksStandard", "KvrocksCluster"] {
        let schema = schema_of(kind);
        let mut missing = Vec::new();
        walk(
            &schema["properties"]["spec"],
            &format!("{kind}.spec"),
            &mut missing,
        );
        walk(
            &schema["properties"]["status"],
            &format!("{kind}.status"),
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }
}

#[test]
fn names_subresources_and_columns() {
    let all = crds();
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "kvrockssentinels.kvrocks.io",
            "kvrocksstandards.kvrocks.io",
            "kvrocksclusters.kvrocks.io"
        ]
    );
    for (crd, short, scaled) in [
        (&all[0], "kvsentinel", true),
        (&all[1], "kvstandard", true),
        (&all[2], "kvcluster", false),
    ] {
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some(), "{short}: status subresource");
        assert_eq!(sub.scale.is_some(), scaled, "{short}: scale subresource");
        let columns = version
            .additional_printer_columns
            .as_ref()
            .expect("columns");
        assert!(
            columns.iter().any(|c| c.name == "Status"),
            "{short}: Status column"
        );
    }
}

fn object(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kvrocks.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
    })
}

fn check(kind: &str, spec: Value) -> Result<(), String> {
    Validator::new()
        .validate(&schema_of(kind), &object(kind, spec), None)
        .map_err(|e| format!("{e:?}"))
}

fn check_update(kind: &str, old: Value, new: Value) -> Result<(), String> {
    Validator::new()
        .validate(
            &schema_of(kind),
            &object(kind, new),
            Some(&object(kind, old)),
        )
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn cel_sentinel_replicas_odd_and_at_least_three() {
    for good in [3, 5, 7] {
        assert!(
            check("KvrocksSentinel", json!({"replicas": good})).is_ok(),
            "{good}"
        );
    }
    for bad in [0, 1, 2, 4, 6] {
        let err = check("KvrocksSentinel", json!({"replicas": bad})).expect_err("refused");
        assert!(err.contains("odd and at least 3"), "{bad}: {err}");
    }
}

#[test]
fn cel_standard_and_cluster_sizes() {
    let sentinel = json!({"name": "s"});
    assert!(
        check(
            "KvrocksStandard",
            json!({"replicas": 1, "sentinel": sentinel})
        )
        .is_ok()
    );
    assert!(
        check(
            "KvrocksStandard",
            json!({"replicas": 0, "sentinel": sentinel})
        )
        .is_err()
    );
    assert!(
        check(
            "KvrocksCluster",
            json!({"shards": 1, "replicasPerShard": 0})
        )
        .is_ok()
    );
    assert!(check("KvrocksCluster", json!({"shards": 0})).is_err());
    assert!(
        check(
            "KvrocksCluster",
            json!({"shards": 3, "replicasPerShard": -1})
        )
        .is_err()
    );
}

#[test]
fn cel_slot_strings() {
    let spec =
        |slots: Value| json!({"shards": 3, "slotMigrations": [{"toShard": 1, "slots": slots}]});
    assert!(
        check(
            "KvrocksCluster",
            spec(json!(["0", "1-2", "16383", "100-16383"]))
        )
        .is_ok()
    );
    for bad in ["16384", "5-5", "6-5", "1-16384", "a", "-1", "1-", "99999"] {
        let err = check("KvrocksCluster", spec(json!([bad]))).expect_err(bad);
        assert!(err.contains("0 <= A < B <= 16383"), "{bad}: {err}");
    }
    // The Rust-side parser agrees with the CEL rule on every one of these.
    for s in ["0", "1-2", "16383", "100-16383"] {
        assert!(kvrocks_api::slots::parse_slot_string(s).is_ok(), "{s}");
    }
    for s in ["16384", "5-5", "6-5", "1-16384", "a", "-1", "1-", "99999"] {
        assert!(kvrocks_api::slots::parse_slot_string(s).is_err(), "{s}");
    }
    let out_of_range = json!({"shards": 2, "slotMigrations": [{"toShard": 2, "slots": ["1"]}]});
    assert!(
        check("KvrocksCluster", out_of_range)
            .expect_err("toShard")
            .contains("toShard")
    );
}

#[test]
fn cel_owned_config_keys() {
    for key in kvrocks_api::config::OPERATOR_OWNED_KEYS {
        let spec = json!({"sentinel": {"name": "s"}, "config": {*key: "x"}});
        let err = check("KvrocksStandard", spec).expect_err(key);
        assert!(
            err.contains("owned") || err.contains("operator owns"),
            "{key}: {err}"
        );
        let err = check("KvrocksCluster", json!({"config": {*key: "x"}})).expect_err(key);
        assert!(err.contains("operator owns"), "{key}: {err}");
    }
    let ok = json!({"sentinel": {"name": "s"}, "config": {"workers": "4", "rocksdb.block_size": "16384"}});
    assert!(check("KvrocksStandard", ok).is_ok());
    let injected = json!({"sentinel": {"name": "s"}, "config": {"workers": "4\nrequirepass x"}});
    assert!(check("KvrocksStandard", injected).is_err());
    let upper = json!({"sentinel": {"name": "s"}, "config": {"Requirepass": "x"}});
    assert!(check("KvrocksStandard", upper).is_err());
}

#[test]
fn cel_typed_config_values_name_the_key() {
    for (key, value, says) in [
        ("slave-serve-stale-data", "maybe", "must be yes or no"),
        ("workers", "lots", "must be an integer"),
        ("rocksdb.compression", "brotli", "must be one of no, snappy"),
        ("log-level", "loud", "must be one of debug"),
        ("tls-cert-file", "/etc/passwd", "may not set"),
        ("tls-key-file-pass", "secret", "may not set"),
    ] {
        let spec = json!({"sentinel": {"name": "s"}, "config": {key: value, "workers": if key == "workers" { value } else { "4" }}});
        let err = check("KvrocksStandard", spec).expect_err(key);
        assert!(
            err.contains(says) && err.contains(key),
            "{key}={value}: {err}"
        );
    }
    let fine = json!({"config": {"slave-serve-stale-data": "no", "rocksdb.compression": "zstd",
        "log-level": "warning", "proto-max-bulk-len": "64M", "compact-cron": "0 3 * * *"}});
    assert!(check("KvrocksCluster", fine).is_ok());
}

#[test]
fn cel_storage_class_is_immutable_once_set() {
    let with = |class: Option<&str>| {
        let mut storage = json!({"size": "1Gi"});
        if let Some(c) = class {
            storage["storageClassName"] = json!(c);
        }
        json!({"sentinel": {"name": "s"}, "storage": storage})
    };
    assert!(check_update("KvrocksStandard", with(None), with(Some("fast"))).is_ok());
    assert!(check_update("KvrocksStandard", with(Some("fast")), with(Some("fast"))).is_ok());
    let err = check_update("KvrocksStandard", with(Some("fast")), with(Some("slow")))
        .expect_err("changed");
    assert!(err.contains("immutable"), "{err}");
    assert!(check_update("KvrocksStandard", with(Some("fast")), with(None)).is_err());
}
