//! kvrocks cluster commands on a [`NodeClient`]: `CLUSTER INFO|NODES` and `CLUSTERX ...`.

use crate::conn::args;
use crate::error::{Error, Result};
use crate::node::NodeClient;
use crate::parse::cluster::{ClusterInfo, ClusterNodes};
use crate::parse::{value_i64, value_text};
use crate::slots::{NodeId, SlotRange};
use crate::topology::Topology;

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
