#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testing::{mock_client, status_error};
use http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

fn service_json() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "db",
            "namespace": "ns",
            "labels": {"app.kubernetes.io/instance": "db"},
            "ownerReferences": [{
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard", "name": "db",
                "uid": "cr-uid", "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "clusterIP": "None",
            "selector": {"app.kubernetes.io/instance": "db"},
            "ports": [{"name": "kvrocks", "port": 6379}]
        }
    })
}

fn service() -> Service {
    serde_json::from_value(service_json()).unwrap()
}

/// What the API server makes of an applied body: server metadata, defaults, status.
fn as_stored(body: &Value) -> Value {
    let mut stored = body.clone();
    let meta = stored["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!("svc-uid"));
    meta.insert("resourceVersion".into(), json!("42"));
    meta.insert("creationTimestamp".into(), json!("2025-01-01T00:00:00Z"));
    meta.insert(
        "managedFields".into(),
        json!([{"manager": "kvrocks-operator", "operation": "Apply", "apiVersion": "v1"}]),
    );
    if stored["kind"] == "Service" {
        stored["spec"]["sessionAffinity"] = json!("None");
        stored["spec"]["type"] = json!("ClusterIP");
        stored["spec"]["ports"][0]["protocol"] = json!("TCP");
        stored["spec"]["ports"][0]["targetPort"] = json!(6379);
        stored["status"] = json!({"loadBalancer": {}});
    }
    stored
}

#[tokio::test]
async fn apply_sends_a_forced_apply_without_server_fields() {
    let (client, mut server) = mock_client();
    let mut desired = service();
    // Fields a caller may have copied from a live object must never be sent.
    desired.metadata.resource_version = Some("7".into());
    desired.metadata.uid = Some("old".into());
    desired.metadata.managed_fields = Some(vec![Default::default()]);
    desired.status = Some(Default::default());

    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        let body = req.body.clone();
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "Service");
        assert_eq!(body["metadata"]["name"], "db");
        assert_eq!(body["spec"]["clusterIP"], "None");
        for field in ["resourceVersion", "uid", "managedFields"] {
            assert!(
                body["metadata"].get(field).is_none(),
                "{field} sent: {body}"
            );
        }
        assert!(body.get("status").is_none(), "status sent: {body}");
        let hash = body["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(hash.len(), 16);
        req.respond(&as_stored(&body));
        server.assert_done().await;
    });

    let api: Api<Service> = Api::namespaced(client, "ns");
    let applied = apply(&api, &desired).await.unwrap();
    assert_eq!(applied.metadata.uid.as_deref(), Some("svc-uid"));
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn steady_state_writes_nothing() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");

    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        let stored = as_stored(&req.body);
        req.respond(&stored);
        server.assert_done().await;
    });

    let first = apply_if_changed(&api, &service(), None).await.unwrap();
    assert!(first.was_written());
    let live = first.into_object();
    // The next passes see the stored object (with defaults and server metadata) and send nothing.
    for _ in 0..3 {
        let again = apply_if_changed(&api, &service(), Some(&live))
            .await
            .unwrap();
        assert_eq!(again, Applied::Unchanged(live.clone()));
    }
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn drift_and_removed_fields_are_written() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");
    let stored: Service =
        serde_json::from_value(as_stored(&apply_body(&service()).unwrap())).unwrap();

    // Someone changed a field the operator sets.
    let mut drifted = stored.clone();
    drifted.spec.as_mut().unwrap().selector = Some([("x".to_string(), "y".to_string())].into());
    // The operator stopped setting a label: only the hash can tell.
    let mut without_label = service();
    without_label.metadata.labels = None;

    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        assert_eq!(
            req.body["spec"]["selector"]["app.kubernetes.io/instance"],
            "db"
        );
        let body = as_stored(&req.body);
        req.respond(&body);

        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        assert!(req.body["metadata"].get("labels").is_none());
        let body = as_stored(&req.body);
        req.respond(&body);
        server.assert_done().await;
    });

    assert!(
        apply_if_changed(&api, &service(), Some(&drifted))
            .await
            .unwrap()
            .was_written()
    );
    assert!(
        apply_if_changed(&api, &without_label, Some(&stored))
            .await
            .unwrap()
            .was_written()
    );
    drop(api);
    verifier.await.unwrap();
}

