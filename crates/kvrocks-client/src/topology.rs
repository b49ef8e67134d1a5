//! Cluster topologies for `CLUSTERX SETNODES`: typed nodes in, validated text out (and back).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::addr::NodeAddr;
use crate::parse::cluster::{ClusterNodes, ClusterRole};
use crate::slots::{NodeId, SlotRange, format_ranges};

/// Role of a node in a topology pushed with SETNODES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyRole {
    /// A master owning `slots` (may be empty).
    Master {
        /// Slot ranges owned.
        slots: Vec<SlotRange>,
    },
    /// A replica of the master with id `master_id`.
    Replica {
        /// The master's node id.
        master_id: NodeId,
    },
}

/// One node of a topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyNode {
    /// Node id (set on the node with `CLUSTERX SETNODEID`).
    pub id: NodeId,
    /// IP (or host) and port other nodes and clients use.
    pub addr: NodeAddr,
    /// Master with slots, or replica of a master.
    pub role: TopologyRole,
}

impl TopologyNode {
    /// A master owning `slots`.
    pub fn master(id: NodeId, addr: NodeAddr, slots: impl IntoIterator<Item = SlotRange>) -> Self {
        Self {
            id,
            addr,
            role: TopologyRole::Master {
                slots: slots.into_iter().collect(),
            },
        }
    }

    /// A replica of `master_id`.
    pub fn replica(id: NodeId, addr: NodeAddr, master_id: NodeId) -> Self {
        Self {
            id,
            addr,
            role: TopologyRole::Replica { master_id },
        }
    }
}

/// Why a set of nodes is not a topology kvrocks would accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The same node id appears twice.
    #[error("node id {0} appears more than once")]
    DuplicateId(NodeId),
    /// Two nodes share an address.
    #[error("address {0} is used by more than one node")]
    DuplicateAddr(NodeAddr),
    /// A host is empty or contains whitespace (it would break the line format).
    #[error("node {id} has an invalid host {host:?}")]
    InvalidHost {
        /// The node.
        id: NodeId,
        /// The bad host.
        host: String,
    },
    /// Two masters own the same slot.
    #[error("slot {slot} is owned by both {first} and {second}")]
    SlotOverlap {
        /// The contested slot.
        slot: u16,
        /// One owner.
        first: NodeId,
        /// The other owner.
        second: NodeId,
    },
    /// A replica points at a node that is not a master of this topology.
    #[error("replica {replica} follows {master_id}, which is not a master in this topology")]
    UnknownMaster {
        /// The replica.
        replica: NodeId,
        /// What it follows.
        master_id: NodeId,
    },
    /// A line of SETNODES text could not be read.
    #[error("invalid topology line {line:?}: {reason}")]
    InvalidLine {
        /// The line.
        line: String,
        /// Why.
        reason: String,
    },
}

/// A validated cluster topology: unique ids and addresses, no slot owned twice, replicas follow masters.
///
/// Slot ranges are normalized (sorted, merged), so rendering is canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<TopologyNode>,
}

