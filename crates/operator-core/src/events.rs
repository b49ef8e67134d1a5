//! Kubernetes Events on the objects the operator manages, through kube's [`Recorder`].
//!
//! Events are for people: `reason` is CamelCase (`FailoverCompleted`), `action` names what the
//! operator did (`Failover`), and the note says what happened to which pod or shard.
//! **Never put a password, a Secret's data or a connection string with credentials in a note**:
//! Events are readable by far more people than Secrets.

use kube::Resource;
use kube::runtime::events::{Event, Recorder};

pub use kube::runtime::events::EventType;

use crate::conditions::truncate;
use crate::error::{Error, Result, kind_of, object_name};

/// Longest `reason` and `action` the API server accepts.
const MAX_REASON_LEN: usize = 128;
/// Longest `note` the API server accepts.
const MAX_NOTE_LEN: usize = 1024;

/// The event kube's recorder publishes, with fields cut to the API server's limits.
pub fn build_event(type_: EventType, reason: &str, action: &str, note: Option<String>) -> Event {
    Event {
        type_,
        reason: truncate(reason.to_string(), MAX_REASON_LEN),
        action: truncate(action.to_string(), MAX_REASON_LEN),
        note: note.map(|n| truncate(n, MAX_NOTE_LEN)),
        secondary: None,
    }
}

/// `text` with every occurrence of each non-empty `secret` replaced by `<redacted>`.
///
/// For notes and messages built from errors of code that may echo what it was given (a
/// failed `AUTH`, a command line): redact the instance's password before publishing.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_string(), |acc, secret| {
            acc.replace(secret, "<redacted>")
        })
}

/// Publishes an event about `obj`.
pub async fn publish<K>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: Option<String>,
) -> Result<()>
where
    K: Resource,
    K::DynamicType: Default,
{
    let reference = obj.object_ref(&K::DynamicType::default());
    let event = build_event(type_, reason, action, note);
    recorder
        .publish(&event, &reference)
        .await
        .map_err(|source| Error::PublishEvent {
            kind: kind_of::<K>(),
            object: object_name(obj),
            reason: reason.to_string(),
            source: Box::new(source),
        })
}

/// Publishes a `Normal` event about `obj`; a failure is logged, not returned, because an event
/// that could not be written must not fail a reconcile.
pub async fn normal<K>(
    recorder: &Recorder,
    obj: &K,
    reason: &str,
    action: &str,
    note: impl Into<String>,
) where
    K: Resource,
    K::DynamicType: Default,
{
    best_effort(
        recorder,
        obj,
        EventType::Normal,
        reason,
        action,
        note.into(),
    )
    .await;
}

/// Publishes a `Warning` event about `obj`; a failure is logged, not returned.
pub async fn warning<K>(
    recorder: &Recorder,
    obj: &K,
    reason: &str,
    action: &str,
    note: impl Into<String>,
) where
    K: Resource,
    K::DynamicType: Default,
{
    best_effort(
        recorder,
        obj,
        EventType::Warning,
        reason,
        action,
        note.into(),
    )
    .await;
}

async fn best_effort<K>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource,
    K::DynamicType: Default,
{
    if let Err(error) = publish(recorder, obj, type_, reason, action, Some(note)).await {
        tracing::warn!(%error, reason, "could not publish event");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::{mock_client, status_error};
    use http::{Method, StatusCode};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::runtime::events::Reporter;
    use serde_json::json;

    fn sts() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "u1"}
        }))
        .unwrap()
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "kvrocks-operator".into(),
            instance: Some("operator-0".into()),
        }
    }

    #[test]
    fn fields_are_cut_to_the_api_limits() {
        let e = build_event(
            EventType::Warning,
            &"R".repeat(300),
            "Act",
            Some("é".repeat(1000)),
        );
        assert_eq!(e.reason.len(), MAX_REASON_LEN);
        assert!(e.note.as_ref().unwrap().len() <= MAX_NOTE_LEN);
        assert_eq!(e.action, "Act");
        assert!(e.secondary.is_none());
    }

    #[test]
    fn redacts_every_secret() {
        let note = "AUTH s3cr3t failed; retry with s3cr3t";
        assert_eq!(
            redact(note, &["s3cr3t", ""]),
            "AUTH <redacted> failed; retry with <redacted>"
        );
        assert_eq!(redact("nothing here", &[]), "nothing here");
    }

    #[tokio::test]
    async fn publishes_on_the_object_reference() {
        let (client, mut server) = mock_client();
        let recorder = Recorder::new(client, reporter());
        let verifier = tokio::spawn(async move {
            let req = server.next().await;
            req.assert(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events");
            let body = req.body.clone();
            assert_eq!(body["type"], "Warning");
            assert_eq!(body["reason"], "FailoverStarted");
            assert_eq!(body["action"], "Failover");
            assert_eq!(body["note"], "promoting db-1: db-0 is unreachable");
            assert_eq!(body["reportingController"], "kvrocks-operator");
            assert_eq!(body["reportingInstance"], "operator-0");
            assert_eq!(body["regarding"]["kind"], "StatefulSet");
            assert_eq!(body["regarding"]["name"], "db");
            assert_eq!(body["regarding"]["uid"], "u1");
            req.respond(&body);

            // A failure is only logged by the best-effort helpers.
            let req = server.next().await;
            assert_eq!(req.body["type"], "Normal");
            req.respond_with(
                StatusCode::FORBIDDEN,
                &status_error(403, "Forbidden", "no events"),
            );
            server.assert_done().await;
        });
        warning(
            &recorder,
            &sts(),
            "FailoverStarted",
            "Failover",
            "promoting db-1: db-0 is unreachable",
        )
        .await;
        normal(&recorder, &sts(), "Scaled", "Scale", "3 replicas").await;
        drop(recorder);
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn publish_returns_errors_naming_the_object() {
        let (client, mut server) = mock_client();
        let recorder = Recorder::new(client, reporter());
        let verifier = tokio::spawn(async move {
            let req = server.next().await;
            req.respond_with(
                StatusCode::FORBIDDEN,
                &status_error(403, "Forbidden", "no events"),
            );
        });
        let err = publish(
            &recorder,
            &sts(),
            EventType::Normal,
            "Created",
            "Apply",
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.metric_label(), "publish_event");
        assert!(
            err.to_string()
                .starts_with("publishing event Created on StatefulSet ns/db: "),
            "{err}"
        );
        verifier.await.unwrap();
    }
}
