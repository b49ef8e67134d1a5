//! Which monitors a group should have: one per KvrocksStandard and one per shard of every
//! KvrocksCluster that names the group, computed from their specs and statuses (pure).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kvrocks_api::common::AuthSpec;
use kvrocks_api::labels::{KVROCKS_PORT, Role, names};
use kvrocks_api::{KvrocksCluster, KvrocksStandard};
use kvrocks_client::Password;

use crate::model::{Addr, DesiredMonitor, MonitorName, Owner, OwnerKind, PendingMonitor};

/// Whether a Standard names `group` as its sentinel group.
pub fn standard_uses(group: &str, standard: &KvrocksStandard) -> bool {
    standard.spec.sentinel.name == group
}

/// Whether a Cluster names `group` as its sentinel group.
pub fn cluster_uses(group: &str, cluster: &KvrocksCluster) -> bool {
    cluster
        .spec
        .sentinel
        .as_ref()
        .is_some_and(|s| s.name == group)
}

/// Every Standard and Cluster that names `group`, being deleted or not: while one remains the
/// group refuses to go.
pub fn references(
    group: &str,
    standards: &[KvrocksStandard],
    clusters: &[KvrocksCluster],
) -> Vec<Owner> {
    let standards = standards
        .iter()
        .filter(|s| standard_uses(group, s))
        .map(|s| Owner {
            kind: OwnerKind::Standard,
            name: s.name_any(),
        });
    let clusters = clusters
        .iter()
        .filter(|c| cluster_uses(group, c))
        .map(|c| Owner {
            kind: OwnerKind::Cluster,
            name: c.name_any(),
        });
    let mut all: Vec<Owner> = standards.chain(clusters).collect();
    all.sort();
    all
}

/// The Secret that holds an owner's password: `spec.auth.secretName` or `<cr>-auth`.
pub fn secret_name(owner: &str, auth: &AuthSpec) -> String {
    auth.secret_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| names::auth_secret(owner))
}

/// The Secret in which an owner's controller keeps the password in effect on its pods while
/// it rotates to a new one from [`secret_name`]: `<cr>-auth-applied` (written by the standard
/// controller). Sentinel must use the password the pods accept, or it sees the master answer
/// `NOAUTH`, calls it down and fails it over; so this Secret, when it exists, wins.
pub fn applied_secret_name(owner: &str) -> String {
    kvrocks_api::labels::names::applied_auth_secret(owner)
}

/// The Secrets the live (not deleting) owners of `group` need, by name.
pub fn needed_secrets(
    group: &str,
    standards: &[KvrocksStandard],
    clusters: &[KvrocksCluster],
) -> BTreeSet<String> {
    let standards = standards
        .iter()
        .filter(|s| standard_uses(group, s) && s.metadata.deletion_timestamp.is_none())
        .flat_map(|s| {
            let cr = s.name_any();
            [secret_name(&cr, &s.spec.pod.auth), applied_secret_name(&cr)]
        });
    let clusters = clusters
        .iter()
        .filter(|c| cluster_uses(group, c) && c.metadata.deletion_timestamp.is_none())
        .flat_map(|c| {
            let cr = c.name_any();
            [secret_name(&cr, &c.spec.pod.auth), applied_secret_name(&cr)]
        });
    standards.chain(clusters).collect()
}

/// A password read from its Secret, or why it could not be.
pub type PasswordLookup = Result<Password, String>;

