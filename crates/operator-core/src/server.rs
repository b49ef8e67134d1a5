//! What a running kvrocks says about itself that the operator must respect: its version
//! (`INFO server`: `kvrocks_version`) and the kvrocks.conf keys it knows (`CONFIG GET *`). A
//! `spec.config` key the running version does not list is neither rendered into kvrocks.conf nor
//! set with `CONFIG SET`; the resource reports it instead (a `Degraded` condition naming it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, Timeouts};

/// A process's version and known config keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// `kvrocks_version` (or `version`) from `INFO server`.
    pub version: Option<String>,
    /// Every key `CONFIG GET *` lists.
    pub config_keys: BTreeSet<String>,
}

/// Reads a process's version and config keys. A process that reports no `kvrocks_version` is
/// not kvrocks (a Redis server behind a kvrocks image name): its keys are not read, and it judges
/// no key.
pub async fn read(client: &NodeClient) -> Result<ServerFacts, kvrocks_client::Error> {
    let info = client.info_server().await?;
    let Some(version) = info.kvrocks_version.filter(|v| !v.is_empty()) else {
        return Ok(ServerFacts::default());
    };
    let keys = client.config_get("*").await?;
    Ok(ServerFacts {
        version: Some(version),
        config_keys: keys.into_keys().map(|k| k.to_ascii_lowercase()).collect(),
    })
}

/// The facts of every running pod (kvrocks on `port`) that answers, read side by side.
pub async fn read_running(pods: &[Pod], port: u16, password: &Password) -> Vec<ServerFacts> {
    let reads = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .map(|ip| async move {
            let endpoint = Endpoint::new(NodeAddr::new(ip, port))
                .with_password(password.clone())
                .with_timeouts(Timeouts::new(
                    Duration::from_secs(1),
                    Duration::from_secs(2),
                ));
            let client = NodeClient::connect(endpoint).await.ok()?;
            let facts = read(&client).await.ok();
            client.close().await;
            facts
        });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// What the running kvrocks says about a resource's `spec.config`, for one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigVerdict {
    /// Keys some running process does not know (the last known list when none answered).
    pub unsupported: Vec<String>,
    /// The versions the pods run (the last known when none answered).
    pub version: Option<String>,
    /// Whether `unsupported` differs from the last known list (worth an Event).
    pub changed: bool,
}

impl ConfigVerdict {
    /// `spec.config` without the unsupported keys: what is rendered and set live.
    pub fn supported(&self, config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        supported_config(config, &self.unsupported)
    }

    /// The `Degraded` reason and message, when a key is unsupported.
    pub fn condition(&self) -> Option<(String, String)> {
        unsupported_condition(&self.unsupported, self.version.as_deref())
    }
}

/// Reads every running pod and judges `config` against what they know; `last_unsupported` and
/// `last_version` (from status) stand when no pod answers.
pub async fn judge(
    pods: &[Pod],
    port: u16,
    password: &Password,
    config: &BTreeMap<String, String>,
    last_unsupported: &[String],
    last_version: Option<&str>,
) -> ConfigVerdict {
    let facts = read_running(pods, port, password).await;
    verdict(&facts, config, last_unsupported, last_version)
}

/// The pure half of [`judge`].
pub fn verdict(
    facts: &[ServerFacts],
    config: &BTreeMap<String, String>,
    last_unsupported: &[String],
    last_version: Option<&str>,
) -> ConfigVerdict {
    let unsupported = if facts.is_empty() {
        last_unsupported.to_vec()
    } else {
        unsupported_keys(config, facts)
    };
    ConfigVerdict {
        changed: unsupported != last_unsupported,
        unsupported,
        version: versions_text(facts).or_else(|| last_version.map(str::to_owned)),
    }
}

/// The `spec.config` keys that some answering process does not list, sorted. With no facts
/// (nothing answered) nothing is known to be unsupported.
pub fn unsupported_keys<'a>(
    config: &BTreeMap<String, String>,
    facts: impl IntoIterator<Item = &'a ServerFacts>,
) -> Vec<String> {
    let mut unsupported = BTreeSet::new();
    for fact in facts.into_iter().filter(|f| f.version.is_some()) {
        for key in config.keys() {
            if !fact.config_keys.contains(&key.to_ascii_lowercase()) {
                unsupported.insert(key.clone());
            }
        }
    }
    unsupported.into_iter().collect()
}