#[test]
fn normalized_quantities_do_not_count_as_changes() {
    let desired: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "ns"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"a": "b"}},
            "serviceName": "db",
            "template": {"spec": {"containers": [{
                "name": "kvrocks", "image": "apache/kvrocks:2.10.1",
                "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}}
            }]}}
        }
    }))
    .unwrap();
    let body = apply_body(&desired).unwrap();
    let mut stored = body.clone();
    stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] =
        json!({"cpu": "1", "memory": "1Gi"});
    stored["spec"]["podManagementPolicy"] = json!("OrderedReady");
    stored["status"] = json!({"replicas": 3});
    assert!(is_subset(&body, &stored));
    stored["spec"]["replicas"] = json!(1);
    assert!(!is_subset(&body, &stored));
}

#[test]
fn the_hash_depends_only_on_what_is_sent() {
    let a = apply_body(&service()).unwrap();
    let mut with_server_fields = service();
    with_server_fields.metadata.resource_version = Some("99".into());
    with_server_fields.metadata.annotations =
        Some([(APPLIED_HASH_ANNOTATION.to_string(), "stale".to_string())].into());
    assert_eq!(apply_body(&with_server_fields).unwrap(), a);
    let mut other = service();
    other.spec.as_mut().unwrap().cluster_ip = None;
    assert_ne!(
        apply_body(&other).unwrap()["metadata"]["annotations"][APPLIED_HASH_ANNOTATION],
        a["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    );
    assert_eq!(
        content_hash(&json!({"a": 1})),
        content_hash(&json!({"a": 1}))
    );
}

#[tokio::test]
async fn get_and_apply_creates_a_missing_object() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");
    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.assert(Method::GET, "/api/v1/namespaces/ns/services/db");
        req.respond_with(
            StatusCode::NOT_FOUND,
            &status_error(404, "NotFound", "not found"),
        );
        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        let body = as_stored(&req.body);
        req.respond(&body);
        server.assert_done().await;
    });
    let applied = get_and_apply_if_changed(&api, &service()).await.unwrap();
    assert!(applied.was_written());
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn apply_errors_name_the_object() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");
    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.respond_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &status_error(422, "Invalid", "spec.ports: Required value"),
        );
    });
    let err = apply(&api, &service()).await.unwrap_err();
    assert_eq!(err.metric_label(), "apply");
    let message = err.to_string();
    assert!(message.starts_with("applying Service ns/db: "), "{message}");
    verifier.await.unwrap();

    let mut nameless = service();
    nameless.metadata.name = None;
    let err = apply(&api, &nameless).await.unwrap_err();
    assert_eq!(err.metric_label(), "missing_name");
}

fn deployment_status(replicas: i32) -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(replicas),
        observed_generation: Some(2),
        ..DeploymentStatus::default()
    }
}

#[tokio::test]
async fn status_is_applied_with_type_meta_and_skipped_when_equal() {
    let (client, mut server) = mock_client();
    let api: Api<Deployment> = Api::namespaced(client, "ns");
    let live: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
        "spec": {"selector": {}, "template": {}},
        "status": {"replicas": 1, "observedGeneration": 2}
    }))
    .unwrap();

    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.assert_apply("/apis/apps/v1/namespaces/ns/deployments/d/status");
        assert_eq!(
            req.body,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "status": {"replicas": 3, "observedGeneration": 2}
            })
        );
        let mut answer = req.body.clone();
        answer["metadata"] = json!({"name": "d", "namespace": "ns"});
        req.respond(&answer);
        server.assert_done().await;
    });

    let unchanged = patch_status_if_changed(&api, &live, &deployment_status(1))
        .await
        .unwrap();
    assert!(unchanged.is_none());
    let updated = patch_status_if_changed(&api, &live, &deployment_status(3))
        .await
        .unwrap();
    assert_eq!(updated.unwrap().status.unwrap().replicas, Some(3));
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn status_errors_name_the_object() {
    let (client, mut server) = mock_client();
    let api: Api<Deployment> = Api::namespaced(client, "ns");
    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.respond_with(
            StatusCode::NOT_FOUND,
            &status_error(404, "NotFound", "gone"),
        );
    });
    let err = patch_status(&api, "d", &deployment_status(1))
        .await
        .unwrap_err();
    assert_eq!(err.metric_label(), "patch_status");
    assert!(
        err.to_string()
            .starts_with("applying status of Deployment ns/d: "),
        "{err}"
    );
    verifier.await.unwrap();
}