/// The monitors `group` should have, and those it must keep but cannot set up yet.
///
/// `passwords` maps a Secret name (see [`needed_secrets`]) to its password or to the reason
/// there is none (for a person: "Secret ns/x-auth does not exist"). An owner being deleted gets
/// no monitor at all, so the controller removes it and the owner's finalizer can finish.
pub fn desired_monitors(
    group: &str,
    standards: &[KvrocksStandard],
    clusters: &[KvrocksCluster],
    passwords: &BTreeMap<String, PasswordLookup>,
) -> (Vec<DesiredMonitor>, Vec<PendingMonitor>) {
    let mut desired = Vec::new();
    let mut pending = Vec::new();
    // The password in effect (see `applied_secret_name`), else the one the spec names.
    let password_of = |owner: &str, auth: &AuthSpec| -> PasswordLookup {
        if let Some(Ok(applied)) = passwords.get(&applied_secret_name(owner)) {
            return Ok(applied.clone());
        }
        let secret = secret_name(owner, auth);
        passwords
            .get(&secret)
            .cloned()
            .unwrap_or_else(|| Err(format!("Secret {secret} was not read")))
    };

    for standard in standards
        .iter()
        .filter(|s| standard_uses(group, s) && s.metadata.deletion_timestamp.is_none())
    {
        let cr = standard.name_any();
        let name = MonitorName::standard(&cr);
        let master = standard
            .status
            .as_ref()
            .and_then(|s| s.master.as_ref())
            .filter(|m| !m.ip.is_empty());
        let Some(master) = master else {
            pending.push(PendingMonitor {
                name,
                reason: format!(
                    "KvrocksStandard {cr} has no master in its status yet (the standard controller \
                     sets it once the first pod runs)"
                ),
            });
            continue;
        };
        match password_of(&cr, &standard.spec.pod.auth) {
            Ok(password) => desired.push(DesiredMonitor::new(
                name,
                Addr::new(master.ip.clone(), kvrocks_port()),
                password,
            )),
            Err(reason) => pending.push(PendingMonitor { name, reason }),
        }
    }

    for cluster in clusters
        .iter()
        .filter(|c| cluster_uses(group, c) && c.metadata.deletion_timestamp.is_none())
    {
        let cr = cluster.name_any();
        let password = password_of(&cr, &cluster.spec.pod.auth);
        let status_shards = cluster
            .status
            .as_ref()
            .map(|s| s.shards.as_slice())
            .unwrap_or_default();
        let spec_shards = u32::try_from(cluster.spec.shards.max(0)).unwrap_or(0);
        let indices: BTreeSet<u32> = (0..spec_shards)
            .chain(
                status_shards
                    .iter()
                    .filter_map(|s| u32::try_from(s.index).ok()),
            )
            .collect();
        for index in indices {
            let name = MonitorName::cluster(&cr, index);
            let shard = status_shards
                .iter()
                .find(|s| u32::try_from(s.index).ok() == Some(index));
            let masters: Vec<_> = shard
                .map(|s| s.nodes.iter().filter(|n| n.role == Role::Master).collect())
                .unwrap_or_default();
            let master = match masters.as_slice() {
                [one] if !one.ip.is_empty() => match u16::try_from(one.port) {
                    Ok(port) if port != 0 => Ok(Addr::new(one.ip.clone(), port)),
                    _ => Err(format!(
                        "shard {index} of KvrocksCluster {cr} lists its master {} with port {}",
                        one.pod, one.port
                    )),
                },
                [] | [_] => Err(format!(
                    "shard {index} of KvrocksCluster {cr} has no master in its status yet"
                )),
                many => Err(format!(
                    "shard {index} of KvrocksCluster {cr} lists {} masters in its status; waiting \
                     until the cluster controller settles on one",
                    many.len()
                )),
            };
            match (master, &password) {
                (Ok(master), Ok(password)) => {
                    desired.push(DesiredMonitor::new(name, master, password.clone()));
                }
                (Err(reason), _) => pending.push(PendingMonitor { name, reason }),
                (_, Err(reason)) => pending.push(PendingMonitor {
                    name,
                    reason: reason.clone(),
                }),
            }
        }
    }
    desired.sort_by(|a, b| a.name.cmp(&b.name));
    pending.sort_by(|a, b| a.name.cmp(&b.name));
    (desired, pending)
}

