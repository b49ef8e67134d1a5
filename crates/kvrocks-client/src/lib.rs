//! Everything the kvrocks operator says to a kvrocks, redis-server or redis-sentinel process, typed.
//!
//! - [`NodeClient`]: PING/AUTH, INFO (replication, server, keyspace), ROLE, SLAVEOF, CONFIG, DBSIZE,
//!   and the kvrocks cluster commands (`CLUSTER INFO|NODES`, `CLUSTERX SETNODEID|SETNODES|SETSLOT|MIGRATE|VERSION|MYID`).
//! - [`SentinelClient`]: the `SENTINEL ...` commands; [`SentinelEvents`]: a self-healing stream of
//!   `+sdown`/`+odown`/`+switch-master`... events.
//! - [`Topology`]: validated typed topologies rendered to (and parsed from) SETNODES text.
//! - [`parse`]: the reply parsers, usable on their own; none of them panics on any input.
//!
//! Connections speak RESP2 (kvrocks 2.10 misbehaves with RESP3), connect lazily, fail fast within
//! [`Timeouts`] and reconnect on the next call rather than retrying in the background.

#![warn(missing_docs)]

mod addr;
mod clusterx;
mod conn;
mod error;
mod events;
mod node;
pub mod parse;
mod sentinel;
mod slots;
mod topology;

pub use addr::{AddrParseError, Endpoint, NodeAddr, Password, Timeouts};
pub use error::{Error, Result};
pub use events::{DEFAULT_CHANNELS, EventLink, EventOptions, SentinelEvents};
pub use fred::types::Value;
pub use node::NodeClient;
pub use parse::ParseError;
pub use parse::cluster::{
    ClusterInfo, ClusterNode, ClusterNodes, ClusterRole, ImportInfo, ImportState, MigrationInfo,
    MigrationState, SlotMove,
};
pub use parse::event::{InstanceKind, SentinelEvent, SentinelEventKind};
pub use parse::info::{
    ConnectedReplica, DbKeyspace, InfoSections, Keyspace, LinkStatus, ReplicationInfo,
    ReplicationRole, ServerInfo,
};
pub use parse::role::{ReplicaState, Role, RoleReplica};
pub use parse::sentinel::{QuorumStatus, SentinelMaster, SentinelPeer, SentinelReplica};
pub use sentinel::SentinelClient;
pub use slots::{NODE_ID_LEN, NodeId, SLOT_COUNT, SlotRange, format_ranges};
pub use topology::{Topology, TopologyError, TopologyNode, TopologyRole};
