//! Which changes of a KvrocksStandard or KvrocksCluster reconcile a sentinel group at once.
//!
//! Only what the group reads counts: the group an owner names, its password Secret, its master
//! (a Standard's `status.master`, a Cluster's shard masters) and whether it is being deleted.
//! Status writes about replicas and lag, which an owner's controller makes often, do not wake
//! the group. When an owner moves from one group to another, or goes, both the group it named
//! and the one it names now are woken, so the old group removes its monitor at once.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use kvrocks_api::labels::Role;
use kvrocks_api::{KvrocksCluster, KvrocksSentinel, KvrocksStandard};
use serde::de::DeserializeOwned;

/// What about an owner matters to the groups: the group it names, and everything else the
/// group reads from it, flattened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signature {
    /// The group the owner names, if any.
    pub group: Option<String>,
    /// The other fields the group reads.
    pub fields: Vec<String>,
}

/// The [`Signature`] of a Standard.
pub fn standard_signature(s: &KvrocksStandard) -> Signature {
    let master = s.status.as_ref().and_then(|st| st.master.as_ref());
    Signature {
        group: Some(s.spec.sentinel.name.clone()),
        fields: vec![
            s.spec.pod.auth.secret_name.clone().unwrap_or_default(),
            master.map(|m| m.ip.clone()).unwrap_or_default(),
            s.metadata.deletion_timestamp.is_some().to_string(),
        ],
    }
}

/// The [`Signature`] of a Cluster.
pub fn cluster_signature(c: &KvrocksCluster) -> Signature {
    let mut fields = vec![
        c.spec.pod.auth.secret_name.clone().unwrap_or_default(),
        c.spec.shards.to_string(),
        c.metadata.deletion_timestamp.is_some().to_string(),
    ];
    for shard in c.status.iter().flat_map(|s| &s.shards) {
        let masters: Vec<String> = shard
            .nodes
            .iter()
            .filter(|n| n.role == Role::Master)
            .map(|n| format!("{}:{}", n.ip, n.port))
            .collect();
        fields.push(format!("{}={}", shard.index, masters.join(",")));
    }
    Signature {
        group: c.spec.sentinel.as_ref().map(|s| s.name.clone()),
        fields,
    }
}

/// The last [`Signature`] seen of every owner, turning watch events into the groups to wake.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<(Option<String>, String), Signature>,
}

impl Tracker {
    /// The groups to wake for one watch event.
    pub fn on_event<K: Resource>(
        &mut self,
        event: watcher::Event<K>,
        signature: fn(&K) -> Signature,
    ) -> Vec<ObjectRef<KvrocksSentinel>> {
        let (obj, deleted) = match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => (o, false),
            watcher::Event::Delete(o) => (o, true),
            watcher::Event::Init | watcher::Event::InitDone => return Vec::new(),
        };
        let namespace = obj.namespace();
        let key = (namespace.clone(), obj.name_any());
        let now = signature(&obj);
        let before = if deleted {
            self.seen.remove(&key)
        } else {
            self.seen.insert(key, now.clone())
        };
        if !deleted && before.as_ref() == Some(&now) {
            return Vec::new();
        }
        let Some(namespace) = namespace else {
            return Vec::new();
        };
        let mut groups: Vec<String> = before
            .and_then(|b| b.group)
            .into_iter()
            .chain(now.group)
            .collect();
        groups.sort();
        groups.dedup();
        groups
            .into_iter()
            .map(|g| ObjectRef::new(&g).within(&namespace))
            .collect()
    }
}

/// A watch of `api` as the stream of groups to reconcile (see the module documentation).
pub fn group_triggers<K>(
    api: Api<K>,
    signature: fn(&K) -> Signature,
) -> impl Stream<Item = ObjectRef<KvrocksSentinel>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut tracker = Tracker::default();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .flat_map(move |event| {
            let refs = match event {
                Ok(event) => tracker.on_event(event, signature),
                Err(error) => {
                    tracing::debug!(%error, "owner watch");
                    Vec::new()
                }
            };
            futures::stream::iter(refs)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::{Value, json};

    fn standard(group: &str, status: Value) -> KvrocksStandard {
        serde_json::from_value(json!({
            "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {"sentinel": {"name": group}},
            "status": status,
        }))
        .unwrap()
    }

    fn names(refs: &[ObjectRef<KvrocksSentinel>]) -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn only_what_the_group_reads_wakes_it() {
        let mut t = Tracker::default();
        let sig = standard_signature;
        let first = t.on_event(watcher::Event::InitApply(standard("g", json!({}))), sig);
        assert_eq!(names(&first), ["g"]);
        assert_eq!(first[0].namespace.as_deref(), Some("ns"));
        let lag =
            json!({"replicas": [{"pod": "db-1", "ip": "10.0.0.2", "linkUp": true, "lagBytes": 5}]});
        assert!(
            t.on_event(watcher::Event::Apply(standard("g", lag)), sig)
                .is_empty(),
            "replica lag is none of the group's business"
        );
        let master = json!({"master": {"pod": "db-0", "ip": "10.0.0.1"}});
        assert_eq!(
            names(&t.on_event(watcher::Event::Apply(standard("g", master.clone())), sig)),
            ["g"]
        );
        assert_eq!(
            names(&t.on_event(watcher::Event::Apply(standard("h", master.clone())), sig)),
            ["g", "h"],
            "the old group drops its monitor, the new one adds it"
        );
        assert_eq!(
            names(&t.on_event(watcher::Event::Delete(standard("h", master)), sig)),
            ["h"]
        );
        assert!(
            t.on_event::<KvrocksStandard>(watcher::Event::InitDone, sig)
                .is_empty()
        );
    }

    #[test]
    fn cluster_shard_masters_are_part_of_the_signature() {
        let cluster = |ip: &str| -> KvrocksCluster {
            serde_json::from_value(json!({
                "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
                "metadata": {"name": "c", "namespace": "ns"},
                "spec": {"sentinel": {"name": "g"}},
                "status": {"shards": [{"index": 0, "nodes": [
                    {"pod": "c-0-0", "ip": ip, "port": 6379, "nodeId": "x", "role": "master"}]}]},
            }))
            .unwrap()
        };
        assert_ne!(
            cluster_signature(&cluster("10.0.0.1")),
            cluster_signature(&cluster("10.0.0.2"))
        );
        assert_eq!(
            cluster_signature(&cluster("10.0.0.1")).group.as_deref(),
            Some("g")
        );
    }
}