fn kvrocks_port() -> u16 {
    u16::try_from(KVROCKS_PORT).unwrap_or(6379)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::{Value, json};

    fn standard(name: &str, group: &str, status: Value) -> KvrocksStandard {
        serde_json::from_value(json!({
            "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksStandard",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"sentinel": {"name": group}},
            "status": status,
        }))
        .unwrap()
    }

    fn cluster(name: &str, group: Option<&str>, shards: i32, status: Value) -> KvrocksCluster {
        let mut spec = json!({"shards": shards});
        if let Some(g) = group {
            spec["sentinel"] = json!({"name": g});
        }
        serde_json::from_value(json!({
            "apiVersion": "kvrocks.io/v1alpha1", "kind": "KvrocksCluster",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn node(ip: &str, role: &str) -> Value {
        json!({"pod": format!("p-{ip}"), "ip": ip, "port": 6379, "nodeId": "x", "role": role})
    }

    fn passwords(entries: &[(&str, PasswordLookup)]) -> BTreeMap<String, PasswordLookup> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_standard_with_a_master_and_a_secret_is_monitored() {
        let standards = [
            standard(
                "a",
                "g",
                json!({"master": {"pod": "a-0", "ip": "10.0.0.1"}}),
            ),
            standard(
                "b",
                "other",
                json!({"master": {"pod": "b-0", "ip": "10.0.0.2"}}),
            ),
            standard("c", "g", json!({})),
        ];
        let pw = passwords(&[("a-auth", Ok(Password::new("secret")))]);
        assert_eq!(
            needed_secrets("g", &standards, &[]),
            ["a-auth", "a-auth-applied", "c-auth", "c-auth-applied"]
                .map(str::to_owned)
                .into()
        );
        let (desired, pending) = desired_monitors("g", &standards, &[], &pw);
        assert_eq!(desired.len(), 1);
        assert_eq!(desired[0].name.render(), "standard_a");
        assert_eq!(desired[0].master, Addr::new("10.0.0.1", 6379));
        assert_eq!(desired[0].password.expose(), "secret");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].name.render(), "standard_c");
        assert!(
            pending[0].reason.contains("no master"),
            "{}",
            pending[0].reason
        );
    }

    #[test]
    fn a_missing_secret_keeps_the_monitor_pending() {
        let standards = [standard(
            "a",
            "g",
            json!({"master": {"pod": "a-0", "ip": "10.0.0.1"}}),
        )];
        let pw = passwords(&[("a-auth", Err("Secret ns/a-auth does not exist".into()))]);
        let (desired, pending) = desired_monitors("g", &standards, &[], &pw);
        assert!(desired.is_empty());
        assert_eq!(pending[0].reason, "Secret ns/a-auth does not exist");
    }

    #[test]
    fn deleting_owners_are_not_monitored_but_still_reference_the_group() {
        let mut deleting = standard(
            "a",
            "g",
            json!({"master": {"pod": "a-0", "ip": "10.0.0.1"}}),
        );
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let standards = [deleting];
        let clusters = [
            cluster("c", Some("g"), 1, json!({})),
            cluster("d", None, 1, json!({})),
        ];
        let pw = passwords(&[("a-auth", Ok(Password::new("x")))]);
        let (desired, pending) = desired_monitors("g", &standards, &clusters, &pw);
        assert!(desired.is_empty());
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(
            references("g", &standards, &clusters)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["KvrocksStandard a", "KvrocksCluster c"]
        );
    }

    #[test]
    fn every_cluster_shard_gets_a_monitor_at_its_master() {
        let clusters = [cluster(
            "c",
            Some("g"),
            3,
            json!({"shards": [
                {"index": 0, "nodes": [node("10.0.1.1", "master"), node("10.0.1.2", "replica")]},
                {"index": 1, "nodes": [node("10.0.2.1", "replica")]},
                {"index": 2, "nodes": [node("10.0.3.1", "master"), node("10.0.3.2", "master")]},
                {"index": 3, "nodes": [node("10.0.4.1", "master")]},
            ]}),
        )];
        let pw = passwords(&[("c-auth", Ok(Password::new("p")))]);
        let (desired, pending) = desired_monitors("g", &[], &clusters, &pw);
        let names: Vec<_> = desired.iter().map(|d| d.name.render()).collect();
        assert_eq!(names, ["cluster_c_0", "cluster_c_3"]);
        assert_eq!(desired[0].master, Addr::new("10.0.1.1", 6379));
        let pending: Vec<_> = pending.iter().map(|p| p.name.render()).collect();
        assert_eq!(pending, ["cluster_c_1", "cluster_c_2"]);
    }

    #[test]
    fn the_password_in_effect_wins_over_a_new_one() {
        let standards = [standard(
            "a",
            "g",
            json!({"master": {"pod": "a-0", "ip": "10.0.0.1"}}),
        )];
        let pw = passwords(&[
            ("a-auth", Ok(Password::new("new"))),
            ("a-auth-applied", Ok(Password::new("in-effect"))),
        ]);
        let (desired, _) = desired_monitors("g", &standards, &[], &pw);
        assert_eq!(desired[0].password.expose(), "in-effect");
        let pw = passwords(&[
            ("a-auth", Ok(Password::new("new"))),
            ("a-auth-applied", Err("does not exist".into())),
        ]);
        let (desired, _) = desired_monitors("g", &standards, &[], &pw);
        assert_eq!(desired[0].password.expose(), "new");
    }

    #[test]
    fn the_auth_secret_defaults_to_name_auth() {
        assert_eq!(secret_name("db", &AuthSpec::default()), "db-auth");
        let own = AuthSpec {
            secret_name: Some("mine".into()),
        };
        assert_eq!(secret_name("db", &own), "mine");
    }
}
