#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testing::{mock_client, status_error};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::{Value, json};

const SELECTOR: &str = "app.kubernetes.io/name=kvrocks,app.kubernetes.io/instance=db,\
                        app.kubernetes.io/component=standard,app.kubernetes.io/managed-by=kvrocks-operator";

/// The custom resource stand-in: only its name, namespace and UID matter here.
fn owner() -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "ns", "uid": "cr-uid"}
    }))
    .unwrap()
}

fn owned_by(uid: &str) -> Value {
    json!([{"apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard", "name": "db",
            "uid": uid, "controller": true}])
}

fn meta_item(name: &str, uid: &str, owners: Value, deleting: bool) -> Value {
    let mut metadata =
        json!({"name": name, "namespace": "ns", "uid": uid, "ownerReferences": owners});
    if deleting {
        metadata["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
}

fn metadata_list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "100"},
        "items": items
    })
}

fn service(name: &str, uid: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "ownerReferences": owned_by("cr-uid")}
    }))
    .unwrap()
}

#[test]
fn selector_comes_from_the_common_labels() {
    let owned = OwnedObjects::new(&owner(), Component::Standard).unwrap();
    assert_eq!(owned.selector(), SELECTOR);
    let mut nameless = owner();
    nameless.metadata.uid = None;
    let err = OwnedObjects::new(&nameless, Component::Standard).unwrap_err();
    assert_eq!(err.metric_label(), "missing_uid");
}

#[test]
fn only_owned_unapplied_live_objects_are_orphans() {
    let mut owned = OwnedObjects::new(&owner(), Component::Standard).unwrap();
    owned.record(&service("db", "applied-uid")).unwrap();
    let meta = |v: Value| -> ObjectMeta { serde_json::from_value(v["metadata"].clone()).unwrap() };
    assert!(!owned.is_orphan(&meta(meta_item(
        "db",
        "applied-uid",
        owned_by("cr-uid"),
        false
    ))));
    assert!(owned.is_orphan(&meta(meta_item(
        "db-1",
        "old-uid",
        owned_by("cr-uid"),
        false
    ))));
    assert!(!owned.is_orphan(&meta(meta_item("db-2", "x", owned_by("other-cr"), false))));
    assert!(!owned.is_orphan(&meta(meta_item("db-3", "y", json!([]), false))));
    assert!(!owned.is_orphan(&meta(meta_item("db-4", "z", owned_by("cr-uid"), true))));
    assert!(!owned.is_orphan(&ObjectMeta::default()));
    assert!(owned.is_recorded("applied-uid"));
    let err = owned.record(&Service::default()).unwrap_err();
    assert_eq!(err.metric_label(), "missing_uid");
}

#[tokio::test]
async fn deletes_exactly_the_owned_object_not_applied_in_this_pass() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");

    let verifier = tokio::spawn(async move {
        // The pass applies the headless Service; it is unchanged on the server side.
        let req = server.next().await;
        req.assert_apply("/api/v1/namespaces/ns/services/db");
        let mut stored = req.body.clone();
        stored["metadata"]["uid"] = json!("uid-db");
        req.respond(&stored);

        let req = server.next().await;
        req.assert(Method::GET, "/api/v1/namespaces/ns/services");
        req.assert_query("labelSelector", SELECTOR);
        req.respond(&metadata_list(vec![
            meta_item("db", "uid-db", owned_by("cr-uid"), false),
            meta_item("db-master", "uid-master", owned_by("cr-uid"), false),
            meta_item("db-foreign", "uid-foreign", owned_by("someone-else"), false),
            meta_item("db-unowned", "uid-unowned", json!([]), false),
            meta_item("db-going", "uid-going", owned_by("cr-uid"), true),
        ]));

        let req = server.next().await;
        req.assert(Method::DELETE, "/api/v1/namespaces/ns/services/db-master");
        assert_eq!(req.body["preconditions"], json!({"uid": "uid-master"}));
        assert_eq!(req.body["propagationPolicy"], "Background");
        req.respond(&serde_json::to_value(service("db-master", "uid-master")).unwrap());
        server.assert_done().await;
    });

    let mut owned = OwnedObjects::new(&owner(), Component::Standard).unwrap();
    let mut desired = service("db", "ignored");
    desired.metadata.uid = None;
    let applied = owned.apply(&api, &desired, None).await.unwrap();
    assert!(applied.was_written());
    assert!(owned.is_recorded("uid-db"));
    let deleted = owned.delete_orphans(&api).await.unwrap();
    assert_eq!(deleted, ["db-master"]);
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn gone_or_replaced_orphans_are_not_errors() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");
    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.respond(&metadata_list(vec![
            meta_item("a", "uid-a", owned_by("cr-uid"), false),
            meta_item("b", "uid-b", owned_by("cr-uid"), false),
        ]));
        let req = server.next().await;
        req.assert(Method::DELETE, "/api/v1/namespaces/ns/services/a");
        req.respond_with(
            StatusCode::NOT_FOUND,
            &status_error(404, "NotFound", "gone"),
        );
        let req = server.next().await;
        req.assert(Method::DELETE, "/api/v1/namespaces/ns/services/b");
        req.respond_with(
            StatusCode::CONFLICT,
            &status_error(409, "Conflict", "uid precondition"),
        );
        server.assert_done().await;
    });
    let owned = OwnedObjects::new(&owner(), Component::Standard).unwrap();
    assert!(owned.delete_orphans(&api).await.unwrap().is_empty());
    drop(api);
    verifier.await.unwrap();
}

#[tokio::test]
async fn list_and_delete_failures_name_what_failed() {
    let (client, mut server) = mock_client();
    let api: Api<Service> = Api::namespaced(client, "ns");
    let verifier = tokio::spawn(async move {
        let req = server.next().await;
        req.respond_with(
            StatusCode::FORBIDDEN,
            &status_error(403, "Forbidden", "no list"),
        );
        let req = server.next().await;
        req.respond(&metadata_list(vec![meta_item(
            "a",
            "uid-a",
            owned_by("cr-uid"),
            false,
        )]));
        let req = server.next().await;
        req.respond_with(
            StatusCode::FORBIDDEN,
            &status_error(403, "Forbidden", "no delete"),
        );
    });
    let owned = OwnedObjects::new(&owner(), Component::Standard).unwrap();
    let err = owned.delete_orphans(&api).await.unwrap_err();
    assert_eq!(err.metric_label(), "list_orphans");
    assert!(
        err.to_string().contains("for orphan cleanup of ns/db"),
        "{err}"
    );
    let err = owned.delete_orphans(&api).await.unwrap_err();
    assert_eq!(err.metric_label(), "delete_orphan");
    assert!(
        err.to_string()
            .starts_with("deleting orphaned Service ns/a: "),
        "{err}"
    );
    verifier.await.unwrap();
}
