//! kvrocks cluster commands on a [`NodeClient`]: `CLUSTER INFO|NODES` and `CLUSTERX ...`.

use crate::NodeAddr;
use crate::conn::args;
use crate::error::{Error, Result};
use crate::node::NodeClient;
use crate::parse::cluster::{ClusterInfo, ClusterNodes};
use crate::parse::{value_i64, value_text};
use crate::slots::{NodeId, SlotRange};
use crate::topology::Topology;

/// A key that hashes to `slot` (`SLOT_COUNT` and above wrap): the first of
/// `kvrocks-operator-probe-<n>` that does.
pub fn key_in_slot(slot: u16) -> String {
    let slot = slot % crate::slots::SLOT_COUNT;
    (0u32..)
        .map(|n| format!("kvrocks-operator-probe-{n}"))
        .find(|key| fred::util::redis_keyslot(key.as_bytes()) == slot)
        .unwrap_or_default()
}

/// The address of a `MOVED <slot> <host>:<port>` error message.
fn moved_to(message: &str) -> Option<NodeAddr> {
    let mut words = message.split_whitespace();
    if words.next()? != "MOVED" {
        return None;
    }
    words.next()?.parse::<u16>().ok()?;
    words.next()?.parse().ok()
}

impl NodeClient {
    /// `CLUSTER INFO`, typed (errors with `is_cluster_not_initialized` before the first SETNODES).
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let text = self.text("CLUSTER INFO", "CLUSTER", args(["INFO"])).await?;
        ClusterInfo::parse(&text).map_err(|e| self.parse_err("CLUSTER INFO", e))
    }

    /// `CLUSTER NODES`, typed.
    pub async fn cluster_nodes(&self) -> Result<ClusterNodes> {
        let text = self
            .text("CLUSTER NODES", "CLUSTER", args(["NODES"]))
            .await?;
        ClusterNodes::parse(&text).map_err(|e| self.parse_err("CLUSTER NODES", e))
    }

    /// `CLUSTERX SETNODEID <id>`: tell the node who it is in the topology.
    pub async fn clusterx_setnodeid(&self, id: &NodeId) -> Result<()> {
        self.link
            .call_ok(
                "CLUSTERX SETNODEID",
                "CLUSTERX",
                args(["SETNODEID", id.as_str()]),
                None,
            )
            .await
    }

    /// `CLUSTERX SETNODES <topology> <version>`: a lower version is refused, an equal one is a no-op.
    pub async fn clusterx_setnodes(&self, topology: &Topology, version: u64) -> Result<()> {
        let text = topology.to_setnodes();
        let version = version.to_string();
        self.link
            .call_ok(
                "CLUSTERX SETNODES",
                "CLUSTERX",
                args(["SETNODES", text.as_str(), version.as_str()]),
                None,
            )
            .await
    }

    /// `CLUSTERX SETNODES <topology> <version> force`: replace the topology whatever the node's version.
    pub async fn clusterx_setnodes_force(&self, topology: &Topology, version: u64) -> Result<()> {
        let text = topology.to_setnodes();
        let version = version.to_string();
        self.link
            .call_ok(
                "CLUSTERX SETNODES",
                "CLUSTERX",
                args(["SETNODES", text.as_str(), version.as_str(), "force"]),
                None,
            )
            .await
    }

    /// `CLUSTERX SETSLOT <slots> NODE <id> <version>`: `version` must be exactly the node's version + 1.
    pub async fn clusterx_setslot(
        &self,
        slots: SlotRange,
        owner: &NodeId,
        version: u64,
    ) -> Result<()> {
        let slots = slots.to_string();
        let version = version.to_string();
        self.link
            .call_ok(
                "CLUSTERX SETSLOT",
                "CLUSTERX",
                args([
                    "SETSLOT",
                    slots.as_str(),
                    "NODE",
                    owner.as_str(),
                    version.as_str(),
                ]),
                None,
            )
            .await
    }

    /// `CLUSTERX MIGRATE <slots> <dst>` on the source master; asynchronous, poll [`NodeClient::cluster_info`].
    pub async fn clusterx_migrate(&self, slots: SlotRange, destination: &NodeId) -> Result<()> {
        let slots = slots.to_string();
        self.link
            .call_ok(
                "CLUSTERX MIGRATE",
                "CLUSTERX",
                args(["MIGRATE", slots.as_str(), destination.as_str()]),
                None,
            )
            .await
    }

    /// Where this node sends requests for `slot`: `None` when it serves the slot itself, else the
    /// address its `MOVED` reply names. A source master answers `MOVED` for slots it migrated
    /// as soon as the migration succeeded, before any new topology gives them away (probed with
    /// `EXISTS` on a key of the slot, which reads nothing of the data).
    pub async fn redirect_for(&self, slot: u16) -> Result<Option<NodeAddr>> {
        let key = key_in_slot(slot);
        match self
            .link
            .call("EXISTS", "EXISTS", args([key.as_str()]), None)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => match e.server_message().and_then(moved_to) {
                Some(addr) => Ok(Some(addr)),
                None => Err(e),
            },
        }
    }

    /// `CLUSTERX VERSION`: the topology version, `None` before the first SETNODES (kvrocks says -1).
    pub async fn clusterx_version(&self) -> Result<Option<u64>> {
        let reply = self
            .link
            .call("CLUSTERX VERSION", "CLUSTERX", args(["VERSION"]), None)
            .await?;
        let version = value_i64(&reply).ok_or_else(|| {
            Error::reply(
                self.addr(),
                "CLUSTERX VERSION",
                format!("expected a number, got {reply:?}"),
            )
        })?;
        Ok(u64::try_from(version).ok())
    }

    /// `CLUSTERX MYID`: the node id, `None` when it was never set.
    pub async fn clusterx_myid(&self) -> Result<Option<NodeId>> {
        let reply = self
            .link
            .call("CLUSTERX MYID", "CLUSTERX", args(["MYID"]), None)
            .await?;
        let text = value_text(&reply).unwrap_or_default();
        if text.is_empty() {
            return Ok(None);
        }
        NodeId::new(text.into_owned())
            .map(Some)
            .map_err(|e| self.parse_err("CLUSTERX MYID", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_key_hashes_to_its_slot() {
        for slot in [0, 1, 5, 8191, 16383] {
            let key = key_in_slot(slot);
            assert_eq!(fred::util::redis_keyslot(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn moved_replies_name_an_address() {
        assert_eq!(
            moved_to("MOVED 5 10.0.0.7:6379"),
            Some("10.0.0.7:6379".parse().unwrap())
        );
        assert_eq!(moved_to("ASK 5 10.0.0.7:6379"), None);
        assert_eq!(moved_to("MOVED five 10.0.0.7:6379"), None);
        assert_eq!(moved_to("MOVED 5"), None);
        assert_eq!(moved_to("ERR unknown"), None);
    }
}
