//! The controller's view of the world, as plain data: which monitors are wanted, what every
//! sentinel pod holds, and the names that tie a monitor to its owner.

use std::collections::BTreeMap;
use std::fmt;

use kvrocks_api::labels::{Component, names};
use kvrocks_client::Password;

/// Kind of the resource that owns a monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    /// A KvrocksStandard: one monitor `standard_<cr>`.
    Standard,
    /// A KvrocksCluster: one monitor per shard, `cluster_<cr>_<shard>`.
    Cluster,
}

impl OwnerKind {
    /// The Kubernetes kind, as `status.monitors[].kind` shows it.
    pub fn kind(self) -> &'static str {
        match self {
            OwnerKind::Standard => "KvrocksStandard",
            OwnerKind::Cluster => "KvrocksCluster",
        }
    }

    /// The component label value of the owner's pods.
    pub fn component(self) -> Component {
        match self {
            OwnerKind::Standard => Component::Standard,
            OwnerKind::Cluster => Component::Cluster,
        }
    }
}

/// A resource that owns monitors: kind and name (the namespace is the group's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// Standard or Cluster.
    pub kind: OwnerKind,
    /// Name of the resource.
    pub name: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.kind(), self.name)
    }
}

/// A sentinel master name the operator owns, parsed: `standard_<cr>` or `cluster_<cr>_<shard>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonitorName {
    /// The owning resource.
    pub owner: Owner,
    /// The shard, for a cluster monitor.
    pub shard: Option<u32>,
}

impl MonitorName {
    /// The monitor of a Standard.
    pub fn standard(cr: &str) -> Self {
        Self {
            owner: Owner {
                kind: OwnerKind::Standard,
                name: cr.to_owned(),
            },
            shard: None,
        }
    }

    /// The monitor of one shard of a Cluster.
    pub fn cluster(cr: &str, shard: u32) -> Self {
        Self {
            owner: Owner {
                kind: OwnerKind::Cluster,
                name: cr.to_owned(),
            },
            shard: Some(shard),
        }
    }

    /// Parses a sentinel master name; `None` when it is not one of ours (those are left alone).
    ///
    /// Underscores cannot occur in a Kubernetes name, so the parse is unambiguous; a name whose
    /// resource part could not be a Kubernetes name is not ours.
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(cr) = name.strip_prefix("standard_") {
            return is_resource_name(cr).then(|| Self::standard(cr));
        }
        let rest = name.strip_prefix("cluster_")?;
        let (cr, shard) = rest.rsplit_once('_')?;
        if !is_resource_name(cr) || shard.is_empty() || !shard.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // `cluster_a_01` is not what `cluster_monitor` writes for shard 1: not ours.
        if shard.len() > 1 && shard.starts_with('0') {
            return None;
        }
        let shard: u32 = shard.parse().ok()?;
        Some(Self::cluster(cr, shard))
    }

    /// The sentinel master name (the inverse of [`MonitorName::parse`]).
    pub fn render(&self) -> String {
        match (self.owner.kind, self.shard) {
            (OwnerKind::Cluster, Some(shard)) => names::cluster_monitor(&self.owner.name, shard),
            // A cluster monitor always has a shard; render the standard form otherwise.
            _ => names::standard_monitor(&self.owner.name),
        }
    }
}

/// Whether `s` could be the name of a namespaced custom resource (a DNS subdomain: lowercase
/// alphanumerics, `-` and `.`, starting and ending alphanumeric, at most 253 characters).
fn is_resource_name(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

/// An IP and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// IP address.
    pub ip: String,
    /// TCP port.
    pub port: u16,
}

