//! `CLUSTER INFO` and `CLUSTER NODES`, as kvrocks (and redis) write them.

use std::collections::BTreeMap;

use super::{ParseError, num, split_kv};
use crate::addr::NodeAddr;
use crate::slots::{NodeId, SlotRange};

/// State of the slot migration this node runs as a source (`migrating_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationState {
    /// No migration (also what a node reports after a restart or failover).
    None,
    /// Keys are being moved.
    Start,
    /// All keys moved; the new owner must now be pushed with SETNODES / SETSLOT.
    Success,
    /// The migration failed; it may be retried.
    Fail,
    /// Anything else the server said.
    Other(String),
}

impl MigrationState {
    fn parse(text: &str) -> Self {
        match text {
            "none" => Self::None,
            "start" => Self::Start,
            "success" => Self::Success,
            "fail" => Self::Fail,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// State of the slot import this node receives (`import_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportState {
    /// No import.
    None,
    /// Keys are arriving.
    Start,
    /// All keys arrived.
    Success,
    /// The import failed (kvrocks writes `error`).
    Failed,
    /// Anything else the server said.
    Other(String),
}

impl ImportState {
    fn parse(text: &str) -> Self {
        match text {
            "none" => Self::None,
            "start" => Self::Start,
            "success" => Self::Success,
            "error" | "fail" | "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The migration block of CLUSTER INFO on a source master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Slots being (or last) migrated; `None` when kvrocks writes `-1`.
    pub slots: Option<SlotRange>,
    /// Destination node id.
    pub destination_node: String,
    /// Where the migration stands.
    pub state: MigrationState,
}

/// The import block of CLUSTER INFO on a destination master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportInfo {
    /// Slots being (or last) imported; `None` when kvrocks writes `-1`.
    pub slots: Option<SlotRange>,
    /// Where the import stands.
    pub state: ImportState,
}

/// The typed `CLUSTER INFO` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `ok` or `fail`.
    pub state: String,
    /// Slots with an owner.
    pub slots_assigned: u32,
    /// Slots served without problems.
    pub slots_ok: u32,
    /// Nodes in the topology.
    pub known_nodes: u32,
    /// Masters that own slots.
    pub size: u32,
    /// kvrocks: the topology version.
    pub current_epoch: i64,
    /// kvrocks: the topology version.
    pub my_epoch: i64,
    /// Present on a master that ran a migration since it started.
    pub migration: Option<MigrationInfo>,
    /// Present on a master that received an import since it started.
    pub import: Option<ImportInfo>,
    /// Every field, raw.
    pub fields: BTreeMap<String, String>,
}

impl ClusterInfo {
    /// Parses CLUSTER INFO text; lenient about spaces after colons and the older `migrating_slot:` key.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let fields: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| split_kv(l.trim()))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let get = |k: &str| fields.get(k).map(String::as_str);
        let state = get("cluster_state")
            .ok_or_else(|| ParseError::new("CLUSTER INFO", "no cluster_state field"))?
            .to_owned();
        let slots = |v: Option<&str>| v.and_then(|s| s.parse::<SlotRange>().ok());
        let migration = get("migrating_state").map(|s| MigrationInfo {
            slots: slots(get("migrating_slot(s)").or_else(|| get("migrating_slot"))),
            destination_node: get("destination_node").unwrap_or_default().to_owned(),
            state: MigrationState::parse(s),
        });
        let import = get("import_state").map(|s| ImportInfo {
            slots: slots(get("importing_slot(s)").or_else(|| get("importing_slot"))),
            state: ImportState::parse(s),
        });
        let count = |k: &str| get(k).and_then(num).unwrap_or(0);
        let epoch = |k: &str| get(k).and_then(num).unwrap_or(0);
        Ok(Self {
            state,
            slots_assigned: count("cluster_slots_assigned"),
            slots_ok: count("cluster_slots_ok"),
            known_nodes: count("cluster_known_nodes"),
            size: count("cluster_size"),
            current_epoch: epoch("cluster_current_epoch"),
            my_epoch: epoch("cluster_my_epoch"),
            migration,
            import,
            fields,
        })
    }

    /// The migration state, `None` when the node reports no migration at all.
    pub fn migration_state(&self) -> MigrationState {
        self.migration
            .as_ref()
            .map_or(MigrationState::None, |m| m.state.clone())
    }
}

/// Role of a node in CLUSTER NODES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterRole {
    /// Owns slots (or may).
    Master,
    /// Replicates a master.
    Replica,
    /// Neither flag was present.
    Unknown,
}

