//! The files in examples/ parse into the types and pass the Rust-side checks and the CEL rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};

fn example(name: &str) -> String {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cel_ok<K: CustomResourceExt>(yaml: &str) {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("schema");
    let schema = serde_json::to_value(schema).expect("schema json");
    Validator::new()
        .validate(&schema, &value, None)
        .expect("CEL rules accept the example");
}

#[test]
fn sentinel_example() {
    let yaml = example("sentinel.yaml");
    let cr: KvrocksSentinel = serde_saphyr::from_str(&yaml).expect("parses");
    assert!(cr.spec.validate().is_empty());
    cel_ok::<KvrocksSentinel>(&yaml);
}

#[test]
fn standard_example() {
    let yaml = example("standard.yaml");
    let cr: KvrocksStandard = serde_saphyr::from_str(&yaml).expect("parses");
    assert!(cr.spec.validate().is_empty());
    assert_eq!(cr.spec.sentinel.name, "sentinel");
    cel_ok::<KvrocksStandard>(&yaml);
}

#[test]
fn cluster_example() {
    let yaml = example("cluster.yaml");
    let cr: KvrocksCluster = serde_saphyr::from_str(&yaml).expect("parses");
    assert!(cr.spec.validate().is_empty());
    cel_ok::<KvrocksCluster>(&yaml);
}