impl Topology {
    /// Validates and normalizes `nodes` (their order is kept).
    pub fn new(nodes: impl IntoIterator<Item = TopologyNode>) -> Result<Self, TopologyError> {
        let mut nodes: Vec<TopologyNode> = nodes.into_iter().collect();
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for node in &mut nodes {
            if !ids.insert(node.id.clone()) {
                return Err(TopologyError::DuplicateId(node.id.clone()));
            }
            if !addrs.insert(node.addr.clone()) {
                return Err(TopologyError::DuplicateAddr(node.addr.clone()));
            }
            if node.addr.host.is_empty() || node.addr.host.chars().any(char::is_whitespace) {
                return Err(TopologyError::InvalidHost {
                    id: node.id.clone(),
                    host: node.addr.host.clone(),
                });
            }
            if let TopologyRole::Master { slots } = &mut node.role {
                *slots = SlotRange::normalize(slots.iter().copied());
            }
        }
        let mut owners: Vec<(SlotRange, &NodeId)> = nodes
            .iter()
            .flat_map(|n| match &n.role {
                TopologyRole::Master { slots } => slots.iter().map(|r| (*r, &n.id)).collect(),
                TopologyRole::Replica { .. } => Vec::new(),
            })
            .collect();
        owners.sort_by_key(|(r, _)| *r);
        for pair in owners.windows(2) {
            if let [(a, a_id), (b, b_id)] = pair
                && a.overlaps(b)
            {
                return Err(TopologyError::SlotOverlap {
                    slot: b.start(),
                    first: (*a_id).clone(),
                    second: (*b_id).clone(),
                });
            }
        }
        let masters: BTreeSet<&NodeId> = nodes
            .iter()
            .filter(|n| matches!(n.role, TopologyRole::Master { .. }))
            .map(|n| &n.id)
            .collect();
        for node in &nodes {
            if let TopologyRole::Replica { master_id } = &node.role
                && !masters.contains(master_id)
            {
                return Err(TopologyError::UnknownMaster {
                    replica: node.id.clone(),
                    master_id: master_id.clone(),
                });
            }
        }
        // One canonical order, so two topologies with the same nodes compare equal whatever
        // order they were listed in (CLUSTER NODES lists them in kvrocks' own order).
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Self { nodes })
    }

    /// Parses SETNODES text with kvrocks' own rules (so `5-5` and overlaps are refused).
    pub fn parse_setnodes(text: &str) -> Result<Self, TopologyError> {
        let nodes = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(parse_setnodes_line)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(nodes)
    }

    /// Builds the topology a node reports in CLUSTER NODES (migration markers are ignored).
    pub fn from_cluster_nodes(nodes: &ClusterNodes) -> Result<Self, TopologyError> {
        let typed = nodes.nodes.iter().map(|n| TopologyNode {
            id: n.id.clone(),
            addr: n.addr.clone(),
            role: match (&n.role, &n.master_id) {
                (ClusterRole::Replica, Some(master_id)) => TopologyRole::Replica {
                    master_id: master_id.clone(),
                },
                _ => TopologyRole::Master {
                    slots: n.slots.clone(),
                },
            },
        });
        Self::new(typed)
    }

    /// The nodes, slot ranges normalized.
    pub fn nodes(&self) -> &[TopologyNode] {
        &self.nodes
    }

    /// The master owning `slot`, if any.
    pub fn owner_of(&self, slot: u16) -> Option<&TopologyNode> {
        self.nodes.iter().find(|n| match &n.role {
            TopologyRole::Master { slots } => slots.iter().any(|r| r.contains(slot)),
            TopologyRole::Replica { .. } => false,
        })
    }

    /// Number of slots with an owner.
    pub fn assigned_slots(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.role {
                TopologyRole::Master { slots } => slots.iter().map(SlotRange::len).sum(),
                TopologyRole::Replica { .. } => 0,
            })
            .sum()
    }

    /// Slot ranges owned by each master, by id.
    pub fn slots_by_master(&self) -> BTreeMap<&NodeId, &[SlotRange]> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.role {
                TopologyRole::Master { slots } => Some((&n.id, slots.as_slice())),
                TopologyRole::Replica { .. } => None,
            })
            .collect()
    }

    /// The text for `CLUSTERX SETNODES`: one line per node, `\n` separated.
    pub fn to_setnodes(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Topology {
    /// Master: `<id> <ip> <port> master - <slots>`; replica: `<id> <ip> <port> slave <masterId>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{} {} {} ", node.id, node.addr.host, node.addr.port)?;
            match &node.role {
                TopologyRole::Master { slots } if slots.is_empty() => f.write_str("master -")?,
                TopologyRole::Master { slots } => write!(f, "master - {}", format_ranges(slots))?,
                TopologyRole::Replica { master_id } => write!(f, "slave {master_id}")?,
            }
        }
        Ok(())
    }
}

fn parse_setnodes_line(line: &str) -> Result<TopologyNode, TopologyError> {
    let err = |reason: String| TopologyError::InvalidLine {
        line: line.to_owned(),
        reason,
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [id, host, port, role, master, slots @ ..] = fields.as_slice() else {
        return Err(err(format!("{} fields, expected at least 5", fields.len())));
    };
    let id = NodeId::new(*id).map_err(|e| err(e.to_string()))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| err(format!("bad port {port:?}")))?;
    let addr = NodeAddr::new(*host, port);
    match role.to_ascii_lowercase().as_str() {
        "master" => {
            if *master != "-" {
                return Err(err("a master's master id must be '-'".into()));
            }
            let slots = slots
                .iter()
                .map(|s| parse_setnodes_slots(s).map_err(&err))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TopologyNode::master(id, addr, slots))
        }
        "slave" | "replica" => {
            if !slots.is_empty() {
                return Err(err("a replica line has no slots".into()));
            }
            let master_id = NodeId::new(*master).map_err(|e| err(e.to_string()))?;
            Ok(TopologyNode::replica(id, addr, master_id))
        }
        other => Err(err(format!("unknown role {other:?}"))),
    }
}

