//! Defaults and serde round trips of the three kinds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};

#[test]
fn defaults_fill_a_short_yaml() {
    let sentinel: KvrocksSentinel = serde_saphyr::from_str(
        "apiVersion: kvrocks.io/v1alpha1\nkind: KvrocksSentinel\nmetadata: {name: s}\nspec: {}\n",
    )
    .expect("parses");
    assert_eq!(sentinel.spec.replicas, 3);
    assert_eq!(sentinel.spec.down_after_milliseconds, 5000);
    assert!(sentinel.spec.validate().is_empty());

    let standard: KvrocksStandard = serde_saphyr::from_str(
        "apiVersion: kvrocks.io/v1alpha1\nkind: KvrocksStandard\nmetadata: {name: a}\nspec: {sentinel: {name: s}}\n",
    )
    .expect("parses");
    assert_eq!(standard.spec.replicas, 3);
    assert!(standard.spec.pod.storage.is_none());
    assert!(!standard.spec.pod.exporter.enabled);
    assert!(standard.spec.validate().is_empty());

    let cluster: KvrocksCluster = serde_saphyr::from_str(
        "apiVersion: kvrocks.io/v1alpha1\nkind: KvrocksCluster\nmetadata: {name: c}\nspec: {storage: {}}\n",
    )
    .expect("parses");
    assert_eq!(
        (cluster.spec.shards, cluster.spec.replicas_per_shard),
        (3, 1)
    );
    assert_eq!(
        cluster.spec.pod.storage.as_ref().map(|s| s.size.0.as_str()),
        Some("10Gi")
    );
    assert!(cluster.spec.sentinel.is_none());
}

#[test]
fn full_objects_round_trip() {
    let yaml = r#"
apiVersion: kvrocks.io/v1alpha1
kind: KvrocksCluster
metadata: {name: c, namespace: ns}
spec:
  shards: 4
  replicasPerShard: 2
  image: apache/kvrocks:2.10.1
  sentinel: {name: s}
  auth: {secretName: pw}
  config: {workers: "8", migrate-speed: "0"}
  storage: {size: 5Gi, storageClassName: fast, deleteClaimsOnDelete: true}
  resources: {requests: {cpu: 100m}}
  nodeSelector: {zone: a}
  tolerations: [{key: k, operator: Exists}]
  priorityClassName: high
  podLabels: {team: x}
  exporter: {enabled: true}
  slotMigrations: [{toShard: 1, slots: ["1-2", "300"]}]
status:
  observedGeneration: 2
  topologyVersion: 7
  shards:
  - index: 0
    slots: ["0-4095"]
    nodes: [{pod: c-0-0, ip: 10.0.0.1, port: 6379, nodeId: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, role: master}]
  migration: {slots: "1-2", fromShard: 0, toShard: 1, state: start}
"#;
    let cluster: KvrocksCluster = serde_saphyr::from_str(yaml).expect("parses");
    assert_eq!(
        cluster
            .spec
            .pod
            .scheduling
            .node_selector
            .get("zone")
            .map(String::as_str),
        Some("a")
    );
    assert_eq!(
        cluster
            .spec
            .pod
            .pod_metadata
            .pod_labels
            .get("team")
            .map(String::as_str),
        Some("x")
    );
    assert!(
        cluster.spec.validate().is_empty(),
        "{:?}",
        cluster.spec.validate()
    );
    let json = serde_json::to_string(&cluster).expect("serializes");
    let back: KvrocksCluster = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back, cluster);
    // Flattened scheduling fields serialize at the spec's top level, as the schema says.
    let value = serde_json::to_value(&cluster).expect("value");
    assert_eq!(value["spec"]["nodeSelector"]["zone"], "a");
    assert_eq!(value["spec"]["priorityClassName"], "high");
}

#[test]
fn rust_side_validation_matches_the_cel_rules() {
    let yaml = "apiVersion: kvrocks.io/v1alpha1\nkind: KvrocksCluster\nmetadata: {name: c}\nspec:\n  shards: 2\n  config: {requirepass: x}\n  slotMigrations: [{toShard: 2, slots: [\"5-5\"]}]\n";
    let cluster: KvrocksCluster = serde_saphyr::from_str(yaml).expect("parses");
    let problems = cluster.spec.validate();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("requirepass")));
    assert!(problems.iter().any(|p| p.contains("toShard")));
    assert!(problems.iter().any(|p| p.contains("5-5")));
}
