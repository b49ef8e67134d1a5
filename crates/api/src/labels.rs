//! Label keys, values, finalizers and object names shared by every controller.

/// `app.kubernetes.io/name`: always [`APP_NAME`] on objects we manage.
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the name of the owning custom resource.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: `sentinel`, `standard` or `cluster`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always [`MANAGER`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `kvrocks.io/shard`: the shard index of a cluster pod.
pub const SHARD: &str = "kvrocks.io/shard";
/// `kvrocks.io/role`: `master` or `replica`, kept true by the operator after every failover.
pub const ROLE: &str = "kvrocks.io/role";
/// `kvrocks.io/sentinel`: the KvrocksSentinel group that monitors this pod.
pub const SENTINEL: &str = "kvrocks.io/sentinel";

/// Value of [`NAME`].
pub const APP_NAME: &str = "kvrocks";
/// Value of [`MANAGED_BY`], also the server-side apply field manager.
pub const MANAGER: &str = "kvrocks-operator";

/// Value of [`ROLE`] on the master.
pub const ROLE_MASTER: &str = "master";
/// Value of [`ROLE`] on a replica.
pub const ROLE_REPLICA: &str = "replica";

/// What a kvrocks node is: the value of [`ROLE`] and of a cluster node's `role` in status.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes.
    Master,
    /// Follows a master.
    #[default]
    Replica,
}

impl Role {
    /// The label value ([`ROLE_MASTER`] or [`ROLE_REPLICA`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => ROLE_MASTER,
            Role::Replica => ROLE_REPLICA,
        }
    }

    /// The role a label value names, None for anything else.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            ROLE_MASTER => Some(Role::Master),
            ROLE_REPLICA => Some(Role::Replica),
            _ => None,
        }
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ordinal at the end of a StatefulSet pod name (`c-2-10` is 10); None when the name does
/// not end in `-<digits>`. Ordinals compare as numbers, never as text.
pub fn ordinal(pod: &str) -> Option<u32> {
    let (_, tail) = pod.rsplit_once('-')?;
    if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// The kind of workload a resource runs; the value of [`COMPONENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// A KvrocksSentinel group.
    Sentinel,
    /// A KvrocksStandard instance.
    Standard,
    /// A KvrocksCluster.
    Cluster,
}

impl Component {
    /// The label value of this component.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sentinel => "sentinel",
            Component::Standard => "standard",
            Component::Cluster => "cluster",
        }
    }
}

/// The labels every object owned by the custom resource `instance` carries.
pub fn common_labels(
    instance: &str,
    component: Component,
) -> std::collections::BTreeMap<String, String> {
    [
        (NAME, APP_NAME),
        (INSTANCE, instance),
        (COMPONENT, component.as_str()),
        (MANAGED_BY, MANAGER),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A label selector string matching every object of `instance` of the given component.
pub fn selector(instance: &str, component: Component) -> String {
    format!(
        "{NAME}={APP_NAME},{INSTANCE}={instance},{COMPONENT}={},{MANAGED_BY}={MANAGER}",
        component.as_str()
    )
}

/// Finalizer on KvrocksSentinel: refuses deletion while a Standard or Cluster uses the group.
pub const SENTINEL_FINALIZER: &str = "kvrocks.io/sentinel-in-use";
/// Finalizer on KvrocksStandard and KvrocksCluster: removes sentinel monitors before the objects go.
pub const MONITOR_FINALIZER: &str = "kvrocks.io/sentinel-monitors";

/// Port kvrocks listens on.
pub const KVROCKS_PORT: i32 = 6379;
/// Port redis-sentinel listens on.
pub const SENTINEL_PORT: i32 = 26379;
/// Key of the password in the auth Secret.
pub const PASSWORD_KEY: &str = "password";
/// The label a Secret the operator did not create needs before its password is used: without
/// it, anyone allowed to create a resource could point it at any Secret of the namespace and
/// hand that Secret to pods running an image of their choice.
pub const AUTH_LABEL: &str = "kvrocks.io/auth";

/// Names of the objects derived from a custom resource.
pub mod names {
    /// The Secret created when `spec.auth.secretName` is absent.
    pub fn auth_secret(cr: &str) -> String {
        format!("{cr}-auth")
    }
    /// The operator's own Secret holding the password in effect on the pods (password rotation).
    pub fn applied_auth_secret(cr: &str) -> String {
        format!("{cr}-auth-applied")
    }
    /// The Service that selects the current master of a KvrocksStandard.
    pub fn master_service(cr: &str) -> String {
        format!("{cr}-master")
    }
    /// The StatefulSet (and headless Service) of one cluster shard.
    pub fn shard_statefulset(cr: &str, shard: u32) -> String {
        format!("{cr}-{shard}")
    }
    /// A pod of a StatefulSet.
    pub fn pod(statefulset: &str, ordinal: u32) -> String {
        format!("{statefulset}-{ordinal}")
    }
    /// The sentinel master name of a KvrocksStandard.
    pub fn standard_monitor(cr: &str) -> String {
        format!("standard_{cr}")
    }
    /// The sentinel master name of one cluster shard.
    pub fn cluster_monitor(cr: &str, shard: u32) -> String {
        format!("{}{shard}", cluster_monitor_prefix(cr))
    }

    /// What the sentinel monitor names of every shard of cluster `cr` begin with.
    pub fn cluster_monitor_prefix(cr: &str) -> String {
        format!("cluster_{cr}_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_numbers_at_the_end_of_the_name() {
        assert_eq!(ordinal("c-2-10"), Some(10));
        assert_eq!(ordinal("db-0"), Some(0));
        assert_eq!(ordinal("db"), None);
        assert_eq!(ordinal("db-"), None);
        assert_eq!(ordinal("db-x1"), None);
        assert!(ordinal("c-0-10") > ordinal("c-0-2"));
    }

    #[test]
    fn roles_round_trip_as_label_values() {
        for role in [Role::Master, Role::Replica] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        assert_eq!(Role::parse("leader"), None);
    }
}