impl Addr {
    /// An address.
    pub fn new(ip: impl Into<String>, port: u16) -> Self {
        Self {
            ip: ip.into(),
            port,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// The monitoring options every monitor of the group carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Sentinels that must agree a master is down.
    pub quorum: u32,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout` in milliseconds.
    pub failover_timeout_ms: u64,
    /// `parallel-syncs`.
    pub parallel_syncs: u32,
}

/// A monitor the group should have: an owner that exists, references the group and is not
/// being deleted, whose master and password are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredMonitor {
    /// The monitor's name, parsed.
    pub name: MonitorName,
    /// Where the owner says its master is.
    pub master: Addr,
    /// The owner's password (sentinel's `auth-pass`); its `Debug` shows nothing.
    pub password: Password,
    /// A hash of the password, to tell whether a sentinel got the current one (sentinel never
    /// reveals its auth-pass). Only ever kept in memory.
    pub auth_fingerprint: u64,
}

impl DesiredMonitor {
    /// A desired monitor; the fingerprint is computed from the password.
    pub fn new(name: MonitorName, master: Addr, password: Password) -> Self {
        let auth_fingerprint = fingerprint(password.expose());
        Self {
            name,
            master,
            password,
            auth_fingerprint,
        }
    }
}

/// A monitor whose owner exists and references the group but that cannot be set up yet (no
/// master known, no Secret): it is neither added nor removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMonitor {
    /// The monitor's name, parsed.
    pub name: MonitorName,
    /// What it waits for, for a person.
    pub reason: String,
}

/// A monitor as one sentinel reports it (`SENTINEL MASTERS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedMonitor {
    /// The address the sentinel holds for the master.
    pub master: Addr,
    /// Its quorum.
    pub quorum: Option<u32>,
    /// `down-after-milliseconds`.
    pub down_after_ms: Option<u64>,
    /// `failover-timeout`.
    pub failover_timeout_ms: Option<u64>,
    /// `parallel-syncs`.
    pub parallel_syncs: Option<u32>,
    /// A failover of this master is running on this sentinel: leave the monitor alone.
    pub failover_in_progress: bool,
    /// How many other sentinels this one knows for the master (`num-other-sentinels`).
    pub known_sentinels: Option<u32>,
    /// The other sentinels this one knows for the master, when they were read.
    pub peers: Option<Vec<Addr>>,
}

impl ObservedMonitor {
    /// A monitor right after `SENTINEL MONITOR`: the address and quorum, nothing else known.
    pub fn fresh(master: Addr, quorum: u32) -> Self {
        Self {
            master,
            quorum: Some(quorum),
            down_after_ms: None,
            failover_timeout_ms: None,
            parallel_syncs: None,
            failover_in_progress: false,
            known_sentinels: None,
            peers: None,
        }
    }
}

/// What a sentinel pod answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The pod has no IP, is being deleted, or was not asked.
    NotAsked,
    /// It did not answer; the error says why.
    Unreachable(String),
    /// It answered with its monitors of ours, by name. Monitors that are not ours are not kept.
    Monitors(BTreeMap<String, ObservedMonitor>),
}

/// One sentinel pod as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Pod IP, once it has one.
    pub ip: Option<String>,
    /// The pod's Ready condition is True.
    pub pod_ready: bool,
    /// The pod is going away: being deleted, or scaled away (see
    /// [`crate::observe::leaving`]). It is not configured and does not count.
    pub terminating: bool,
    /// What its sentinel answered.
    pub reach: Reach,
    /// The auth-pass fingerprints this controller set on this pod, by monitor name.
    pub auth_applied: BTreeMap<String, u64>,
}

impl ObservedPod {
    /// The monitors of ours it holds, when it answered.
    pub fn monitors(&self) -> Option<&BTreeMap<String, ObservedMonitor>> {
        match &self.reach {
            Reach::Monitors(m) => Some(m),
            _ => None,
        }
    }
}

/// A stable 64-bit FNV-1a hash (see [`kvrocks_operator_core::apply::content_hash`]).
pub fn fingerprint(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    text.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn our_names_parse_and_others_do_not() {
        assert_eq!(
            MonitorName::parse("standard_db"),
            Some(MonitorName::standard("db"))
        );
        assert_eq!(
            MonitorName::parse("cluster_my-db_12"),
            Some(MonitorName::cluster("my-db", 12))
        );
        for foreign in [
            "mymaster",
            "standard_",
            "standard_Db",
            "standard_a_b",
            "cluster_db",
            "cluster_db_",
            "cluster__1",
            "cluster_db_x",
            "cluster_db_01",
            "cluster_db_-1",
            "cluster_db_99999999999",
            "standard_-db",
        ] {
            assert_eq!(MonitorName::parse(foreign), None, "{foreign}");
        }
        assert_eq!(MonitorName::cluster("c", 0).render(), "cluster_c_0");
        assert_eq!(MonitorName::standard("s").render(), "standard_s");
        assert_eq!(
            MonitorName::standard("s").owner.to_string(),
            "KvrocksStandard s"
        );
    }

    fn resource_name() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn rendered_names_parse_back(cr in resource_name(), shard in any::<u32>(), cluster in any::<bool>()) {
            let name = if cluster { MonitorName::cluster(&cr, shard) } else { MonitorName::standard(&cr) };
            prop_assert_eq!(MonitorName::parse(&name.render()), Some(name));
        }

        #[test]
        fn parsing_never_panics_and_round_trips(text in ".{0,40}") {
            if let Some(name) = MonitorName::parse(&text) {
                prop_assert_eq!(name.render(), text);
            }
        }
    }
}