/// kvrocks' SETNODES slot syntax: `N` or `A-B` with `A < B` (so `5-5` is refused).
fn parse_setnodes_slots(token: &str) -> Result<SlotRange, String> {
    let range: SlotRange = token
        .parse()
        .map_err(|e: crate::parse::ParseError| e.to_string())?;
    if token.contains('-') && range.start() == range.end() {
        return Err(format!(
            "{token:?}: kvrocks refuses a range whose start equals its end"
        ));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(c: char) -> NodeId {
        NodeId::new(c.to_string().repeat(40)).unwrap()
    }

    fn r(a: u16, b: u16) -> SlotRange {
        SlotRange::new(a, b).unwrap()
    }

    fn addr(i: u8) -> NodeAddr {
        NodeAddr::new(format!("10.0.0.{i}"), 6379)
    }

    #[test]
    fn renders_the_kvrocks_line_format() {
        let t = Topology::new([
            TopologyNode::master(id('a'), addr(1), [r(0, 5460), r(5462, 5462)]),
            TopologyNode::replica(id('b'), addr(2), id('a')),
            TopologyNode::master(id('c'), addr(3), [r(5461, 5461), r(5463, 16383)]),
            TopologyNode::master(id('d'), addr(4), []),
        ])
        .unwrap();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let d = "d".repeat(40);
        assert_eq!(
            t.to_setnodes(),
            format!(
                "{a} 10.0.0.1 6379 master - 0-5460 5462\n\
                 {b} 10.0.0.2 6379 slave {a}\n\
                 {c} 10.0.0.3 6379 master - 5461 5463-16383\n\
                 {d} 10.0.0.4 6379 master -"
            )
        );
        assert_eq!(t.assigned_slots(), 16384);
        assert_eq!(t.owner_of(5461).map(|n| &n.id), Some(&id('c')));
        assert_eq!(t.owner_of(5462).map(|n| &n.id), Some(&id('a')));
        assert_eq!(Topology::parse_setnodes(&t.to_setnodes()).unwrap(), t);
    }

    #[test]
    fn normalizes_adjacent_ranges() {
        let t = Topology::new([TopologyNode::master(
            id('a'),
            addr(1),
            [r(6, 9), r(0, 5), r(5, 5)],
        )])
        .unwrap();
        assert!(t.to_setnodes().ends_with("master - 0-9"));
    }

    #[test]
    fn rejects_invalid_topologies() {
        let overlap = Topology::new([
            TopologyNode::master(id('a'), addr(1), [r(0, 10)]),
            TopologyNode::master(id('b'), addr(2), [r(10, 20)]),
        ]);
        assert!(matches!(
            overlap,
            Err(TopologyError::SlotOverlap { slot: 10, .. })
        ));
        let dup = Topology::new([
            TopologyNode::master(id('a'), addr(1), []),
            TopologyNode::master(id('a'), addr(2), []),
        ]);
        assert!(matches!(dup, Err(TopologyError::DuplicateId(_))));
        let dup_addr = Topology::new([
            TopologyNode::master(id('a'), addr(1), []),
            TopologyNode::master(id('b'), addr(1), []),
        ]);
        assert!(matches!(dup_addr, Err(TopologyError::DuplicateAddr(_))));
        let orphan = Topology::new([TopologyNode::replica(id('b'), addr(2), id('a'))]);
        assert!(matches!(orphan, Err(TopologyError::UnknownMaster { .. })));
        let replica_of_replica = Topology::new([
            TopologyNode::master(id('a'), addr(1), []),
            TopologyNode::replica(id('b'), addr(2), id('a')),
            TopologyNode::replica(id('c'), addr(3), id('b')),
        ]);
        assert!(matches!(
            replica_of_replica,
            Err(TopologyError::UnknownMaster { .. })
        ));
        let bad_host = Topology::new([TopologyNode::master(id('a'), NodeAddr::new("a b", 1), [])]);
        assert!(matches!(bad_host, Err(TopologyError::InvalidHost { .. })));
    }

    #[test]
    fn parse_follows_kvrocks_rules() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 6379 master - 5-5")).is_err());
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 6379 master - 6-5")).is_err());
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 6379 master x 1")).is_err());
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 6379 slave {b} 1")).is_err());
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 6379 leader -")).is_err());
        assert!(Topology::parse_setnodes(&format!("{a} 10.0.0.1 99999 master -")).is_err());
        let t = Topology::parse_setnodes(&format!(
            "{a} 10.0.0.1 6379 MASTER - 0-16383\n\n{b} 10.0.0.2 6379 replica {a}\n"
        ))
        .unwrap();
        assert_eq!(t.nodes().len(), 2);
        assert!(t.to_setnodes().contains(" slave "));
    }

    #[test]
    fn converts_cluster_nodes() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let text = format!(
            "{a} 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-16383 [5->-{b}]\n{b} 10.0.0.2:6379@16379 slave {a} 0 0 1 connected\n"
        );
        let nodes = ClusterNodes::parse(&text).unwrap();
        let t = Topology::from_cluster_nodes(&nodes).unwrap();
        assert_eq!(
            t.to_setnodes(),
            format!("{a} 10.0.0.1 6379 master - 0-16383\n{b} 10.0.0.2 6379 slave {a}")
        );
    }

    fn arb_topology() -> impl Strategy<Value = Vec<TopologyNode>> {
        // Give each of up to 6 masters a random subset of slots, plus up to 2 replicas each.
        (
            1usize..6,
            proptest::collection::vec(0u16..16384, 0..300),
            proptest::collection::vec(0usize..3, 6),
        )
            .prop_map(|(masters, slots, replicas)| {
                let mut per_master: Vec<Vec<u16>> = vec![Vec::new(); masters];
                for (i, s) in slots.into_iter().enumerate() {
                    if let Some(v) = per_master.get_mut(i % masters) {
                        v.push(s);
                    }
                }
                // A slot chosen twice goes to the first master that took it.
                let mut seen = BTreeSet::new();
                let mut nodes = Vec::new();
                let mut n = 0u8;
                for (m, slots) in per_master.into_iter().enumerate() {
                    let slots: Vec<u16> = slots.into_iter().filter(|s| seen.insert(*s)).collect();
                    n += 1;
                    let master = NodeId::new(format!("{:040x}", u128::from(n))).unwrap();
                    nodes.push(TopologyNode::master(
                        master.clone(),
                        addr(n),
                        SlotRange::from_slots(slots),
                    ));
                    for _ in 0..replicas.get(m).copied().unwrap_or(0) {
                        n += 1;
                        let rid = NodeId::new(format!("{:040x}", u128::from(n))).unwrap();
                        nodes.push(TopologyNode::replica(rid, addr(n), master.clone()));
                    }
                }
                nodes
            })
    }

    proptest! {
        #[test]
        fn render_parse_round_trips_and_never_writes_a_dash_a(nodes in arb_topology()) {
            let t = Topology::new(nodes).unwrap();
            let text = t.to_setnodes();
            let back = Topology::parse_setnodes(&text).unwrap();
            prop_assert_eq!(&back, &t);
            prop_assert_eq!(back.to_setnodes(), text.clone());
            for token in text.split_whitespace() {
                if let Some((x, y)) = token.split_once('-')
                    && !x.is_empty()
                    && x.bytes().all(|b| b.is_ascii_digit())
                {
                    prop_assert_ne!(x, y, "rendered {} in {}", token, text);
                }
            }
        }

        #[test]
        fn setnodes_parser_never_panics(s in "\\PC*") {
            let _ = Topology::parse_setnodes(&s);
        }

        #[test]
        fn setnodes_parser_never_panics_on_line_like_text(
            tokens in proptest::collection::vec(
                prop_oneof![
                    Just("a".repeat(40)), Just("master".to_owned()), Just("slave".to_owned()),
                    Just("-".to_owned()), "[0-9]{1,6}", "[0-9]{1,5}-[0-9]{1,5}", "\\PC{0,6}", Just("\n".to_owned()),
                ],
                0..16,
            )
        ) {
            let _ = Topology::parse_setnodes(&tokens.join(" "));
        }
    }
}