/// A slot move shown on the node's own line: `[5->-<dst>]` (migrating) or `[5-<-<src>]` (importing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMove {
    /// Slots being moved.
    pub slots: SlotRange,
    /// The other node: destination when migrating, source when importing.
    pub peer: String,
}

/// One line of CLUSTER NODES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Node id.
    pub id: NodeId,
    /// Client address (`ip:port`).
    pub addr: NodeAddr,
    /// Cluster bus port after `@`, when written.
    pub cport: Option<u16>,
    /// All flags, e.g. `myself`, `master`, `slave`, `fail?`.
    pub flags: Vec<String>,
    /// Master or replica.
    pub role: ClusterRole,
    /// The master's id, for a replica (`-` is `None`).
    pub master_id: Option<NodeId>,
    /// Ping sent timestamp (ms).
    pub ping_sent: u64,
    /// Pong received timestamp (ms).
    pub pong_recv: u64,
    /// Config epoch (kvrocks: topology version).
    pub config_epoch: i64,
    /// `connected` or `disconnected`.
    pub link_state: String,
    /// Slots owned, as written.
    pub slots: Vec<SlotRange>,
    /// Migrations out of this node (only on the `myself` line).
    pub migrating: Vec<SlotMove>,
    /// Imports into this node (only on the `myself` line).
    pub importing: Vec<SlotMove>,
}

impl ClusterNode {
    /// True for the line of the node that answered.
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    /// True when `flag` is among the flags.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when the node owns `slot`.
    pub fn owns_slot(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(slot))
    }

    /// Parses one CLUSTER NODES line.
    pub fn parse_line(line: &str) -> Result<Self, ParseError> {
        let err =
            |reason: String| ParseError::new("CLUSTER NODES line", format!("{line:?}: {reason}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, addr, flags, master, ping, pong, epoch, link, rest @ ..] = fields.as_slice()
        else {
            return Err(err(format!("{} fields, expected at least 8", fields.len())));
        };
        let id = NodeId::new(*id).map_err(|e| err(e.to_string()))?;
        let (addr, cport) =
            parse_node_addr(addr).ok_or_else(|| err(format!("bad address {addr:?}")))?;
        let flags: Vec<String> = flags
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        let role = if flags.iter().any(|f| f == "master") {
            ClusterRole::Master
        } else if flags.iter().any(|f| f == "slave" || f == "replica") {
            ClusterRole::Replica
        } else {
            ClusterRole::Unknown
        };
        let master_id = match *master {
            "-" => None,
            m => Some(NodeId::new(m).map_err(|e| err(e.to_string()))?),
        };
        let number = |t: &str, what: &str| {
            num::<i64>(t).ok_or_else(|| err(format!("{what} {t:?} is not a number")))
        };
        let mut node = Self {
            id,
            addr,
            cport,
            flags,
            role,
            master_id,
            ping_sent: u64::try_from(number(ping, "ping-sent")?).unwrap_or(0),
            pong_recv: u64::try_from(number(pong, "pong-recv")?).unwrap_or(0),
            config_epoch: number(epoch, "config-epoch")?,
            link_state: (*link).to_owned(),
            slots: Vec::new(),
            migrating: Vec::new(),
            importing: Vec::new(),
        };
        for token in rest {
            if let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                if let Some((slots, peer)) = inner.split_once("->-") {
                    node.migrating
                        .push(parse_move(slots, peer).map_err(|e| err(e.to_string()))?);
                } else if let Some((slots, peer)) = inner.split_once("-<-") {
                    node.importing
                        .push(parse_move(slots, peer).map_err(|e| err(e.to_string()))?);
                } else {
                    return Err(err(format!("unknown slot marker {token:?}")));
                }
            } else {
                node.slots
                    .push(token.parse::<SlotRange>().map_err(|e| err(e.to_string()))?);
            }
        }
        Ok(node)
    }
}