/// The versions the processes run, for status: one (`2.10.1`), or several joined by `, ` while
/// an image change rolls. None when nothing answered.
pub fn versions_text<'a>(facts: impl IntoIterator<Item = &'a ServerFacts>) -> Option<String> {
    let versions: BTreeSet<&str> = facts
        .into_iter()
        .filter_map(|f| f.version.as_deref())
        .collect();
    (!versions.is_empty()).then(|| versions.into_iter().collect::<Vec<_>>().join(", "))
}

/// `config` without the `skip` keys: what may be rendered and set live.
pub fn supported_config(
    config: &BTreeMap<String, String>,
    skip: &[String],
) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The `Degraded` reason and message for unsupported keys, or None when there are none.
pub fn unsupported_condition(keys: &[String], version: Option<&str>) -> Option<(String, String)> {
    if keys.is_empty() {
        return None;
    }
    Some((
        "UnsupportedConfig".to_owned(),
        format!(
            "spec.config sets keys kvrocks {} does not know: {}; they are not applied (remove them, or run a kvrocks that has them)",
            version.unwrap_or("(unknown version)"),
            keys.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version: &str, keys: &[&str]) -> ServerFacts {
        ServerFacts {
            version: Some(version.into()),
            config_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn config(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| ((*k).to_owned(), "1".to_owned()))
            .collect()
    }

    #[test]
    fn a_key_one_process_does_not_list_is_unsupported() {
        let old = facts("2.10.1", &["workers", "migrate-speed"]);
        let new = facts("2.17.0", &["workers", "migrate-batch-rate-limit-mb"]);
        let c = config(&["workers", "migrate-speed"]);
        assert!(unsupported_keys(&c, [&old]).is_empty());
        assert_eq!(unsupported_keys(&c, [&old, &new]), ["migrate-speed"]);
        assert!(
            unsupported_keys(&c, []).is_empty(),
            "nothing answered: nothing known"
        );
        let not_kvrocks = ServerFacts::default();
        assert!(
            unsupported_keys(&c, [&not_kvrocks]).is_empty(),
            "only kvrocks judges"
        );
    }

    #[test]
    fn with_no_answer_the_last_verdict_stands() {
        let c = config(&["workers", "bogus"]);
        let last = vec!["bogus".to_owned()];
        let v = verdict(&[], &c, &last, Some("2.10.1"));
        assert_eq!(v.unsupported, last);
        assert_eq!(v.version.as_deref(), Some("2.10.1"));
        assert!(!v.changed);
        let fresh = verdict(&[facts("2.10.1", &["workers"])], &c, &[], None);
        assert_eq!(fresh.unsupported, ["bogus"]);
        assert!(fresh.changed);
        assert_eq!(fresh.supported(&c).keys().collect::<Vec<_>>(), ["workers"]);
        assert!(fresh.condition().is_some_and(|(_, m)| m.contains("bogus")));
    }

    #[test]
    fn versions_are_listed_once_each() {
        let a = facts("2.10.1", &[]);
        let b = facts("2.11.0", &[]);
        assert_eq!(versions_text([&a, &a]).as_deref(), Some("2.10.1"));
        assert_eq!(versions_text([&b, &a]).as_deref(), Some("2.10.1, 2.11.0"));
        assert_eq!(versions_text([]), None);
    }

    #[test]
    fn unsupported_keys_are_left_out_and_named() {
        let c = config(&["workers", "bogus"]);
        let kept = supported_config(&c, &["bogus".to_owned()]);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["workers"]);
        let (reason, message) =
            unsupported_condition(&["bogus".to_owned()], Some("2.10.1")).unwrap();
        assert_eq!(reason, "UnsupportedConfig");
        assert!(message.contains("bogus") && message.contains("2.10.1"));
        assert_eq!(unsupported_condition(&[], None), None);
    }
}