fn parse_move(slots: &str, peer: &str) -> Result<SlotMove, ParseError> {
    Ok(SlotMove {
        slots: slots.parse()?,
        peer: peer.to_owned(),
    })
}

/// Parses `ip:port@cport[,hostname]`, `ip:port` or `[v6]:port@cport`.
fn parse_node_addr(text: &str) -> Option<(NodeAddr, Option<u16>)> {
    let text = text.split(',').next()?;
    let (hostport, cport) = match text.split_once('@') {
        // kvrocks writes port + 10000 as a plain integer, which can exceed 65535: no bus port then.
        Some((hp, c)) => (hp, c.parse::<u16>().ok()),
        None => (text, None),
    };
    let (host, port) = hostport.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((NodeAddr::new(host, port.parse().ok()?), cport))
}

/// The typed `CLUSTER NODES` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterNodes {
    /// One entry per line, in reply order.
    pub nodes: Vec<ClusterNode>,
}

impl ClusterNodes {
    /// Parses the whole reply; any malformed line is an error (a silently dropped node would mislead).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let nodes = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(ClusterNode::parse_line)
            .collect::<Result<_, _>>()?;
        Ok(Self { nodes })
    }

    /// The line of the node that answered.
    pub fn myself(&self) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.is_myself())
    }

    /// The node with id `id`.
    pub fn get(&self, id: &NodeId) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// All masters.
    pub fn masters(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.role == ClusterRole::Master)
    }

    /// Replicas of the master `id`.
    pub fn replicas_of<'a>(&'a self, id: &'a NodeId) -> impl Iterator<Item = &'a ClusterNode> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.master_id.as_ref() == Some(id))
    }

    /// The master owning `slot`.
    pub fn owner_of(&self, slot: u16) -> Option<&ClusterNode> {
        self.masters().find(|n| n.owns_slot(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    const B: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    const C: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

    fn r(a: u16, b: u16) -> SlotRange {
        SlotRange::new(a, b).unwrap()
    }

    /// kvrocks 2.10 (Cluster::GetClusterInfo + SlotMigrator::GetMigrationInfo), with `: ` separators.
    const KVROCKS_INFO_MIGRATING: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\ncluster_size:2\r\ncluster_current_epoch:7\r\ncluster_my_epoch:7\r\nmigrating_slot(s): 100-200\r\ndestination_node: b1b2c3d4e5f60718293a4b5c6d7e8f9012345678\r\nmigrating_state: success\r\n";

    /// kvrocks before 2.10: `migrating_slot:` and `importing_slot:` with one slot.
    const KVROCKS_INFO_OLD: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:2\r\ncluster_size:2\r\ncluster_current_epoch:2\r\ncluster_my_epoch:2\r\nmigrating_slot: 5\r\ndestination_node: b1b2c3d4e5f60718293a4b5c6d7e8f9012345678\r\nmigrating_state: start\r\nimporting_slot: 9\r\nimport_state: error\r\n";

    /// Captured shape of redis 7 CLUSTER INFO (no migration block).
    const REDIS_INFO: &str = "cluster_state:fail\r\ncluster_slots_assigned:0\r\ncluster_slots_ok:0\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:0\r\ncluster_current_epoch:0\r\ncluster_my_epoch:0\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n";

    #[test]
    fn kvrocks_cluster_info_with_migration() {
        let i = ClusterInfo::parse(KVROCKS_INFO_MIGRATING).unwrap();
        assert_eq!(i.state, "ok");
        assert_eq!(i.slots_assigned, 16384);
        assert_eq!(i.known_nodes, 3);
        assert_eq!(i.size, 2);
        assert_eq!(i.current_epoch, 7);
        assert_eq!(i.my_epoch, 7);
        let m = i.migration.clone().unwrap();
        assert_eq!(m.slots, Some(r(100, 200)));
        assert_eq!(m.destination_node, B);
        assert_eq!(m.state, MigrationState::Success);
        assert_eq!(i.migration_state(), MigrationState::Success);
        assert_eq!(i.import, None);
    }

    #[test]
    fn older_kvrocks_cluster_info() {
        let i = ClusterInfo::parse(KVROCKS_INFO_OLD).unwrap();
        assert_eq!(i.migration.as_ref().unwrap().slots, Some(r(5, 5)));
        assert_eq!(i.migration_state(), MigrationState::Start);
        let imp = i.import.unwrap();
        assert_eq!(imp.slots, Some(r(9, 9)));
        assert_eq!(imp.state, ImportState::Failed);
    }

    #[test]
    fn cluster_info_without_migration_and_odd_values() {
        let i = ClusterInfo::parse(REDIS_INFO).unwrap();
        assert_eq!(i.state, "fail");
        assert_eq!(i.migration_state(), MigrationState::None);
        let none = ClusterInfo::parse("cluster_state:ok\r\nmigrating_slot(s): -1\r\ndestination_node: \r\nmigrating_state: none\r\n").unwrap();
        let m = none.migration.unwrap();
        assert_eq!(m.slots, None);
        assert_eq!(m.state, MigrationState::None);
        assert!(ClusterInfo::parse("").is_err());
    }

    #[test]
    fn kvrocks_cluster_nodes() {
        // Cluster::genNodesDescription: "<id> <ip>:<port>@<port+10000> [myself,]master - <ping> <pong> <version> connected <slots>"
        let text = format!(
            "{A} 10.0.0.1:6379@16379 myself,master - 1736150000000 1736150000001 3 connected 0-99 201-8191 [100-200->-{B}]\n\
             {B} 10.0.0.2:6379@16379 master - 1736150000000 1736150000001 3 connected 100-200 8192-16383\n\
             {C} 10.0.0.3:6379@16379 slave {A} 1736150000000 1736150000001 3 connected\n"
        );
        let nodes = ClusterNodes::parse(&text).unwrap();
        assert_eq!(nodes.nodes.len(), 3);
        let me = nodes.myself().unwrap();
        assert_eq!(me.id.as_str(), A);
        assert_eq!(me.addr, NodeAddr::new("10.0.0.1", 6379));
        assert_eq!(me.cport, Some(16379));
        assert_eq!(me.role, ClusterRole::Master);
        assert_eq!(me.slots, vec![r(0, 99), r(201, 8191)]);
        assert_eq!(
            me.migrating,
            vec![SlotMove {
                slots: r(100, 200),
                peer: B.into()
            }]
        );
        assert_eq!(me.config_epoch, 3);
        assert_eq!(me.link_state, "connected");
        let c = nodes.get(&NodeId::new(C).unwrap()).unwrap();
        assert_eq!(c.role, ClusterRole::Replica);
        assert_eq!(c.master_id.as_ref().map(NodeId::as_str), Some(A));
        assert!(c.slots.is_empty());
        assert_eq!(nodes.owner_of(150).unwrap().id.as_str(), B);
        assert_eq!(nodes.owner_of(0).unwrap().id.as_str(), A);
        assert_eq!(nodes.masters().count(), 2);
        assert_eq!(nodes.replicas_of(&NodeId::new(A).unwrap()).count(), 1);
    }

    #[test]
    fn importing_marker_and_single_slots() {
        let line = format!(
            "{B} 10.0.0.2:6379@16379 myself,master - 0 0 4 connected 5 8192-16383 [5-<-{A}]"
        );
        let n = ClusterNode::parse_line(&line).unwrap();
        assert_eq!(n.slots, vec![r(5, 5), r(8192, 16383)]);
        assert_eq!(
            n.importing,
            vec![SlotMove {
                slots: r(5, 5),
                peer: A.into()
            }]
        );
        let line = format!(
            "{B} 10.0.0.2:6379@16379 myself,master - 0 0 4 connected [5-10-<-{A}] [7->-{C}]"
        );
        let n = ClusterNode::parse_line(&line).unwrap();
        assert_eq!(n.importing[0].slots, r(5, 10));
        assert_eq!(n.migrating[0].slots, r(7, 7));
    }

    #[test]
    fn redis_style_lines() {
        // redis 7 writes "ip:port@cport,hostname" and may flag "fail?" or "noaddr".
        let line = format!(
            "{A} 127.0.0.1:30001@40001,host-a myself,master - 0 1426238317239 1 connected 0-5460"
        );
        let n = ClusterNode::parse_line(&line).unwrap();
        assert_eq!(n.addr, NodeAddr::new("127.0.0.1", 30001));
        let line = format!("{B} :0@0 master,fail?,noaddr - 1 2 0 disconnected");
        let n = ClusterNode::parse_line(&line).unwrap();
        assert_eq!(n.addr.port, 0);
        assert!(n.has_flag("fail?"));
        let line = format!("{A} 127.0.0.1:60000@70000 myself,master - 0 0 1 connected 0-16383");
        let n = ClusterNode::parse_line(&line).unwrap();
        assert_eq!((n.addr.port, n.cport), (60000, None));
        let line = format!("{C} [::1]:6379@16379 slave {A} 0 0 1 connected");
        assert_eq!(ClusterNode::parse_line(&line).unwrap().addr.host, "::1");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "short line".to_owned(),
            format!("{A} 10.0.0.1:6379@16379 master - 0 0 x connected"),
            format!("{A} 10.0.0.1 master - 0 0 1 connected"),
            format!("{A} 10.0.0.1:6379 slave notanid 0 0 1 connected"),
            format!("{A} 10.0.0.1:6379 master - 0 0 1 connected 5-3"),
            format!("{A} 10.0.0.1:6379 master - 0 0 1 connected [5]"),
            "tooshort 10.0.0.1:6379 master - 0 0 1 connected".to_owned(),
        ] {
            assert!(ClusterNode::parse_line(&bad).is_err(), "{bad}");
        }
        assert!(ClusterNodes::parse("").unwrap().nodes.is_empty());
    }

    proptest! {
        #[test]
        fn cluster_parsers_never_panic(s in "\\PC*") {
            let _ = ClusterInfo::parse(&s);
            let _ = ClusterNodes::parse(&s);
        }

        #[test]
        fn cluster_nodes_never_panics_on_node_like_lines(
            tokens in proptest::collection::vec(
                prop_oneof![
                    Just(A.to_owned()),
                    Just("myself,master".to_owned()),
                    Just("-".to_owned()),
                    "[0-9]{1,6}",
                    "[0-9]{1,5}-[0-9]{1,5}",
                    "\\[[0-9\\-<>]{0,12}[a-f0-9]{0,40}\\]",
                    "[0-9.]{0,15}:[0-9]{0,6}@[0-9]{0,6}",
                    "\\PC{0,10}",
                ],
                0..14,
            )
        ) {
            let _ = ClusterNodes::parse(&tokens.join(" "));
        }

        #[test]
        fn cluster_info_never_panics_on_info_like_text(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("cluster_state:ok".to_owned()),
                    "(migrating_slot\\(s\\)|importing_slot|migrating_state|import_state|cluster_my_epoch): ?[a-z0-9\\-]{0,12}",
                    "\\PC{0,20}",
                ],
                0..12,
            )
        ) {
            let _ = ClusterInfo::parse(&lines.join("\r\n"));
        }
    }
}
